//! Bounded replay of NDJSON files as a retained log, on several threads.
//!
//! Each file is a partition and a line's 0-based number is its offset. A reader thread cuts the
//! files into chunks of whole lines; workers decode, evaluate and fold them into their own
//! partial window stores. Because every aggregate merges exactly (see [`crate::aggregate`]),
//! merging the partials gives the same states whatever the thread count or chunk interleaving.
//!
//! Memory stays bounded by finality: the coordinator tracks each partition's log-time progress
//! over its contiguously completed chunks, and asks workers to hand over windows that are final
//! at that watermark; once every worker has done so, the merged window is complete and becomes
//! an output document.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::key::KeyValue;
use crate::output::WindowDoc;
use crate::plan::JobPlan;
use crate::store::{Counters, DeadReason, Outcome, WindowEntry, WindowState};
use crate::time::EpochMillis;
use crate::value::Value;
use crate::window::LogProgress;

/// Tuning of a file replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Target chunk size in bytes (chunks end on a line boundary).
    pub chunk_bytes: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            threads: thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 1 << 20,
        }
    }
}

/// A record that went to the dead-letter output.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Partition (input file index).
    pub partition: u32,
    /// Offset (0-based line number).
    pub offset: i64,
    /// Why.
    pub reason: DeadReason,
    /// The original record.
    pub record: Vec<u8>,
}

impl DeadLetter {
    /// The dead letter as one JSON line: partition, offset, reason code, message and the
    /// original record (as a string; invalid UTF-8 is replaced).
    pub fn to_json_line(&self) -> String {
        serde_json::json!({
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason.code(),
            "message": self.reason.to_string(),
            "record": String::from_utf8_lossy(&self.record),
        })
        .to_string()
    }
}

/// Progress callback data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayProgress {
    /// Bytes of input processed.
    pub bytes_done: u64,
    /// Total input bytes.
    pub bytes_total: u64,
    /// Records processed.
    pub records: u64,
}

/// Result of a replay.
#[derive(Debug)]
pub struct ReplayReport {
    /// Every window's final value, sorted by window start, then key.
    pub documents: Vec<WindowDoc>,
    /// Counters.
    pub counters: Counters,
    /// Final log-time progress.
    pub progress: LogProgress,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A dead letter could not be written.
    #[error("cannot write dead letters: {0}")]
    DeadLetterSink(io::Error),
}

struct Chunk {
    partition: u32,
    seq: u64,
    first_offset: i64,
    data: Vec<u8>,
}

enum Task {
    Chunk(Chunk),
    Evict(EpochMillis),
    Drain,
}

enum Report {
    ChunkDone {
        partition: u32,
        seq: u64,
        max_log_time: Option<EpochMillis>,
        bytes: u64,
        records: u64,
        dead: Vec<DeadLetter>,
    },
    PartitionEnd {
        partition: u32,
        chunks: u64,
    },
    Evicted {
        worker: usize,
        through: EpochMillis,
        entries: Vec<WindowEntry>,
    },
    Drained {
        entries: Vec<WindowEntry>,
        counters: Counters,
    },
    ReadFailed(ReplayError),
}

