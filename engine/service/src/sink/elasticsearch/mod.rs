//! The Elasticsearch (and OpenSearch) sink: creates a job version's index with mappings derived
//! from the job, and writes window documents with external versions so that replays and
//! retries are idempotent and a document never goes back to an older state.
//!
//! ```no_run
//! # async fn run(plan: &kappa_engine::JobPlan, docs: &[kappa_engine::output::WindowDoc])
//! # -> Result<(), kappa_service::sink::elasticsearch::SinkError> {
//! use kappa_service::sink::elasticsearch::{ElasticsearchSink, SinkConfig};
//! let sink = ElasticsearchSink::new(SinkConfig::from_env("http://es:9200", "tx-stats-v1")?)?;
//! sink.ensure_index(plan).await?;
//! let report = sink.write(docs).await?;
//! for rejected in &report.rejected {
//!     eprintln!("dead letter {}: {}", rejected.id, rejected.reason);
//! }
//! # Ok(()) }
//! ```

pub mod bulk;
pub mod cluster;
pub mod config;
pub mod error;
pub mod health;
pub mod request;
pub mod retry;

use kappa_engine::output::WindowDoc;
use kappa_engine::JobPlan;

pub use self::bulk::{RejectedDoc, WriteReport};
pub use self::cluster::{Cluster, IndexStatus};
pub use self::config::{Auth, BatchLimits, SinkConfig, TlsConfig};
pub use self::error::SinkError;
pub use self::health::{SinkHealth, SinkHealthState};
pub use self::retry::RetryPolicy;

use self::bulk::BulkWriter;
use self::request::{create_index_body, derive_mappings, index_settings};
use self::retry::retrying;

/// The sink of one job version: one index on one cluster.
#[derive(Debug, Clone)]
pub struct ElasticsearchSink {
    config: SinkConfig,
    cluster: Cluster,
    health: SinkHealth,
    writer: BulkWriter,
}

impl ElasticsearchSink {
    /// Builds the client; makes no request.
    pub fn new(config: SinkConfig) -> Result<Self, SinkError> {
        let cluster = Cluster::connect(&config)?;
        let health = SinkHealth::default();
        let writer = BulkWriter::new(
            cluster.clone(),
            config.index.clone(),
            config.batch,
            config.retry,
            health.clone(),
        );
        Ok(Self { config, cluster, health, writer })
    }

    /// The index this sink writes.
    pub fn index(&self) -> &str {
        &self.config.index
    }

    /// The configuration in force.
    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    /// A handle on the sink's health, for the status endpoint.
    pub fn health(&self) -> SinkHealth {
        self.health.clone()
    }

    /// The cluster, for admin calls (aliases, counts).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The body [`ElasticsearchSink::ensure_index`] creates the index with: default settings
    /// merged with the job's `indexSettings`, mappings derived from `plan` merged with the
    /// job's `mappings`.
    pub fn index_body(&self, plan: &JobPlan) -> serde_json::Value {
        create_index_body(
            index_settings(self.config.index_settings.as_ref()),
            derive_mappings(plan, self.config.mapping_overrides.as_ref()),
        )
    }

    /// Creates the index unless it exists (restart, or another engine won the race: both
    /// fine). Transient failures are retried on the sink's retry policy; invalid mappings or
    /// settings fail with the server's reason.
    pub async fn ensure_index(&self, plan: &JobPlan) -> Result<IndexStatus, SinkError> {
        let body = self.index_body(plan);
        let status = retrying(
            &self.config.retry,
            &self.health,
            (&self.config.index, &self.config.url),
            || self.cluster.create_index(&self.config.index, &body),
        )
        .await?;
        tracing::info!(index = %self.config.index, ?status, "index ready");
        Ok(status)
    }

    /// Writes window documents; see [`bulk::BulkWriter::write`].
    pub async fn write(&self, docs: &[WindowDoc]) -> Result<WriteReport, SinkError> {
        self.writer.write(docs).await
    }
}
