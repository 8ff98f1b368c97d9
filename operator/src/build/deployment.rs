//! The version's Deployment: one engine pod running `kappa run` on the version's job file,
//! locked down (non-root, read-only root filesystem, no capabilities, no API token), with the
//! Secrets the job names mounted where the engine looks for them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kappa_crds::StreamJobSpec;
use kappa_service::sink::elasticsearch::config::ENV_CREDENTIALS_DIR;
use kappa_service::source::SECRETS_DIR;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    VersionWorkload, ENV_LOG, ENV_SECRETS_DIR, ES_CREDENTIALS_DIR, ES_CREDENTIALS_FALLBACK_DIR,
};
use crate::names;

/// The distroless `nonroot` user and group.
const NONROOT_ID: i64 = 65532;
/// The engine takes a final checkpoint on SIGTERM (pending documents, dead letters, snapshot,
/// offsets); this leaves it time to finish even against a slow cluster.
const TERMINATION_GRACE_SECONDS: i64 = 60;
/// Log filter of the engine.
const LOG_LEVEL: &str = "info";

const CONFIG_VOLUME: &str = "config";
const TMP_VOLUME: &str = "tmp";
const TMP_DIR: &str = "/tmp";
const ES_CREDENTIALS_VOLUME: &str = "es-credentials";
const KAFKA_SECRET_VOLUME_PREFIX: &str = "kafka-secret";