/// Replays `inputs` (one file per partition) and returns every window's final value.
/// Dead letters are passed to `on_dead` as they occur; `on_progress` is called after each chunk.
pub fn replay_files(
    plan: Arc<JobPlan>,
    inputs: &[PathBuf],
    options: &ReplayOptions,
    mut on_dead: impl FnMut(&DeadLetter) -> io::Result<()>,
    mut on_progress: impl FnMut(ReplayProgress),
) -> Result<ReplayReport, ReplayError> {
    let threads = options.threads.max(1);
    let mut bytes_total = 0;
    for path in inputs {
        let meta = std::fs::metadata(path)
            .map_err(|source| ReplayError::Read { path: path.clone(), source })?;
        bytes_total += meta.len();
    }
    let (report_tx, report_rx) = unbounded::<Report>();
    // Chunk buffers go back to the reader once processed: no large allocation per chunk.
    let (free_tx, free_rx) = unbounded::<Vec<u8>>();
    let mut task_txs = Vec::new();
    let mut workers = Vec::new();
    for w in 0..threads {
        let (tx, rx) = bounded::<Task>(4);
        task_txs.push(tx);
        let plan = Arc::clone(&plan);
        let report = report_tx.clone();
        let free = free_tx.clone();
        workers.push(thread::spawn(move || worker(w, &plan, &rx, &report, &free)));
    }
    let reader = {
        let inputs = inputs.to_vec();
        let txs = task_txs.clone();
        let report = report_tx.clone();
        let chunk_bytes = options.chunk_bytes.max(1024);
        thread::spawn(move || {
            if let Err(e) = read_partitions(&inputs, chunk_bytes, &txs, &report, &free_rx) {
                let _ = report.send(Report::ReadFailed(e));
            }
        })
    };
    drop(report_tx);

    let mut progress = LogProgress::default();
    for p in 0..inputs.len() {
        progress.assign(p as u32);
    }
    let mut tracker = PartitionTracker::default();
    let mut merged = FinalMerger::new(threads);
    let mut stats = ReplayProgress { bytes_total, ..Default::default() };
    let mut failure = None;
    let mut ended = 0;
    let mut last_evict: Option<EpochMillis> = None;
    let mut chunks_since_evict = 0;
    // Phase 1: chunks until every partition ended.
    while ended < inputs.len() {
        let Ok(report) = report_rx.recv() else { break };
        match report {
            Report::ChunkDone { partition, seq, max_log_time, bytes, records, dead } => {
                for d in &dead {
                    if let Err(e) = on_dead(d) {
                        failure.get_or_insert(ReplayError::DeadLetterSink(e));
                    }
                }
                stats.bytes_done += bytes;
                stats.records += records;
                on_progress(stats);
                if tracker.done(partition, seq, max_log_time, &mut progress) {
                    ended += 1;
                }
                chunks_since_evict += 1;
            }
            Report::PartitionEnd { partition, chunks } => {
                if tracker.end(partition, chunks, &mut progress) {
                    ended += 1;
                }
            }
            Report::Evicted { worker, through, entries } => {
                merged.add(&plan, worker, through, entries);
            }
            Report::Drained { .. } => unreachable!("drain is sent after phase 1"),
            Report::ReadFailed(e) => {
                failure.get_or_insert(e);
                break;
            }
        }
        if chunks_since_evict >= 4 * threads {
            chunks_since_evict = 0;
            if let Some(wm) = progress.watermark() {
                if last_evict.is_none_or(|l| wm > l) {
                    last_evict = Some(wm);
                    for tx in &task_txs {
                        let _ = tx.send(Task::Evict(wm));
                    }
                }
            }
        }
    }
    // Phase 2: every worker hands over what it still holds.
    for tx in &task_txs {
        let _ = tx.send(Task::Drain);
    }
    drop(task_txs);
    let mut counters = Counters::default();
    let mut drained = 0;
    while drained < threads {
        let Ok(report) = report_rx.recv() else { break };
        match report {
            Report::Evicted { worker, through, entries } => {
                merged.add(&plan, worker, through, entries)
            }
            Report::Drained { entries, counters: c } => {
                counters.add(&c);
                merged.add_open(&plan, entries);
                drained += 1;
            }
            Report::ChunkDone { dead, .. } => {
                for d in &dead {
                    let _ = on_dead(d);
                }
            }
            Report::ReadFailed(e) => {
                failure.get_or_insert(e);
            }
            Report::PartitionEnd { .. } => {}
        }
    }
    let _ = reader.join();
    for w in workers {
        let _ = w.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let watermark = progress.watermark();
    let mut documents = merged.finish(&plan, watermark);
    documents.sort_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));
    Ok(ReplayReport { documents, counters, progress })
}

