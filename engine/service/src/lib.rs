//! The Kappa engine service: the process that runs in each job version's pod. It drives the
//! stream processor ([`kappa_engine::Processor`]) from a Kafka topic into an Elasticsearch index,
//! checkpoints offsets and window state together, routes bad records to a dead-letter topic, and
//! reports progress over HTTP.
//!
//! Data path: [`source`] (Kafka) → [`kappa_engine::Processor`] → [`sink`] (Elasticsearch);
//! [`checkpoint`] stores snapshots, [`dead_letter`] keeps bad records, [`status`] serves
//! `/status` and `/metrics`, [`runner`] is the loop that ties them together.

pub mod checkpoint;
pub mod config;
pub mod dead_letter;
pub mod runner;
pub mod sink;
pub mod source;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use config::{CheckpointLocation, EngineConfig, SinkChoice};
pub use runner::{RunEnd, RunSummary};

/// Why the engine stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job could not be compiled.
    #[error(transparent)]
    Plan(#[from] kappa_engine::plan::PlanError),
    /// The Kafka source failed or refused the replay.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A checkpoint could not be stored or read.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// The latest checkpoint cannot be restored.
    #[error("cannot restore the checkpoint from {store}: {source}")]
    Snapshot {
        /// Where it was read.
        store: String,
        /// Why.
        source: kappa_engine::state::SnapshotError,
    },
    /// Dead letters could not be delivered.
    #[error(transparent)]
    DeadLetter(#[from] dead_letter::DeadLetterError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    /// The status server could not start.
    #[error("cannot serve status on {addr}: {source}")]
    Status {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Set (to anything) by a supervisor that runs engines as its children (`kappa up`): the
/// engine then stops, with a final checkpoint, once its parent process is gone, so a killed
/// supervisor leaves no engine running that a restarted one would run a second time.
pub const ENV_EXIT_WITH_PARENT: &str = "KAPPA_EXIT_WITH_PARENT";

/// Runs the engine service for one job version in this process: the status server, signal
/// handling (SIGTERM and SIGINT take a final checkpoint, then exit) and the engine loop.
pub fn serve(config: EngineConfig) -> Result<RunSummary, EngineError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kappa-io")
        .enable_all()
        .build()
        .map_err(EngineError::Runtime)?;
    let board = Arc::new(status::StatusBoard::default());
    let addr = config.status_addr;
    let bound = runtime
        .block_on(status::serve(Arc::clone(&board), addr))
        .map_err(|source| EngineError::Status { addr, source })?;
    tracing::info!(%bound, "status server: /status /metrics /healthz /readyz");
    let shutdown = Arc::new(AtomicBool::new(false));
    {
        let shutdown = Arc::clone(&shutdown);
        runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            shutdown.store(true, Ordering::Relaxed);
        });
    }
    if std::env::var_os(ENV_EXIT_WITH_PARENT).is_some() {
        let shutdown = Arc::clone(&shutdown);
        let parent = std::os::unix::process::parent_id();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!(parent, "the supervising process is gone: stopping");
                    shutdown.store(true, Ordering::Relaxed);
                    return;
                }
            }
        });
    }
    runner::run(config, board, runtime.handle().clone(), shutdown)
}
