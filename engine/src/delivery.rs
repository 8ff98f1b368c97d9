//! Delivery of window documents to the sink, and how far the sink has caught up with the
//! source.
//!
//! Documents built from the windows are *staged* here, handed to the sink in batches
//! ([`Delivery::next_batch`]) and retired when the sink acknowledges a batch
//! ([`Delivery::acknowledge`]). Whenever every folded record's effect is contained in staged
//! documents, the caller records the source positions as a *mark*; once every document staged
//! before a mark is acknowledged, its positions become the *delivered* positions: each record
//! below them has its effect in the index. That is the index's progress, which the caught-up
//! rule needs (consumer offsets alone say nothing about documents still in flight).
//!
//! Documents staged and not yet acknowledged are part of the snapshot ([`DeliveryState`]), so a
//! checkpoint never waits for the sink and its duration does not depend on the backlog: a
//! restored engine sends them again, and external versions make the repeat a no-op.
//!
//! A document staged for a window that already has one waiting in the queue replaces it in
//! place: the newer one carries a version at least as high, and a window never has two
//! documents in one batch (two with the same version would race on the `final` flag).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::output::WindowDoc;

/// Next offset per partition.
pub type Positions = BTreeMap<u32, i64>;

/// At most this many marks wait for acknowledgement; a newer mark replaces the newest waiting
/// one beyond it (delivered positions then advance in coarser steps, never too far).
const MAX_MARKS: usize = 64;

/// Documents handed to the sink together.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Identifies the batch in [`Delivery::acknowledge`].
    pub id: u64,
    /// The documents, in staging order.
    pub docs: Arc<[WindowDoc]>,
}

/// A batch handed out and not yet retired.
#[derive(Debug)]
struct InFlight {
    id: u64,
    docs: Arc<[WindowDoc]>,
    acknowledged: bool,
}

/// The restorable part of a [`Delivery`]: what a snapshot keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Documents staged and not acknowledged, in staging order.
    pub undelivered: Vec<WindowDoc>,
    /// Marks waiting for acknowledgement: (number of documents of `undelivered` before the
    /// mark, positions).
    pub marks: Vec<(u64, Positions)>,
    /// Positions through which every record's effect is acknowledged.
    pub delivered: Positions,
}

/// Staged, in-flight and acknowledged documents of one processor.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Staged documents not yet in a batch.
    queue: VecDeque<WindowDoc>,
    /// Sequence number of each queued document by id (for replacement in place).
    queued: HashMap<String, u64>,
    /// Batches handed out, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Documents in `in_flight`.
    in_flight_docs: usize,
    /// Documents staged since this value was created (the next one's sequence number).
    staged: u64,
    /// Documents retired, counted in staging order (every document before is acknowledged).
    retired: u64,
    /// (staged count, positions), oldest first.
    marks: VecDeque<(u64, Positions)>,
    delivered: Positions,
    next_batch: u64,
}

impl Delivery {
    /// Nothing staged, nothing delivered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes from a snapshot: its undelivered documents are staged again, first.
    pub fn restore(state: DeliveryState) -> Self {
        let mut delivery = Self { delivered: state.delivered, ..Self::default() };
        // Staging replaces a queued document of the same window in place, so a mark counts the
        // documents that remain among those it counted.
        let mut staged_after = Vec::with_capacity(state.undelivered.len());
        for doc in state.undelivered {
            delivery.stage([doc]);
            staged_after.push(delivery.staged);
        }
        delivery.marks = state
            .marks
            .into_iter()
            .map(|(n, p)| {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let kept = match n.checked_sub(1) {
                    None => 0,
                    Some(i) => staged_after.get(i).copied().unwrap_or(delivery.staged),
                };
                (kept, p)
            })
            .collect();
        delivery.advance_marks();
        delivery
    }

    /// What a snapshot keeps: every document not acknowledged (in flight or queued), the marks
    /// and the delivered positions.
    pub fn state(&self) -> DeliveryState {
        let undelivered: Vec<WindowDoc> = self
            .in_flight
            .iter()
            .flat_map(|b| b.docs.iter())
            .chain(self.queue.iter())
            .cloned()
            .collect();
        let marks = self.marks.iter().map(|(n, p)| (n - self.retired, p.clone())).collect();
        DeliveryState { undelivered, marks, delivered: self.delivered.clone() }
    }