fn worker(
    index: usize,
    plan: &JobPlan,
    tasks: &Receiver<Task>,
    report: &Sender<Report>,
    free: &Sender<Vec<u8>>,
) {
    let mut store = crate::store::WindowStore::new();
    for task in tasks {
        match task {
            Task::Chunk(chunk) => {
                let done = process_chunk(plan, &mut store, &chunk);
                let _ = free.send(chunk.data);
                if report.send(done).is_err() {
                    return;
                }
            }
            Task::Evict(watermark) => {
                let entries = store.take_final(plan, watermark);
                let _ = report.send(Report::Evicted { worker: index, through: watermark, entries });
            }
            Task::Drain => {
                let entries = store.drain();
                let _ = report.send(Report::Drained { entries, counters: store.counters });
                return;
            }
        }
    }
}

fn process_chunk(plan: &JobPlan, store: &mut crate::store::WindowStore, chunk: &Chunk) -> Report {
    let mut slots: Vec<Value<'_>> = Vec::with_capacity(plan.slot_count());
    let mut max_log_time: Option<EpochMillis> = None;
    let mut dead = Vec::new();
    let mut records = 0;
    let data = &chunk.data[..];
    let mut start = 0;
    let mut offset = chunk.first_offset;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let mut line = &data[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            records += 1;
            let (outcome, log_time) = store.process(plan, line, None, &mut slots);
            if let Some(t) = log_time {
                max_log_time = Some(max_log_time.map_or(t, |m| m.max(t)));
            }
            if let Outcome::Dead(reason) = outcome {
                dead.push(DeadLetter {
                    partition: chunk.partition,
                    offset,
                    reason,
                    record: line.to_vec(),
                });
            }
        }
        offset += 1;
        start = end + 1;
    }
    Report::ChunkDone {
        partition: chunk.partition,
        seq: chunk.seq,
        max_log_time,
        bytes: chunk.data.len() as u64,
        records,
        dead,
    }
}

fn read_partitions(
    inputs: &[PathBuf],
    chunk_bytes: usize,
    txs: &[Sender<Task>],
    report: &Sender<Report>,
    free: &Receiver<Vec<u8>>,
) -> Result<(), ReplayError> {
    struct Open {
        partition: u32,
        path: PathBuf,
        file: File,
        carry: Vec<u8>,
        seq: u64,
        next_offset: i64,
    }
    let mut open = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        let file =
            File::open(path).map_err(|source| ReplayError::Read { path: path.clone(), source })?;
        open.push(Open {
            partition: i as u32,
            path: path.clone(),
            file,
            carry: Vec::new(),
            seq: 0,
            next_offset: 0,
        });
    }
    let mut next_worker = 0;
    // Round-robin over partitions, one chunk each, like a consumer fetching from every partition.
    while !open.is_empty() {
        let mut i = 0;
        while i < open.len() {
            let o = &mut open[i];
            let mut data = free.try_recv().unwrap_or_default();
            data.clear();
            data.extend_from_slice(&o.carry);
            o.carry.clear();
            let filled = data.len();
            // `take` + `read_to_end` reads into spare capacity: no zero-filling of the buffer.
            let n = filled
                + (&mut o.file)
                    .take(chunk_bytes as u64)
                    .read_to_end(&mut data)
                    .map_err(|source| ReplayError::Read { path: o.path.clone(), source })?;
            let eof = n < filled + chunk_bytes;
            if !eof {
                // Keep the partial last line for the next chunk.
                match memchr::memrchr(b'\n', &data) {
                    Some(last) => {
                        o.carry.extend_from_slice(&data[last + 1..]);
                        data.truncate(last + 1);
                    }
                    None => {
                        // A line longer than the chunk: keep reading it.
                        o.carry = data;
                        continue;
                    }
                }
            }
            if !data.is_empty() {
                let lines = memchr::memchr_iter(b'\n', &data).count() as i64
                    + i64::from(*data.last().expect("non-empty") != b'\n');
                let chunk =
                    Chunk { partition: o.partition, seq: o.seq, first_offset: o.next_offset, data };
                o.seq += 1;
                o.next_offset += lines;
                if txs[next_worker % txs.len()].send(Task::Chunk(chunk)).is_err() {
                    return Ok(());
                }
                next_worker += 1;
            }
            if eof {
                let _ = report.send(Report::PartitionEnd { partition: o.partition, chunks: o.seq });
                open.remove(i);
            } else {
                i += 1;
            }
        }
    }
    Ok(())
}

