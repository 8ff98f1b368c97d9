//! Progress reporting: the engine's status document (`GET /status`), Prometheus metrics
//! (`GET /metrics`, names prefixed `kappa_`) and the probes (`/healthz`, `/readyz`), served by a
//! small axum server. The engine loop publishes a fresh [`EngineStatus`] a few times a second;
//! the server only reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

/// The liveness probe fails when the engine loop has not ticked for this long.
pub const STALL_AFTER_MS: i64 = 60_000;

/// The engine's phase, as `/status` and the operator see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Restoring the checkpoint, checking retention, creating the index.
    #[default]
    Starting,
    /// Far behind the head: only final windows are written (write amplification ≤ 1.5).
    Replaying,
    /// Near the head: changed windows are written every flush.
    Live,
    /// Shutting down after a final checkpoint.
    Stopping,
    /// Stopped by an error that needs a person (see `error`).
    Failed,
}

/// One partition's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionStatus {
    /// Partition id.
    pub partition: u32,
    /// Last processed offset (`-1` before the first record).
    pub processed_offset: i64,
    /// High watermark (next offset the broker will assign).
    pub high_watermark: i64,
    /// Records behind the head.
    pub lag: i64,
    /// Last offset up to which every record's documents are acknowledged by the index (`-1`
    /// before the first): the index's progress, which trails `processed_offset` by the
    /// documents still to write.
    #[serde(default = "no_offset")]
    pub indexed_offset: i64,
    /// Records up to the head whose documents are not acknowledged yet (`high_watermark -
    /// indexed_offset - 1`): the lag of the index, not just of the consumer.
    #[serde(default)]
    pub index_lag: i64,
    /// Log-time progress of the partition (RFC 3339), if it has any.
    pub log_time: Option<String>,
}

/// Record counters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records read.
    pub records_in: u64,
    /// Folded into windows.
    pub folded: u64,
    /// Excluded by the filter.
    pub filtered: u64,
    /// Dropped as late.
    pub late: u64,
    /// Sent to the dead-letter topic.
    pub dead: u64,
    /// Window documents written to the sink.
    pub documents_out: u64,
}

/// Sink health and totals.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct SinkStatus {
    /// `healthy` or `degraded`.
    pub state: String,
    /// Since when it is degraded (RFC 3339).
    pub degraded_since: Option<String>,
    /// The last error while degraded.
    pub last_error: Option<String>,
    /// Version conflicts (a newer or equal document already indexed: success).
    pub conflicts: u64,
    /// Documents the sink rejected (routed to dead letters).
    pub rejected: u64,
    /// Retried requests or items.
    pub retries: u64,
}

fn no_offset() -> i64 {
    -1
}

/// Documents still to write.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Documents still to write: changed windows not yet turned into documents plus documents
    /// not yet acknowledged by the index.
    pub documents: u64,
    /// Of those, changed windows not turned into documents yet. A replay writes only final
    /// windows, so these build up during the replay and are written once the engine is live.
    pub unstaged_windows: u64,
    /// Of those, documents in a bulk request the index has not answered yet.
    pub in_flight: u64,
}

/// The checkpoint this process resumed from.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct RestoredCheckpoint {
    /// Its sequence number.
    pub seq: u64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// Documents it held that the index had not acknowledged (written again on resume).
    pub undelivered_documents: u64,
    /// Changed windows it held whose documents were not built yet.
    pub unstaged_windows: u64,
}

/// The last checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct CheckpointStatus {
    /// Sequence number.
    pub seq: u64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// Snapshot size in bytes.
    pub bytes: u64,
    /// How long it took (dead-letter flush, snapshot, save, offset commit; it never waits for
    /// the index).
    pub duration_ms: u64,
    /// Where checkpoints are stored.
    pub store: String,
    /// Documents it holds that the index had not acknowledged.
    #[serde(default)]
    pub undelivered_documents: u64,
    /// Changed windows it holds whose documents were not built yet.
    #[serde(default)]
    pub unstaged_windows: u64,
}

/// Memory of the open windows (`window_memory` in `/status`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct WindowMemory {
    /// Open windows measured.
    pub open_windows: u64,
    /// Their aggregate states, inline and on the heap.
    pub state_bytes: u64,
    /// What finds them: the window index, start order, changed list and interned keys.
    pub index_bytes: u64,
    /// `(state_bytes + index_bytes) / open_windows`.
    pub bytes_per_window: u64,
}

