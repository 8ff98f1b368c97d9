//! The window store: evaluates records against the plan and folds them into per-window,
//! per-key aggregate states; hands out changed and final windows.
//!
//! A record is folded whole or not at all: every check that can refuse it (decoding, lateness,
//! filter, group key, aggregate inputs, window finality) runs before the first state changes.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::aggregate::{AggState, Input};
use crate::decode::{DecodeError, RecordDecoder};
use crate::key::{KeyInterner, KeyValue};
use crate::plan::JobPlan;
use crate::time::{EpochMillis, MinuteCache};
use crate::value::Value;

/// Why a record went to the dead-letter output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeadReason {
    /// It could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A filter, derived field or `where` expression failed on it.
    #[error("{path}: {message}")]
    Expression {
        /// Field path of the expression in the job.
        path: String,
        /// The evaluation error.
        message: String,
    },
    /// An aggregate input has the wrong type.
    #[error("aggregate `{aggregate}`: {message}")]
    AggregateInput {
        /// Aggregate name.
        aggregate: String,
        /// What is wrong.
        message: String,
    },
    /// A groupBy field holds an object or array.
    #[error("groupBy field `{field}` must be a string, number, boolean or null, found {found}")]
    GroupKey {
        /// Dotted path.
        field: String,
        /// Its type.
        found: &'static str,
    },
    /// The record is within lateness, but its window was already final: its partition's log time
    /// went backwards (see [`crate::window`]).
    #[error("window starting at {window_start} ms was already final (log time went backwards on this partition)")]
    WindowFinal {
        /// Start of the final window.
        window_start: EpochMillis,
    },
}

impl DeadReason {
    /// Stable reason code for headers and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DeadReason::Decode(d) => d.code(),
            DeadReason::Expression { .. } => "expression_error",
            DeadReason::AggregateInput { .. } => "wrong_type",
            DeadReason::GroupKey { .. } => "wrong_type",
            DeadReason::WindowFinal { .. } => "window_final",
        }
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Folded into its windows.
    Folded,
    /// Excluded by the filter.
    Filtered,
    /// Dropped: `log_time - event_time > maxLateness`.
    Late,
    /// Sent to the dead-letter output.
    Dead(DeadReason),
}

/// Aggregate state of one window and key. `records` is the number of records folded in: it
/// only grows, and it is the document's external version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowState {
    /// Records folded in.
    pub records: u64,
    /// One state per aggregate, in plan order.
    pub aggs: Box<[AggState]>,
    /// Changed since it was last taken by [`WindowStore::take_changed`]: kept in snapshots, so
    /// a window folded during replay (when only final windows are written), or not yet taken
    /// because the sink had no room, is still written after a restore.
    dirty: bool,
}

impl WindowState {
    fn new(plan: &JobPlan) -> Self {
        Self {
            records: 0,
            aggs: plan.aggregates.iter().map(|a| AggState::new(&a.kind)).collect(),
            dirty: false,
        }
    }

    /// Bytes of its aggregates, inline and on the heap.
    pub fn memory_bytes(&self) -> usize {
        self.aggs.iter().map(AggState::memory_bytes).sum()
    }

    /// Merges another partial state of the same window and key.
    pub fn merge(&mut self, other: &WindowState) {
        self.records += other.records;
        for (a, b) in self.aggs.iter_mut().zip(other.aggs.iter()) {
            a.merge(b);
        }
    }
}

/// Identifies a window of a key: (window start, key id).
pub type WindowKey = (EpochMillis, u32);

/// One window's key values and state, handed out of the store.
#[derive(Debug, Clone)]
pub struct WindowEntry {
    /// Window start.
    pub start: EpochMillis,
    /// Group key values.
    pub key: Box<[KeyValue]>,
    /// Aggregate state.
    pub state: WindowState,
}

/// Counters of one store (merged across workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Records read.
    pub records_in: u64,
    /// Records folded.
    pub folded: u64,
    /// Records excluded by the filter.
    pub filtered: u64,
    /// Records dropped as late.
    pub late: u64,
    /// Records dead-lettered.
    pub dead: u64,
}

