//! Bounded replay of NDJSON files as a retained log, on several threads.
//!
//! Each file is a partition and a line's 0-based number is its offset. The files are cut into
//! stripes of about [`ReplayOptions::stripe_bytes`]; workers claim stripes in order (round-robin
//! over the files, like a consumer fetching from every partition) and read them themselves with
//! positioned reads, a chunk at a time: no reader thread, no copy between threads. A line belongs
//! to the stripe that holds its first byte, so every line is read exactly once whatever the
//! stripe size. Each worker folds what it reads into its own partial window store. Because every
//! aggregate merges exactly (see [`crate::aggregate`]), merging the partials gives the same
//! states whatever the thread count, stripe size or interleaving.
//!
//! Stripes rather than alternating small chunks: a window's records then mostly land in one
//! worker, so the partial states are not duplicated in every worker (memory) and the final merge
//! has little to do. Offsets are only needed for dead letters; a worker reports them relative to
//! its chunk and the coordinator numbers them once every earlier chunk of the partition is done.
//!
//! Memory stays bounded by finality: the coordinator tracks each partition's log-time progress
//! over its contiguously completed chunks, and asks workers to hand over windows that are final
//! at that watermark; once every worker has done so, the merged window is complete and becomes
//! an output document, handed to the caller right away ([`stream_files`]) rather than kept. At
//! the end, the windows still open are merged in parallel: each worker sends every other worker
//! the windows of its shard (by window start) and builds the documents of its own shard in
//! order, a batch at a time through a bounded channel, while the coordinator merges the shards'
//! streams into one sorted output. So neither the final documents of a long replay nor the
//! documents of every open window at its end are ever all in memory at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::key::{key_heap_bytes, KeyValue};
use crate::output::WindowDoc;
use crate::plan::JobPlan;
use crate::store::{
    Counters, DeadReason, Outcome, StoreMemory, WindowEntry, WindowState, WindowStore,
};
use crate::time::EpochMillis;
use crate::value::Value;
use crate::window::LogProgress;

/// Tuning of a file replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Bytes read at a time (a chunk ends on a line boundary; a longer line grows it).
    pub chunk_bytes: usize,
    /// Bytes of a file a worker claims at a time. Smaller stripes balance the threads better at
    /// the end of the input; larger ones keep each window's records in fewer workers. Log-time
    /// progress, and so eviction of final windows, trails the reading by about one stripe per
    /// thread.
    pub stripe_bytes: usize,
    /// Log time after a window's end at which a worker hands its partial state to the
    /// coordinator, which merges the partials of every worker into one state per window. A
    /// window's records arrive mostly within this time of its end (minutes in the reference
    /// workload); the few later ones open a small partial again, handed over in turn. Without
    /// it each worker would hold its own partial of every window of the lateness horizon, most
    /// of them built from a handful of late records: on a workload with days of lateness and
    /// many small windows that doubled the memory of the open windows.
    pub settle_after_ms: i64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            threads: thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 1 << 20,
            stripe_bytes: 16 << 20,
            settle_after_ms: 3_600_000,
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

/// Result of a replay that kept its documents ([`replay_files`]).
#[derive(Debug)]
pub struct ReplayReport {
    /// Every window's final value, sorted by window start, then key.
    pub documents: Vec<WindowDoc>,
    /// Counters.
    pub counters: Counters,
    /// Final log-time progress.
    pub progress: LogProgress,
    /// The open windows' memory at its highest (see [`ReplayOutcome::peak_memory`]).
    pub peak_memory: StoreMemory,
}

/// Result of a replay that streamed its documents ([`stream_files`]).
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Documents handed to the caller.
    pub documents: u64,
    /// Counters.
    pub counters: Counters,
    /// Final log-time progress.
    pub progress: LogProgress,
    /// The open windows' memory at its highest, every worker's partial states counted: sampled
    /// at evictions (at most every [`MEMORY_SAMPLE_EVERY`]) and at the end, when the most
    /// windows are open.
    pub peak_memory: StoreMemory,
}

/// How often a worker measures its store while reading (a walk over every open window).
pub const MEMORY_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Documents a worker builds and sends at a time at the end of a replay.
const DOCUMENT_BATCH: usize = 512;

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
    /// A worker thread panicked (a bug: please report it with the input).
    #[error("a replay worker panicked")]
    Worker,
    /// A document could not be written.
    #[error("cannot write documents: {0}")]
    Output(io::Error),
}

/// The lines of one input whose first byte lies in `range`: the unit of work a worker claims.
#[derive(Debug, Clone, PartialEq)]
struct Stripe {
    partition: u32,
    /// Place of the stripe in its partition.
    index: u64,
    range: Range<u64>,
}

