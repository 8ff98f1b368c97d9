//! The engine loop of one job version: Kafka → processor → sink, with checkpoints.
//!
//! Documents go to the sink in the background ([`SinkWriter`]), one bulk-sized batch at a time,
//! while the loop goes on reading. The processor keeps what is not yet acknowledged
//! ([`kappa_engine::delivery`]): changed windows not yet turned into documents stay marked in
//! the store, documents handed out stay in the delivery until their batch is acknowledged.
//!
//! Order of a checkpoint (design §3.6): flush the dead-letter producer, save the snapshot
//! (offsets, windows, and the documents not yet acknowledged) durably, then commit the offsets
//! to the consumer group. It does not wait for the sink, so its duration depends neither on
//! the backlog of documents to write nor on a slow cluster. A crash anywhere resumes from the
//! previous checkpoint and writes what it held again, with the same versions, which external
//! versioning turns into no-ops: the index sees each record's effect exactly once.
//!
//! Phases: while the version is far behind the head (lag above `spec.promotion.maxLag`) it is
//! *replaying* and writes only windows that became final, so each document is written about
//! once; once near the head it is *live* and writes changed windows every flush (1 s). The
//! switch leaves every open window to write: that backlog is written at the sink's pace, oldest
//! change first, and `/status` reports it until the index has caught up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_engine::delivery::Positions as DeliveredPositions;
use kappa_engine::store::Outcome;
use kappa_engine::time::format_rfc3339_millis;
use kappa_engine::{JobPlan, Processor};
use rdkafka::message::{Message, Timestamp};

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{CheckpointLocation, EngineConfig};
use crate::dead_letter::{DeadLetter, DeadLetterProducer};
use crate::sink::writer::{SinkWriter, Written};
use crate::sink::{BatchLimits, Sink};
use crate::source::kafka::{KafkaSource, Polled, Positions};
use crate::source::monitor::TopicMonitor;
use crate::status::{
    Backlog, CheckpointStatus, EngineStatus, PartitionStatus, Phase, RecordCounts,
    RestoredCheckpoint, StatusBoard, WindowMemory,
};
use crate::EngineError;

/// How often the loop refreshes status, metrics and the partition list.
const TICK: Duration = Duration::from_millis(250);
/// How often the topic monitor asks for watermarks and partitions.
const MONITOR_INTERVAL: Duration = Duration::from_secs(2);
/// Records handled between clock checks in the hot loop.
const RECORDS_PER_CLOCK_CHECK: u32 = 1024;
/// Batches written at once. One: a window's newer document then never overtakes an older one
/// with the same version (only the `final` flag differs), and the sink's own retries keep
/// their order. The loop reads on while it is written, so the two overlap anyway.
const BATCHES_IN_FLIGHT: usize = 1;
/// Live changed windows are turned into documents only while fewer than this many batches of
/// documents wait for the sink: the rest stay marked in the store (compact, and in snapshots as
/// marks) instead of piling up as documents.
const STAGED_BATCHES: usize = 2;
/// Reading pauses while this many batches of documents wait for the sink (final windows of a
/// fast replay into a slow cluster), so memory stays bounded; checkpoints and status go on.
const PAUSE_AT_BATCHES: usize = 4;
/// How long a paused loop waits for the sink before it looks at its clocks again.
const PAUSED_WAIT: Duration = Duration::from_millis(50);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// SIGTERM / SIGINT: a final checkpoint was taken.
    Shutdown,
    /// `--until-caught-up`: the lag reached 0 right after a checkpoint.
    CaughtUp,
}

/// What one process did, for the exit summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Why it stopped.
    pub end: RunEnd,
    /// Records read by this process (after the checkpoint it resumed from).
    pub records_processed: u64,
    /// Documents this process wrote.
    pub documents_written: u64,
    /// Checkpoints this process took.
    pub checkpoints: u64,
    /// Total lag at exit.
    pub lag: i64,
    /// Time from the assignment of the partitions to the first moment the lag was 0 (the
    /// replay, checkpoints included; start-up and the wait for the last checkpoint excluded).
    pub replay_time: Option<Duration>,
}

