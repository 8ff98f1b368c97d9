//! End to end: `kappa up` runs the blue/green lifecycle on this machine. The real `kappa`
//! binary runs the controller against its local API and each version's engine as a child
//! process, against MockCluster (a Kafka-protocol broker on loopback) and osmem-server (an
//! Elasticsearch-API server). The test only edits the job file and calls the CLI, as a user
//! would: v1 → v2 → alias swap → the documents through the alias equal the batch reference →
//! `kappa rollback --local` → the alias is back on v1 → a restart of `kappa up`, even after
//! kill -9, resumes. A job file whose CEL the engine cannot compile is refused before anything
//! runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kappa_crds::StreamJob;
use kappa_engine::gen::GenConfig;
use kappa_testkit::elastic::ElasticPeer;
use kappa_testkit::kafka::MockKafka;
use kappa_testkit::process::exit_within;
use kappa_testkit::reader::{AliasReader, AliasWatch};
use kappa_testkit::reference::Reference;
use serde_json::Value as Json;

const NS: &str = "payments";
const JOB: &str = "tx-stats";
const TOPIC: &str = "tx-logs";
const PARTITIONS: usize = 3;
/// v1 drops failed transactions too; v2 is the reference job (only test records dropped).
const V1_FILTER: &str = "status != 'test' && status != 'fail'";
const V2_FILTER: &str = "status != 'test'";

struct World {
    kafka: MockKafka,
    es: ElasticPeer,
    dir: tempfile::TempDir,
    lines: Vec<Vec<String>>,
}

impl World {
    fn new(records: u64) -> Self {
        let cfg = GenConfig { records, seed: 11, ..GenConfig::default() };
        Self::with(&cfg, PARTITIONS, ElasticPeer::osmem())
    }

    fn with(cfg: &GenConfig, partitions: usize, es: ElasticPeer) -> Self {
        let kafka = MockKafka::new();
        kafka.create_topic(TOPIC, partitions as i32);
        for version in ["v1", "v2"] {
            let group = kappa_crds::consumer_group(NS, JOB, version);
            kafka.create_topic(&format!("{group}.dead-letters"), 1);
        }
        let lines = kafka.produce_workload(TOPIC, cfg, partitions);
        Self { kafka, es, dir: tempfile::tempdir().unwrap(), lines }
    }

    /// Produces more records into the topic (after the ones there) and keeps their lines.
    fn produce_more(&mut self, cfg: &GenConfig) {
        let more = self.kafka.produce_workload(TOPIC, cfg, self.lines.len());
        for (lines, more) in self.lines.iter_mut().zip(more) {
            lines.extend(more);
        }
    }

    fn job_file(&self) -> PathBuf {
        self.dir.path().join("tx-stats.yaml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("up.log")
    }

    /// Writes the job file at `version` with `filter`, as a user's editor would.
    fn write_job(&self, version: &str, filter: &str) {
        self.write_job_with(version, filter, |_| {});
    }

    /// [`Self::write_job`] with further changes to the job.
    fn write_job_with(&self, version: &str, filter: &str, edit: impl FnOnce(&mut StreamJob)) {
        let yaml =
            kappa_testkit::job::tx_stats_job(&self.kafka.bootstrap(), &self.es.url(), JOB, version);
        let mut job = kappa_crds::load_manifest(&yaml).unwrap();
        job.spec.pipeline.filter = Some(filter.into());
        job.spec.promotion.stable_for = "1s".into();
        job.spec.retention.warm_for = "2s".into();
        edit(&mut job);
        std::fs::write(self.job_file(), serde_yaml::to_string(&job).unwrap()).unwrap();
    }

    fn up(&self) -> Child {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_file()).unwrap();
        Command::new(env!("CARGO_BIN_EXE_kappa"))
            .arg("up")
            .arg("-f")
            .arg(self.job_file())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--checkpoint-interval", "1s"])
            .env("KAPPA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap()
    }

    /// Runs `kappa ARGS --local --state-dir …` and returns its output.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kappa"))
            .args(args)
            .arg("--local")
            .arg("--state-dir")
            .arg(self.state_dir())
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// The StreamJob as the local API serves it (through the kubeconfig `kappa up` wrote).
    fn stored(&self) -> Option<Json> {
        let server = api_server(&self.state_dir())?;
        let url = format!("{server}/apis/kappa.dev/v1alpha1/namespaces/{NS}/streamjobs/{JOB}");
        kappa_testkit::http::get_json(&url)
    }

    fn phase(&self, version: &str) -> Option<String> {
        let job = self.stored()?;
        let rows = job["status"]["versions"].as_array()?.clone();
        let row = rows.into_iter().find(|r| r["version"] == version)?;
        row["phase"].as_str().map(str::to_owned)
    }

    fn wait(&self, what: &str, limit: Duration, done: impl Fn(&World) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; job: {:#?}\n--- kappa up log ---\n{}",
                self.stored().map(|j| j["status"].clone()),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn alias(&self) -> Vec<String> {
        self.es.alias_targets(JOB)
    }

    fn failures_through_alias(&self) -> u64 {
        self.es.documents(JOB).iter().map(|d| d["failures"].as_u64().unwrap_or(0)).sum()
    }

    /// Waits until the documents behind the alias are exactly the reference's windows.
    fn assert_alias_serves(&self, reference: &Reference) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.es.count(JOB) != reference.windows.len() as u64 {
            assert!(Instant::now() < deadline, "alias did not reach the reference's windows");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(1500));
        reference.assert_documents(&self.es.documents(JOB));
    }
}

/// The server of the kubeconfig `kappa up` writes into its state directory.
fn api_server(state: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state.join("kubeconfig")).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("server: ").map(str::to_owned))
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    exit_within(child, Duration::from_secs(90)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("kappa up did not stop within 90 s");
    })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn up_refuses_a_job_whose_cel_the_engine_cannot_compile() {
    // Valid CEL syntax: without the engine's compiler in validation, `kappa up` would start and
    // its engine crash-loop.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.yaml");
    let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
    job.spec.pipeline.filter = Some("!tags.exists(t, t == 'test')".into());
    std::fs::write(&file, serde_yaml::to_string(&job).unwrap()).unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("up")
        .arg("-f")
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_within(&mut up, Duration::from_secs(60)).unwrap_or_else(|| {
        stop(&mut up);
        panic!("kappa up accepted the job and ran");
    });
    let output = up.wait_with_output().unwrap();
    assert!(!status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("spec.pipeline.filter: macro `exists` is not supported"), "{stderr}");
}