/// Cuts inputs of the given lengths into stripes of `stripe_bytes`, in the order workers claim
/// them: round-robin over the partitions.
fn plan_stripes(lens: &[u64], stripe_bytes: u64) -> Vec<Stripe> {
    let counts: Vec<u64> = lens.iter().map(|len| len.div_ceil(stripe_bytes)).collect();
    let rounds = counts.iter().copied().max().unwrap_or(0);
    let mut stripes = Vec::new();
    for index in 0..rounds {
        for (p, (&len, &count)) in lens.iter().zip(&counts).enumerate() {
            if index < count {
                let start = index * stripe_bytes;
                let range = start..(start + stripe_bytes).min(len);
                stripes.push(Stripe { partition: p as u32, index, range });
            }
        }
    }
    stripes
}

/// One positioned read (no shared file position, so workers read the same file at once).
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        #[cfg(unix)]
        let read = std::os::unix::fs::FileExt::read_at(file, buf, offset);
        #[cfg(windows)]
        let read = std::os::windows::fs::FileExt::seek_read(file, buf, offset);
        match read {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads the lines of `range` (those whose first byte lies in it) a chunk of whole lines at a
/// time, passing each chunk and whether it is the stripe's last to `chunk`. A stripe whose bytes
/// all belong to a line started before it yields one empty last chunk.
///
/// `buf` holds the bytes read; it is only grown (for a line longer than it), never zero-filled
/// again, so the reads go straight into reused memory.
fn read_stripe(
    file: &File,
    range: Range<u64>,
    buf: &mut Vec<u8>,
    mut chunk: impl FnMut(&[u8], bool),
) -> io::Result<()> {
    let end = range.end;
    // The first line starting in the stripe: after the newline that ends the line holding the
    // byte before the stripe. What was read after that newline is kept, not read again.
    let mut pos = range.start;
    // `buf[..filled]` holds the file from `pos` on.
    let mut filled = 0;
    if pos > 0 {
        pos -= 1;
        loop {
            let n = read_at(file, buf, pos)?;
            if n == 0 {
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                pos += i as u64 + 1;
                buf.copy_within(i + 1..n, 0);
                filled = n - (i + 1);
                break;
            }
            pos += n as u64;
        }
    }
    if pos >= end {
        chunk(&[], true);
        return Ok(());
    }
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = read_at(file, &mut buf[filled..], pos + filled as u64)?;
        filled += n;
        let data = &buf[..filled];
        let eof = n == 0;
        if pos + filled as u64 >= end {
            // The stripe's last line is the one holding its last byte.
            let last_byte = (end - 1 - pos) as usize;
            match memchr::memchr(b'\n', &data[last_byte..]) {
                Some(i) => {
                    chunk(&data[..=last_byte + i], true);
                    return Ok(());
                }
                None if eof => {
                    chunk(data, true);
                    return Ok(());
                }
                None => {}
            }
        } else if eof {
            // The file shrank under us: what there is ends the stripe.
            chunk(data, true);
            return Ok(());
        } else if let Some(i) = memchr::memrchr(b'\n', data) {
            chunk(&data[..=i], false);
            buf.copy_within(i + 1..filled, 0);
            pos += i as u64 + 1;
            filled -= i + 1;
        }
    }
}

/// What a worker read and folded from one chunk.
struct ChunkDone {
    partition: u32,
    /// (stripe index, chunk index within the stripe): the chunk's place in its partition.
    place: (u64, u64),
    /// The stripe's last chunk.
    last: bool,
    /// Lines in the chunk, blank ones included (they have offsets too).
    lines: i64,
    max_log_time: Option<EpochMillis>,
    bytes: u64,
    records: u64,
    /// Dead letters, their offsets relative to the chunk's first line.
    dead: Vec<DeadLetter>,
}

enum Command {
    /// Hand over the windows final at `watermark` and those that ended at or before `ended`.
    Evict { watermark: EpochMillis, ended: EpochMillis },
    /// Every chunk is done: merge the open windows by shard and send their documents, in
    /// order, in batches on `documents`.
    Drain { watermark: Option<EpochMillis>, documents: Sender<Vec<WindowDoc>> },
}

enum Report {
    Chunk(ChunkDone),
    Evicted {
        worker: usize,
        through: EpochMillis,
        entries: Vec<WindowEntry>,
        memory: Option<StoreMemory>,
    },
    /// The worker has handed over every window it will evict and starts on its shard.
    Draining {
        worker: usize,
        counters: Counters,
        memory: StoreMemory,
    },
    Failed(ReplayError),
}

/// Reports a worker's panic, so the coordinator stops waiting for its chunks.
struct PanicReport(Sender<Report>);

impl Drop for PanicReport {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.send(Report::Failed(ReplayError::Worker));
        }
    }
}

/// An opened input.
struct Input {
    path: PathBuf,
    file: File,
    len: u64,
}

fn open_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, ReplayError> {
    paths
        .iter()
        .map(|path| {
            let read_error = |source| ReplayError::Read { path: path.clone(), source };
            let file = File::open(path).map_err(read_error)?;
            let len = file.metadata().map_err(read_error)?.len();
            Ok(Input { path: path.clone(), file, len })
        })
        .collect()
}