/// A running engine's pieces.
struct Engine {
    config: EngineConfig,
    plan: Arc<JobPlan>,
    processor: Processor,
    source: KafkaSource,
    monitor: TopicMonitor,
    dead_letters: DeadLetterProducer,
    sink: Arc<Sink>,
    writer: SinkWriter,
    limits: BatchLimits,
    store: Box<dyn CheckpointStore>,
    board: Arc<StatusBoard>,
    phase: Phase,
    next_seq: u64,
    /// The position each partition was assigned at (start-up or when it was added): where a
    /// partition without processed records resumes when the assignment is rebuilt.
    assigned: Positions,
    /// Next offset per partition as of the latest end-of-partition event (offsets with no
    /// record, e.g. transaction markers, still count as consumed).
    reached: BTreeMap<u32, i64>,
    last_checkpoint: Option<CheckpointStatus>,
    /// The open windows' memory, measured at the last checkpoint.
    window_memory: Option<WindowMemory>,
    restored: Option<RestoredCheckpoint>,
    documents_out: u64,
    sink_conflicts: u64,
    sink_rejected: u64,
    sink_retries: u64,
    reported: kappa_engine::store::Counters,
    records_at_start: u64,
    checkpoints: u64,
    assigned_at: Instant,
    caught_up_at: Option<Instant>,
}