    /// Stages documents, replacing a queued document of the same window.
    pub fn stage(&mut self, docs: impl IntoIterator<Item = WindowDoc>) {
        let first_queued = self.staged - self.queue.len() as u64;
        for doc in docs {
            if let Some(&seq) = self.queued.get(&doc.id) {
                self.queue[(seq - first_queued) as usize] = doc;
                continue;
            }
            self.queued.insert(doc.id.clone(), self.staged);
            self.queue.push_back(doc);
            self.staged += 1;
        }
    }

    /// Records that every record below `positions` has its effect in the documents staged so
    /// far. With nothing outstanding they are delivered at once.
    pub fn mark(&mut self, positions: &Positions) {
        if self.retired == self.staged {
            self.delivered.clone_from(positions);
            self.marks.clear();
            return;
        }
        if self.marks.len() >= MAX_MARKS {
            self.marks.pop_back();
        }
        self.marks.push_back((self.staged, positions.clone()));
    }

    /// Takes the next batch off the queue: at most `max_docs` documents and, past the first,
    /// `max_bytes` of bodies. `None` when nothing is queued.
    pub fn next_batch(&mut self, max_docs: usize, max_bytes: usize) -> Option<Batch> {
        let mut docs = Vec::new();
        let mut bytes = 0;
        while docs.len() < max_docs.max(1) {
            let Some(doc) = self.queue.front() else { break };
            if !docs.is_empty() && bytes + doc.body.len() > max_bytes {
                break;
            }
            bytes += doc.body.len();
            let doc = self.queue.pop_front().expect("front exists");
            self.queued.remove(&doc.id);
            docs.push(doc);
        }
        if docs.is_empty() {
            return None;
        }
        let batch = Batch { id: self.next_batch, docs: docs.into() };
        self.next_batch += 1;
        self.in_flight_docs += batch.docs.len();
        self.in_flight.push_back(InFlight {
            id: batch.id,
            docs: Arc::clone(&batch.docs),
            acknowledged: false,
        });
        Some(batch)
    }

    /// The sink acknowledged batch `id`: every document of it is in the index (or was refused
    /// for good and routed elsewhere). Returns `false` for an unknown batch.
    pub fn acknowledge(&mut self, id: u64) -> bool {
        let Some(batch) = self.in_flight.iter_mut().find(|b| b.id == id) else { return false };
        batch.acknowledged = true;
        while self.in_flight.front().is_some_and(|b| b.acknowledged) {
            let batch = self.in_flight.pop_front().expect("front exists");
            self.in_flight_docs -= batch.docs.len();
            self.retired += batch.docs.len() as u64;
        }
        self.advance_marks();
        true
    }

    /// Delivers the positions of every mark whose documents are all retired.
    fn advance_marks(&mut self) {
        while let Some((n, _)) = self.marks.front() {
            if *n > self.retired {
                break;
            }
            let (_, positions) = self.marks.pop_front().expect("front exists");
            self.delivered = positions;
        }
    }

    /// Positions through which every record's effect is acknowledged by the sink.
    pub fn delivered(&self) -> &Positions {
        &self.delivered
    }

    /// Documents staged and not acknowledged (queued or in flight).
    pub fn outstanding(&self) -> usize {
        self.queue.len() + self.in_flight_docs
    }