/// Per-partition completion of chunks, turned into log-time progress over the contiguously
/// completed prefix (a later chunk's records cannot raise progress past an earlier unfinished
/// one's).
#[derive(Default)]
struct PartitionTracker {
    next_seq: HashMap<u32, u64>,
    pending: HashMap<u32, BTreeMap<u64, Option<EpochMillis>>>,
    total: HashMap<u32, u64>,
}

impl PartitionTracker {
    /// Returns true when the partition has just ended (all chunks done and end seen).
    fn done(
        &mut self,
        partition: u32,
        seq: u64,
        max_log_time: Option<EpochMillis>,
        progress: &mut LogProgress,
    ) -> bool {
        self.pending.entry(partition).or_default().insert(seq, max_log_time);
        self.advance(partition, progress)
    }

    fn end(&mut self, partition: u32, chunks: u64, progress: &mut LogProgress) -> bool {
        self.total.insert(partition, chunks);
        self.advance(partition, progress)
    }

    fn advance(&mut self, partition: u32, progress: &mut LogProgress) -> bool {
        let next = self.next_seq.entry(partition).or_insert(0);
        let pending = self.pending.entry(partition).or_default();
        while let Some(t) = pending.remove(next) {
            if let Some(t) = t {
                progress.observe(partition, t);
            }
            *next += 1;
        }
        if self.total.get(&partition) == Some(next) {
            self.total.remove(&partition);
            progress.mark_ended(partition);
            return true;
        }
        false
    }
}

/// Merges windows handed over by workers; a final window becomes a document once every worker
/// has evicted through its finality point.
struct FinalMerger {
    evicted_through: Vec<Option<EpochMillis>>,
    pending: BTreeMap<(EpochMillis, Box<[KeyValue]>), WindowState>,
    documents: Vec<WindowDoc>,
}

impl FinalMerger {
    fn new(workers: usize) -> Self {
        Self {
            evicted_through: vec![None; workers],
            pending: BTreeMap::new(),
            documents: Vec::new(),
        }
    }

    fn merge(&mut self, entries: Vec<WindowEntry>) {
        for e in entries {
            match self.pending.get_mut(&(e.start, e.key.clone())) {
                Some(s) => s.merge(&e.state),
                None => {
                    self.pending.insert((e.start, e.key), e.state);
                }
            }
        }
    }

    fn add(
        &mut self,
        plan: &JobPlan,
        worker: usize,
        through: EpochMillis,
        entries: Vec<WindowEntry>,
    ) {
        self.merge(entries);
        self.evicted_through[worker] = Some(through);
        let Some(all) = self.evicted_through.iter().copied().collect::<Option<Vec<_>>>() else {
            return;
        };
        let through = all.into_iter().min().expect("at least one worker");
        while let Some(((start, _), _)) = self.pending.first_key_value() {
            if !plan.window.is_final(*start, plan.max_lateness_ms, through) {
                break;
            }
            let ((start, key), state) = self.pending.pop_first().expect("non-empty");
            let entry = WindowEntry { start, key, state };
            self.documents.push(WindowDoc::build(plan, &entry, true));
        }
    }

    fn add_open(&mut self, _plan: &JobPlan, entries: Vec<WindowEntry>) {
        self.merge(entries);
    }

    fn finish(mut self, plan: &JobPlan, watermark: Option<EpochMillis>) -> Vec<WindowDoc> {
        for ((start, key), state) in std::mem::take(&mut self.pending) {
            let fin =
                watermark.is_some_and(|w| plan.window.is_final(start, plan.max_lateness_ms, w));
            let entry = WindowEntry { start, key, state };
            self.documents.push(WindowDoc::build(plan, &entry, fin));
        }
        self.documents
    }
}
