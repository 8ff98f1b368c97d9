//! Observation of the world a decision depends on: how far each version's consumer group is
//! behind the head of the topic ([`kafka`]) and what its engine reports on `/status`
//! ([`engine`]). [`engine::merge_progress`] folds both into the inputs of the caught-up rule.
//!
//! Observers only read: they never join a consumer group, never commit, never write.

pub mod engine;
pub mod kafka;

use kappa_service::source::SourceError;
use rdkafka::error::KafkaError;

/// Why an observation failed. Every variant names what was being observed (topic, group or
/// URL) and what to check.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The job's Kafka settings cannot be turned into a client (an unreadable Secret file, a
    /// consumer property librdkafka refuses).
    #[error("cannot observe topic {topic}: {source}")]
    Config {
        /// The topic.
        topic: String,
        /// What the engine's own client setup said (boxed: it is large and rare).
        source: Box<SourceError>,
    },
    /// A broker request failed or timed out.
    #[error(
        "Kafka {action} on topic {topic} failed: {source}; check that \
         spec.source.kafka.bootstrapServers is reachable from the operator"
    )]
    Kafka {
        /// The topic.
        topic: String,
        /// What was being done.
        action: &'static str,
        /// The client error.
        source: KafkaError,
    },
    /// The committed offsets of a consumer group cannot be read.
    #[error(
        "cannot read the committed offsets of consumer group {group} on topic {topic}: \
         {source}; check that the brokers are reachable and the operator may describe the group"
    )]
    CommittedOffsets {
        /// The topic.
        topic: String,
        /// The consumer group.
        group: String,
        /// The client error (boxed, so the error type stays small).
        source: Box<KafkaError>,
    },
    /// The topic does not exist (or has no partitions).
    #[error("topic {topic} does not exist; check spec.source.kafka.topic and bootstrapServers")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// A replay would be incomplete (retention removed records it needs) or `startFrom` is
    /// invalid: the engine would refuse to start, so the version must not be started.
    #[error(transparent)]
    Refused {
        /// The engine's refusal; its message names the topic, the partition, the first retained
        /// offset and what to change.
        source: Box<SourceError>,
    },
    /// The engine's status endpoint did not answer (connection refused, DNS, timeout).
    #[error(
        "engine status {url} is unreachable: {message}; check that the version's pod is running \
         and its Service selects it"
    )]
    EngineUnreachable {
        /// The status URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The engine answered with an HTTP error.
    #[error("engine status {url} answered HTTP {status}: {message}")]
    EngineBadStatus {
        /// The status URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        message: String,
    },
    /// The engine answered 200 with a body that is not an engine status document (another
    /// service on that port, or an engine of an incompatible release).
    #[error(
        "engine status {url} is not a Kappa engine status document: {message}; check that the \
         engine image and the operator are the same Kappa release"
    )]
    EngineBadBody {
        /// The status URL.
        url: String,
        /// The decoding error.
        message: String,
    },
}

impl ObserveError {
    /// Whether observing again later can succeed (a broker or an engine that does not answer
    /// yet), as opposed to a refusal or a configuration error that needs a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            ObserveError::Kafka { .. }
            | ObserveError::CommittedOffsets { .. }
            | ObserveError::EngineUnreachable { .. }
            | ObserveError::EngineBadBody { .. } => true,
            ObserveError::EngineBadStatus { status, .. } => *status >= 500 || *status == 429,
            ObserveError::Config { .. }
            | ObserveError::UnknownTopic { .. }
            | ObserveError::Refused { .. } => false,
        }
    }

    /// Maps an error of the engine's Kafka source (reused for the retention check) onto the
    /// observer's variants, keeping the engine's wording of refusals.
    fn from_source(topic: &str, error: SourceError) -> Self {
        match error {
            SourceError::UnknownTopic { topic } => ObserveError::UnknownTopic { topic },
            SourceError::Broker { action, topic, source } => {
                ObserveError::Kafka { topic, action, source }
            }
            e @ (SourceError::Truncated { .. } | SourceError::BadStart { .. }) => {
                ObserveError::Refused { source: Box::new(e) }
            }
            // Client and Secret errors, and whatever the source learns to refuse later.
            e => ObserveError::Config { topic: topic.to_owned(), source: Box::new(e) },
        }
    }
}

/// The error's message followed by its causes (`a: b: c`): reqwest's own message alone says
/// "error sending request" without saying that the connection was refused.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}