#[test]
fn up_runs_blue_green_swap_and_rollback_on_this_machine() {
    let world = World::new(20_000);
    let reference = Reference::compute(&world.lines);
    let watch = AliasWatch::start(&world.es.url(), JOB);
    let minute = Duration::from_secs(60);

    // Before `kappa up` runs, the local commands say so.
    let out = world.cli(&["status", JOB]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no `kappa up` runs"), "{}", text(&out));

    // v1 replays and goes live: the alias points at its index.
    world.write_job("v1", V1_FILTER);
    let mut up = world.up();
    world.wait("v1 to go live", minute, |w| w.phase("v1").as_deref() == Some("Live"));
    assert_eq!(world.alias(), [format!("{JOB}-v1")]);
    assert_eq!(world.failures_through_alias(), 0, "v1 filters failed transactions out");

    // An invalid edit is refused with its field path; the job runs on.
    let good = std::fs::read_to_string(world.job_file()).unwrap();
    std::fs::write(world.job_file(), good.replace("tumbling: 1m", "tumbling: 1 minute")).unwrap();
    world
        .wait("the refusal", Duration::from_secs(10), |w| w.log().contains("spec.pipeline.window"));
    assert_eq!(world.phase("v1").as_deref(), Some("Live"));

    // v2 (new logic) replays from offset 0 while v1 serves, then the alias swaps.
    world.write_job("v2", V2_FILTER);
    world.wait("v2 to start", minute, |w| w.phase("v2").is_some());
    let status = text(&world.cli(&["status", JOB]));
    assert!(status.contains("v1") && status.contains("v2"), "{status}");
    world.wait("v2 to go live", minute, |w| w.phase("v2").as_deref() == Some("Live"));
    assert_eq!(world.alias(), [format!("{JOB}-v2")]);
    world.assert_alias_serves(&reference);
    assert!(world.failures_through_alias() > 0, "the alias serves v2's logic");

    // `kappa rollback --local` puts the alias back on v1.
    world.wait("v1 to be retired", minute, |w| {
        matches!(w.phase("v1").as_deref(), Some("Retiring" | "Retained"))
    });
    let out = world.cli(&["rollback", JOB]);
    assert!(out.status.success(), "{}", text(&out));
    world.wait("the rollback", minute, |w| w.phase("v1").as_deref() == Some("Live"));
    assert_eq!(world.alias(), [format!("{JOB}-v1")]);
    assert_eq!(world.phase("v2").as_deref(), Some("RolledBack"));
    assert_eq!(world.failures_through_alias(), 0, "the alias serves v1's logic again");

    // The alias never pointed at zero or two indexes once it existed.
    let seen = watch.finish();
    for state in seen.iter().skip_while(|s| s.is_empty()) {
        assert_eq!(state.len(), 1, "alias states: {seen:?}");
    }

    // SIGTERM stops the engines with a final checkpoint; `kappa up` again resumes the state.
    assert!(stop(&mut up).success(), "{}", world.log());
    let out = world.cli(&["status", JOB]);
    assert!(!out.status.success(), "no API once kappa up stopped");
    let engine_log = world.state_dir().join("pods").join(NS).join(format!("{JOB}-v1/engine.log"));
    let resumes = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_default().matches("resumed from checkpoint").count()
    };
    let before = resumes(&engine_log);
    let mut up = world.up();
    world.wait("the restarted v1 engine", minute, |_| resumes(&engine_log) > before);
    // Give the controller a few reconciles: the rollback pin survives the restart.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(world.phase("v1").as_deref(), Some("Live"));
    assert_eq!(world.alias(), [format!("{JOB}-v1")]);

    // kill -9 of `kappa up` leaves no engine behind (each stops with a final checkpoint once
    // its parent is gone), and the saved state still resumes.
    let _ = Command::new("kill").args(["-9", &up.id().to_string()]).status();
    let _ = up.wait();
    let gone = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .matches("supervising process is gone")
            .count()
    };
    world.wait("the orphaned engine to stop", Duration::from_secs(30), |_| gone(&engine_log) == 1);
    let before = resumes(&engine_log);
    let mut up = world.up();
    world.wait("the engine after a kill -9", minute, |_| resumes(&engine_log) > before);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(world.phase("v1").as_deref(), Some("Live"));
    assert_eq!(world.alias(), [format!("{JOB}-v1")]);
    assert!(stop(&mut up).success(), "{}", world.log());
    let log = world.log();
    assert!(log.contains("Promoted"), "the transitions are printed:\n{log}");
}