impl Counters {
    /// Adds another set of counters.
    pub fn add(&mut self, o: &Counters) {
        self.records_in += o.records_in;
        self.folded += o.folded;
        self.filtered += o.filtered;
        self.late += o.late;
        self.dead += o.dead;
    }

    fn count(&mut self, outcome: &Outcome) {
        self.records_in += 1;
        match outcome {
            Outcome::Folded => self.folded += 1,
            Outcome::Filtered => self.filtered += 1,
            Outcome::Late => self.late += 1,
            Outcome::Dead(_) => self.dead += 1,
        }
    }
}

/// Open windows of a job (or of one worker's share of the input).
#[derive(Debug, Default)]
pub struct WindowStore {
    keys: KeyInterner,
    windows: OpenWindows,
    /// Changed windows in the order they first changed since they were last taken: the oldest
    /// change is written first. Entries of windows evicted since are stale and skipped.
    dirty: VecDeque<WindowKey>,
    /// Open windows whose `dirty` flag is set (the live entries of `dirty`).
    dirty_windows: usize,
    /// Watermark of the last eviction: windows final at it are gone.
    final_through: Option<EpochMillis>,
    /// The current record's input to each aggregate, prepared before any is folded.
    inputs: Vec<Input>,
    /// Reads records along the layout of the ones before (see [`RecordDecoder`]).
    decoder: RecordDecoder,
    /// Minutes of the last log and event timestamps read (see [`MinuteCache`]).
    log_minute: MinuteCache,
    event_minute: MinuteCache,
    /// Counters since creation.
    pub counters: Counters,
}