/// Replays `inputs` (one file per partition) and returns every window's final value, sorted by
/// window start and key; [`stream_files`] without the memory bound on the documents.
pub fn replay_files(
    plan: Arc<JobPlan>,
    inputs: &[PathBuf],
    options: &ReplayOptions,
    on_dead: impl FnMut(&DeadLetter) -> io::Result<()>,
    on_progress: impl FnMut(ReplayProgress),
) -> Result<ReplayReport, ReplayError> {
    let mut documents = Vec::new();
    let outcome = stream_files(plan, inputs, options, on_dead, on_progress, |doc| {
        documents.push(doc);
        Ok(())
    })?;
    let ReplayOutcome { counters, progress, peak_memory, .. } = outcome;
    Ok(ReplayReport { documents, counters, progress, peak_memory })
}

/// Replays `inputs` (one file per partition) and hands every window's final value to
/// `on_document`, in order of window start, then key, as soon as it is known: a final window
/// during the replay, the rest at the end. Dead letters are passed to `on_dead` in offset order
/// within each partition; `on_progress` is called after each chunk.
pub fn stream_files(
    plan: Arc<JobPlan>,
    inputs: &[PathBuf],
    options: &ReplayOptions,
    mut on_dead: impl FnMut(&DeadLetter) -> io::Result<()>,
    mut on_progress: impl FnMut(ReplayProgress),
    on_document: impl FnMut(WindowDoc) -> io::Result<()>,
) -> Result<ReplayOutcome, ReplayError> {
    let threads = options.threads.max(1);
    let inputs = open_inputs(inputs)?;
    let lens: Vec<u64> = inputs.iter().map(|i| i.len).collect();
    let stripes = plan_stripes(&lens, options.stripe_bytes.max(1) as u64);
    let next_stripe = AtomicUsize::new(0);
    let chunk_bytes = options.chunk_bytes.max(1);
    let mut logs: Vec<PartitionLog> = (0..inputs.len() as u32)
        .map(|p| PartitionLog::new(stripes.iter().filter(|s| s.partition == p).count() as u64))
        .collect();
    let mut progress = LogProgress::default();
    let mut ended = 0;
    for (p, log) in logs.iter().enumerate() {
        progress.assign(p as u32);
        if log.is_complete() {
            progress.mark_ended(p as u32);
            ended += 1;
        }
    }
    let mut stats = ReplayProgress { bytes_total: lens.iter().sum(), ..Default::default() };
    let mut output = Output::new(on_document);
    let mut merged = FinalMerger::new(threads);
    let mut memory = MemoryPeak::new(threads);
    let mut failure = None;
    let mut counters = Counters::default();

    thread::scope(|scope| {
        let (report_tx, report_rx) = unbounded::<Report>();
        let (shard_txs, shard_rxs): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| unbounded::<Vec<WindowEntry>>()).unzip();
        let mut command_txs = Vec::new();
        for (index, inbox) in shard_rxs.into_iter().enumerate() {
            let (command_tx, commands) = unbounded::<Command>();
            command_txs.push(command_tx);
            let worker = Worker {
                index,
                plan: &plan,
                inputs: &inputs,
                stripes: &stripes,
                next_stripe: &next_stripe,
                report: report_tx.clone(),
                commands,
                shards: shard_txs.clone(),
                inbox,
            };
            scope.spawn(move || worker.run(chunk_bytes));
        }
        // Besides the workers, only the coordinator holds shard senders, until it has sent the
        // merged windows at the end (or given up): a worker that ends drops its own, so none
        // waits forever for a shard that will not come.
        drop(report_tx);

        let mut last_evict: Option<EpochMillis> = None;
        let mut chunks_since_evict = 0;
        // Phase 1: chunks until every partition is complete.
        while ended < logs.len() {
            let Ok(report) = report_rx.recv() else { break };
            match report {
                Report::Chunk(chunk) => {
                    stats.bytes_done += chunk.bytes;
                    stats.records += chunk.records;
                    on_progress(stats);
                    let p = chunk.partition;
                    let complete = logs[p as usize].accept(chunk, |c| {
                        if let Some(t) = c.max_log_time {
                            progress.observe(p, t);
                        }
                        for d in &c.dead {
                            if let Err(e) = on_dead(d) {
                                failure.get_or_insert(ReplayError::DeadLetterSink(e));
                            }
                        }
                    });
                    if complete {
                        progress.mark_ended(p);
                        ended += 1;
                    }
                    chunks_since_evict += 1;
                }
                Report::Evicted { worker, through, entries, memory: sample } => {
                    merged.add(&plan, worker, through, entries, &mut output);
                    memory.observe(worker, sample, merged.memory);
                }
                Report::Draining { .. } => unreachable!("drain is sent after phase 1"),
                Report::Failed(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if chunks_since_evict >= 4 * threads {
                chunks_since_evict = 0;
                if let Some(wm) = progress.watermark() {
                    if last_evict.is_none_or(|l| wm > l) {
                        last_evict = Some(wm);
                        let ended = wm.saturating_sub(options.settle_after_ms.max(0));
                        for tx in &command_txs {
                            let _ = tx.send(Command::Evict { watermark: wm, ended });
                        }
                    }
                }
            }
        }
        if matches!(failure, Some(ReplayError::Read { .. } | ReplayError::Worker)) {
            // Dropping the command senders ends the workers.
            return;
        }
        // Phase 2: the workers merge what they still hold, one shard each.
        let watermark = progress.watermark();
        let mut streams = Vec::new();
        for tx in &command_txs {
            let (documents, stream) = crossbeam_channel::bounded(2);
            streams.push(stream);
            let _ = tx.send(Command::Drain { watermark, documents });
        }
        drop(command_txs);
        let mut draining = 0;
        while draining < threads {
            let Ok(report) = report_rx.recv() else { break };
            match report {
                Report::Evicted { worker, through, entries, memory: sample } => {
                    merged.add(&plan, worker, through, entries, &mut output);
                    memory.observe(worker, sample, merged.memory);
                }
                Report::Draining { worker, counters: c, memory: sample } => {
                    memory.observe(worker, Some(sample), merged.memory);
                    counters.add(&c);
                    draining += 1;
                }
                Report::Chunk(_) => unreachable!("every chunk was reported in phase 1"),
                Report::Failed(e) => {
                    failure.get_or_insert(e);
                    break;
                }
            }
        }
        if failure.is_some() {
            return;
        }
        // Every worker evicted through the same watermarks, so every window final at them is
        // out; the merger still holds the windows handed over before they were final, which
        // go to their shards like every worker's open windows.
        let mut sizes = vec![0; threads];
        merged.pending.keys().for_each(|(start, _)| sizes[shard_of(*start, threads)] += 1);
        let mut buckets: Vec<Vec<WindowEntry>> =
            sizes.into_iter().map(Vec::with_capacity).collect();
        for entry in merged.take_pending() {
            buckets[shard_of(entry.start, threads)].push(entry);
        }
        for (tx, bucket) in shard_txs.iter().zip(buckets) {
            let _ = tx.send(bucket);
        }
        drop(shard_txs);
        let mut streams: Vec<DocStream> = streams
            .into_iter()
            .map(|rx| DocStream { buffer: Vec::new().into_iter(), batches: Some(rx) })
            .collect();
        while let Some(doc) = next_in_order(&mut streams) {
            output.write(doc);
        }
        // A worker that failed while merging its shard ends its stream early.
        if let Ok(Report::Failed(e)) = report_rx.try_recv() {
            failure.get_or_insert(e);
        }
    });
    if let Some(e) = failure.or(output.failure.take()) {
        return Err(e);
    }
    let peak_memory = memory.peak;
    Ok(ReplayOutcome { documents: output.written, counters, progress, peak_memory })
}

/// Where documents go, in order; remembers the first write error (later documents are dropped).
struct Output<F> {
    write: F,
    written: u64,
    failure: Option<ReplayError>,
    last: Option<(EpochMillis, Box<[KeyValue]>)>,
}

impl<F: FnMut(WindowDoc) -> io::Result<()>> Output<F> {
    fn new(write: F) -> Self {
        Self { write, written: 0, failure: None, last: None }
    }

    fn write(&mut self, doc: WindowDoc) {
        if self.failure.is_some() {
            return;
        }
        if cfg!(debug_assertions) {
            let at = (doc.start, doc.key.clone());
            assert!(self.last.as_ref().is_none_or(|l| *l < at), "documents out of order");
            self.last = Some(at);
        }
        match (self.write)(doc) {
            Ok(()) => self.written += 1,
            Err(e) => self.failure = Some(ReplayError::Output(e)),
        }
    }
}

/// One sorted source of documents at the end of a replay: the merger's remainder, or a
/// worker's shard arriving in batches.
struct DocStream {
    buffer: std::vec::IntoIter<WindowDoc>,
    batches: Option<Receiver<Vec<WindowDoc>>>,
}

impl DocStream {
    /// Awaits the next batch when the buffer is empty and more may come.
    fn peek(&mut self) {
        while self.buffer.as_slice().is_empty() {
            let Some(batches) = &self.batches else { return };
            match batches.recv() {
                Ok(batch) => self.buffer = batch.into_iter(),
                Err(_) => self.batches = None,
            }
        }
    }
}

/// Takes the smallest next document (by window start, then key) of `streams`. A stream's next
/// batch is awaited only once its buffer is empty, so at most a batch or two per worker is
/// held.
fn next_in_order(streams: &mut [DocStream]) -> Option<WindowDoc> {
    for s in streams.iter_mut() {
        s.peek();
    }
    let best = streams
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.buffer.as_slice().first().map(|d| (i, d)))
        .min_by(|(_, a), (_, b)| (a.start, &a.key).cmp(&(b.start, &b.key)))?
        .0;
    streams[best].buffer.next()
}