/// `kappa up` with about 104k windows open at the head, on a real OpenSearch node whose
/// indexes refresh only every 30 s: a reader reading through the alias the moment it moves
/// finds every window of the batch reference, at the first promotion, at the automatic swap
/// to v2, and at `kappa rollback --wait` back to v1, which was stopped and is behind records
/// produced since: the rollback waits until v1 has caught up with them.
#[test]
fn readers_find_a_complete_index_at_every_alias_move_under_kappa_up() {
    let workload = kappa_testkit::job::many_small_windows(9);
    let mut world = World::with(&workload, 8, ElasticPeer::opensearch());
    let v1_reference = Reference::compute_without_failures(&world.lines);
    let v2_reference = Reference::compute(&world.lines);
    assert!(kappa_testkit::job::open_windows(&v2_reference) >= 100_000);
    let reader = AliasReader::start(&world.es.url(), JOB);
    let patience = Duration::from_secs(300);
    let slow_refresh = |job: &mut StreamJob| {
        job.spec.sink.elasticsearch.index_settings =
            Some(serde_json::json!({"refresh_interval": "30s", "number_of_replicas": 0}));
    };

    world.write_job_with("v1", V1_FILTER, slow_refresh);
    let mut up = world.up();
    world.wait("v1 to go live", patience, |w| w.phase("v1").as_deref() == Some("Live"));
    world.write_job_with("v2", V2_FILTER, slow_refresh);
    world.wait("v2 to go live", patience, |w| w.phase("v2").as_deref() == Some("Live"));
    // v1 is retired, and after warmFor (2 s) its engine stops.
    world.wait("v1 to be retained", patience, |w| w.phase("v1").as_deref() == Some("Retained"));

    // Records keep arriving; v2 takes them in, the stopped v1 does not.
    let last = v2_reference.max_log;
    let more = GenConfig { records: 3_000, seed: 10, start_millis: last + 1_000, ..workload };
    world.produce_more(&more);
    let v1_now = Reference::compute_without_failures(&world.lines);

    // `kappa rollback --wait` warms v1, waits until its index has caught up, then pins it.
    let out = world.cli(&["rollback", JOB, "--to", "v1", "--wait", "--timeout", "5m"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("warming v1"), "{said}");
    assert!(said.contains("v1 is current; patched StreamJob payments/tx-stats"), "{said}");
    world.wait("the rollback", patience, |w| w.phase("v1").as_deref() == Some("Live"));

    let deadline = Instant::now() + Duration::from_secs(120);
    while reader.reads().len() < 3 {
        assert!(Instant::now() < deadline, "the reader did not finish reading");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (reads, states) = reader.finish();
    assert_eq!(states.iter().filter(|s| !s.is_empty()).count(), 3, "three moves: {states:?}");
    reads[0].assert_complete(&format!("{JOB}-v1"), &v1_reference);
    reads[1].assert_complete(&format!("{JOB}-v2"), &v2_reference);
    reads[2].assert_complete(&format!("{JOB}-v1"), &v1_now);
    assert!(stop(&mut up).success(), "{}", world.log());
}