impl WindowStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes and folds one record. `source_log_time` is the source's record timestamp (used
    /// when the job has no `logTime` field). Returns the outcome and the record's log time when
    /// it could be read (for progress tracking).
    pub fn process<'d>(
        &mut self,
        plan: &JobPlan,
        line: &'d [u8],
        source_log_time: Option<EpochMillis>,
        slots: &mut Vec<Value<'d>>,
    ) -> (Outcome, Option<EpochMillis>) {
        let decoded = self.decoder.decode_into(&plan.paths, line, slots, plan.slot_count());
        let evaluated = self.evaluate(plan, decoded, source_log_time, slots);
        self.counted(evaluated)
    }

    /// [`WindowStore::process`] for a record already known to be UTF-8.
    pub fn process_text<'d>(
        &mut self,
        plan: &JobPlan,
        line: &'d str,
        source_log_time: Option<EpochMillis>,
        slots: &mut Vec<Value<'d>>,
    ) -> (Outcome, Option<EpochMillis>) {
        let decoded = self.decoder.decode_text_into(&plan.paths, line, slots, plan.slot_count());
        let evaluated = self.evaluate(plan, decoded, source_log_time, slots);
        self.counted(evaluated)
    }

    /// Counts an evaluated record's outcome and passes the result on.
    fn counted(
        &mut self,
        evaluated: (Outcome, Option<EpochMillis>),
    ) -> (Outcome, Option<EpochMillis>) {
        self.counters.count(&evaluated.0);
        evaluated
    }

    fn evaluate(
        &mut self,
        plan: &JobPlan,
        decoded: Result<(), DecodeError>,
        source_log_time: Option<EpochMillis>,
        slots: &mut [Value<'_>],
    ) -> (Outcome, Option<EpochMillis>) {
        if let Err(e) = decoded {
            return (Outcome::Dead(e.into()), None);
        }
        let log_time = match &plan.log_time {
            Some(reader) => match reader.read(slots, &mut self.log_minute) {
                Ok(t) => t,
                Err(e) => return (Outcome::Dead(e.into()), None),
            },
            None => match source_log_time {
                Some(t) => t,
                None => {
                    let e = DecodeError::MissingField("<record timestamp>".into());
                    return (Outcome::Dead(e.into()), None);
                }
            },
        };
        let outcome = match self.fold(plan, slots, log_time) {
            Ok(o) | Err(o) => o,
        };
        (outcome, Some(log_time))
    }

    fn fold(
        &mut self,
        plan: &JobPlan,
        slots: &mut [Value<'_>],
        log_time: EpochMillis,
    ) -> Result<Outcome, Outcome> {
        let dead = |r: DeadReason| Outcome::Dead(r);
        let event_time =
            plan.event_time.read(slots, &mut self.event_minute).map_err(|e| dead(e.into()))?;
        if log_time.saturating_sub(event_time) > plan.max_lateness_ms {
            return Ok(Outcome::Late);
        }
        for d in &plan.derived {
            let v = d.program.eval(slots).map_err(|e| {
                dead(DeadReason::Expression {
                    path: format!("spec.pipeline.derived.{}", d.name),
                    message: e.to_string(),
                })
            })?;
            slots[d.slot] = v;
        }
        if let Some(filter) = &plan.filter {
            let keep = filter.eval_bool(slots).map_err(|e| {
                dead(DeadReason::Expression {
                    path: "spec.pipeline.filter".into(),
                    message: e.to_string(),
                })
            })?;
            if !keep {
                return Ok(Outcome::Filtered);
            }
        }
        let group_key = || plan.group_by.iter().map(|(_, s)| &slots[*s]);
        let key_hash = KeyInterner::hash(group_key()).map_err(|i| {
            let (field, slot) = &plan.group_by[i];
            dead(DeadReason::GroupKey { field: field.clone(), found: slots[*slot].type_name() })
        })?;
        self.inputs.clear();
        for (i, a) in plan.aggregates.iter().enumerate() {
            let included = match &a.condition {
                None => true,
                Some(c) => c.eval_bool(slots).map_err(|e| {
                    dead(DeadReason::Expression {
                        path: format!("spec.pipeline.aggregates[{i}].where"),
                        message: e.to_string(),
                    })
                })?,
            };
            let input = match (&a.field, included) {
                (_, false) => Input::Skip,
                (None, true) => {
                    a.kind.prepare(&Value::Missing).expect("a missing value is skipped")
                }
                (Some((field, slot)), true) => a.kind.prepare(&slots[*slot]).map_err(|e| {
                    dead(DeadReason::AggregateInput {
                        aggregate: a.name.clone(),
                        message: format!("field `{field}`: {e}"),
                    })
                })?,
            };
            self.inputs.push(input);
        }
        // One division for both walks over the record's windows.
        let starts = plan.window.windows_of(event_time);
        if let Some(through) = self.final_through {
            if let Some(start) =
                starts.clone().find(|&s| plan.window.is_final(s, plan.max_lateness_ms, through))
            {
                return Err(dead(DeadReason::WindowFinal { window_start: start }));
            }
        }
        let key_id = self.keys.intern(key_hash, group_key());
        for start in starts {
            let state = self.windows.get_or_insert((start, key_id), || WindowState::new(plan));
            state.records += 1;
            for (agg, &input) in state.aggs.iter_mut().zip(&self.inputs) {
                agg.apply(input);
            }
            if !state.dirty {
                state.dirty = true;
                self.dirty.push_back((start, key_id));
                self.dirty_windows += 1;
            }
        }
        Ok(Outcome::Folded)
    }

    /// Removes and returns every window that is final at `watermark`, oldest first.
    pub fn take_final(&mut self, plan: &JobPlan, watermark: EpochMillis) -> Vec<WindowEntry> {
        self.final_through = Some(self.final_through.map_or(watermark, |t| t.max(watermark)));
        self.take_while(|start| plan.window.is_final(start, plan.max_lateness_ms, watermark))
    }

    /// Removes and returns every window that ended at or before `end`, oldest first, final or
    /// not: a window that gets another record later opens again, with only that record. For a
    /// replay worker handing over windows that rarely change any more (see
    /// [`crate::replay`]), not for a store whose windows must stay whole.
    pub fn take_ended(&mut self, plan: &JobPlan, end: EpochMillis) -> Vec<WindowEntry> {
        self.take_while(|start| plan.window.end_of(start) <= end)
    }

    /// Removes the oldest windows while `take(start)` holds (it must hold for a prefix of the
    /// starts).
    fn take_while(&mut self, take: impl Fn(EpochMillis) -> bool) -> Vec<WindowEntry> {
        let mut out = Vec::new();
        while let Some((&start, _)) = self.windows.by_start.first_key_value() {
            if !take(start) {
                break;
            }
            let (_, key_ids) = self.windows.by_start.pop_first().expect("non-empty");
            for id in key_ids {
                if let Some(state) = self.windows.remove(&(start, id)) {
                    self.dirty_windows -= usize::from(state.dirty);
                    out.push(WindowEntry { start, key: self.keys.key(id).into(), state });
                }
            }
        }
        self.compact_dirty();
        out
    }

    /// Returns a copy of up to `limit` windows changed since they were last taken (still open
    /// ones), those that changed first first, and clears their changed mark. The others stay
    /// marked (and so in snapshots) for a later call.
    pub fn take_changed(&mut self, limit: usize) -> Vec<WindowEntry> {
        let mut out = Vec::with_capacity(limit.min(self.dirty_windows));
        while out.len() < limit {
            let Some(wk) = self.dirty.pop_front() else { break };
            // A stale entry: the window was evicted (or taken through an older entry).
            let Some(state) = self.windows.get_mut(&wk).filter(|s| s.dirty) else { continue };
            state.dirty = false;
            self.dirty_windows -= 1;
            out.push(WindowEntry {
                start: wk.0,
                key: self.keys.key(wk.1).into(),
                state: state.clone(),
            });
        }
        if self.dirty_windows == 0 {
            self.dirty.clear();
        }
        out
    }

    /// Clears every changed mark without copying the windows (append mode writes only final
    /// windows, so changes are never written).
    pub fn clear_changed(&mut self) {
        for wk in self.dirty.drain(..) {
            if let Some(state) = self.windows.get_mut(&wk) {
                state.dirty = false;
            }
        }
        self.dirty_windows = 0;
    }

    /// Open windows changed since they were last taken: the documents still to build.
    pub fn changed_windows(&self) -> usize {
        self.dirty_windows
    }

    /// Drops stale entries from the changed list once they outnumber the live ones, so a long
    /// replay (which takes only final windows) keeps it as small as the changed windows.
    fn compact_dirty(&mut self) {
        const SLACK: usize = 4096;
        if self.dirty.len() <= 2 * self.dirty_windows + SLACK {
            return;
        }
        let windows = &mut self.windows;
        self.dirty.retain(|wk| windows.get_mut(wk).is_some_and(|s| s.dirty));
    }

    /// Every open window (copied), in no particular order.
    pub fn open_windows(&self) -> impl Iterator<Item = WindowEntry> + '_ {
        self.windows.states.iter().map(|&((start, id), ref state)| WindowEntry {
            start,
            key: self.keys.key(id).into(),
            state: state.clone(),
        })
    }

    /// Removes every open window.
    pub fn drain(&mut self) -> Vec<WindowEntry> {
        self.dirty.clear();
        self.dirty_windows = 0;
        let keys = &self.keys;
        self.windows
            .drain()
            .into_iter()
            .map(|((start, id), state)| WindowEntry { start, key: keys.key(id).into(), state })
            .collect()
    }

    /// Merges a window (from another worker or a snapshot) into this store.
    pub fn merge_entry(&mut self, plan: &JobPlan, entry: WindowEntry) {
        let values: Vec<Value<'_>> = entry.key.iter().map(key_to_value).collect();
        let hash = KeyInterner::hash(&values).expect("stored keys are scalars");
        let id = self.keys.intern(hash, &values);
        let state = self.windows.get_or_insert((entry.start, id), || WindowState::new(plan));
        state.merge(&entry.state);
        if entry.state.dirty && !state.dirty {
            state.dirty = true;
            self.dirty.push_back((entry.start, id));
            self.dirty_windows += 1;
        }
    }

    /// Watermark of the last eviction.
    pub fn final_through(&self) -> Option<EpochMillis> {
        self.final_through
    }

    /// Restores the eviction watermark (after a snapshot restore).
    pub fn set_final_through(&mut self, through: Option<EpochMillis>) {
        self.final_through = through;
    }

    /// Number of open windows.
    pub fn len(&self) -> usize {
        self.windows.states.len()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.windows.states.is_empty()
    }

    /// What the open windows cost in memory: their states (inline and on the heap) and the
    /// structures that find them (window index, start order, dirty list). Walks every open
    /// window, so it is for reports (the end of a replay, checkpoints), not for every record.
    pub fn memory(&self) -> StoreMemory {
        let w = &self.windows;
        let states: usize = w.states.iter().map(|(_, s)| s.memory_bytes()).sum();
        let entry = std::mem::size_of::<(WindowKey, WindowState)>();
        // hashbrown: one control byte per bucket besides the entry.
        let bucket = std::mem::size_of::<(WindowKey, u32)>() + 1;
        let by_start: usize = w.by_start.values().map(|keys| keys.capacity() * 4 + 48).sum();
        let index = w.states.capacity() * entry
            + w.index.capacity() * bucket
            + by_start
            + w.recent.capacity() * std::mem::size_of::<Option<(EpochMillis, u32)>>()
            + self.dirty.capacity() * std::mem::size_of::<WindowKey>()
            + self.keys.memory_bytes();
        StoreMemory { open_windows: w.states.len(), state_bytes: states, index_bytes: index }
    }
}

