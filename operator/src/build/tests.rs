//! Unit tests of the builders, from the reference job.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ResourceRequirements, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kappa_crds::{KafkaSasl, KafkaTls, SaslMechanism, SecretKeyRef, StreamJob, StreamJobSpec};
use kappa_service::sink::elasticsearch::config::ENV_CREDENTIALS_DIR;
use kappa_service::source::SECRETS_DIR;

use super::deployment::config_hash;
use super::*;

const UID: &str = "0b8c6a5e-1f7e-4d8a-9b1c-3f2e5d4c6b7a";

/// The reference job as the API server returns it (with a uid), plus operator defaults.
struct Fixture {
    job: StreamJob,
    defaults: EngineDefaults,
}

impl Fixture {
    fn new() -> Self {
        let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
        job.metadata.uid = Some(UID.into());
        Self { job, defaults: EngineDefaults::default() }
    }

    fn with_spec(mut self, change: impl FnOnce(&mut StreamJobSpec)) -> Self {
        change(&mut self.job.spec);
        self
    }

    /// The current version (`job.spec`) with one replica.
    fn workload(&self) -> VersionWorkload<'_> {
        self.workload_of(&self.job.spec)
    }

    fn workload_of<'a>(&'a self, spec: &'a StreamJobSpec) -> VersionWorkload<'a> {
        VersionWorkload { job: &self.job, spec, replicas: 1, defaults: &self.defaults }
    }
}

fn secret_ref(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef { name: name.into(), key: key.into() }
}

fn pod(d: &Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn engine(d: &Deployment) -> &Container {
    let containers = &pod(d).containers;
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn env(c: &Container) -> BTreeMap<String, String> {
    let vars = c.env.as_deref().unwrap_or_default();
    vars.iter().map(|v| (v.name.clone(), v.value.clone().unwrap_or_default())).collect()
}

fn pod_annotation(d: &Deployment, key: &str) -> String {
    let template = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    template.annotations.as_ref().unwrap()[key].clone()
}

/// Which Secret key a process in the pod reads when it opens `path`: the Secret volume mounted
/// at the path's directory, and the file name. `None` when no Secret is mounted there.
fn secret_file_at(d: &Deployment, path: &str) -> Option<(String, String)> {
    let (dir, file) = path.rsplit_once('/')?;
    let mount = engine(d).volume_mounts.as_ref()?.iter().find(|m| m.mount_path == dir)?;
    assert_eq!(mount.read_only, Some(true), "Secret mount {dir} must be read-only");
    let volume = pod(d).volumes.as_ref()?.iter().find(|v| v.name == mount.name)?;
    let secret = volume.secret.as_ref()?.secret_name.clone()?;
    Some((secret, file.to_owned()))
}

#[test]
fn labels_name_the_job_version_and_operator_and_the_selector_is_their_stable_subset() {
    let f = Fixture::new();
    let w = f.workload();
    let expected = BTreeMap::from([
        ("app.kubernetes.io/name", "kappa-engine"),
        ("app.kubernetes.io/instance", "tx-stats"),
        ("app.kubernetes.io/component", "engine"),
        ("app.kubernetes.io/part-of", "kappa"),
        ("app.kubernetes.io/managed-by", "kappa-operator"),
        ("kappa.dev/job", "tx-stats"),
        ("kappa.dev/version", "v1"),
    ]);
    let labels = w.labels();
    let labels: BTreeMap<_, _> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(labels, expected);

    let selector = w.selector_labels();
    let keys: Vec<_> = selector.keys().map(String::as_str).collect();
    assert_eq!(keys, [names::LABEL_NAME, names::LABEL_JOB, names::LABEL_VERSION]);
    for (k, v) in &selector {
        assert_eq!(w.labels().get(k), Some(v), "selector label {k} is not on the objects");
    }
}

#[test]
fn every_object_is_named_namespaced_labelled_and_owned_by_the_job() {
    let f = Fixture::new();
    let w = f.workload();
    let owner = w.owner_reference();
    assert_eq!(owner.api_version, "kappa.dev/v1alpha1");
    assert_eq!(owner.kind, "StreamJob");
    assert_eq!(owner.name, "tx-stats");
    assert_eq!(owner.uid, UID);
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));

    let metas = [
        ("ConfigMap", config_map(&w).metadata),
        ("Deployment", deployment(&w).metadata),
        ("Service", service(&w).metadata),
    ];
    for (kind, meta) in metas {
        assert_eq!(meta.name.as_deref(), Some("tx-stats-v1"), "{kind}");
        assert_eq!(meta.namespace.as_deref(), Some("payments"), "{kind}");
        assert_eq!(meta.labels, Some(w.labels()), "{kind}");
        assert_eq!(meta.owner_references, Some(vec![owner.clone()]), "{kind}");
    }
}

