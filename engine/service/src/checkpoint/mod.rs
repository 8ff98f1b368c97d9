//! Checkpoints: the processor's snapshot stored durably, so a restarted engine resumes where the
//! last one stopped. Two stores implement [`CheckpointStore`]: [`kafka`] (a compacted topic per
//! job version, the default: nothing is lost with the pod's disk) and [`fs`] (a local directory,
//! for local runs).

pub mod fs;
pub mod kafka;

#[cfg(test)]
pub(crate) mod testing;

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use kafka::{checkpoint_topic, kafka_client_config, KafkaCheckpointOptions};

/// One stored snapshot of the processor.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number: strictly increasing per job version; the highest complete one wins.
    pub seq: u64,
    /// When the snapshot was taken (Unix milliseconds).
    pub taken_at_ms: i64,
    /// The processor's opaque snapshot (`Processor::snapshot_bytes`).
    pub snapshot: Vec<u8>,
}

impl Checkpoint {
    /// The sequence number the checkpoint after `latest` must use: `latest + 1`, or 1 when
    /// nothing was stored yet.
    ///
    /// ```
    /// use kappa_service::checkpoint::Checkpoint;
    /// assert_eq!(Checkpoint::next_seq(None), 1);
    /// let cp = Checkpoint { seq: 7, taken_at_ms: 0, snapshot: vec![] };
    /// assert_eq!(Checkpoint::next_seq(Some(&cp)), 8);
    /// ```
    pub fn next_seq(latest: Option<&Checkpoint>) -> u64 {
        latest.map_or(1, |cp| cp.seq + 1)
    }
}

// The snapshot can be tens of MB: print its size, not its bytes.
impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("seq", &self.seq)
            .field("taken_at_ms", &self.taken_at_ms)
            .field("snapshot_len", &self.snapshot.len())
            .finish()
    }
}

/// Refuses a `seq` that is not above the store's latest: a lower one would be shadowed by the
/// newer checkpoint on the next load.
pub(crate) fn ensure_after_latest(
    latest: Option<u64>,
    seq: u64,
    store: impl FnOnce() -> String,
) -> Result<(), CheckpointError> {
    match latest.filter(|&l| seq <= l) {
        Some(latest) => Err(CheckpointError::SeqNotAfterLatest { store: store(), seq, latest }),
        None => Ok(()),
    }
}

/// Where checkpoints are kept.
pub trait CheckpointStore: Send {
    /// The latest complete checkpoint, if any. Incomplete or corrupt ones are skipped (logged),
    /// never returned.
    fn load_latest(&mut self) -> Result<Option<Checkpoint>, CheckpointError>;

    /// Stores a checkpoint durably; returns only once it is durable (all chunks acknowledged by
    /// the broker / file fsynced and renamed). `checkpoint.seq` must be higher than every
    /// checkpoint this store has loaded or saved.
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;

    /// Where it is stored, for logs and status.
    fn describe(&self) -> String;
}

/// Why a checkpoint could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint directory cannot be created, listed or synced.
    #[error("checkpoint directory {dir}: {source} (check that it exists and is writable)")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A checkpoint file cannot be written, synced or renamed into place.
    #[error("cannot write checkpoint file {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A checkpoint file exists but cannot be read (not: is corrupt; corrupt files are skipped).
    #[error("cannot read checkpoint file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Kafka producer or consumer cannot be created (a bad client property).
    #[error(
        "cannot create a Kafka client for checkpoint topic {topic}: {source} (check properties)"
    )]
    Client {
        /// The checkpoint topic.
        topic: String,
        /// The client error.
        source: KafkaError,
    },
    /// A chunk or commit marker was not accepted or not acknowledged by the broker.
    #[error("checkpoint record {key} was not stored in topic {topic}: {source}")]
    Produce {
        /// The checkpoint topic.
        topic: String,
        /// The record key (`<seq>/<index>` or `<seq>/commit`).
        key: String,
        /// The producer error (boxed: it is large, and errors are rare).
        source: Box<KafkaError>,
    },
    /// The checkpoint topic cannot be read.
    #[error("cannot read checkpoint topic {topic}: {source}")]
    Fetch {
        /// The checkpoint topic.
        topic: String,
        /// The consumer error.
        source: KafkaError,
    },
    /// The broker did not answer in time.
    #[error("{operation} on checkpoint topic {topic} unfinished after {after:?} (broker down?)")]
    Timeout {
        /// The checkpoint topic.
        topic: String,
        /// What was waited for.
        operation: &'static str,
        /// How long.
        after: Duration,
    },
    /// A checkpoint's sequence number does not follow the latest one: storing it would hide it
    /// behind an older checkpoint with a higher number.
    #[error("checkpoint {seq} for {store} is not after the latest, {latest}; use {}", latest + 1)]
    SeqNotAfterLatest {
        /// The store (`describe()`).
        store: String,
        /// The refused sequence number.
        seq: u64,
        /// The latest stored one.
        latest: u64,
    },
}

impl CheckpointError {
    /// Whether trying again later can succeed (broker unavailable, timeouts, I/O hiccups), as
    /// opposed to a configuration or programming error that a retry repeats.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Directory { source, .. }
            | Self::WriteFile { source, .. }
            | Self::ReadFile { source, .. } => io_retryable(source),
            Self::Produce { source, .. } => kafka_retryable(source),
            Self::Fetch { source, .. } => kafka_retryable(source),
            Self::Timeout { .. } => true,
            Self::Client { .. } | Self::SeqNotAfterLatest { .. } => false,
        }
    }
}

fn io_retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), Interrupted | TimedOut | WouldBlock | StorageFull | ResourceBusy)
}

/// Whether a Kafka error is transient: the broker or network is unavailable, or it timed out.
pub(crate) fn kafka_retryable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    if matches!(e, KafkaError::Flush(_)) {
        return true;
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            BrokerTransportFailure
                | AllBrokersDown
                | MessageTimedOut
                | RequestTimedOut
                | OperationTimedOut
                | TimedOutQueue
                | QueueFull
                | NetworkException
                | LeaderNotAvailable
                | NotLeaderForPartition
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | NotCoordinator
                | CoordinatorNotAvailable
                | Resolve
                | KafkaStorageError
                | ThrottlingQuotaExceeded
        )
    )
}