/// Memory held by a store's open windows ([`WindowStore::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Open windows.
    pub open_windows: usize,
    /// Aggregate states, inline and on the heap.
    pub state_bytes: usize,
    /// Everything else per window: the dense vector of states, the window index, the
    /// start order, the dirty list and the interned group keys.
    pub index_bytes: usize,
}

impl StoreMemory {
    /// Adds another store's (another worker's) figures.
    pub fn add(&mut self, other: &StoreMemory) {
        self.open_windows += other.open_windows;
        self.state_bytes += other.state_bytes;
        self.index_bytes += other.index_bytes;
    }

    /// State and index bytes together.
    pub fn bytes(&self) -> usize {
        self.state_bytes + self.index_bytes
    }

    /// `bytes` per open window (0 without any).
    pub fn per_window(&self, bytes: usize) -> usize {
        bytes.checked_div(self.open_windows).unwrap_or(0)
    }

    /// State and index bytes per open window (0 without any).
    pub fn bytes_per_window(&self) -> usize {
        self.per_window(self.bytes())
    }
}

/// The open windows of a store: their states in one dense vector, found by window through a
/// hash map, and first through the window each key touched last.
///
/// Records of a key arrive in about event-time order, so most of them (90% in the reference
/// workload) land in the window their key's record before landed in: that window is found by
/// one compare, without probing the map, whose buckets (every window of the lateness horizon,
/// 65k in a 10M-record replay) are mostly out of cache.
#[derive(Debug, Default)]
struct OpenWindows {
    /// The keys with a window open at each start, for eviction in start order.
    by_start: BTreeMap<EpochMillis, Vec<u32>>,
    index: hashbrown::HashMap<WindowKey, u32>,
    states: Vec<(WindowKey, WindowState)>,
    /// By key id: the start and index in `states` of the window the key touched last, if it
    /// is still open.
    recent: Vec<Option<(EpochMillis, u32)>>,
}