impl From<kappa_engine::store::StoreMemory> for WindowMemory {
    fn from(m: kappa_engine::store::StoreMemory) -> Self {
        Self {
            open_windows: m.open_windows as u64,
            state_bytes: m.state_bytes as u64,
            index_bytes: m.index_bytes as u64,
            bytes_per_window: m.bytes_per_window() as u64,
        }
    }
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct EngineStatus {
    /// Job name.
    pub job: String,
    /// Job version.
    pub version: String,
    /// Index written.
    pub index: String,
    /// Consumer group.
    pub consumer_group: String,
    /// Phase.
    pub phase: Phase,
    /// Per-partition progress.
    pub partitions: Vec<PartitionStatus>,
    /// Sum of partition lags.
    pub total_lag: i64,
    /// Sum of partition index lags: records whose documents are not acknowledged yet. Absent
    /// from engines that do not report it (the operator then does not call them caught up).
    #[serde(default)]
    pub total_index_lag: Option<i64>,
    /// Documents still to write.
    #[serde(default)]
    pub backlog: Backlog,
    /// Log-time progress: the minimum over partitions that hold finality (RFC 3339).
    pub log_time_progress: Option<String>,
    /// Event-time watermark: windows ending at or before it are final (RFC 3339).
    pub event_time_watermark: Option<String>,
    /// Record counters.
    pub records: RecordCounts,
    /// Open windows held in memory.
    pub open_windows: u64,
    /// What the open windows cost in memory, measured at the last checkpoint (the snapshot
    /// walks every window anyway); none before the first.
    #[serde(default)]
    pub window_memory: Option<WindowMemory>,
    /// Sink health.
    pub sink: SinkStatus,
    /// Last complete checkpoint.
    pub last_checkpoint: Option<CheckpointStatus>,
    /// The checkpoint this process resumed from (none on a first run).
    #[serde(default)]
    pub restored_checkpoint: Option<RestoredCheckpoint>,
    /// The error that stopped the engine.
    pub error: Option<String>,
}

/// Prometheus metrics of the engine (one registry per process).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `kappa_records_total{outcome}`: folded, filtered, late, dead.
    pub records: IntCounterVec,
    /// `kappa_records_in_total`.
    pub records_in: IntCounter,
    /// `kappa_dead_letters_total{reason}`.
    pub dead_letters: IntCounterVec,
    /// `kappa_documents_written_total`.
    pub documents_written: IntCounter,
    /// `kappa_sink_conflicts_total`.
    pub sink_conflicts: IntCounter,
    /// `kappa_sink_rejected_total`.
    pub sink_rejected: IntCounter,
    /// `kappa_sink_degraded` (0 or 1).
    pub sink_degraded: IntGauge,
    /// `kappa_partition_lag{partition}`.
    pub partition_lag: IntGaugeVec,
    /// `kappa_lag_records`: total lag.
    pub lag: IntGauge,
    /// `kappa_partition_indexed_offset{partition}`.
    pub partition_indexed_offset: IntGaugeVec,
    /// `kappa_partition_index_lag{partition}`.
    pub partition_index_lag: IntGaugeVec,
    /// `kappa_index_lag_records`: total index lag.
    pub index_lag: IntGauge,
    /// `kappa_backlog_documents`: documents still to write.
    pub backlog_documents: IntGauge,
    /// `kappa_log_time_progress_seconds`.
    pub log_time_progress: IntGauge,
    /// `kappa_event_time_watermark_seconds`.
    pub event_time_watermark: IntGauge,
    /// `kappa_open_windows`.
    pub open_windows: IntGauge,
    /// `kappa_window_memory_bytes`.
    pub window_memory: IntGauge,
    /// `kappa_checkpoints_total`.
    pub checkpoints: IntCounter,
    /// `kappa_checkpoint_duration_seconds`.
    pub checkpoint_duration: Histogram,
    /// `kappa_checkpoint_bytes`.
    pub checkpoint_bytes: IntGauge,
    /// `kappa_flush_duration_seconds`: one batch written to the sink.
    pub flush_duration: Histogram,
    /// `kappa_phase{phase}` (1 for the current phase).
    pub phase: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every engine metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]))
            .expect("valid metric");
            reg(Box::new(h.clone()));
            h
        };
        let records = IntCounterVec::new(
            Opts::new("kappa_records_total", "Records by outcome: folded, filtered, late, dead."),
            &["outcome"],
        )
        .expect("valid metric");
        reg(Box::new(records.clone()));
        let dead_letters = IntCounterVec::new(
            Opts::new("kappa_dead_letters_total", "Dead-lettered records by reason code."),
            &["reason"],
        )
        .expect("valid metric");
        reg(Box::new(dead_letters.clone()));
        let partition_lag = IntGaugeVec::new(
            Opts::new("kappa_partition_lag", "Records behind the high watermark, per partition."),
            &["partition"],
        )
        .expect("valid metric");
        reg(Box::new(partition_lag.clone()));
        let per_partition = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["partition"]).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let partition_indexed_offset = per_partition(
            "kappa_partition_indexed_offset",
            "Last offset whose records' documents are all acknowledged by the index, per partition.",
        );
        let partition_index_lag = per_partition(
            "kappa_partition_index_lag",
            "Records up to the high watermark whose documents are not acknowledged yet, per partition.",
        );
        let phase = IntGaugeVec::new(
            Opts::new("kappa_phase", "1 for the engine's current phase."),
            &["phase"],
        )
        .expect("valid metric");
        reg(Box::new(phase.clone()));
        Self {
            records,
            records_in: counter("kappa_records_in_total", "Records read from the source."),
            dead_letters,
            documents_written: counter(
                "kappa_documents_written_total",
                "Window documents written to the sink.",
            ),
            sink_conflicts: counter(
                "kappa_sink_conflicts_total",
                "Writes refused as version conflicts (the index already had a newer document).",
            ),
            sink_rejected: counter(
                "kappa_sink_rejected_total",
                "Documents the sink rejected (sent to dead letters).",
            ),
            sink_degraded: gauge("kappa_sink_degraded", "1 while the sink is retrying."),
            partition_lag,
            lag: gauge("kappa_lag_records", "Total records behind the head."),
            partition_indexed_offset,
            partition_index_lag,
            index_lag: gauge(
                "kappa_index_lag_records",
                "Total records up to the head whose documents are not acknowledged yet.",
            ),
            backlog_documents: gauge(
                "kappa_backlog_documents",
                "Documents still to write: changed windows not yet written plus documents in flight.",
            ),
            log_time_progress: gauge(
                "kappa_log_time_progress_seconds",
                "Log-time progress (min over partitions), Unix seconds.",
            ),
            event_time_watermark: gauge(
                "kappa_event_time_watermark_seconds",
                "Event-time watermark: windows ending before it are final, Unix seconds.",
            ),
            open_windows: gauge("kappa_open_windows", "Open windows held in memory."),
            window_memory: gauge(
                "kappa_window_memory_bytes",
                "Bytes of the open windows (states and index), measured at the last checkpoint.",
            ),
            checkpoints: counter("kappa_checkpoints_total", "Checkpoints taken."),
            checkpoint_duration: histogram(
                "kappa_checkpoint_duration_seconds",
                "Time of a checkpoint: dead-letter flush, snapshot save, offset commit (it never waits for the sink).",
            ),
            checkpoint_bytes: gauge("kappa_checkpoint_bytes", "Size of the last snapshot."),
            flush_duration: histogram(
                "kappa_flush_duration_seconds",
                "Time to write one batch of documents to the sink (retries included).",
            ),
            phase,
            registry,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

/// What the engine shares with the status server.
#[derive(Debug, Default)]
pub struct StatusBoard {
    status: RwLock<EngineStatus>,
    ready: AtomicBool,
    last_tick_ms: AtomicI64,
    sink_health: std::sync::OnceLock<crate::sink::elasticsearch::SinkHealth>,
    /// The metrics registry.
    pub metrics: Metrics,
}

impl StatusBoard {
    /// Publishes a new status and marks the loop alive.
    pub fn publish(&self, status: EngineStatus) {
        *self.status.write().expect("status lock") = status;
        self.tick();
    }

    /// Edits the current status in place.
    pub fn update(&self, f: impl FnOnce(&mut EngineStatus)) {
        f(&mut self.status.write().expect("status lock"));
        self.tick();
    }

    /// Marks the engine loop alive.
    pub fn tick(&self) {
        self.last_tick_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Lets `/status` read the sink's health live: while a write is retrying, the engine loop
    /// waits inside the sink and publishes nothing, yet the outage must show.
    pub fn watch_sink(&self, health: crate::sink::elasticsearch::SinkHealth) {
        let _ = self.sink_health.set(health);
    }

    /// The current status, with live sink health.
    pub fn status(&self) -> EngineStatus {
        let mut status = self.status.read().expect("status lock").clone();
        if let Some(h) = self.sink_health.get() {
            crate::sink::fill_health(&mut status.sink, Some(h));
        }
        status
    }

    fn sink_degraded(&self) -> bool {
        self.sink_health.get().is_some_and(|h| !h.is_healthy())
    }

    /// Marks the engine ready (start-up done) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn healthy(&self) -> bool {
        let last = self.last_tick_ms.load(Ordering::Relaxed);
        let failed = self.status.read().expect("status lock").phase == Phase::Failed;
        // Waiting on a degraded sink is not a stall: restarting would not help.
        !failed && (last == 0 || now_ms() - last < STALL_AFTER_MS || self.sink_degraded())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The status server's routes.
pub fn router(board: Arc<StatusBoard>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(board)
}

/// Serves the routes on `addr` until the runtime shuts down; returns the bound address (port 0
/// picks a free port).
pub async fn serve(board: Arc<StatusBoard>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(board)).await {
            tracing::error!(error = %e, "status server stopped");
        }
    });
    Ok(bound)
}

async fn status(State(board): State<Arc<StatusBoard>>) -> Json<EngineStatus> {
    Json(board.status())
}

async fn metrics(State(board): State<Arc<StatusBoard>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], board.metrics.render())
        .into_response()
}

async fn healthz(State(board): State<Arc<StatusBoard>>) -> (StatusCode, &'static str) {
    if board.healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "engine loop stalled or failed\n")
    }
}

async fn readyz(State(board): State<Arc<StatusBoard>>) -> (StatusCode, &'static str) {
    if board.ready.load(Ordering::Relaxed) && board.healthy() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}
