//! The engine loop of one job version: Kafka → processor → sink, with checkpoints.
//!
//! Order of a checkpoint (design §3.6): flush the sink (every document up to now is written),
//! flush the dead-letter producer, save the snapshot (offsets + windows) durably, then commit the
//! offsets to the consumer group. A crash anywhere in between resumes from the previous
//! checkpoint and re-derives the same documents with the same versions, which external
//! versioning turns into no-ops: the index sees each record's effect exactly once.
//!
//! Phases: while the version is far behind the head (lag above `spec.promotion.maxLag`) it is
//! *replaying* and writes only windows that became final, so each document is written about
//! once; once near the head it is *live* and writes changed windows every flush (1 s).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_engine::output::WindowDoc;
use kappa_engine::store::Outcome;
use kappa_engine::time::format_rfc3339_millis;
use kappa_engine::{JobPlan, Processor};
use rdkafka::message::{Message, Timestamp};

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{CheckpointLocation, EngineConfig};
use crate::dead_letter::{DeadLetter, DeadLetterProducer};
use crate::sink::Sink;
use crate::source::kafka::{KafkaSource, Polled, Positions};
use crate::source::monitor::TopicMonitor;
use crate::status::{
    CheckpointStatus, EngineStatus, PartitionStatus, Phase, RecordCounts, StatusBoard,
};
use crate::EngineError;

/// How often the loop refreshes status, metrics and the partition list.
const TICK: Duration = Duration::from_millis(250);
/// How often the topic monitor asks for watermarks and partitions.
const MONITOR_INTERVAL: Duration = Duration::from_secs(2);
/// Records handled between clock checks in the hot loop.
const RECORDS_PER_CLOCK_CHECK: u32 = 1024;

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
    sink: Sink,
    store: Box<dyn CheckpointStore>,
    board: Arc<StatusBoard>,
    runtime: tokio::runtime::Handle,
    phase: Phase,
    next_seq: u64,
    /// The position each partition was assigned at (start-up or when it was added): where a
    /// partition without processed records resumes when the assignment is rebuilt.
    assigned: Positions,
    /// Next offset per partition as of the latest end-of-partition event (offsets with no
    /// record, e.g. transaction markers, still count as consumed).
    reached: BTreeMap<u32, i64>,
    last_checkpoint: Option<CheckpointStatus>,
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
                tracing::info!(seq = cp.seq, store = %store.describe(), "resumed from checkpoint");
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
        let sink = Sink::new(&config, &plan)?;
        if let Some(health) = sink.health_probe() {
            board.watch_sink(health);
        }
        runtime.block_on(sink.prepare())?;
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
            store,
            board,
            runtime,
            phase: Phase::Replaying,
            next_seq,
            assigned,
            reached: BTreeMap::new(),
            last_checkpoint: None,
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
                        self.board.metrics.dead_letters.with_label_values(&[reason.code()]).inc();
                        self.dead_letters.send(&DeadLetter {
                            source_topic: self.source.topic(),
                            partition,
                            offset,
                            payload,
                            reason_code: reason.code(),
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
            since_clock = 0;
            let now = Instant::now();
            if shutdown.load(Ordering::Relaxed) {
                tracing::info!("shutdown requested: taking a final checkpoint");
                self.set_phase(Phase::Stopping);
                self.checkpoint()?;
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
                self.flush()?;
                next_flush = Instant::now() + self.config.flush_interval;
            }
            if now >= next_checkpoint {
                self.checkpoint()?;
                self.publish();
                next_checkpoint = Instant::now() + self.config.checkpoint_interval;
                if self.config.until_caught_up && self.phase == Phase::Live && self.total_lag() == 0
                {
                    tracing::info!("caught up with the head after a checkpoint: exiting");
                    return Ok(RunEnd::CaughtUp);
                }
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
        view.watermarks
            .iter()
            .map(|(&p, w)| {
                // A partition with no processed record yet is at its assigned start.
                let next = positions.get(&p).or(self.assigned.get(&p)).copied().unwrap_or(w.low);
                let reached = self.reached.get(&p).copied().unwrap_or(next).max(next);
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
                    log_time,
                }
            })
            .collect()
    }

    fn total_lag(&self) -> i64 {
        self.lags().iter().map(|p| p.lag).sum()
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

    /// Writes what this phase writes: final windows while replaying, changed ones when live.
    fn flush(&mut self) -> Result<(), EngineError> {
        let docs = match self.phase {
            Phase::Replaying => self.processor.flush_final(),
            _ => self.processor.flush(),
        };
        self.write(docs)
    }

    fn write(&mut self, docs: Vec<WindowDoc>) -> Result<(), EngineError> {
        if docs.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let report = self.runtime.block_on(self.sink.write(&docs))?;
        self.board.metrics.flush_duration.observe(started.elapsed().as_secs_f64());
        self.documents_out += report.written as u64;
        self.sink_conflicts += report.conflicts as u64;
        self.sink_retries += report.retries as u64;
        self.board.metrics.documents_written.inc_by(report.written as u64);
        self.board.metrics.sink_conflicts.inc_by(report.conflicts as u64);
        for rejected in &report.rejected {
            // A document the index refuses (e.g. a mapping conflict) is kept as a dead letter
            // with the server's reason: never silently dropped.
            self.sink_rejected += 1;
            self.board.metrics.sink_rejected.inc();
            let body = docs.iter().find(|d| d.id == rejected.id).map_or("", |d| d.body.as_str());
            let detail = format!(
                "index {} refused document {}: {} ({})",
                self.config.index(),
                rejected.id,
                rejected.reason,
                rejected.reason_type
            );
            self.dead_letters.send_rejected(&rejected.id, body.as_bytes(), &detail)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), EngineError> {
        let started = Instant::now();
        self.flush()?;
        self.dead_letters.flush()?;
        let snapshot = self.processor.snapshot_bytes();
        let bytes = snapshot.len() as u64;
        let taken_at_ms = now_ms();
        self.store.save(&Checkpoint { seq: self.next_seq, taken_at_ms, snapshot })?;
        self.source.commit(self.processor.positions())?;
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
            m.partition_lag.with_label_values(&[&p.partition.to_string()]).set(p.lag);
        }
        m.lag.set(total_lag);
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
            sink,
            last_checkpoint: self.last_checkpoint.clone(),
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