impl OpenWindows {
    /// The state of window `wk`, opened with the state `new` makes if it is not open.
    #[inline]
    fn get_or_insert(
        &mut self,
        wk: WindowKey,
        new: impl FnOnce() -> WindowState,
    ) -> &mut WindowState {
        let (start, id) = (wk.0, wk.1 as usize);
        if let Some(&Some((recent, i))) = self.recent.get(id) {
            if recent == start {
                return &mut self.states[i as usize].1;
            }
        }
        let i = match self.index.get(&wk) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.states.len()).expect("fewer than 2^32 open windows");
                self.states.push((wk, new()));
                self.index.insert(wk, i);
                self.by_start.entry(start).or_default().push(wk.1);
                i
            }
        };
        if self.recent.len() <= id {
            self.recent.resize(id + 1, None);
        }
        self.recent[id] = Some((start, i));
        &mut self.states[i as usize].1
    }

    fn get_mut(&mut self, wk: &WindowKey) -> Option<&mut WindowState> {
        let i = *self.index.get(wk)?;
        Some(&mut self.states[i as usize].1)
    }

    /// Closes window `wk`, returning its state. The last window takes its place in `states`.
    fn remove(&mut self, wk: &WindowKey) -> Option<WindowState> {
        let i = self.index.remove(wk)?;
        self.point_recent(*wk, i, None);
        let (_, state) = self.states.swap_remove(i as usize);
        if let Some(&(moved, _)) = self.states.get(i as usize) {
            let from = self.states.len() as u32;
            self.index.insert(moved, i);
            self.point_recent(moved, from, Some((moved.0, i)));
        }
        Some(state)
    }

    /// Sets the recent window of key `wk.1` to `to`, if it is window `wk` at index `at`.
    fn point_recent(&mut self, wk: WindowKey, at: u32, to: Option<(EpochMillis, u32)>) {
        if let Some(recent) = self.recent.get_mut(wk.1 as usize) {
            if *recent == Some((wk.0, at)) {
                *recent = to;
            }
        }
    }

    /// Closes every window.
    fn drain(&mut self) -> Vec<(WindowKey, WindowState)> {
        self.by_start.clear();
        self.index.clear();
        self.recent.clear();
        std::mem::take(&mut self.states)
    }
}