/// The highest total of every worker's latest memory sample and the merger's windows.
struct MemoryPeak {
    latest: Vec<StoreMemory>,
    peak: StoreMemory,
}

impl MemoryPeak {
    fn new(workers: usize) -> Self {
        Self { latest: vec![StoreMemory::default(); workers], peak: StoreMemory::default() }
    }

    fn observe(&mut self, worker: usize, sample: Option<StoreMemory>, merger: StoreMemory) {
        let Some(sample) = sample else { return };
        self.latest[worker] = sample;
        let mut total = merger;
        self.latest.iter().for_each(|m| total.add(m));
        if total.bytes() > self.peak.bytes() {
            self.peak = total;
        }
    }
}

/// One replay thread: reads and folds the stripes it claims, hands over final windows when
/// asked, and at the end merges one shard of the open windows.
struct Worker<'a> {
    index: usize,
    plan: &'a JobPlan,
    inputs: &'a [Input],
    stripes: &'a [Stripe],
    next_stripe: &'a AtomicUsize,
    report: Sender<Report>,
    commands: Receiver<Command>,
    /// One sender per worker's shard inbox (this worker's own included).
    shards: Vec<Sender<Vec<WindowEntry>>>,
    inbox: Receiver<Vec<WindowEntry>>,
}

impl Worker<'_> {
    fn run(self, chunk_bytes: usize) {
        let _panic = PanicReport(self.report.clone());
        let mut store = WindowStore::new();
        let mut buf = vec![0; chunk_bytes];
        let mut drain = None;
        let mut sampled = Instant::now();
        while let Some(stripe) = self.stripes.get(self.next_stripe.fetch_add(1, Ordering::Relaxed))
        {
            let input = &self.inputs[stripe.partition as usize];
            let mut chunk_index = 0;
            let read = read_stripe(&input.file, stripe.range.clone(), &mut buf, |data, last| {
                let mut done = process_chunk(self.plan, &mut store, stripe.partition, data);
                done.place = (stripe.index, chunk_index);
                done.last = last;
                chunk_index += 1;
                let _ = self.report.send(Report::Chunk(done));
                while let Ok(command) = self.commands.try_recv() {
                    match command {
                        Command::Evict { watermark, ended } => {
                            self.evict(&mut store, watermark, ended, &mut sampled);
                        }
                        Command::Drain { watermark, documents } => {
                            drain = Some((watermark, documents))
                        }
                    }
                }
            });
            if let Err(source) = read {
                let path = input.path.clone();
                let _ = self.report.send(Report::Failed(ReplayError::Read { path, source }));
                return;
            }
        }
        while drain.is_none() {
            match self.commands.recv() {
                Ok(Command::Evict { watermark, ended }) => {
                    self.evict(&mut store, watermark, ended, &mut sampled);
                }
                Ok(Command::Drain { watermark, documents }) => {
                    drain = Some((watermark, documents));
                }
                Err(_) => return,
            }
        }
        let (watermark, documents) = drain.expect("set above");
        let _ = self.report.send(Report::Draining {
            worker: self.index,
            counters: store.counters,
            memory: store.memory(),
        });
        self.merge_shard(store, watermark, &documents);
    }

    /// Hands over the windows final at `watermark` and those that ended at or before `ended`,
    /// with a measure of the store before that (its high point) if the last one is older than
    /// [`MEMORY_SAMPLE_EVERY`].
    fn evict(
        &self,
        store: &mut WindowStore,
        watermark: EpochMillis,
        ended: EpochMillis,
        sampled: &mut Instant,
    ) {
        let memory = (sampled.elapsed() >= MEMORY_SAMPLE_EVERY).then(|| {
            *sampled = Instant::now();
            store.memory()
        });
        let mut entries = store.take_final(self.plan, watermark);
        entries.extend(store.take_ended(self.plan, ended));
        let worker = self.index;
        let _ = self.report.send(Report::Evicted { worker, through: watermark, entries, memory });
    }

    /// Sends every worker its shard of this worker's open windows, then merges this worker's
    /// shard from all of them and builds its documents.
    fn merge_shard(
        self,
        mut store: WindowStore,
        watermark: Option<EpochMillis>,
        documents: &Sender<Vec<WindowDoc>>,
    ) {
        let shards = self.shards.len();
        let mut buckets: Vec<Vec<WindowEntry>> = (0..shards).map(|_| Vec::new()).collect();
        for entry in store.drain() {
            buckets[shard_of(entry.start, shards)].push(entry);
        }
        for (tx, bucket) in self.shards.iter().zip(buckets) {
            let _ = tx.send(bucket);
        }
        drop(self.shards);
        // One bucket from every worker and one from the coordinator's merger, which holds most
        // windows: the others are appended to the largest, so no second copy of it is made.
        let mut received = Vec::with_capacity(shards + 1);
        for _ in 0..shards + 1 {
            match self.inbox.recv() {
                Ok(bucket) => received.push(bucket),
                Err(_) => return,
            }
        }
        received.sort_by_key(|b| std::cmp::Reverse(b.len()));
        let mut received = received.into_iter();
        let mut entries = received.next().unwrap_or_default();
        for bucket in received {
            entries.extend(bucket);
        }
        merge_entries(self.plan, entries, watermark, |batch| documents.send(batch).is_ok());
    }
}