#[test]
fn an_older_version_is_built_from_its_own_spec_not_the_jobs() {
    let f = Fixture::new().with_spec(|s| s.version = "v2".into());
    let mut old = f.job.spec.clone();
    old.version = "v1".into();
    old.pipeline.filter = None;
    let w = f.workload_of(&old);

    assert_eq!(w.name(), "tx-stats-v1");
    assert_eq!(w.selector_labels()[names::LABEL_VERSION], "v1");
    assert_eq!(spec_from_config_map(&config_map(&w)).unwrap().spec, old);
    assert_eq!(service(&w).metadata.name.as_deref(), Some("tx-stats-v1"));
    let d = deployment(&w);
    let volume = &pod(&d).volumes.as_ref().unwrap()[0];
    assert_eq!(volume.config_map.as_ref().unwrap().name, "tx-stats-v1");
}

#[test]
fn replicas_are_the_lifecycles_decision() {
    let f = Fixture::new();
    for replicas in [0, 1] {
        let w = VersionWorkload { replicas, ..f.workload() };
        assert_eq!(deployment(&w).spec.unwrap().replicas, Some(replicas));
    }
}

#[test]
fn two_engines_of_a_version_never_overlap_during_a_rollout() {
    let f = Fixture::new();
    let strategy = deployment(&f.workload()).spec.unwrap().strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert_eq!(strategy.rolling_update, None);
}

#[test]
fn the_engine_runs_the_mounted_job_file_and_serves_status_on_the_named_port() {
    let f = Fixture {
        defaults: EngineDefaults { checkpoint_interval: "30s".into(), ..EngineDefaults::default() },
        ..Fixture::new()
    };
    let w = f.workload();
    let d = deployment(&w);
    let c = engine(&d);
    assert_eq!(c.name, names::ENGINE_CONTAINER);
    let args = c.args.as_ref().unwrap();
    assert_eq!(
        args,
        &[
            "run",
            "-f",
            "/etc/kappa/job.yaml",
            "--status-addr",
            "0.0.0.0:8080",
            "--checkpoint-interval",
            "30s"
        ]
    );

    // `-f` names the ConfigMap's key inside the volume mounted from the version's ConfigMap.
    let (dir, file) = args[2].rsplit_once('/').unwrap();
    let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == dir).unwrap();
    assert_eq!(mount.read_only, Some(true));
    let volume = pod(&d).volumes.as_ref().unwrap().iter().find(|v| v.name == mount.name).unwrap();
    assert_eq!(volume.config_map.as_ref().unwrap().name, w.name());
    assert!(config_map(&w).data.unwrap().contains_key(file));

    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(port.container_port, 8080);
    assert_eq!(port.name.as_deref(), Some(names::ENGINE_PORT_NAME));

    assert_eq!(env(c), BTreeMap::from([("KAPPA_LOG".to_owned(), "info".to_owned())]));
    let tmp = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == "/tmp").unwrap();
    let tmp = pod(&d).volumes.as_ref().unwrap().iter().find(|v| v.name == tmp.name).unwrap();
    assert!(tmp.empty_dir.is_some(), "/tmp must be writable under a read-only root");
}

