//! The operator's proof: reconciles run through a real `kube::Client` backed by the in-memory
//! API ([`FakeKube`]), with MockCluster as the Kafka peer and osmem-server as the Elasticsearch
//! peer. No kubelet exists here, so [`Kubelet`] plays one: for every engine Deployment the
//! operator scales to 1 it runs the real engine in-process from the Deployment's ConfigMap, and
//! marks the Deployment ready; scaled to 0 or deleted, it stops the engine (SIGTERM semantics:
//! a final checkpoint).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kappa_crds::{DeletionPolicy, StreamJob, VersionPhase};
use kappa_engine::gen::GenConfig;
use kappa_operator::controller::{Context, EngineLocator, Settings};
use kappa_operator::metrics::Metrics;
use kappa_operator::{build, names};
use kappa_service::status::StatusBoard;
use kappa_service::{CheckpointLocation, EngineConfig};
use kappa_testkit::elastic::ElasticPeer;
use kappa_testkit::kafka::MockKafka;
use kappa_testkit::kube_api::FakeKube;
use kappa_testkit::reader::{AliasReader, AliasWatch};
use kappa_testkit::reference::Reference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const NS: &str = "payments";
const JOB: &str = "tx-stats";
const TOPIC: &str = "tx-logs";
const PARTITIONS: usize = 3;
/// Partitions of the many-small-windows workload (MockCluster keeps ~5 MB per partition).
const BACKLOG_PARTITIONS: usize = 8;

/// One engine process of a version, run in-process.
struct Engine {
    shutdown: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Plays the kubelet: keeps in-process engines in line with the engine Deployments.
struct Kubelet {
    runtime: Option<tokio::runtime::Runtime>,
    engines: BTreeMap<String, Engine>,
    addrs: Arc<Mutex<BTreeMap<String, SocketAddr>>>,
    disks: tempfile::TempDir,
    starts: BTreeMap<String, usize>,
}

impl Kubelet {
    fn new() -> Self {
        Self {
            runtime: Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap(),
            ),
            engines: BTreeMap::new(),
            addrs: Arc::default(),
            disks: tempfile::tempdir().unwrap(),
            starts: BTreeMap::new(),
        }
    }

    /// Finds engines by version, as the Service DNS name would.
    fn locator(&self) -> EngineLocator {
        let addrs = Arc::clone(&self.addrs);
        Arc::new(move |_ns, _job, version| match addrs.lock().unwrap().get(version) {
            Some(addr) => format!("http://{addr}/status"),
            None => "http://127.0.0.1:9/status".into(),
        })
    }