/// The shard of a window start (a multiplicative hash: window starts are multiples of the slide).
fn shard_of(start: EpochMillis, shards: usize) -> usize {
    ((start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % shards
}

/// The document of a merged window, final if final at `watermark`.
fn document_at(plan: &JobPlan, entry: &WindowEntry, watermark: Option<EpochMillis>) -> WindowDoc {
    let is_final =
        watermark.is_some_and(|w| plan.window.is_final(entry.start, plan.max_lateness_ms, w));
    WindowDoc::build(plan, entry, is_final)
}

/// Merges the partial states of each window and key and builds one document for each, in order
/// of window start and key, final if final at `watermark`; passes them on in batches of
/// [`DOCUMENT_BATCH`] until `send` returns false. Each window's states are freed as soon as its
/// document is built.
fn merge_entries(
    plan: &JobPlan,
    mut entries: Vec<WindowEntry>,
    watermark: Option<EpochMillis>,
    mut send: impl FnMut(Vec<WindowDoc>) -> bool,
) {
    // Unstable: partials of one window merge exactly in any order, and it needs no buffer.
    entries.sort_unstable_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));
    let mut batch = Vec::with_capacity(DOCUMENT_BATCH);
    let mut entries = entries.into_iter();
    let Some(mut current) = entries.next() else { return };
    for e in entries {
        if e.start == current.start && e.key == current.key {
            current.state.merge(&e.state);
            continue;
        }
        batch.push(document_at(plan, &std::mem::replace(&mut current, e), watermark));
        if batch.len() == DOCUMENT_BATCH
            && !send(std::mem::replace(&mut batch, Vec::with_capacity(DOCUMENT_BATCH)))
        {
            return;
        }
    }
    batch.push(document_at(plan, &current, watermark));
    send(batch);
}