/// Runs one job version until shutdown (or until caught up with `until_caught_up`).
pub fn run(
    config: EngineConfig,
    board: Arc<StatusBoard>,
    runtime: tokio::runtime::Handle,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary, EngineError> {
    let result = Engine::start(config, Arc::clone(&board), runtime).and_then(|mut engine| {
        let end = engine.run_loop(&shutdown)?;
        Ok(RunSummary {
            end,
            records_processed: engine.processor.counters().records_in - engine.records_at_start,
            documents_written: engine.documents_out,
            checkpoints: engine.checkpoints,
            lag: engine.total_lag(),
            replay_time: engine.caught_up_at.map(|t| t - engine.assigned_at),
        })
    });
    if let Err(e) = &result {
        board.update(|s| {
            s.phase = Phase::Failed;
            s.error = Some(e.to_string());
        });
        board.set_ready(false);
    }
    result
}

impl Engine {
    fn start(
        config: EngineConfig,
        board: Arc<StatusBoard>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, EngineError> {
        let plan = Arc::new(JobPlan::compile(&config.job)?);
        let group = config.consumer_group();
        let kafka = &config.job.spec.source.kafka;
        let client = crate::source::client_config(kafka)?;
        board.update(|s| {
            s.job = config.job_name().to_owned();
            s.version = config.job.spec.version.clone();
            s.index = config.index();
            s.consumer_group = group.clone();
            s.phase = Phase::Starting;
        });

        let mut store: Box<dyn CheckpointStore> = match &config.checkpoint {
            CheckpointLocation::Directory(dir) => {
                Box::new(crate::checkpoint::fs::FsCheckpointStore::new(dir.join(&group))?)
            }
            CheckpointLocation::Kafka { topic } => {
                let topic = topic
                    .clone()
                    .unwrap_or_else(|| crate::checkpoint::kafka::checkpoint_topic(&group));
                Box::new(crate::checkpoint::kafka::KafkaCheckpointStore::new(
                    client.clone(),
                    topic,
                )?)
            }
        };
        let latest = store.load_latest()?;
        let source = KafkaSource::new(&client, &kafka.topic, &group)?;
        let partitions = source.partitions()?;
        let mut restored = None;
        let (processor, positions, next_seq) = match latest {
            Some(cp) => {
                let processor = Processor::restore_bytes(Arc::clone(&plan), &cp.snapshot)
                    .map_err(|source| EngineError::Snapshot { store: store.describe(), source })?;
                let mut positions: Positions = processor.positions().clone();
                source.check_resume(&positions)?;
                // Partitions added after the checkpoint are read from their start.
                let added: Vec<u32> =
                    partitions.iter().copied().filter(|p| !positions.contains_key(p)).collect();
                if !added.is_empty() {
                    let earliest =
                        kappa_crds::StartFrom::Position(kappa_crds::StartPosition::Earliest);
                    positions.extend(source.start_positions(&added, &earliest)?);
                }
                let backlog = processor.backlog();
                tracing::info!(
                    seq = cp.seq,
                    store = %store.describe(),
                    backlog,
                    "resumed from checkpoint"
                );
                restored = Some(RestoredCheckpoint {
                    seq: cp.seq,
                    taken_at: rfc3339(cp.taken_at_ms),
                    undelivered_documents: processor.delivery().outstanding() as u64,
                    unstaged_windows: processor.unstaged() as u64,
                });
                (processor, positions, cp.seq + 1)
            }
            None => {
                let positions = source.start_positions(&partitions, &kafka.start_from)?;
                tracing::info!(?positions, "first run: start positions checked against retention");
                (Processor::new(Arc::clone(&plan)), positions, 1)
            }
        };
        let mut processor = processor;
        for &p in positions.keys() {
            processor.assign(p);
        }
        let monitor = TopicMonitor::start(&client, &kafka.topic, &group, MONITOR_INTERVAL)?;
        let dlq_topic = config
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| crate::dead_letter::dead_letter_topic(&group));
        let dead_letters = DeadLetterProducer::new(
            client.clone(),
            dlq_topic,
            config.job_name(),
            &config.job.spec.version,
        )?;
        let sink = Arc::new(Sink::new(&config, &plan)?);
        if let Some(health) = sink.health_probe() {
            board.watch_sink(health);
        }
        runtime.block_on(sink.prepare())?;
        let writer = SinkWriter::new(Arc::clone(&sink), runtime.clone());
        let limits = writer.limits();
        source.assign(&positions)?;
        let assigned = positions;
        board.set_ready(true);
        let processor_counters = processor.counters();
        Ok(Self {
            processor,
            source,
            monitor,
            dead_letters,
            sink,
            writer,
            limits,
            store,
            board,
            phase: Phase::Replaying,
            next_seq,
            assigned,
            reached: BTreeMap::new(),
            last_checkpoint: None,
            window_memory: None,
            restored,
            documents_out: 0,
            sink_conflicts: 0,
            sink_rejected: 0,
            sink_retries: 0,
            reported: processor_counters,
            records_at_start: processor_counters.records_in,
            checkpoints: 0,
            assigned_at: Instant::now(),
            caught_up_at: None,
            plan,
            config,
        })
    }

    fn run_loop(&mut self, shutdown: &AtomicBool) -> Result<RunEnd, EngineError> {
        let mut next_tick = Instant::now();
        let mut next_flush = Instant::now() + self.config.flush_interval;
        let mut next_checkpoint = Instant::now() + self.config.checkpoint_interval;
        let mut since_clock = 0u32;
        loop {
            let paused =
                self.processor.delivery().outstanding() >= PAUSE_AT_BATCHES * self.limits.max_docs;
            if paused {
                // The sink is behind: wait for it rather than read more.
                self.collect_written(PAUSED_WAIT)?;
            } else {
                match self.source.poll(Duration::from_millis(50))? {
                    Polled::Record(m) => {
                        let partition = m.partition() as u32;
                        let offset = m.offset();
                        let log_time = match m.timestamp() {
                            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                            Timestamp::NotAvailable => None,
                        };
                        let payload = m.payload().unwrap_or(&[]);
                        if let Some(Outcome::Dead(reason)) =
                            self.processor.process(partition, offset, log_time, payload)
                        {
                            let code = reason.code();
                            self.board.metrics.dead_letters.with_label_values(&[code]).inc();
                            self.dead_letters.send(&DeadLetter {
                                source_topic: self.source.topic(),
                                partition,
                                offset,
                                payload,
                                reason_code: code,
                                detail: &reason.to_string(),
                                log_time_ms: log_time,
                            })?;
                        }
                        since_clock += 1;
                        if since_clock < RECORDS_PER_CLOCK_CHECK {
                            continue;
                        }
                    }
                    Polled::EndOfPartition(p) => {
                        self.processor.mark_idle(p);
                        if let Some(next) = self.processor.positions().get(&p) {
                            let e = self.reached.entry(p).or_insert(*next);
                            *e = (*e).max(*next);
                        }
                        if self.caught_up_at.is_none() && self.total_lag() == 0 {
                            self.caught_up_at = Some(Instant::now());
                        }
                    }
                    Polled::Nothing => {}
                }
            }
            since_clock = 0;
            self.collect_written(Duration::ZERO)?;
            let now = Instant::now();
            if shutdown.load(Ordering::Relaxed) {
                tracing::info!("shutdown requested: taking a final checkpoint");
                let live = self.phase == Phase::Live;
                self.set_phase(Phase::Stopping);
                self.checkpoint()?;
                if self.drain(live)? {
                    self.checkpoint()?;
                }
                self.publish();
                return Ok(RunEnd::Shutdown);
            }
            if now >= next_tick {
                self.watch_partitions()?;
                self.update_phase();
                self.publish();
                next_tick = now + TICK;
            }
            if now >= next_flush {
                self.stage();
                next_flush = Instant::now() + self.config.flush_interval;
            } else if self.phase == Phase::Live
                && self.processor.unstaged() > 0
                && self.processor.delivery().queued() == 0
            {
                // Writing a backlog: keep the sink busy instead of waiting for the next flush.
                self.stage();
            }
            self.feed_sink();
            if now >= next_checkpoint {
                self.checkpoint()?;
                self.publish();
                next_checkpoint = Instant::now() + self.config.checkpoint_interval;
            }
            if self.config.until_caught_up && self.index_caught_up() {
                tracing::info!("every record up to the head is in the index: exiting");
                self.checkpoint()?;
                self.publish();
                return Ok(RunEnd::CaughtUp);
            }
        }
    }

    /// Assigns partitions added to the topic since start (read from their first offset).
    fn watch_partitions(&mut self) -> Result<(), EngineError> {
        let view = self.monitor.view();
        let added: Vec<u32> = view
            .watermarks
            .keys()
            .copied()
            .filter(|p| self.processor.progress().partition(*p).is_none())
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let earliest = kappa_crds::StartFrom::Position(kappa_crds::StartPosition::Earliest);
        let start = self.source.start_positions(&added, &earliest)?;
        tracing::info!(?added, "partitions added to the topic: assigning them from the start");
        for (&p, &o) in &start {
            self.processor.assign(p);
            self.assigned.insert(p, o);
        }
        // Processed partitions resume at their next offset; the others keep the position they
        // were assigned at (e.g. the head, for `startFrom: latest`).
        let mut positions = self.assigned.clone();
        positions.extend(self.processor.positions().iter().map(|(&p, &o)| (p, o)));
        self.source.assign(&positions)?;
        Ok(())
    }

    fn lags(&self) -> Vec<PartitionStatus> {
        let view = self.monitor.view();
        let positions = self.processor.positions();
        let delivered = self.processor.delivered();
        view.watermarks
            .iter()
            .map(|(&p, w)| {
                // A partition with no processed record yet is at its assigned start.
                let start = self.assigned.get(&p).copied().unwrap_or(w.low);
                let next = positions.get(&p).copied().unwrap_or(start);
                let reached = self.reached.get(&p).copied().unwrap_or(next).max(next);
                let indexed = delivered.get(&p).copied().unwrap_or(start).min(next);
                let log_time = self
                    .processor
                    .progress()
                    .partition(p)
                    .filter(|pp| pp.log_time != i64::MIN)
                    .map(|pp| rfc3339(pp.log_time));
                PartitionStatus {
                    partition: p,
                    processed_offset: next - 1,
                    high_watermark: w.high,
                    lag: (w.high - reached).max(0),
                    indexed_offset: indexed - 1,
                    index_lag: (w.high - indexed).max(0),
                    log_time,
                }
            })
            .collect()
    }

    fn total_lag(&self) -> i64 {
        self.lags().iter().map(|p| p.lag).sum()
    }

    /// Whether every record up to the head is read and its documents acknowledged.
    fn index_caught_up(&self) -> bool {
        self.phase == Phase::Live
            && self.processor.backlog() == 0
            // The index trails the consumer, so an index lag of 0 means a consumer lag of 0.
            && self.lags().iter().all(|p| p.index_lag == 0)
    }

    /// Where every partition is read up to: the next offset, or the assigned start of a
    /// partition without records yet.
    fn consumed(&self) -> DeliveredPositions {
        let mut consumed = self.assigned.clone();
        consumed.extend(self.processor.positions().iter().map(|(&p, &o)| (p, o)));
        consumed
    }

    fn update_phase(&mut self) {
        let lag = self.total_lag();
        if lag == 0 && self.caught_up_at.is_none() {
            self.caught_up_at = Some(Instant::now());
        }
        if self.phase == Phase::Replaying && lag <= self.config.job.spec.promotion.max_lag.max(0) {
            tracing::info!("near the head: live phase, writing changed windows every flush");
            self.set_phase(Phase::Live);
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        for p in [Phase::Starting, Phase::Replaying, Phase::Live, Phase::Stopping, Phase::Failed] {
            let v = i64::from(p == phase);
            self.board.metrics.phase.with_label_values(&[phase_name(p)]).set(v);
        }
    }

    /// Turns windows into documents for the sink: final ones always; changed ones only when
    /// live, as many as fit under [`STAGED_BATCHES`] (the rest stay marked in the store).
    fn stage(&mut self) {
        self.stage_changed(self.phase == Phase::Live);
    }

    fn stage_changed(&mut self, live: bool) {
        let room = if live {
            (STAGED_BATCHES * self.limits.max_docs)
                .saturating_sub(self.processor.delivery().outstanding())
        } else {
            0
        };
        let consumed = self.consumed();
        self.processor.stage(room, &consumed);
    }

    /// After the shutdown checkpoint: writes what is still to write (when `live`, changed
    /// windows too; a replay leaves open windows for its next run) for at most
    /// `shutdown_drain`, reading nothing more. Returns whether everything was written.
    fn drain(&mut self, live: bool) -> Result<bool, EngineError> {
        let deadline = Instant::now() + self.config.shutdown_drain;
        let mut next_publish = Instant::now();
        loop {
            self.stage_changed(live);
            self.feed_sink();
            let left = self.processor.delivery().outstanding()
                + if live { self.processor.unstaged() } else { 0 };
            if left == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                tracing::info!(
                    left,
                    "shutdown drain time is over: the checkpoint holds the rest for the next run"
                );
                return Ok(false);
            }
            self.collect_written(PAUSED_WAIT)?;
            if Instant::now() >= next_publish {
                self.publish();
                next_publish = Instant::now() + TICK;
            }
        }
    }

    /// Hands staged documents to the sink, one bulk-sized batch at a time.
    fn feed_sink(&mut self) {
        while self.processor.delivery().batches_in_flight() < BATCHES_IN_FLIGHT {
            let Some(batch) =
                self.processor.next_batch(self.limits.max_docs, self.limits.max_bytes)
            else {
                break;
            };
            self.writer.send(batch);
        }
    }

    /// Takes in the batches the sink finished (waiting at most `wait` for the first), and
    /// hands it the next ones. A write that spent its retry budget stops the engine: it
    /// resumes from its checkpoint when restarted.
    fn collect_written(&mut self, wait: Duration) -> Result<(), EngineError> {
        let mut next = self.writer.written(wait);
        while let Some(written) = next {
            self.record_written(written)?;
            next = self.writer.written(Duration::ZERO);
        }
        self.feed_sink();
        Ok(())
    }

    fn record_written(&mut self, written: Written) -> Result<(), EngineError> {
        let Written { batch, result, elapsed } = written;
        let report = result?;
        self.board.metrics.flush_duration.observe(elapsed.as_secs_f64());
        self.documents_out += report.written as u64;
        self.sink_conflicts += report.conflicts as u64;
        self.sink_retries += u64::from(report.retries);
        self.board.metrics.documents_written.inc_by(report.written as u64);
        self.board.metrics.sink_conflicts.inc_by(report.conflicts as u64);
        for rejected in &report.rejected {
            // A document the index refuses (e.g. a mapping conflict) is kept as a dead letter
            // with the server's reason: never silently dropped.
            self.sink_rejected += 1;
            self.board.metrics.sink_rejected.inc();
            let body =
                batch.docs.iter().find(|d| d.id == rejected.id).map_or("", |d| d.body.as_str());
            let detail = format!(
                "index {} refused document {}: {} ({})",
                self.config.index(),
                rejected.id,
                rejected.reason,
                rejected.reason_type
            );
            self.dead_letters.send_rejected(&rejected.id, body.as_bytes(), &detail)?;
        }
        self.processor.acknowledge(batch.id);
        Ok(())
    }

    /// Stores a checkpoint without waiting for the sink: documents not yet acknowledged are
    /// part of the snapshot.
    fn checkpoint(&mut self) -> Result<(), EngineError> {
        let started = Instant::now();
        self.collect_written(Duration::ZERO)?;
        // Dead letters (of records and of refused documents) are durable before the snapshot
        // that no longer holds their records or documents.
        self.dead_letters.flush()?;
        let snapshot = self.processor.snapshot_bytes();
        let bytes = snapshot.len() as u64;
        let memory = self.processor.memory();
        self.board.metrics.window_memory.set(memory.bytes() as i64);
        self.window_memory = Some(WindowMemory::from(memory));
        let taken_at_ms = now_ms();
        self.store.save(&Checkpoint { seq: self.next_seq, taken_at_ms, snapshot })?;
        // The committed offsets mirror the checkpoint for lag tools; the checkpoint is what a
        // restart resumes from. A group coordinator that is briefly unavailable must not stop
        // the engine: the next checkpoint commits again.
        if let Err(e) = self.source.commit(self.processor.positions()) {
            tracing::warn!(error = %e, "offsets not committed to the consumer group this time");
        }
        let elapsed = started.elapsed();
        self.checkpoints += 1;
        self.board.metrics.checkpoints.inc();
        self.board.metrics.checkpoint_duration.observe(elapsed.as_secs_f64());
        self.board.metrics.checkpoint_bytes.set(bytes as i64);
        self.last_checkpoint = Some(CheckpointStatus {
            seq: self.next_seq,
            taken_at: rfc3339(taken_at_ms),
            bytes,
            duration_ms: elapsed.as_millis() as u64,
            store: self.store.describe(),
            undelivered_documents: self.processor.delivery().outstanding() as u64,
            unstaged_windows: self.processor.unstaged() as u64,
        });
        tracing::debug!(seq = self.next_seq, bytes, ?elapsed, "checkpoint");
        self.next_seq += 1;
        Ok(())
    }

    fn publish(&mut self) {
        let partitions = self.lags();
        let total_lag: i64 = partitions.iter().map(|p| p.lag).sum();
        let counters = self.processor.counters();
        let m = &self.board.metrics;
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        m.records_in.inc_by(delta(counters.records_in, self.reported.records_in));
        for (outcome, now, before) in [
            ("folded", counters.folded, self.reported.folded),
            ("filtered", counters.filtered, self.reported.filtered),
            ("late", counters.late, self.reported.late),
            ("dead", counters.dead, self.reported.dead),
        ] {
            m.records.with_label_values(&[outcome]).inc_by(delta(now, before));
        }
        self.reported = counters;
        for p in &partitions {
            let label = p.partition.to_string();
            m.partition_lag.with_label_values(&[&label]).set(p.lag);
            m.partition_indexed_offset.with_label_values(&[&label]).set(p.indexed_offset);
            m.partition_index_lag.with_label_values(&[&label]).set(p.index_lag);
        }
        let total_index_lag: i64 = partitions.iter().map(|p| p.index_lag).sum();
        let delivery = self.processor.delivery();
        let backlog = Backlog {
            documents: self.processor.backlog() as u64,
            unstaged_windows: self.processor.unstaged() as u64,
            in_flight: delivery.in_flight() as u64,
        };
        m.lag.set(total_lag);
        m.index_lag.set(total_index_lag);
        m.backlog_documents.set(backlog.documents as i64);
        let wm = self.processor.progress().watermark();
        let event_wm = wm.map(|w| w - self.plan.max_lateness_ms);
        m.log_time_progress.set(wm.map_or(0, |w| w / 1000));
        m.event_time_watermark.set(event_wm.map_or(0, |w| w / 1000));
        m.open_windows.set(self.processor.open_windows() as i64);
        let sink = self.sink.status(self.sink_conflicts, self.sink_rejected, self.sink_retries);
        m.sink_degraded.set(i64::from(sink.state != "healthy"));
        let status = EngineStatus {
            job: self.config.job_name().to_owned(),
            version: self.config.job.spec.version.clone(),
            index: self.config.index(),
            consumer_group: self.source.group().to_owned(),
            phase: self.phase,
            partitions,
            total_lag,
            total_index_lag: Some(total_index_lag),
            backlog,
            log_time_progress: wm.map(rfc3339),
            event_time_watermark: event_wm.map(rfc3339),
            records: RecordCounts {
                records_in: counters.records_in,
                folded: counters.folded,
                filtered: counters.filtered,
                late: counters.late,
                dead: counters.dead,
                documents_out: self.documents_out,
            },
            open_windows: self.processor.open_windows() as u64,
            window_memory: self.window_memory,
            sink,
            last_checkpoint: self.last_checkpoint.clone(),
            restored_checkpoint: self.restored.clone(),
            error: None,
        };
        self.board.publish(status);
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Starting => "starting",
        Phase::Replaying => "replaying",
        Phase::Live => "live",
        Phase::Stopping => "stopping",
        Phase::Failed => "failed",
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    format_rfc3339_millis(ms, &mut out);
    String::from_utf8(out).expect("ASCII")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