#[test]
fn probes_check_liveness_on_healthz_and_readiness_on_readyz() {
    let f = Fixture::new();
    let d = deployment(&f.workload());
    let c = engine(&d);
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let probe = probe.as_ref().unwrap();
        let get = probe.http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String(names::ENGINE_PORT_NAME.into()));
        assert!(probe.period_seconds.unwrap() > 0 && probe.failure_threshold.unwrap() > 0);
    }
    let live = c.liveness_probe.as_ref().unwrap();
    // A restart needs the engine unhealthy for at least a minute, never a single slow answer.
    let tolerated = live.period_seconds.unwrap() * live.failure_threshold.unwrap();
    assert!(tolerated >= 60, "liveness gives up after {tolerated}s");
    assert!(live.initial_delay_seconds.unwrap() >= 30);
}

#[test]
fn the_pod_runs_non_root_without_privileges_token_or_writable_root() {
    let f = Fixture::new();
    let d = deployment(&f.workload());
    let p = pod(&d);
    let ps = p.security_context.as_ref().unwrap();
    assert_eq!(ps.run_as_non_root, Some(true));
    assert_eq!(ps.run_as_user, Some(65532));
    assert_eq!(ps.fs_group, Some(65532));
    assert_eq!(ps.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");

    let cs = engine(&d).security_context.as_ref().unwrap();
    assert_eq!(cs.allow_privilege_escalation, Some(false));
    assert_eq!(cs.read_only_root_filesystem, Some(true));
    assert_eq!(cs.run_as_non_root, Some(true));
    assert_eq!(cs.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(cs.capabilities.as_ref().unwrap().add, None);
    assert_ne!(cs.privileged, Some(true));

    assert_eq!(p.automount_service_account_token, Some(false));
    assert_eq!(p.termination_grace_period_seconds, Some(60));
}

#[test]
fn resources_default_unless_the_spec_sets_them() {
    let q = |s: &str| Quantity(s.into());
    let defaulted = Fixture::new();
    let resources = engine(&deployment(&defaulted.workload())).resources.clone().unwrap();
    assert_eq!(
        resources.requests,
        Some(BTreeMap::from([("cpu".into(), q("250m")), ("memory".into(), q("256Mi"))]))
    );
    assert_eq!(resources.limits, Some(BTreeMap::from([("memory".into(), q("1Gi"))])));

    let custom = ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), q("2")), ("memory".into(), q("4Gi"))])),
        ..ResourceRequirements::default()
    };
    let f = Fixture::new().with_spec(|s| s.engine.resources = Some(custom.clone()));
    assert_eq!(engine(&deployment(&f.workload())).resources, Some(custom));
}

#[test]
fn image_pull_policy_and_service_account_come_from_the_spec_or_the_operator() {
    let f = Fixture::new();
    let d = deployment(&f.workload());
    assert_eq!(engine(&d).image.as_deref(), Some("ghcr.io/kappa-dev/kappa:0.1.0"));
    assert_eq!(engine(&d).image_pull_policy, None);
    assert_eq!(pod(&d).service_account_name, None);

    let f = Fixture {
        defaults: EngineDefaults {
            image: "registry.local/kappa:dev".into(),
            image_pull_policy: Some("Always".into()),
            service_account: Some("kappa-engine".into()),
            ..EngineDefaults::default()
        },
        ..Fixture::new()
    };
    let d = deployment(&f.workload());
    assert_eq!(engine(&d).image.as_deref(), Some("registry.local/kappa:dev"));
    assert_eq!(engine(&d).image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(pod(&d).service_account_name.as_deref(), Some("kappa-engine"));

    let f = f.with_spec(|s| s.engine.image = Some("registry.local/kappa:pinned".into()));
    assert_eq!(
        engine(&deployment(&f.workload())).image.as_deref(),
        Some("registry.local/kappa:pinned")
    );
}

#[test]
fn elasticsearch_credentials_are_mounted_where_the_engine_looks() {
    let f = Fixture::new()
        .with_spec(|s| s.sink.elasticsearch.credentials_secret = Some("es-writer".into()));
    let d = deployment(&f.workload());
    let dir = env(engine(&d))[ENV_CREDENTIALS_DIR].clone();
    assert_eq!(dir, ES_CREDENTIALS_DIR);
    for key in ["username", "password", "apiKey", "ca.crt"] {
        let path = format!("{dir}/{key}");
        assert_eq!(secret_file_at(&d, &path), Some(("es-writer".into(), key.into())));
    }
    assert!(!env(engine(&d)).contains_key(ENV_SECRETS_DIR), "no Kafka Secrets to point at");
}

#[test]
fn kafka_tls_and_sasl_secrets_are_mounted_once_each_where_the_engine_reads_them() {
    let f = Fixture::new().with_spec(|s| {
        s.source.kafka.tls = Some(KafkaTls {
            ca: Some(secret_ref("kafka-ca", "ca.pem")),
            cert: Some(secret_ref("kafka-client", "tls.crt")),
            key: Some(secret_ref("kafka-client", "tls.key")),
        });
        s.source.kafka.sasl = Some(KafkaSasl {
            mechanism: SaslMechanism::ScramSha512,
            username: "tx-stats".into(),
            password: secret_ref("kafka-client", "password"),
        });
    });
    let d = deployment(&f.workload());
    assert_eq!(env(engine(&d))[ENV_SECRETS_DIR], SECRETS_DIR);
    assert!(!env(engine(&d)).contains_key(ENV_CREDENTIALS_DIR));

    // The engine opens `<KAPPA_SECRETS_DIR>/<secret>/<key>` for every reference.
    let kafka = &f.job.spec.source.kafka;
    let tls = kafka.tls.as_ref().unwrap();
    let refs = [&tls.ca, &tls.cert, &tls.key].into_iter().flatten();
    for r in refs.chain([&kafka.sasl.as_ref().unwrap().password]) {
        let path = format!("{SECRETS_DIR}/{}/{}", r.name, r.key);
        assert_eq!(secret_file_at(&d, &path), Some((r.name.clone(), r.key.clone())), "{path}");
    }
    let secret_volumes: Vec<_> = pod(&d)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.as_deref())
        .collect();
    assert_eq!(secret_volumes, ["kafka-ca", "kafka-client"]);
}