/// The Deployment running the version's engine.
pub fn deployment(w: &VersionWorkload) -> Deployment {
    Deployment {
        metadata: w.metadata(),
        spec: Some(DeploymentSpec {
            replicas: Some(w.replicas),
            // Two engines of one version must never run at once, not even during a rollout:
            // they would share the version's consumer group and checkpoint topic and overwrite
            // each other's checkpoints. Recreate stops the old pod before starting the new one.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(w.selector_labels()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(w.labels()),
                    annotations: Some(BTreeMap::from([(
                        names::ANNOTATION_CONFIG_HASH.to_owned(),
                        config_hash(&w.job_manifest()),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(w)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Hash of the job file, put on the pod template so that a changed ConfigMap rolls the pod (the
/// engine reads its job file only at start).
pub(super) fn config_hash(manifest: &str) -> String {
    format!("{:016x}", xxh3_64(manifest.as_bytes()))
}

fn pod_spec(w: &VersionWorkload) -> PodSpec {
    let secrets = SecretMounts::of(w.spec);
    let mut volumes = vec![
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: w.name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        // The root filesystem is read-only; librdkafka and the runtime may still want a /tmp.
        Volume {
            name: TMP_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: names::CONFIG_MOUNT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: TMP_VOLUME.into(),
            mount_path: TMP_DIR.into(),
            ..VolumeMount::default()
        },
    ];
    for m in &secrets.mounts {
        volumes.push(Volume {
            name: m.volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(m.secret.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: m.volume.clone(),
            mount_path: m.path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    PodSpec {
        containers: vec![engine_container(w, &secrets, mounts)],
        volumes: Some(volumes),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT_ID),
            run_as_group: Some(NONROOT_ID),
            fs_group: Some(NONROOT_ID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        service_account_name: w.defaults.service_account.clone(),
        // The engine never calls the Kubernetes API, so its pod carries no token.
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    }
}

fn engine_container(
    w: &VersionWorkload,
    secrets: &SecretMounts,
    mounts: Vec<VolumeMount>,
) -> Container {
    let job_file = format!("{}/{}", names::CONFIG_MOUNT_DIR, names::CONFIG_KEY);
    let status_addr = format!("0.0.0.0:{}", names::ENGINE_STATUS_PORT);
    let args = ["run", "-f", &job_file, "--status-addr", &status_addr]
        .into_iter()
        .map(str::to_owned)
        .chain(["--checkpoint-interval".to_owned(), w.defaults.checkpoint_interval.clone()])
        .collect();

    let mut env = vec![env_var(ENV_LOG, LOG_LEVEL)];
    if let Some(dir) = secrets.es_credentials_dir {
        env.push(env_var(ENV_CREDENTIALS_DIR, dir));
    }
    if secrets.mounts.iter().any(|m| m.kafka) {
        env.push(env_var(ENV_SECRETS_DIR, SECRETS_DIR));
    }

    Container {
        name: names::ENGINE_CONTAINER.into(),
        image: Some(w.spec.engine.image.clone().unwrap_or_else(|| w.defaults.image.clone())),
        image_pull_policy: w.defaults.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(names::ENGINE_PORT_NAME.into()),
            container_port: i32::from(names::ENGINE_STATUS_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // `/healthz` answers 200 from process start until the loop stalls for 60 s, including
        // during a long checkpoint restore; the initial delay only covers the time until the
        // status server listens. Three misses 20 s apart (a minute) then restart the engine.
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            period_seconds: Some(20),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..http_probe("/healthz")
        }),
        // `/readyz` turns 200 once restore, the retention check and index creation are done.
        readiness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..http_probe("/readyz")
        }),
        resources: Some(w.spec.engine.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn http_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(names::ENGINE_PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

/// Requests are about the reference job's measured footprint (README, Performance); the memory
/// limit leaves room for many open windows without letting a runaway engine starve its node. No CPU limit: throttling a replay only
/// slows it down.
fn default_resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity("250m")),
            ("memory".to_owned(), quantity("256Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("1Gi"))])),
        ..ResourceRequirements::default()
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

/// The Secrets a job names, and where each is mounted.
struct SecretMounts {
    mounts: Vec<SecretMount>,
    /// Where the Elasticsearch credentials are, when the job has some.
    es_credentials_dir: Option<&'static str>,
}

struct SecretMount {
    volume: String,
    secret: String,
    path: String,
    /// Whether the Kafka client reads it (under [`SECRETS_DIR`]).
    kafka: bool,
}

impl SecretMounts {
    fn of(spec: &StreamJobSpec) -> Self {
        let kafka = &spec.source.kafka;
        // The engine reads `<SECRETS_DIR>/<secret>/<key>`, so one mount per Secret serves every
        // key of it; a BTreeSet also keeps the volume order stable.
        let tls = kafka.tls.iter().flat_map(|t| [&t.ca, &t.cert, &t.key]).flatten();
        let kafka_secrets: BTreeSet<&str> =
            tls.chain(kafka.sasl.as_ref().map(|s| &s.password)).map(|r| r.name.as_str()).collect();
        let mut mounts: Vec<SecretMount> = kafka_secrets
            .into_iter()
            .enumerate()
            .map(|(i, secret)| SecretMount {
                volume: format!("{KAFKA_SECRET_VOLUME_PREFIX}-{i}"),
                secret: secret.to_owned(),
                path: format!("{SECRETS_DIR}/{secret}"),
                kafka: true,
            })
            .collect();

        let es_credentials_dir =
            spec.sink.elasticsearch.credentials_secret.as_deref().map(|secret| {
                let taken = mounts
                    .iter()
                    .find(|m| m.path == ES_CREDENTIALS_DIR)
                    .map(|m| m.secret == secret);
                match taken {
                    // A Kafka Secret named `elasticsearch` that is also the credentials Secret is
                    // already mounted at the right place.
                    Some(true) => ES_CREDENTIALS_DIR,
                    taken => {
                        let path = if taken.is_some() {
                            ES_CREDENTIALS_FALLBACK_DIR
                        } else {
                            ES_CREDENTIALS_DIR
                        };
                        mounts.push(SecretMount {
                            volume: ES_CREDENTIALS_VOLUME.into(),
                            secret: secret.to_owned(),
                            path: path.to_owned(),
                            kafka: false,
                        });
                        path
                    }
                }
            });
        Self { mounts, es_credentials_dir }
    }
}