    /// Starts and stops engines to match the Deployments, and reports readiness.
    async fn sync(&mut self, kube: &FakeKube) {
        let deployments: Vec<Deployment> = kube.list_as(Some(NS));
        let mut wanted = BTreeMap::new();
        for d in &deployments {
            let version = d.labels()[names::LABEL_VERSION].clone();
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            wanted.insert(version, (d.name_any(), replicas));
        }
        let running: Vec<String> = self.engines.keys().cloned().collect();
        for version in running {
            if wanted.get(&version).is_none_or(|(_, r)| *r == 0) {
                self.stop(&version);
            }
        }
        for (version, (name, replicas)) in wanted {
            if replicas > 0 && !self.engines.contains_key(&version) {
                let cm: ConfigMap =
                    kube.get_as(Some(NS), &name).expect("the Deployment's ConfigMap");
                let job = build::spec_from_config_map(&cm).unwrap();
                self.start(&version, job);
            }
            let ready = i32::from(self.engines.contains_key(&version));
            let api: Api<Deployment> = Api::namespaced(kube.client(), NS);
            let status = json!({"status": {"replicas": ready, "readyReplicas": ready}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
        }
    }

    fn start(&mut self, version: &str, job: StreamJob) {
        let mut config = EngineConfig::new(job);
        config.status_addr = "127.0.0.1:0".parse().unwrap();
        config.checkpoint = CheckpointLocation::Directory(self.disk(version));
        config.checkpoint_interval = Duration::from_millis(200);
        config.flush_interval = Duration::from_millis(200);
        config.shutdown_drain = Duration::from_secs(5);
        let board = Arc::new(StatusBoard::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let handle = self.runtime.as_ref().expect("the kubelet runs").handle().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let shutdown = Arc::clone(&shutdown);
            std::thread::spawn(move || {
                let addr = handle
                    .block_on(kappa_service::status::serve(Arc::clone(&board), config.status_addr))
                    .unwrap();
                tx.send(addr).unwrap();
                if let Err(e) = kappa_service::runner::run(config, board, handle, shutdown) {
                    eprintln!("engine stopped with an error: {e}");
                }
            })
        };
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("the engine serves /status");
        self.addrs.lock().unwrap().insert(version.to_owned(), addr);
        *self.starts.entry(version.to_owned()).or_default() += 1;
        self.engines.insert(version.to_owned(), Engine { shutdown, thread });
    }

    fn stop(&mut self, version: &str) {
        if let Some(engine) = self.engines.remove(version) {
            engine.shutdown.store(true, Ordering::Relaxed);
            engine.thread.join().unwrap();
            self.addrs.lock().unwrap().remove(version);
        }
    }

    /// The version's "pod disk" (its checkpoint directory survives restarts, as a Kafka
    /// checkpoint topic would).
    fn disk(&self, version: &str) -> PathBuf {
        self.disks.path().join(version)
    }

    fn running(&self) -> Vec<String> {
        self.engines.keys().cloned().collect()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let versions: Vec<String> = self.engines.keys().cloned().collect();
        for v in versions {
            self.stop(&v);
        }
        // Tests drop the kubelet inside their async runtime, where a blocking shutdown panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The operator's world for one test.
struct Harness {
    // Fields drop in this order: the engines stop (with their final checkpoint) while Kafka
    // and Elasticsearch still answer.
    kubelet: Kubelet,
    kube: FakeKube,
    kafka: MockKafka,
    es: ElasticPeer,
    ctx: Arc<Context>,
    lines: Vec<Vec<String>>,
}

impl Harness {
    async fn new(records: u64, settings: Settings) -> Self {
        let cfg = GenConfig { records, seed: 7, ..GenConfig::default() };
        Self::with_workload(&cfg, PARTITIONS, settings, ElasticPeer::osmem()).await
    }

    async fn with_workload(
        cfg: &GenConfig,
        partitions: usize,
        settings: Settings,
        es: ElasticPeer,
    ) -> Self {
        let kafka = MockKafka::new();
        kafka.create_topic(TOPIC, partitions as i32);
        for version in ["v1", "v2"] {
            let group = kappa_crds::consumer_group(NS, JOB, version);
            kafka.create_topic(&format!("{group}.dead-letters"), 1);
        }
        let lines = kafka.produce_workload(TOPIC, cfg, partitions);
        let kube = FakeKube::new();
        let kubelet = Kubelet::new();
        let ctx = Arc::new(Context::with_locator(
            kube.client(),
            settings,
            Arc::new(Metrics::new()),
            kubelet.locator(),
        ));
        Self { kube, kafka, es, kubelet, ctx, lines }
    }

    /// The reference job pointed at the peers, as `kubectl apply` would create it.
    fn job(&self, version: &str, filter: &str) -> StreamJob {
        let yaml =
            kappa_testkit::job::tx_stats_job(&self.kafka.bootstrap(), &self.es.url(), JOB, version);
        let mut job = kappa_crds::load_manifest(&yaml).unwrap();
        job.spec.pipeline.filter = Some(filter.into());
        job.spec.promotion.stable_for = "1s".into();
        job.spec.retention.warm_for = "3s".into();
        job
    }

    fn apply(&self, job: &StreamJob) {
        let mut job = job.clone();
        if let Some(stored) = self.stored() {
            job.metadata = stored.metadata.clone();
            job.status = stored.status.clone();
        }
        self.kube.insert(job);
    }

    fn stored(&self) -> Option<StreamJob> {
        self.kube.get_as(Some(NS), JOB)
    }

    /// One controller pass: reconcile the stored object, then let the kubelet catch up.
    async fn reconcile(&mut self) {
        self.reconcile_only().await;
        self.kubelet.sync(&self.kube).await;
    }

    /// One controller pass with no kubelet: Deployments are created but run nothing.
    async fn reconcile_only(&self) {
        let Some(job) = self.stored() else { return };
        if let Err(e) = kappa_operator::reconcile(Arc::new(job), Arc::clone(&self.ctx)).await {
            panic!("reconcile failed: {e}");
        }
    }

    /// Reconciles until `done` holds for the stored job.
    async fn reconcile_until(
        &mut self,
        what: &str,
        done: impl Fn(&StreamJob) -> bool,
    ) -> StreamJob {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            self.reconcile().await;
            let job = self.stored().expect("the job exists");
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#?}", job.status);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn phase(job: &StreamJob, version: &str) -> Option<VersionPhase> {
        job.status.as_ref()?.versions.iter().find(|r| r.version == version).map(|r| r.phase)
    }

    fn alias(&self) -> Vec<String> {
        self.es.alias_targets(JOB)
    }

    fn index(version: &str) -> String {
        format!("{JOB}-{version}")
    }

    fn event_reasons(&self) -> Vec<String> {
        self.kube
            .list("events.k8s.io/v1", "events", Some(NS))
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until the documents behind the alias are the final values of `reference`.
    fn assert_alias_serves(&self, reference: &Reference) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.es.count(JOB) != reference.windows.len() as u64 {
            assert!(
                Instant::now() < deadline,
                "alias did not reach {} documents",
                reference.windows.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // One more flush, so late updates of open windows have landed.
        std::thread::sleep(Duration::from_millis(600));
        reference.assert_documents(&self.es.documents(JOB));
    }

    fn failures_through_alias(&self) -> u64 {
        self.es.documents(JOB).iter().map(|d| d["failures"].as_u64().unwrap_or(0)).sum()
    }
}

fn deployment_replicas(kube: &FakeKube, version: &str) -> Option<i32> {
    let d: Deployment = kube.get_as(Some(NS), &names::version_object_name(JOB, version))?;
    d.spec.and_then(|s| s.replicas)
}

/// v1 with failures filtered out; v2 is the reference job itself.
const V1_FILTER: &str = "status != 'test' && status != 'fail'";
const V2_FILTER: &str = "status != 'test'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_promotion_rollback_and_retain_deletion() {
    let mut h = Harness::new(20_000, Settings::default()).await;
    let reference = Reference::compute(&h.lines);
    let watch = AliasWatch::start(&h.es.url(), JOB);

    // v1 is created: its ConfigMap, Deployment and Service exist, owned by the job.
    let mut v1 = h.job("v1", V1_FILTER);
    v1.metadata.uid = None;
    h.apply(&v1);
    h.reconcile().await; // adds the finalizer
    let stored = h.stored().unwrap();
    assert_eq!(stored.finalizers(), [names::FINALIZER]);
    let job = h.reconcile_until("v1 to start", |j| Harness::phase(j, "v1").is_some()).await;
    let name = names::version_object_name(JOB, "v1");
    let cm: ConfigMap = h.kube.get_as(Some(NS), &name).expect("v1 ConfigMap");
    let deployment: Deployment = h.kube.get_as(Some(NS), &name).expect("v1 Deployment");
    let _: Service = h.kube.get_as(Some(NS), &name).expect("v1 Service");
    assert_eq!(deployment.labels()[names::LABEL_VERSION], "v1");
    assert_eq!(deployment.owner_references()[0].name, JOB);
    assert_eq!(
        build::spec_from_config_map(&cm).unwrap().spec.pipeline.filter.as_deref(),
        Some(V1_FILTER)
    );
    assert!(job.status.as_ref().unwrap().observed_generation.is_some());

    // v1's lag falls to 0 and the alias points to v1.
    let job = h
        .reconcile_until("v1 to go live", |j| Harness::phase(j, "v1") == Some(VersionPhase::Live))
        .await;
    assert_eq!(h.alias(), [Harness::index("v1")]);
    let status = job.status.clone().unwrap();
    assert_eq!(status.live_version.as_deref(), Some("v1"));
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == kappa_crds::ConditionStatus::True));
    assert!(status.lag.unwrap() <= 1000);
    assert_eq!(h.failures_through_alias(), 0, "v1 filters failures out");

    // v2 is applied: its workload starts while v1 stays live.
    let v2 = h.job("v2", V2_FILTER);
    h.apply(&v2);
    let job = h
        .reconcile_until("v2 to start", |j| {
            matches!(
                Harness::phase(j, "v2"),
                Some(VersionPhase::Replaying | VersionPhase::CaughtUp)
            )
        })
        .await;
    assert_eq!(Harness::phase(&job, "v1"), Some(VersionPhase::Live));
    assert_eq!(h.alias(), [Harness::index("v1")], "v1 serves while v2 replays");
    assert!(h.kubelet.running().contains(&"v2".to_string()));

    // v2 catches up and the alias is swapped; v1 is retained and kept warm.
    let job = h
        .reconcile_until("v2 to go live", |j| Harness::phase(j, "v2") == Some(VersionPhase::Live))
        .await;
    assert_eq!(h.alias(), [Harness::index("v2")]);
    assert_eq!(Harness::phase(&job, "v1"), Some(VersionPhase::Retiring));
    assert_eq!(deployment_replicas(&h.kube, "v1"), Some(1), "v1 is kept warm");
    assert!(h.kubelet.running().contains(&"v1".to_string()));
    h.assert_alias_serves(&reference);
    assert!(h.failures_through_alias() > 0, "the alias serves v2's logic");

    // After warmFor, v1's engine scales to zero; its index stays.
    let job = h
        .reconcile_until("v1 to be retained", |j| {
            Harness::phase(j, "v1") == Some(VersionPhase::Retained)
        })
        .await;
    assert_eq!(deployment_replicas(&h.kube, "v1"), Some(0));
    assert!(!h.kubelet.running().contains(&"v1".to_string()));
    assert_eq!(job.status.unwrap().live_version.as_deref(), Some("v2"));

    // A rollback to v1 puts the alias back on v1 and resumes its engine from its checkpoint.
    let mut rollback = h.stored().unwrap();
    rollback.spec.active_version = Some("v1".into());
    h.apply(&rollback);
    let job = h
        .reconcile_until("the rollback", |j| Harness::phase(j, "v1") == Some(VersionPhase::Live))
        .await;
    assert_eq!(h.alias(), [Harness::index("v1")]);
    assert_eq!(Harness::phase(&job, "v2"), Some(VersionPhase::RolledBack));
    assert_eq!(deployment_replicas(&h.kube, "v1"), Some(1));
    assert_eq!(h.kubelet.starts["v1"], 2, "v1's engine was started again");
    assert_eq!(h.failures_through_alias(), 0, "the alias serves v1's logic again");

    let reasons = h.event_reasons();
    for reason in [
        "VersionAccepted",
        "ReplayStarted",
        "CaughtUp",
        "Promoted",
        "Retiring",
        "WarmPeriodOver",
        "RolledBack",
    ] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} Event in {reasons:?}");
    }
    let metrics = h.ctx.metrics.render();
    assert!(metrics.contains("kappa_operator_alias_swaps_total 3"), "{metrics}");
    assert!(metrics.contains("kappa_operator_rollbacks_total 1"), "{metrics}");

    // At no point between requests did the alias point at zero or two indexes.
    let seen = watch.finish();
    let after_first: Vec<_> = seen.iter().skip_while(|s| s.is_empty()).collect();
    assert_eq!(after_first.len(), 3, "the watch saw v1, v2 and v1 again: {seen:?}");
    assert!(after_first.iter().all(|s| s.len() == 1), "alias states: {seen:?}");

    // Deletion under Retain: workloads go, indexes and the alias stay, the object goes.
    let api: Api<StreamJob> = Api::namespaced(h.kube.client(), NS);
    api.delete(JOB, &DeleteParams::default()).await.unwrap();
    h.reconcile().await;
    assert!(h.stored().is_none(), "the finalizer was released");
    assert!(h.kube.list_as::<Deployment>(Some(NS)).is_empty());
    assert!(h.kube.list_as::<ConfigMap>(Some(NS)).is_empty());
    assert!(h.kube.list_as::<Service>(Some(NS)).is_empty());
    assert!(h.es.count(&Harness::index("v1")) > 0 && h.es.count(&Harness::index("v2")) > 0);
    assert_eq!(h.alias(), [Harness::index("v1")]);
    rbac_coverage::assert_requests_allowed(&h.kube.requests(), HARNESS_REQUESTS);
}

/// The defect this guards against: an engine that has read up to the head still has every
/// open window to write, and an alias moved then shows readers a partial index. With about
/// 104k open windows (several flush intervals of writing) and `stableFor: 1s`, a reader who
/// reads through the alias the moment it moves finds every window with its batch value: at
/// the first promotion, at a manually approved swap from v1 to v2, and at a rollback to the
/// warm v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_find_a_complete_index_at_every_alias_move() {
    let workload = kappa_testkit::job::many_small_windows(5);
    let es = ElasticPeer::opensearch();
    let mut h =
        Harness::with_workload(&workload, BACKLOG_PARTITIONS, Settings::default(), es).await;
    let v1_reference = Reference::compute_without_failures(&h.lines);
    let v2_reference = Reference::compute(&h.lines);
    let open = kappa_testkit::job::open_windows(&v2_reference);
    assert!(open >= 100_000, "the workload leaves {open} windows open at the head");
    let reader = AliasReader::start(&h.es.url(), JOB);
    let warm = |mut job: StreamJob| {
        job.spec.retention.warm_for = "10m".into();
        // Acknowledged documents become searchable only at a refresh. With a long interval,
        // only the operator's refresh before the swap can make the whole index visible at
        // the moment readers arrive.
        job.spec.sink.elasticsearch.index_settings =
            Some(json!({"refresh_interval": "30s", "number_of_replicas": 0}));
        job
    };

