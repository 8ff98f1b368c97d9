//! The streaming processor: one job version's state machine over an interleaved multi-partition
//! log. It owns the open windows, per-partition positions and log-time progress, and the
//! documents on their way to the sink ([`Delivery`]). No I/O: sources and sinks drive it.
//!
//! Documents leave in two steps. [`Processor::stage`] turns windows into documents: those that
//! became final, and (live, in update mode) up to a given number of changed windows, oldest
//! change first. The sink takes batches of staged documents ([`Processor::next_batch`]) and
//! reports each back ([`Processor::acknowledge`]). Changed windows not yet staged stay marked in
//! the store, documents not yet acknowledged stay in the delivery: both are in the snapshot, so
//! neither a backlog nor a slow sink has to be written before a checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use kappa_crds::SinkMode;

use crate::delivery::{Batch, Delivery, Positions};
use crate::output::WindowDoc;
use crate::plan::JobPlan;
use crate::state::{Snapshot, SnapshotError};
use crate::store::{Counters, Outcome, WindowEntry, WindowStore};
use crate::time::EpochMillis;
use crate::value::Value;
use crate::window::LogProgress;

/// A stream processor for one job version.
#[derive(Debug)]
pub struct Processor {
    plan: Arc<JobPlan>,
    store: WindowStore,
    progress: LogProgress,
    positions: BTreeMap<u32, i64>,
    delivery: Delivery,
}

impl Processor {
    /// A processor with no state.
    pub fn new(plan: Arc<JobPlan>) -> Self {
        Self {
            plan,
            store: WindowStore::new(),
            progress: LogProgress::default(),
            positions: BTreeMap::new(),
            delivery: Delivery::new(),
        }
    }

    /// The compiled job.
    pub fn plan(&self) -> &Arc<JobPlan> {
        &self.plan
    }

    /// Declares an assigned partition: it holds finality back until it has progress.
    pub fn assign(&mut self, partition: u32) {
        self.progress.assign(partition);
    }

    /// Processes the record at `offset` of `partition`. `source_log_time` is the source's record
    /// timestamp. A record below the partition's position was already processed (re-delivery
    /// after a restore) and is skipped: `None`.
    pub fn process(
        &mut self,
        partition: u32,
        offset: i64,
        source_log_time: Option<EpochMillis>,
        line: &[u8],
    ) -> Option<Outcome> {
        let next = self.positions.entry(partition).or_insert(0);
        if offset < *next {
            return None;
        }
        *next = offset + 1;
        let mut slots: Vec<Value<'_>> = Vec::with_capacity(self.plan.slot_count());
        let (outcome, log_time) = self.store.process(&self.plan, line, source_log_time, &mut slots);
        if let Some(t) = log_time {
            self.progress.observe(partition, t);
        }
        Some(outcome)
    }

    /// Marks a partition idle: it stops holding finality back until its next record.
    pub fn mark_idle(&mut self, partition: u32) {
        self.progress.mark_idle(partition);
    }

    /// Marks a partition ended (bounded input).
    pub fn mark_ended(&mut self, partition: u32) {
        self.progress.mark_ended(partition);
    }

    /// Stages the documents to write: every window that became final (`final: true`, then
    /// evicted), and in update mode up to `changed` windows changed since they were last staged
    /// (`final: false`), oldest change first. `changed: 0` is the replay phase: open windows stay
    /// marked and are staged once the engine is live, so each document is written about once.
    ///
    /// When no change is left unstaged afterwards, every record below `consumed` (the next
    /// offset per partition the source has read up to, partitions without records included)
    /// has its effect in staged documents, and that is recorded: once the sink acknowledges
    /// them, `consumed` becomes [`Self::delivered`].
    pub fn stage(&mut self, changed: usize, consumed: &Positions) {
        if let Some(wm) = self.progress.watermark() {
            let finals = self.store.take_final(&self.plan, wm);
            self.delivery.stage(finals.iter().map(|e| WindowDoc::build(&self.plan, e, true)));
        }
        match self.plan.mode {
            SinkMode::Update => {
                let entries = self.store.take_changed(changed);
                self.delivery.stage(entries.iter().map(|e| WindowDoc::build(&self.plan, e, false)));
            }
            // Append mode writes windows once, when final: changes are never written.
            SinkMode::Append => self.store.clear_changed(),
        }
        if self.unstaged() == 0 {
            self.delivery.mark(consumed);
        }
    }