fn process_chunk(
    plan: &JobPlan,
    store: &mut WindowStore,
    partition: u32,
    data: &[u8],
) -> ChunkDone {
    let mut slots: Vec<Value<'_>> = Vec::with_capacity(plan.slot_count());
    let mut max_log_time: Option<EpochMillis> = None;
    let mut dead = Vec::new();
    let mut records = 0;
    let mut start = 0;
    let mut offset = 0;
    // UTF-8 is checked for the whole chunk at once, with SIMD (simdutf8; std's word-at-a-time
    // check was 2% of the instructions, `utf8_chunks` without an ASCII path 8%). Lines inside
    // the valid prefix are decoded as text; a line at or after the first invalid byte goes
    // through the byte path, which validates it alone and names the error.
    let valid = match simdutf8::compat::from_utf8(data) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid up to here"),
    };
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let mut line = &data[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            records += 1;
            let line_end = start + line.len();
            let (outcome, log_time) = match valid.get(start..line_end) {
                Some(text) => store.process_text(plan, text, None, &mut slots),
                None => store.process(plan, line, None, &mut slots),
            };
            if let Some(t) = log_time {
                max_log_time = Some(max_log_time.map_or(t, |m| m.max(t)));
            }
            if let Outcome::Dead(reason) = outcome {
                dead.push(DeadLetter { partition, offset, reason, record: line.to_vec() });
            }
        }
        offset += 1;
        start = end + 1;
    }
    ChunkDone {
        partition,
        place: (0, 0),
        last: false,
        lines: offset,
        max_log_time,
        bytes: data.len() as u64,
        records,
        dead,
    }
}

/// The chunks of one partition, put back in order: log-time progress over the contiguously
/// completed prefix (a later chunk's records cannot raise progress past an earlier unfinished
/// one's), and absolute offsets for dead letters.
struct PartitionLog {
    stripes: u64,
    next: (u64, u64),
    next_offset: i64,
    pending: BTreeMap<(u64, u64), ChunkDone>,
}

impl PartitionLog {
    fn new(stripes: u64) -> Self {
        Self { stripes, next: (0, 0), next_offset: 0, pending: BTreeMap::new() }
    }

    /// Whether every chunk of every stripe is in.
    fn is_complete(&self) -> bool {
        self.next.0 == self.stripes
    }

    /// Takes a chunk and passes `in_order` each chunk that has become contiguous, its dead
    /// letters' offsets made absolute. Returns true when this chunk completed the partition.
    fn accept(&mut self, chunk: ChunkDone, mut in_order: impl FnMut(&ChunkDone)) -> bool {
        self.pending.insert(chunk.place, chunk);
        let mut advanced = false;
        while let Some(mut c) = self.pending.remove(&self.next) {
            for d in &mut c.dead {
                d.offset += self.next_offset;
            }
            self.next_offset += c.lines;
            self.next = if c.last { (self.next.0 + 1, 0) } else { (self.next.0, self.next.1 + 1) };
            in_order(&c);
            advanced = true;
        }
        advanced && self.is_complete()
    }
}
/// A pending window: its start and key.
type PendingKey = (EpochMillis, Box<[KeyValue]>);

