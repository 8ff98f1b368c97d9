//! What can go wrong talking to Elasticsearch, classified as retryable (the cluster is down or
//! overloaded) or fatal (the request itself is wrong and repeating it cannot help).

use std::time::Duration;

use super::config::ConfigError;

/// An error of the Elasticsearch sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink configuration is incomplete or inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The HTTP client could not be built (bad URL, unreadable CA certificate).
    #[error("cannot build the Elasticsearch client for {url}: {message}")]
    Client {
        /// The configured URL.
        url: String,
        /// What the client library said.
        message: String,
    },

    /// No HTTP response: connection refused or reset, DNS failure, TLS failure, or the response
    /// body was cut off.
    #[error("cannot reach Elasticsearch at {url} ({action}): {source}")]
    Connection {
        /// The cluster URL.
        url: String,
        /// What the sink was doing, e.g. `bulk write to index tx-stats-v1`.
        action: String,
        /// The transport error.
        #[source]
        source: elasticsearch::Error,
    },

    /// The request did not complete within the configured request timeout.
    #[error("Elasticsearch at {url} did not answer {action} within {timeout:?}")]
    Timeout {
        /// The cluster URL.
        url: String,
        /// What the sink was doing.
        action: String,
        /// The request timeout in force.
        timeout: Duration,
    },

    /// The whole request was refused with an HTTP error status.
    #[error("Elasticsearch at {url} answered {status} to {action}: {reason_type}: {reason}{hint}",
        hint = status_hint(*status))]
    Http {
        /// The cluster URL.
        url: String,
        /// What the sink was doing.
        action: String,
        /// HTTP status.
        status: u16,
        /// Elasticsearch's `error.type` (empty when the body had none).
        reason_type: String,
        /// Elasticsearch's `error.reason`, or the raw body.
        reason: String,
    },

    /// Some documents of a bulk request were refused with 429 or 5xx (the request itself
    /// succeeded); they are retried on their own.
    #[error(
        "Elasticsearch refused {count} documents for index {index} with {status}: {reason_type}: \
         {reason}"
    )]
    ItemsRefused {
        /// Target index.
        index: String,
        /// How many documents of the last request were refused this way.
        count: usize,
        /// HTTP status of the (last) refused item.
        status: u16,
        /// `error.type` of the (last) refused item.
        reason_type: String,
        /// `error.reason` of the (last) refused item.
        reason: String,
    },

    /// Creating the index failed for a reason other than it already existing: invalid mappings
    /// or settings, or a naming problem.
    #[error(
        "cannot create index {index} at {url} ({status} {reason_type}): {reason}; check the \
         job's sink.elasticsearch.mappings and indexSettings"
    )]
    IndexCreation {
        /// The index.
        index: String,
        /// The cluster URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Elasticsearch's `error.type`.
        reason_type: String,
        /// Elasticsearch's `error.reason`.
        reason: String,
    },

    /// The server answered something the sink cannot interpret.
    #[error("unexpected answer from Elasticsearch at {url} to {action}: {message}")]
    Protocol {
        /// The cluster URL.
        url: String,
        /// What the sink was doing.
        action: String,
        /// What was wrong with the answer.
        message: String,
    },

    /// Retryable failures went on longer than the retry budget allows. The caller may try the
    /// same write again later: every write is idempotent.
    #[error(
        "Elasticsearch at {url} unavailable for index {index}: gave up after {attempts} attempts \
         over {elapsed:.1?} with {pending} documents unwritten; last error: {last_cause}"
    )]
    Unavailable {
        /// Target index.
        index: String,
        /// The cluster URL.
        url: String,
        /// Attempts made (first try included).
        attempts: u32,
        /// Time spent, sleeps included.
        elapsed: Duration,
        /// Documents still not written (zero for non-bulk requests).
        pending: usize,
        /// The error of the last attempt.
        #[source]
        last_cause: Box<SinkError>,
    },
}

impl SinkError {
    /// Whether trying again later can succeed without anyone changing anything: connection
    /// failures, timeouts, 429 and 5xx. Configuration, mapping and other 4xx errors are fatal.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connection { .. }
            | Self::Timeout { .. }
            | Self::ItemsRefused { .. }
            | Self::Unavailable { .. } => true,
            Self::Http { status, .. } => is_retryable_status(*status),
            Self::Config(_)
            | Self::Client { .. }
            | Self::IndexCreation { .. }
            | Self::Protocol { .. } => false,
        }
    }
}

/// 429 (too many requests, the bulk queue is full) and 5xx (node failure, unavailable shards).
pub(super) fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => {
            " (check the credentials: KAPPA_ES_USERNAME/PASSWORD, KAPPA_ES_API_KEY or the secret)"
        }
        403 => " (the credentials lack a privilege: index, create_index or manage_aliases)",
        413 => " (the bulk request is too large: lower the sink's max bytes per request)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> SinkError {
        SinkError::Http {
            url: "http://es:9200".into(),
            action: "bulk write".into(),
            status,
            reason_type: "x".into(),
            reason: "y".into(),
        }
    }

    #[test]
    fn overload_and_server_errors_are_retryable_other_client_errors_are_not() {
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(!http(401).is_retryable());
        assert!(http(401).to_string().contains("check the credentials"));
    }
}