fn key_to_value(k: &KeyValue) -> Value<'_> {
    match k {
        KeyValue::Null => Value::Null,
        KeyValue::Bool(b) => Value::Bool(*b),
        KeyValue::Int(i) => Value::Int(*i),
        KeyValue::Float(f) => Value::Float(*f),
        KeyValue::Str(s) => Value::Str(std::borrow::Cow::Borrowed(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn state(records: u64) -> WindowState {
        WindowState { records, aggs: Box::new([]), dirty: false }
    }

    proptest! {
        /// Whatever the order of folds into and closes of windows, each window's state is the
        /// one a plain map of windows holds: the recent-window shortcut and the moves of
        /// `swap_remove` never hand out another window's state.
        #[test]
        fn open_windows_behave_as_a_map(
            ops in prop::collection::vec((any::<bool>(), 0i64..6, 0u32..4), 1..300),
        ) {
            let mut windows = OpenWindows::default();
            let mut model: HashMap<WindowKey, u64> = HashMap::new();
            for (fold, start, key) in ops {
                let wk = (start * 60_000, key);
                if fold {
                    let opened = windows.by_start.values().map(Vec::len).sum::<usize>();
                    let s = windows.get_or_insert(wk, || state(0));
                    s.records += 1;
                    let now = windows.by_start.values().map(Vec::len).sum::<usize>();
                    prop_assert_eq!(now - opened, usize::from(!model.contains_key(&wk)));
                    *model.entry(wk).or_default() += 1;
                } else {
                    let removed = windows.remove(&wk).map(|s| s.records);
                    prop_assert_eq!(removed, model.remove(&wk));
                }
                prop_assert_eq!(windows.states.len(), model.len());
                for (wk, records) in &model {
                    prop_assert_eq!(windows.get_mut(wk).map(|s| s.records), Some(*records));
                }
            }
        }
    }
}