    /// Documents queued, not yet in a batch.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Documents in batches the sink has not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight_docs
    }

    /// Batches handed out and not yet retired.
    pub fn batches_in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, version: u64, is_final: bool) -> WindowDoc {
        WindowDoc {
            id: id.into(),
            version,
            start: 0,
            key: Box::new([]),
            body: format!("{{\"v\":{version},\"final\":{is_final}}}"),
            is_final,
        }
    }

    fn at(offset: i64) -> Positions {
        [(0, offset)].into()
    }

    fn ids(batch: &Batch) -> Vec<(&str, u64, bool)> {
        batch.docs.iter().map(|d| (d.id.as_str(), d.version, d.is_final)).collect()
    }

    #[test]
    fn positions_are_delivered_once_every_document_before_the_mark_is_acknowledged() {
        let mut d = Delivery::new();
        d.mark(&at(5));
        assert_eq!(d.delivered(), &at(5), "nothing outstanding: delivered at once");
        d.stage([doc("a", 1, false), doc("b", 1, false)]);
        d.mark(&at(10));
        d.stage([doc("c", 1, false)]);
        d.mark(&at(12));
        let first = d.next_batch(2, usize::MAX).unwrap();
        let second = d.next_batch(2, usize::MAX).unwrap();
        assert_eq!((d.outstanding(), d.in_flight(), d.queued()), (3, 3, 0));
        // The second batch is acknowledged first: nothing before it is complete yet.
        assert!(d.acknowledge(second.id));
        assert_eq!(d.delivered(), &at(5));
        assert!(d.acknowledge(first.id));
        assert_eq!(d.delivered(), &at(12));
        assert_eq!(d.outstanding(), 0);
        assert!(!d.acknowledge(first.id), "a batch is acknowledged once");
    }

    #[test]
    fn a_queued_document_is_replaced_in_place_by_a_newer_one_of_its_window() {
        let mut d = Delivery::new();
        d.stage([doc("a", 3, false), doc("b", 1, false)]);
        d.mark(&at(4));
        d.stage([doc("a", 3, true), doc("c", 1, false)]);
        let batch = d.next_batch(10, usize::MAX).unwrap();
        assert_eq!(ids(&batch), [("a", 3, true), ("b", 1, false), ("c", 1, false)]);
        // Once handed out, a newer document queues behind the batch.
        d.stage([doc("a", 4, true)]);
        assert_eq!(d.outstanding(), 4);
        d.acknowledge(batch.id);
        assert_eq!(d.delivered(), &at(4));
        assert_eq!(ids(&d.next_batch(10, usize::MAX).unwrap()), [("a", 4, true)]);
    }

    #[test]
    fn batches_respect_the_byte_limit_but_always_take_one_document() {
        let mut d = Delivery::new();
        d.stage([doc("a", 1, false), doc("b", 1, false), doc("c", 1, false)]);
        let len = d.queue[0].body.len();
        assert_eq!(d.next_batch(10, 2 * len).unwrap().docs.len(), 2);
        assert_eq!(d.next_batch(10, 1).unwrap().docs.len(), 1);
        assert!(d.next_batch(10, 1).is_none());
    }

    #[test]
    fn the_state_keeps_in_flight_and_queued_documents_and_the_marks_between_them() {
        let mut d = Delivery::new();
        d.stage([doc("a", 1, false)]);
        d.mark(&at(1));
        let a = d.next_batch(10, usize::MAX).unwrap();
        d.stage([doc("b", 1, false), doc("c", 2, false)]);
        d.mark(&at(3));
        let b = d.next_batch(1, usize::MAX).unwrap();
        d.acknowledge(a.id);
        assert_eq!(d.delivered(), &at(1));
        let state = d.state();
        assert_eq!(
            state.undelivered.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"],
            "in flight, then queued"
        );
        assert_eq!(state.marks, vec![(2, at(3))]);

        // A crash: the restored delivery sends both again and delivers the mark after both.
        let mut r = Delivery::restore(state.clone());
        assert_eq!(r.delivered(), &at(1));
        let again = r.next_batch(10, usize::MAX).unwrap();
        assert_eq!(again.docs.len(), 2);
        r.acknowledge(again.id);
        assert_eq!(r.delivered(), &at(3));
        // Without the crash, the same.
        d.acknowledge(b.id);
        let rest = d.next_batch(10, usize::MAX).unwrap();
        d.acknowledge(rest.id);
        assert_eq!(d.delivered(), &at(3));
    }

    #[test]
    fn a_restore_merges_documents_of_one_window_and_keeps_its_marks_reachable() {
        let mut d = Delivery::new();
        d.stage([doc("a", 3, false), doc("b", 1, false)]);
        d.mark(&at(2));
        let batch = d.next_batch(10, usize::MAX).unwrap();
        d.stage([doc("a", 5, false)]);
        d.mark(&at(3));
        assert_eq!(batch.docs.len(), 2);
        let mut r = Delivery::restore(d.state());
        assert_eq!(r.outstanding(), 2, "a@3 is replaced by a@5");
        let again = r.next_batch(10, usize::MAX).unwrap();
        assert_eq!(ids(&again), [("a", 5, false), ("b", 1, false)]);
        r.acknowledge(again.id);
        assert_eq!(r.delivered(), &at(3));
    }

    #[test]
    fn waiting_marks_are_bounded_and_never_deliver_too_far() {
        let mut d = Delivery::new();
        for i in 0..(MAX_MARKS as i64 + 10) {
            d.stage([doc(&format!("w{i}"), 1, false)]);
            d.mark(&at(i + 1));
        }
        assert_eq!(d.marks.len(), MAX_MARKS);
        let first = d.next_batch(1, usize::MAX).unwrap();
        d.acknowledge(first.id);
        assert_eq!(d.delivered(), &at(1));
        while let Some(b) = d.next_batch(7, usize::MAX) {
            d.acknowledge(b.id);
            let delivered = d.delivered()[&0];
            assert!(delivered as u64 <= d.retired, "{delivered} > {}", d.retired);
        }
        assert_eq!(d.delivered(), &at(MAX_MARKS as i64 + 10));
    }
}