/// Merges windows handed over by workers; a final window becomes a document once every worker
/// has evicted through its finality point.
struct FinalMerger {
    evicted_through: Vec<Option<EpochMillis>>,
    /// Each window's merged state with its [`WindowState::memory_bytes`] as last counted: a
    /// merge then measures the state once, not before and after (that walk over every
    /// aggregate was 18% of the coordinator's time on the many-small-windows workload).
    pending: BTreeMap<PendingKey, (WindowState, usize)>,
    /// What `pending` holds, kept up to date as it changes.
    memory: StoreMemory,
}

/// Bytes a pending window costs besides its state: its B-tree slot (nodes are about 2/3 full)
/// and its key on the heap.
fn pending_overhead(key: &[KeyValue]) -> usize {
    std::mem::size_of::<(PendingKey, (WindowState, usize))>() * 3 / 2 + key_heap_bytes(key)
}

impl FinalMerger {
    fn new(workers: usize) -> Self {
        Self {
            evicted_through: vec![None; workers],
            pending: BTreeMap::new(),
            memory: StoreMemory::default(),
        }
    }

    /// Merges handed-over windows into the pending ones.
    fn merge(&mut self, entries: Vec<WindowEntry>) {
        use std::collections::btree_map::Entry;
        for e in entries {
            match self.pending.entry((e.start, e.key)) {
                Entry::Occupied(mut pending) => {
                    let (state, bytes) = pending.get_mut();
                    state.merge(&e.state);
                    let now = state.memory_bytes();
                    self.memory.state_bytes = self.memory.state_bytes - *bytes + now;
                    *bytes = now;
                }
                Entry::Vacant(pending) => {
                    let bytes = e.state.memory_bytes();
                    self.memory.open_windows += 1;
                    self.memory.state_bytes += bytes;
                    self.memory.index_bytes += pending_overhead(&pending.key().1);
                    pending.insert((e.state, bytes));
                }
            }
        }
    }

    /// Takes a pending window of `bytes` out of the memory count.
    fn forget(&mut self, key: &[KeyValue], bytes: usize) {
        self.memory.open_windows -= 1;
        self.memory.state_bytes -= bytes;
        self.memory.index_bytes -= pending_overhead(key);
    }

