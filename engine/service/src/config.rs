//! How one engine process is configured: the job (the StreamJob manifest) plus the operational
//! settings that are not part of the job's logic (where checkpoints live, intervals, the status
//! address). The operator passes the latter as flags of `kappa run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kappa_crds::StreamJob;

/// Where checkpoints are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointLocation {
    /// A Kafka topic per job version (default `<group>.checkpoints`): nothing is lost with the
    /// pod's disk.
    Kafka {
        /// Topic override.
        topic: Option<String>,
    },
    /// A local directory (for local runs).
    Directory(PathBuf),
}

/// Which sink the documents go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkChoice {
    /// The job's Elasticsearch index `<alias>-<version>`.
    Elasticsearch,
    /// Discard documents (benchmarks: measures the engine without the sink).
    Null,
}

/// Settings of one engine process.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The job.
    pub job: StreamJob,
    /// Where `/status`, `/metrics`, `/healthz` and `/readyz` are served (port 0: any free port).
    pub status_addr: SocketAddr,
    /// Checkpoint store.
    pub checkpoint: CheckpointLocation,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Time between flushes to the sink.
    pub flush_interval: Duration,
    /// Dead-letter topic (default `<group>.dead-letters`).
    pub dead_letter_topic: Option<String>,
    /// The sink.
    pub sink: SinkChoice,
    /// On SIGTERM, after the first final checkpoint: how long to go on writing documents not
    /// yet acknowledged (and, when live, changed windows) before exiting. The checkpoint comes
    /// first, so whatever the drain does not finish is written by the next run; the operator's
    /// pods get 60 s to stop.
    pub shutdown_drain: Duration,
    /// Exit with success once the lag is 0 and every document is acknowledged by the sink,
    /// after a final checkpoint (bounded replays, backfills).
    pub until_caught_up: bool,
}

impl EngineConfig {
    /// Defaults for a job: status on `0.0.0.0:8080`, checkpoints in Kafka every 10 s, flushes
    /// every second, the job's Elasticsearch index, 30 s to drain on SIGTERM.
    pub fn new(job: StreamJob) -> Self {
        Self {
            job,
            status_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            checkpoint: CheckpointLocation::Kafka { topic: None },
            checkpoint_interval: Duration::from_secs(10),
            flush_interval: Duration::from_secs(1),
            dead_letter_topic: None,
            sink: SinkChoice::Elasticsearch,
            shutdown_drain: Duration::from_secs(30),
            until_caught_up: false,
        }
    }

    /// The job's namespace (`default` when the manifest has none).
    pub fn namespace(&self) -> &str {
        self.job.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        self.job.metadata.name.as_deref().unwrap_or("job")
    }

    /// The version's consumer group, `kappa.<namespace>.<job>.<version>`.
    pub fn consumer_group(&self) -> String {
        kappa_crds::naming::consumer_group(
            self.namespace(),
            self.job_name(),
            &self.job.spec.version,
        )
    }

    /// The version's index, `<alias>-<version>`.
    pub fn index(&self) -> String {
        kappa_crds::naming::index_name(&self.job.spec)
    }
}
