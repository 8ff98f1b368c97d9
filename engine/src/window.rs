//! Event-time windows (tumbling and hopping) and finality: when a window can receive no more
//! records.
//!
//! Finality follows from the lateness rule alone. A record is dropped iff
//! `log_time - event_time > max_lateness`. Once a partition's log-time progress `P` satisfies
//! `P >= end + max_lateness`, any later record of that partition with `log_time >= P` and an
//! event time inside the window (`event_time <= end - 1`) has
//! `log_time - event_time >= max_lateness + 1` and is dropped. So once every partition is past
//! that point, the window is final. This needs log time to be non-decreasing within a partition
//! (true for broker append time and for a single shipper's `logged_time`); a record that breaks
//! it and targets an already final window is dead-lettered with reason `window_final`, never
//! folded silently into a half-state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::EpochMillis;

/// Window size and slide in milliseconds (`slide == size` for tumbling windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    /// Length of a window.
    size_ms: i64,
    /// Distance between consecutive window starts; divides `size_ms`.
    slide_ms: i64,
    /// Windows that contain any one instant: `size_ms / slide_ms`, divided once here rather
    /// than for every record (the fields are private so that it cannot go stale).
    per_instant: i64,
}

impl WindowShape {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: i64) -> Self {
        assert!(size_ms > 0, "window size must be positive");
        Self { size_ms, slide_ms: size_ms, per_instant: 1 }
    }

    /// Hopping windows; `slide_ms` must divide `size_ms`.
    pub fn hopping(size_ms: i64, slide_ms: i64) -> Self {
        assert!(slide_ms > 0 && size_ms % slide_ms == 0, "slide must divide size");
        Self { size_ms, slide_ms, per_instant: size_ms / slide_ms }
    }

    /// The start of every window containing `event_time`, oldest first.
    ///
    /// ```
    /// use kappa_engine::window::WindowShape;
    /// let w = WindowShape::hopping(300_000, 60_000);
    /// let starts: Vec<i64> = w.windows_of(610_000).collect();
    /// assert_eq!(starts, vec![360_000, 420_000, 480_000, 540_000, 600_000]);
    /// assert_eq!(WindowShape::tumbling(60_000).windows_of(-1).collect::<Vec<_>>(), vec![-60_000]);
    /// ```
    #[inline]
    pub fn windows_of(&self, event_time: EpochMillis) -> impl Iterator<Item = EpochMillis> + Clone {
        let last = event_time.div_euclid(self.slide_ms) * self.slide_ms;
        let slide = self.slide_ms;
        (0..self.per_instant).rev().map(move |k| last - k * slide)
    }

    /// End (exclusive) of the window starting at `start`.
    #[inline]
    pub fn end_of(&self, start: EpochMillis) -> EpochMillis {
        start + self.size_ms
    }

    /// Whether the window starting at `start` is final at log-time watermark `watermark`.
    #[inline]
    pub fn is_final(
        &self,
        start: EpochMillis,
        max_lateness_ms: i64,
        watermark: EpochMillis,
    ) -> bool {
        watermark >= self.end_of(start).saturating_add(max_lateness_ms)
    }
}

/// Per-partition log-time progress and the watermark derived from it.
///
/// The watermark is the minimum progress over the partitions that are neither idle nor ended;
/// idle or ended partitions do not hold finality back. When every partition is idle or ended,
/// the watermark is the maximum progress seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogProgress {
    partitions: BTreeMap<u32, PartitionProgress>,
}

/// Progress of one partition.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionProgress {
    /// Highest log time seen (`i64::MIN` before the first record).
    pub log_time: EpochMillis,
    /// No record for a while: excluded from the watermark until the next record.
    pub idle: bool,
    /// The partition has no more records (end of a bounded input).
    pub ended: bool,
}

impl LogProgress {
    /// Declares a partition (it holds the watermark back until it has progress).
    pub fn assign(&mut self, partition: u32) {
        self.partitions.entry(partition).or_insert(PartitionProgress {
            log_time: EpochMillis::MIN,
            idle: false,
            ended: false,
        });
    }

    /// Records that `partition` reached `log_time`; an idle partition becomes active again.
    #[inline]
    pub fn observe(&mut self, partition: u32, log_time: EpochMillis) {
        let p = self.partitions.entry(partition).or_insert(PartitionProgress {
            log_time: EpochMillis::MIN,
            idle: false,
            ended: false,
        });
        p.log_time = p.log_time.max(log_time);
        p.idle = false;
    }

    /// Marks `partition` idle (no new records for the idle timeout).
    pub fn mark_idle(&mut self, partition: u32) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.idle = true;
        }
    }

    /// Marks `partition` ended (a bounded input is exhausted).
    pub fn mark_ended(&mut self, partition: u32) {
        self.assign(partition);
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.ended = true;
        }
    }

    /// The log-time watermark, if any partition has progress.
    pub fn watermark(&self) -> Option<EpochMillis> {
        let active = self.partitions.values().filter(|p| !p.idle && !p.ended);
        let min_active = active.clone().map(|p| p.log_time).min();
        let wm = match min_active {
            Some(m) => m,
            None => self.partitions.values().map(|p| p.log_time).max()?,
        };
        (wm != EpochMillis::MIN).then_some(wm)
    }

    /// Progress of one partition.
    pub fn partition(&self, partition: u32) -> Option<&PartitionProgress> {
        self.partitions.get(&partition)
    }

    /// Every partition's progress.
    pub fn partitions(&self) -> impl Iterator<Item = (u32, &PartitionProgress)> {
        self.partitions.iter().map(|(k, v)| (*k, v))
    }

    /// Folds another progress view in (e.g. a worker's) by taking maxima.
    pub fn merge(&mut self, other: &LogProgress) {
        for (&p, o) in &other.partitions {
            let mine = self.partitions.entry(p).or_insert(*o);
            mine.log_time = mine.log_time.max(o.log_time);
            mine.ended |= o.ended;
            mine.idle = mine.idle && o.idle;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_assigns_one_window() {
        let w = WindowShape::tumbling(60_000);
        assert_eq!(w.windows_of(59_999).collect::<Vec<_>>(), vec![0]);
        assert_eq!(w.windows_of(60_000).collect::<Vec<_>>(), vec![60_000]);
    }

    #[test]
    fn finality_is_exactly_end_plus_lateness() {
        let w = WindowShape::tumbling(60_000);
        assert!(!w.is_final(0, 1_000, 60_999));
        assert!(w.is_final(0, 1_000, 61_000));
    }

    #[test]
    fn slow_partition_holds_the_watermark_until_idle_or_ended() {
        let mut p = LogProgress::default();
        p.assign(0);
        p.assign(1);
        p.observe(0, 100);
        assert_eq!(p.watermark(), None, "partition 1 has no progress yet");
        p.observe(1, 50);
        assert_eq!(p.watermark(), Some(50));
        p.mark_idle(1);
        assert_eq!(p.watermark(), Some(100));
        p.observe(1, 60);
        assert_eq!(p.watermark(), Some(60), "an idle partition that speaks again counts");
        p.mark_ended(0);
        p.mark_ended(1);
        assert_eq!(p.watermark(), Some(100));
    }
}