    fn add<F: FnMut(WindowDoc) -> io::Result<()>>(
        &mut self,
        plan: &JobPlan,
        worker: usize,
        through: EpochMillis,
        entries: Vec<WindowEntry>,
        output: &mut Output<F>,
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
            let ((start, key), (state, bytes)) = self.pending.pop_first().expect("non-empty");
            self.forget(&key, bytes);
            let entry = WindowEntry { start, key, state };
            output.write(WindowDoc::build(plan, &entry, true));
        }
    }

    /// The windows handed over but not final yet.
    fn take_pending(&mut self) -> impl Iterator<Item = WindowEntry> {
        self.memory = StoreMemory::default();
        let pending = std::mem::take(&mut self.pending);
        pending.into_iter().map(|((start, key), (state, _))| WindowEntry { start, key, state })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    /// The chunks of every stripe of `content`, read in claim order, with their stripe.
    fn read_all(
        content: &[u8],
        stripe_bytes: u64,
        chunk_bytes: usize,
    ) -> Vec<(u64, Vec<u8>, bool)> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        let mut buf = vec![0; chunk_bytes];
        let mut out = Vec::new();
        for stripe in plan_stripes(&[content.len() as u64], stripe_bytes) {
            read_stripe(&file, stripe.range.clone(), &mut buf, |data, last| {
                out.push((stripe.index, data.to_vec(), last));
            })
            .unwrap();
        }
        out
    }

    proptest! {
        /// Whatever the stripe and chunk sizes, the chunks put together are the file, each
        /// chunk is whole lines, each stripe ends with one last chunk, and every line is read
        /// by the stripe that holds its first byte.
        #[test]
        fn stripes_cover_every_line_once_at_its_first_byte(
            lines in prop::collection::vec("[a-z{}\":,]{0,40}", 0..60),
            trailing_newline in any::<bool>(),
            stripe_bytes in 1u64..200,
            chunk_bytes in 1usize..100,
        ) {
            let mut content = lines.join("\n").into_bytes();
            if trailing_newline && !content.is_empty() {
                content.push(b'\n');
            }
            let chunks = read_all(&content, stripe_bytes, chunk_bytes);
            let joined: Vec<u8> = chunks.iter().flat_map(|(_, d, _)| d.clone()).collect();
            prop_assert_eq!(&joined, &content);
            let stripes = content.len().div_ceil(stripe_bytes as usize);
            prop_assert_eq!(chunks.iter().filter(|(_, _, last)| *last).count(), stripes);
            let mut at = 0u64;
            for (stripe, data, last) in &chunks {
                if !data.is_empty() {
                    // A chunk starts a line, in its own stripe.
                    prop_assert!(at == 0 || content[at as usize - 1] == b'\n');
                    prop_assert_eq!(at / stripe_bytes, *stripe);
                    let end = at as usize + data.len();
                    prop_assert!(end == content.len() || content[end - 1] == b'\n');
                    if !last {
                        // Only a stripe's last chunk may hold a line starting past the stripe.
                        prop_assert!((end as u64) <= (stripe + 1) * stripe_bytes);
                    }
                }
                at += data.len() as u64;
            }
        }
    }

    #[test]
    fn stripes_go_round_robin_over_partitions() {
        let stripes = plan_stripes(&[25, 0, 10], 10);
        let got: Vec<(u32, u64, Range<u64>)> =
            stripes.into_iter().map(|s| (s.partition, s.index, s.range)).collect();
        assert_eq!(got, vec![(0, 0, 0..10), (2, 0, 0..10), (0, 1, 10..20), (0, 2, 20..25)]);
    }

    fn chunk(place: (u64, u64), last: bool, lines: i64, dead_at: &[i64]) -> ChunkDone {
        ChunkDone {
            partition: 0,
            place,
            last,
            lines,
            max_log_time: Some(place.0 as i64 * 10 + place.1 as i64),
            bytes: 1,
            records: lines as u64,
            dead: dead_at
                .iter()
                .map(|&offset| DeadLetter {
                    partition: 0,
                    offset,
                    reason: DeadReason::Decode(crate::decode::DecodeError::NotAnObject),
                    record: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn chunks_out_of_order_give_in_order_progress_and_absolute_offsets() {
        let mut log = PartitionLog::new(2);
        let mut seen = Vec::new();
        let mut note = |c: &ChunkDone| {
            seen.push((c.place, c.dead.iter().map(|d| d.offset).collect::<Vec<_>>()))
        };
        // Stripe 1 (3 lines, dead at its line 2) arrives before stripe 0's two chunks.
        assert!(!log.accept(chunk((1, 0), true, 3, &[2]), &mut note));
        assert!(!log.accept(chunk((0, 1), true, 4, &[0]), &mut note));
        assert!(log.accept(chunk((0, 0), false, 5, &[1, 4]), &mut note));
        assert_eq!(seen, vec![((0, 0), vec![1, 4]), ((0, 1), vec![5]), ((1, 0), vec![11])]);
        assert!(log.is_complete());
    }

    fn good(i: u32) -> Vec<u8> {
        format!(
            r#"{{"event_time":"2024-01-01T00:00:0{i}.000Z","logged_time":"2024-01-01T00:00:0{i}.000Z","server":"srv-é","tx_type":"payment","status":"ok","amount":1.5,"latency_ms":{i},"user_id":"u-{i}"}}"#
        )
        .into_bytes()
    }

    /// Invalid UTF-8, blank lines and CRLF, at every stripe size and thread count: the same
    /// dead letters at the same offsets and the same documents.
    #[test]
    fn invalid_utf8_is_dead_lettered_at_its_offset_whatever_the_stripes() {
        let job =
            kappa_crds::load_manifest(include_str!("../../crds/fixtures/valid/tx-stats.yaml"))
                .unwrap();
        let plan = Arc::new(JobPlan::compile(&job).unwrap());
        let mut content = Vec::new();
        content.extend(good(1));
        content.extend(b"\n{\"server\":\"\xff\"}\n\n");
        content.extend(good(2));
        content.extend(b"\r\nnot json\n");
        content.extend(good(3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0.ndjson");
        std::fs::write(&path, &content).unwrap();
        let run = |threads, stripe_bytes| {
            let options =
                ReplayOptions { threads, chunk_bytes: 64, stripe_bytes, settle_after_ms: 0 };
            let mut dead = Vec::new();
            let report = replay_files(
                Arc::clone(&plan),
                std::slice::from_ref(&path),
                &options,
                |d| {
                    dead.push((d.offset, d.reason.code()));
                    Ok(())
                },
                |_| {},
            )
            .unwrap();
            dead.sort();
            let docs: Vec<String> = report.documents.iter().map(|d| d.body.clone()).collect();
            (dead, report.counters, docs)
        };
        let (dead, counters, docs) = run(1, 1 << 20);
        assert_eq!(dead, vec![(1, "malformed_json"), (4, "malformed_json")]);
        assert_eq!((counters.records_in, counters.folded, counters.dead), (5, 3, 2));
        assert_eq!(docs.len(), 1);
        assert!(docs[0].contains(r#""server":"srv-é""#), "{}", docs[0]);
        assert!(docs[0].contains(r#""tx_count":3"#), "{}", docs[0]);
        for threads in 1..=3 {
            // Every stripe size up to a few lines: boundaries before, inside and after each
            // kind of line.
            for stripe_bytes in (1..content.len() + 1).step_by(5) {
                assert_eq!(run(threads, stripe_bytes), (dead.clone(), counters, docs.clone()));
            }
        }
    }
}