    // First promotion: v1 (auto) goes live once its index is complete.
    h.apply(&warm(h.job("v1", V1_FILTER)));
    h.reconcile_until("v1 to go live", |j| Harness::phase(j, "v1") == Some(VersionPhase::Live))
        .await;

    // v2 (manual): it catches up, the engine reports the backlog it writes after the replay,
    // and the alias moves when v2 is approved.
    let mut v2 = warm(h.job("v2", V2_FILTER));
    v2.spec.promotion.mode = kappa_crds::PromotionMode::Manual;
    h.apply(&v2);
    let mut largest_backlog = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        h.reconcile().await;
        let job = h.stored().unwrap();
        let row = job.status.as_ref().and_then(|s| s.versions.iter().find(|r| r.version == "v2"));
        largest_backlog = largest_backlog.max(row.and_then(|r| r.backlog).unwrap_or(0));
        if Harness::phase(&job, "v2") == Some(VersionPhase::CaughtUp) {
            break;
        }
        assert!(Instant::now() < deadline, "v2 did not catch up: {:#?}", job.status);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        largest_backlog >= 50_000,
        "v2's engine reported a backlog of at most {largest_backlog} documents after its replay"
    );
    assert_eq!(h.alias(), [Harness::index("v1")], "manual: v1 serves until approval");
    let mut approved = h.stored().unwrap();
    approved
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(names::ANNOTATION_APPROVE.to_owned(), "v2".to_owned());
    h.kube.insert(approved); // as `kappa promote` patches it (apply() keeps stored metadata)
    h.reconcile_until("v2 to go live", |j| Harness::phase(j, "v2") == Some(VersionPhase::Live))
        .await;

    // Rollback to v1, kept warm and current: the alias moves at once.
    let mut rollback = h.stored().unwrap();
    rollback.spec.active_version = Some("v1".into());
    h.apply(&rollback);
    h.reconcile_until("the rollback", |j| Harness::phase(j, "v1") == Some(VersionPhase::Live))
        .await;

    // Every move has been read (the reader reads right after seeing it).
    let deadline = Instant::now() + Duration::from_secs(120);
    while reader.reads().len() < 3 {
        assert!(Instant::now() < deadline, "the reader did not finish reading");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (reads, states) = reader.finish();
    assert_eq!(states.iter().filter(|s| !s.is_empty()).count(), 3, "three moves: {states:?}");
    reads[0].assert_complete(&Harness::index("v1"), &v1_reference);
    reads[1].assert_complete(&Harness::index("v2"), &v2_reference);
    reads[2].assert_complete(&Harness::index("v1"), &v1_reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_under_delete_removes_indexes_and_a_dead_elasticsearch_cannot_block_it() {
    let settings = Settings { cleanup_timeout: Duration::from_secs(2), ..Settings::default() };
    let mut h = Harness::new(2_000, settings).await;
    let mut job = h.job("v1", V2_FILTER);
    job.spec.deletion_policy = DeletionPolicy::Delete;
    h.apply(&job);
    h.reconcile_until("v1 to go live", |j| Harness::phase(j, "v1") == Some(VersionPhase::Live))
        .await;
    assert!(h.es.count(&Harness::index("v1")) > 0);

    let api: Api<StreamJob> = Api::namespaced(h.kube.client(), NS);
    api.delete(JOB, &DeleteParams::default()).await.unwrap();
    h.reconcile().await;
    assert!(h.stored().is_none());
    let (status, _) = kappa_testkit::http::send_json(
        "GET",
        &format!("{}/{}", h.es.url(), Harness::index("v1")),
        None,
    );
    assert_eq!(status, 404, "the index was deleted");
    assert!(h.event_reasons().iter().any(|r| r == "IndexesDeleted"));

    // A job whose Elasticsearch is gone: deletion retries, then gives up and says so.
    let mut stranded = h.job("v1", V2_FILTER);
    stranded.spec.deletion_policy = DeletionPolicy::Delete;
    stranded.spec.sink.elasticsearch.url = "http://127.0.0.1:9".into();
    h.apply(&stranded);
    h.reconcile_only().await; // finalizer
    h.reconcile_only().await; // v1 Pending (its engine never runs: no kubelet here)
    let with_rows = h.stored().unwrap();
    assert!(with_rows.status.as_ref().is_some_and(|s| !s.versions.is_empty()));
    api.delete(JOB, &DeleteParams::default()).await.unwrap();
    let job = h.stored().unwrap();
    assert!(job.metadata.deletion_timestamp.is_some());
    let first = kappa_operator::reconcile(Arc::new(job), Arc::clone(&h.ctx)).await;
    assert!(first.is_err(), "an unreachable Elasticsearch is retried first");
    assert!(h.stored().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.reconcile_only().await;
    assert!(h.stored().is_none(), "past the cleanup timeout the finalizer is released");
    assert!(h.event_reasons().iter().any(|r| r == "IndexCleanupAbandoned"));
    rbac_coverage::assert_requests_allowed(&h.kube.requests(), HARNESS_REQUESTS);
}

/// Applies `job`, reconciles, and returns the `Degraded` condition's message after checking
/// the job was refused as invalid and that nothing was started.
async fn refused_as_invalid(h: &mut Harness, job: &StreamJob) -> String {
    h.apply(job);
    h.reconcile().await;
    h.reconcile().await;
    let stored = h.stored().unwrap();
    let degraded = stored
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded").cloned())
        .expect("a Degraded condition");
    assert_eq!(degraded.reason, "InvalidSpec");
    assert!(h.kube.list_as::<Deployment>(Some(NS)).is_empty());
    rbac_coverage::assert_requests_allowed(&h.kube.requests(), HARNESS_REQUESTS);
    degraded.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_job_is_refused_with_field_paths_and_nothing_runs() {
    let mut h = Harness::new(10, Settings::default()).await;
    let mut job = h.job("v1", V2_FILTER);
    job.spec.pipeline.max_lateness = "3 days".into();
    let message = refused_as_invalid(&mut h, &job).await;
    assert!(message.contains("spec.pipeline.maxLateness"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_the_engine_cannot_compile_is_refused_at_admission() {
    // Valid CEL syntax, so only the engine's compiler refuses it: without it the Deployment
    // would start and its engine crash-loop.
    let mut h = Harness::new(10, Settings::default()).await;
    let job = h.job("v1", "!tags.exists(t, t == 'test')");
    let message = refused_as_invalid(&mut h, &job).await;
    assert!(message.contains("spec.pipeline.filter: macro `exists` is not supported"), "{message}");
}

/// Every request above is allowed by the chart's RBAC (`rbac::RULES`), except these, which the
/// tests send themselves: the kubelet's Deployment status and `kubectl delete streamjob`.
mod rbac_coverage;
const HARNESS_REQUESTS: &[rbac_coverage::HarnessAccess] =
    &[("apps", "deployments/status", "patch"), ("kappa.dev", "streamjobs", "delete")];