    /// Changed windows whose documents are not staged yet (always 0 in append mode).
    pub fn unstaged(&self) -> usize {
        self.store.changed_windows()
    }

    /// The next batch of staged documents for the sink (see [`Delivery::next_batch`]).
    pub fn next_batch(&mut self, max_docs: usize, max_bytes: usize) -> Option<Batch> {
        self.delivery.next_batch(max_docs, max_bytes)
    }

    /// The sink acknowledged batch `id`.
    pub fn acknowledge(&mut self, id: u64) -> bool {
        self.delivery.acknowledge(id)
    }

    /// Documents on their way to the sink.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Next offset per partition through which every record's effect is acknowledged by the
    /// sink (see [`Self::stage`]).
    pub fn delivered(&self) -> &Positions {
        self.delivery.delivered()
    }

    /// Documents still to write: changed windows not staged plus staged documents not
    /// acknowledged.
    pub fn backlog(&self) -> usize {
        self.unstaged() + self.delivery.outstanding()
    }

    /// Stages every final and changed window and returns every document not yet handed out,
    /// as if the sink acknowledged them at once: bounded inputs and tests, where writing is
    /// the caller's business. Update mode: every window changed since the last flush
    /// (`final: false`) and every window that became final (`final: true`, then evicted).
    /// Append mode: only the windows that became final.
    pub fn flush(&mut self) -> Vec<WindowDoc> {
        let consumed = self.positions.clone();
        self.stage(usize::MAX, &consumed);
        let mut docs = Vec::new();
        while let Some(batch) = self.delivery.next_batch(usize::MAX, usize::MAX) {
            docs.extend(batch.docs.iter().cloned());
            self.delivery.acknowledge(batch.id);
        }
        docs
    }

    /// Every open window as a document, with `final` as of the current watermark.
    pub fn open_documents(&self) -> Vec<WindowDoc> {
        let wm = self.progress.watermark();
        self.store
            .open_windows()
            .map(|e| {
                let fin = wm.is_some_and(|w| {
                    self.plan.window.is_final(e.start, self.plan.max_lateness_ms, w)
                });
                WindowDoc::build(&self.plan, &e, fin)
            })
            .collect()
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.store.counters
    }

    /// Log-time progress.
    pub fn progress(&self) -> &LogProgress {
        &self.progress
    }

    /// Next offset per partition.
    pub fn positions(&self) -> &BTreeMap<u32, i64> {
        &self.positions
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.store.len()
    }

    /// What the open windows cost in memory (walks every window: for reports, not per record).
    pub fn memory(&self) -> crate::store::StoreMemory {
        self.store.memory()
    }

    /// The restorable state.
    pub fn snapshot(&self) -> Snapshot {
        let mut windows: Vec<_> =
            self.store.open_windows().map(|e| (e.start, e.key, e.state)).collect();
        windows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Snapshot {
            positions: self.positions.clone(),
            progress: self.progress.clone(),
            final_through: self.store.final_through(),
            counters: self.store.counters,
            windows,
            delivery: self.delivery.state(),
        }
    }

    /// A processor resumed from `snapshot`.
    pub fn restore(plan: Arc<JobPlan>, snapshot: Snapshot) -> Self {
        let mut store = WindowStore::new();
        for (start, key, state) in snapshot.windows {
            store.merge_entry(&plan, WindowEntry { start, key, state });
        }
        store.set_final_through(snapshot.final_through);
        store.counters = snapshot.counters;
        // Windows keep their changed mark: one changed but not yet staged when the snapshot was
        // taken (replay-phase flushes stage only final windows) is written after restore, and
        // documents not yet acknowledged are staged again.
        Self {
            plan,
            store,
            progress: snapshot.progress,
            positions: snapshot.positions,
            delivery: Delivery::restore(snapshot.delivery),
        }
    }