#[test]
fn a_kafka_secret_named_elasticsearch_does_not_collide_with_the_credentials_mount() {
    let kafka_tls = |secret: &str| {
        Some(KafkaTls { ca: Some(secret_ref(secret, "ca.pem")), cert: None, key: None })
    };
    // (Kafka CA Secret, ES credentials Secret, where the engine finds the credentials)
    let cases = [
        ("elasticsearch", "es-writer", ES_CREDENTIALS_FALLBACK_DIR),
        ("elasticsearch", "elasticsearch", ES_CREDENTIALS_DIR),
    ];
    for (kafka_secret, es_secret, es_dir) in cases {
        let f = Fixture::new().with_spec(|s| {
            s.source.kafka.tls = kafka_tls(kafka_secret);
            s.sink.elasticsearch.credentials_secret = Some(es_secret.into());
        });
        let d = deployment(&f.workload());
        let mounts = engine(&d).volume_mounts.as_ref().unwrap();
        let mut paths: Vec<_> = mounts.iter().map(|m| &m.mount_path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), mounts.len(), "duplicate mountPath for {es_secret}");
        assert_eq!(env(engine(&d))[ENV_CREDENTIALS_DIR], es_dir);
        let ca = format!("{SECRETS_DIR}/{kafka_secret}/ca.pem");
        assert_eq!(secret_file_at(&d, &ca), Some((kafka_secret.into(), "ca.pem".into())));
        let password = format!("{es_dir}/password");
        assert_eq!(secret_file_at(&d, &password), Some((es_secret.into(), "password".into())));
    }
}

#[test]
fn the_config_hash_rolls_the_pod_exactly_when_the_job_file_changes() {
    let f = Fixture::new();
    let base = deployment(&f.workload());
    let hash = pod_annotation(&base, names::ANNOTATION_CONFIG_HASH);
    let file = &config_map(&f.workload()).data.unwrap()[names::CONFIG_KEY];
    assert_eq!(hash, config_hash(file));
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));

    let stopped = deployment(&VersionWorkload { replicas: 0, ..f.workload() });
    assert_eq!(pod_annotation(&stopped, names::ANNOTATION_CONFIG_HASH), hash);
    let rebuilt = deployment(&Fixture::new().workload());
    assert_eq!(pod_annotation(&rebuilt, names::ANNOTATION_CONFIG_HASH), hash);

    let changed = Fixture::new().with_spec(|s| s.pipeline.filter = Some("status == 'ok'".into()));
    let changed = deployment(&changed.workload());
    assert_ne!(pod_annotation(&changed, names::ANNOTATION_CONFIG_HASH), hash);
}

