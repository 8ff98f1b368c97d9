//! Sources of records. Kafka is the one source of a running job version ([`kafka`]); files are
//! replayed by `kappa run --input` through the engine's own file replay.

pub mod kafka;
pub mod monitor;

use rdkafka::error::KafkaError;

/// Why the source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Kafka client could not be created (usually a bad consumer property).
    #[error(
        "cannot create the Kafka consumer: {source}; check spec.source.kafka.consumerProperties"
    )]
    Client {
        /// The client error.
        source: KafkaError,
    },
    /// A broker request failed.
    #[error("Kafka {action} on topic {topic} failed: {source}")]
    Broker {
        /// What was being done.
        action: &'static str,
        /// The topic.
        topic: String,
        /// The client error.
        source: KafkaError,
    },
    /// The topic does not exist (or has no partitions).
    #[error("topic {topic} does not exist; check spec.source.kafka.topic and bootstrapServers")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// A Secret file named by the job cannot be read.
    #[error("{field}: cannot read the mounted secret {path}: {message}")]
    Secret {
        /// The job field that names the secret.
        field: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// `startFrom.timestamp` is not an RFC 3339 instant.
    #[error("spec.source.kafka.startFrom.timestamp: {value:?} is not an RFC 3339 instant")]
    BadStart {
        /// The value.
        value: String,
    },
    /// Retention removed records the replay needs: refused, never silently incomplete.
    #[error(
        "refusing to replay topic {topic} partition {partition}: the first retained offset is \
         {first_retained} but the replay needs offset {needed}; {hint}"
    )]
    Truncated {
        /// The topic.
        topic: String,
        /// The partition (`u32::MAX` when the client did not say).
        partition: u32,
        /// First retained offset.
        first_retained: i64,
        /// First offset the replay needs.
        needed: i64,
        /// What to do.
        hint: String,
    },
}

impl SourceError {
    /// Whether retrying later can succeed (a broker hiccup), as opposed to a refusal or a
    /// configuration error.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Broker { .. })
    }
}

/// Where Secret keys named by the job (`tls.ca`, `sasl.password`, ...) are mounted: a file
/// `<dir>/<secret name>/<key>`. The operator mounts each referenced Secret there; override
/// with `KAPPA_SECRETS_DIR` for local runs.
pub const SECRETS_DIR: &str = "/var/run/secrets/kappa";

/// The Kafka client settings of a job: bootstrap servers, TLS and SASL from mounted Secret
/// files, then the user's `consumerProperties` (which win, except for the settings the engine's
/// correctness depends on; see [`kafka::KafkaSource::new`]).
pub fn client_config(
    kafka: &kappa_crds::KafkaSource,
) -> Result<rdkafka::ClientConfig, SourceError> {
    let dir = std::env::var("KAPPA_SECRETS_DIR").unwrap_or_else(|_| SECRETS_DIR.to_owned());
    let file = |r: &kappa_crds::SecretKeyRef| format!("{dir}/{}/{}", r.name, r.key);
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    let tls = kafka.tls.is_some();
    if let Some(t) = &kafka.tls {
        if let Some(ca) = &t.ca {
            config.set("ssl.ca.location", file(ca));
        }
        if let Some(cert) = &t.cert {
            config.set("ssl.certificate.location", file(cert));
        }
        if let Some(key) = &t.key {
            config.set("ssl.key.location", file(key));
        }
    }
    match &kafka.sasl {
        Some(s) => {
            let path = file(&s.password);
            let password = std::fs::read_to_string(&path).map_err(|e| SourceError::Secret {
                field: "spec.source.kafka.sasl.password",
                path: path.clone(),
                message: e.to_string(),
            })?;
            let mechanism = match s.mechanism {
                kappa_crds::SaslMechanism::Plain => "PLAIN",
                kappa_crds::SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                kappa_crds::SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            config
                .set("security.protocol", if tls { "sasl_ssl" } else { "sasl_plaintext" })
                .set("sasl.mechanisms", mechanism)
                .set("sasl.username", &s.username)
                .set("sasl.password", password.trim_end_matches(['\r', '\n']));
        }
        None if tls => {
            config.set("security.protocol", "ssl");
        }
        None => {}
    }
    for (k, v) in &kafka.consumer_properties {
        config.set(k, v);
    }
    Ok(config)
}