    /// Encodes [`Self::snapshot`] in the binary format.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        self.snapshot().encode(self.plan.fingerprint)
    }

    /// Restores from bytes written by [`Self::snapshot_bytes`].
    pub fn restore_bytes(plan: Arc<JobPlan>, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snap = Snapshot::decode(bytes, plan.fingerprint)?;
        Ok(Self::restore(plan, snap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: &str) -> Arc<JobPlan> {
        let yaml = format!(
            r#"
apiVersion: kappa.dev/v1alpha1
kind: StreamJob
metadata: {{name: modes}}
spec:
  version: v1
  source: {{kafka: {{bootstrapServers: "localhost:9092", topic: t}}}}
  pipeline:
    eventTime: {{field: t, format: epochMillis}}
    logTime: {{field: l, format: epochMillis}}
    maxLateness: 10s
    groupBy: [k]
    window: {{tumbling: 1m}}
    aggregates: [{{name: n, op: count}}]
  sink:
    elasticsearch: {{url: "http://localhost:9200", alias: modes}}
    mode: {mode}
"#
        );
        Arc::new(JobPlan::compile(&kappa_crds::load_manifest(&yaml).unwrap()).unwrap())
    }

    fn record(t: i64, l: i64) -> Vec<u8> {
        format!(r#"{{"t":{t},"l":{l},"k":"a"}}"#).into_bytes()
    }

    fn summary(docs: &[WindowDoc]) -> Vec<(i64, u64, bool)> {
        docs.iter().map(|d| (d.start, d.version, d.is_final)).collect()
    }

    #[test]
    fn update_mode_emits_changed_windows_each_flush_then_the_final_value_once() {
        let mut p = Processor::new(plan("update"));
        p.assign(0);
        p.process(0, 0, None, &record(1_000, 1_000));
        p.process(0, 1, None, &record(2_000, 2_000));
        assert_eq!(summary(&p.flush()), vec![(0, 2, false)]);
        assert_eq!(summary(&p.flush()), vec![], "nothing changed, nothing written");
        p.process(0, 2, None, &record(3_000, 12_000));
        p.process(0, 3, None, &record(61_000, 61_000));
        assert_eq!(summary(&p.flush()), vec![(0, 3, false), (60_000, 1, false)]);
        // Log time passes end + maxLateness of the first window: it is final and evicted.
        p.process(0, 4, None, &record(62_000, 70_000));
        assert_eq!(summary(&p.flush()), vec![(0, 3, true), (60_000, 2, false)]);
        assert_eq!(p.open_windows(), 1);
        // A record for the final window is late by the rule, never a change to a final doc.
        assert_eq!(p.process(0, 5, None, &record(59_999, 70_000)), Some(Outcome::Late));
    }

    #[test]
    fn append_mode_writes_each_window_once_when_final() {
        let mut p = Processor::new(plan("append"));
        p.assign(0);
        p.process(0, 0, None, &record(1_000, 1_000));
        assert_eq!(summary(&p.flush()), vec![]);
        p.process(0, 1, None, &record(61_000, 70_000));
        assert_eq!(summary(&p.flush()), vec![(0, 1, true)]);
        assert_eq!(summary(&p.flush()), vec![]);
    }

    /// Stages like a replay-phase flush (final windows only) and hands out one batch.
    fn replay_flush(p: &mut Processor) -> Option<Batch> {
        let consumed = p.positions().clone();
        p.stage(0, &consumed);
        p.next_batch(usize::MAX, usize::MAX)
    }

    fn batch_summary(batch: &Option<Batch>) -> Vec<(i64, u64, bool)> {
        batch.as_ref().map(|b| summary(&b.docs)).unwrap_or_default()
    }

    #[test]
    fn replay_flushes_write_finals_only_and_changed_windows_survive_a_restore() {
        let mut p = Processor::new(plan("update"));
        p.assign(0);
        p.process(0, 0, None, &record(1_000, 1_000));
        p.process(0, 1, None, &record(61_000, 61_000));
        assert_eq!(batch_summary(&replay_flush(&mut p)), vec![], "nothing final yet");
        assert_eq!((p.unstaged(), p.backlog()), (2, 2));
        assert_eq!(p.delivered(), &Positions::new(), "the index holds nothing complete yet");
        // A crash after a replay-phase checkpoint: the unwritten changes are not forgotten.
        let mut p = Processor::restore_bytes(plan("update"), &p.snapshot_bytes()).unwrap();
        assert_eq!(p.unstaged(), 2);
        p.process(0, 2, None, &record(62_000, 70_000));
        let batch = replay_flush(&mut p);
        assert_eq!(batch_summary(&batch), vec![(0, 1, true)]);
        assert!(p.acknowledge(batch.unwrap().id));
        assert_eq!(p.delivered(), &Positions::new(), "window 60 000 is not written yet");
        assert_eq!(summary(&p.flush()), vec![(60_000, 2, false)]);
        assert_eq!(p.delivered(), &[(0, 3)].into(), "everything is written");
        assert_eq!(summary(&p.flush()), vec![]);
        let mut p = Processor::restore_bytes(plan("update"), &p.snapshot_bytes()).unwrap();
        assert_eq!(summary(&p.flush()), vec![], "written before the snapshot: not rewritten");
    }

    #[test]
    fn a_checkpoint_during_a_backlog_keeps_unstaged_windows_and_unacknowledged_documents() {
        let mut p = Processor::new(plan("update"));
        p.assign(0);
        for k in 0..5 {
            let line = format!(r#"{{"t":{},"l":1000,"k":"k{k}"}}"#, 1000 + k);
            p.process(0, k, None, line.as_bytes());
        }
        let consumed: Positions = [(0, 5)].into();
        // Live, with room for two documents: two windows go, three stay marked.
        p.stage(2, &consumed);
        assert_eq!((p.unstaged(), p.delivery().queued()), (3, 2));
        let in_flight = p.next_batch(10, usize::MAX).unwrap();
        assert_eq!(summary(&in_flight.docs), vec![(0, 1, false), (0, 1, false)]);
        assert!(in_flight.docs[0].body.contains("\"k0\""), "oldest change first");
        p.stage(1, &consumed);
        assert_eq!((p.unstaged(), p.backlog()), (2, 5));

        // The snapshot is taken now, without waiting for the sink; the process dies.
        let mut r = Processor::restore_bytes(plan("update"), &p.snapshot_bytes()).unwrap();
        assert_eq!((r.unstaged(), r.delivery().outstanding()), (2, 3));
        assert_eq!(r.delivered(), &Positions::new());
        let mut keys: Vec<String> = r.flush().iter().map(|d| d.body.clone()).collect();
        keys.sort();
        assert_eq!(keys.len(), 5, "every window, once: {keys:?}");
        keys.dedup();
        assert_eq!(keys.len(), 5, "every window, once: {keys:?}");
        assert_eq!(r.delivered(), &consumed);
        assert_eq!(r.backlog(), 0);
    }

    #[test]
    fn a_slow_partition_holds_finality_until_it_is_idle() {
        let mut p = Processor::new(plan("append"));
        p.assign(0);
        p.assign(1);
        p.process(0, 0, None, &record(1_000, 1_000));
        p.process(0, 1, None, &record(90_000, 90_000));
        assert_eq!(summary(&p.flush()), vec![], "partition 1 has no progress yet");
        p.mark_idle(1);
        assert_eq!(summary(&p.flush()), vec![(0, 1, true)]);
    }

    #[test]
    fn snapshots_of_another_logic_are_refused() {
        let mut p = Processor::new(plan("update"));
        p.process(0, 0, None, &record(1_000, 1_000));
        let bytes = p.snapshot_bytes();
        let other = plan("append");
        assert!(matches!(
            Processor::restore_bytes(other, &bytes),
            Err(SnapshotError::Fingerprint { .. })
        ));
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 3);
        assert_eq!(
            Processor::restore_bytes(plan("update"), &torn).unwrap_err(),
            SnapshotError::Corrupt
        );
        let restored = Processor::restore_bytes(plan("update"), &bytes).unwrap();
        assert_eq!(restored.positions(), p.positions());
        assert_eq!(restored.open_windows(), 1);
    }
}