#[test]
fn the_job_file_loads_in_the_engine_and_reads_back_as_the_versions_spec() {
    let f = Fixture::new().with_spec(|s| {
        s.sink.elasticsearch.credentials_secret = Some("es-writer".into());
        s.sink.elasticsearch.index_settings = Some(serde_json::json!({"number_of_replicas": 2}));
    });
    let w = f.workload();
    let loaded = kappa_crds::load_manifest(&w.job_manifest()).unwrap();
    assert_eq!(loaded.metadata.name.as_deref(), Some("tx-stats"));
    assert_eq!(loaded.metadata.namespace.as_deref(), Some("payments"));
    assert_eq!(loaded.metadata.uid, None, "the job file carries no cluster identity");
    assert_eq!(loaded.spec, f.job.spec);

    let back = spec_from_config_map(&config_map(&w)).unwrap();
    assert_eq!(back.spec, f.job.spec);
}

#[test]
fn a_config_map_without_a_job_file_is_refused_by_name() {
    let f = Fixture::new();
    let mut missing = config_map(&f.workload());
    missing.data = None;
    let err = spec_from_config_map(&missing).unwrap_err();
    assert!(
        matches!(&err, BuildError::MissingJobFile { config_map } if config_map == "payments/tx-stats-v1")
    );
    assert!(err.to_string().contains("payments/tx-stats-v1"), "{err}");

    let mut garbage = config_map(&f.workload());
    garbage.data = Some(BTreeMap::from([(names::CONFIG_KEY.into(), "spec: [1".into())]));
    let err = spec_from_config_map(&garbage).unwrap_err();
    assert!(matches!(err, BuildError::InvalidJobFile { .. }));
    assert!(err.to_string().contains("payments/tx-stats-v1"), "{err}");
}

fn round_trips<T>(object: &T, api_version: &str, kind: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(object).unwrap();
    assert_eq!(json["apiVersion"], api_version);
    assert_eq!(json["kind"], kind);
    let back: T = serde_json::from_value(json).unwrap();
    assert_eq!(&back, object);
}

#[test]
fn every_object_round_trips_as_its_kubernetes_type() {
    let f = Fixture::new().with_spec(|s| {
        s.sink.elasticsearch.credentials_secret = Some("es-writer".into());
        s.source.kafka.tls =
            Some(KafkaTls { ca: Some(secret_ref("kafka-ca", "ca.pem")), cert: None, key: None });
    });
    let w = f.workload();
    round_trips::<ConfigMap>(&config_map(&w), "v1", "ConfigMap");
    round_trips::<Deployment>(&deployment(&w), "apps/v1", "Deployment");
    round_trips::<Service>(&service(&w), "v1", "Service");
}

#[test]
fn the_service_reaches_the_versions_engine_pods_on_the_status_port() {
    let f = Fixture::new();
    let w = f.workload();
    let spec = service(&w).spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(port.port, 8080);
    assert_eq!(port.name.as_deref(), Some(names::ENGINE_PORT_NAME));
    assert_eq!(port.target_port, Some(IntOrString::String(names::ENGINE_PORT_NAME.into())));

    let d = deployment(&w).spec.unwrap();
    let pod_labels = d.template.metadata.unwrap().labels.unwrap();
    let selector = spec.selector.unwrap();
    assert_eq!(Some(&selector), d.selector.match_labels.as_ref());
    for (k, v) in &selector {
        assert_eq!(pod_labels.get(k), Some(v), "the Service would not select the pod by {k}");
    }
    // The pods of another version of the same job are not selected.
    let other = Fixture::new().with_spec(|s| s.version = "v2".into());
    let other_pods = deployment(&other.workload()).spec.unwrap().template.metadata.unwrap();
    let other_pods = other_pods.labels.unwrap();
    assert!(selector.iter().any(|(k, v)| other_pods.get(k) != Some(v)));
}
