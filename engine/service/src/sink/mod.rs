//! Where window documents go: the job version's Elasticsearch index ([`elasticsearch`]), or
//! nowhere ([`Sink::Null`], to measure the engine without a sink).

pub mod elasticsearch;
pub mod writer;

use kappa_engine::output::WindowDoc;
use kappa_engine::JobPlan;

pub use self::elasticsearch::{BatchLimits, RejectedDoc, SinkError, WriteReport};
use self::elasticsearch::{ElasticsearchSink, SinkConfig, SinkHealthState};
use crate::config::{EngineConfig, SinkChoice};
use crate::status::SinkStatus;

/// The sink of one engine.
#[derive(Debug)]
pub enum Sink {
    /// The job version's index.
    Elasticsearch {
        /// The sink (boxed: it is large and there is one per process).
        sink: Box<ElasticsearchSink>,
        /// The compiled job (mappings are derived from it).
        plan: std::sync::Arc<JobPlan>,
    },
    /// Discards documents.
    Null,
}

impl Sink {
    /// The sink `config` asks for; credentials and TLS come from the environment or the
    /// mounted Secret (see [`SinkConfig::from_env`]).
    pub fn new(config: &EngineConfig, plan: &std::sync::Arc<JobPlan>) -> Result<Self, SinkError> {
        match config.sink {
            SinkChoice::Null => Ok(Sink::Null),
            SinkChoice::Elasticsearch => {
                let es = &config.job.spec.sink.elasticsearch;
                let sink_config = SinkConfig::for_job(es, &config.job.spec.version)?;
                Ok(Sink::Elasticsearch {
                    sink: Box::new(ElasticsearchSink::new(sink_config)?),
                    plan: std::sync::Arc::clone(plan),
                })
            }
        }
    }

    /// Creates the index (with mappings derived from the job) unless it exists.
    pub async fn prepare(&self) -> Result<(), SinkError> {
        match self {
            Sink::Elasticsearch { sink, plan } => sink.ensure_index(plan).await.map(|_| ()),
            Sink::Null => Ok(()),
        }
    }

    /// Writes documents (bulk, external versions, retries; see
    /// [`ElasticsearchSink::write`]).
    pub async fn write(&self, docs: &[WindowDoc]) -> Result<WriteReport, SinkError> {
        match self {
            Sink::Elasticsearch { sink, .. } => sink.write(docs).await,
            Sink::Null => Ok(WriteReport { written: docs.len(), ..WriteReport::default() }),
        }
    }

    /// The size limits of one bulk request: the engine hands the sink batches of this size.
    pub fn batch_limits(&self) -> BatchLimits {
        match self {
            Sink::Elasticsearch { sink, .. } => sink.config().batch,
            Sink::Null => BatchLimits::default(),
        }
    }

    /// A health reader that other threads (the status server) can keep.
    pub fn health_probe(&self) -> Option<elasticsearch::SinkHealth> {
        match self {
            Sink::Elasticsearch { sink, .. } => Some(sink.health()),
            Sink::Null => None,
        }
    }

    /// The sink part of `/status`.
    pub fn status(&self, conflicts: u64, rejected: u64, retries: u64) -> SinkStatus {
        let mut status = SinkStatus { conflicts, rejected, retries, ..SinkStatus::default() };
        fill_health(&mut status, self.health_probe().as_ref());
        status
    }
}

/// Sets `state`, `degraded_since` and `last_error` of a sink status from live health.
pub fn fill_health(status: &mut SinkStatus, health: Option<&elasticsearch::SinkHealth>) {
    match health.map(|h| h.state()) {
        Some(SinkHealthState::Degraded { since, last_error, .. }) => {
            status.state = "degraded".into();
            let ms =
                since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            status.degraded_since = Some(crate::runner::rfc3339(ms));
            status.last_error = Some(last_error);
        }
        _ => {
            status.state = "healthy".into();
            status.degraded_since = None;
            status.last_error = None;
        }
    }
}
