//! Approximate percentiles: a DDSketch with 1% relative accuracy whose state is a pure function of
//! the multiset of values, so any fold order and merge tree give the same quantiles.
//!
//! Each value `v > 0` falls in the bin `k = ⌈ln(v)/0.02⌉`, that is `(γ^(k-1), γ^k]` with
//! `γ = e^0.02`; a bin is reported as `2γ^k/(1+γ)`, within `tanh(0.01) ≈ 0.99997%` of every value
//! in it. Negative values use a mirrored store; exact zeros (and `-0.0`) are counted apart, so
//! zero is reported exactly. Unlike the reference DDSketch there is no `min_value` threshold: tiny
//! positive values keep their 1% guarantee down to `f64::MIN_POSITIVE` (subnormal values, below
//! 2.2e-308, are reported on the subnormal grid).
//!
//! Why not `sketches-ddsketch` 0.4: its bins grow in chunks of 128 `u64`s, so a sketch holding one
//! value costs 1 KiB of bins plus a 176-byte struct (2 KiB more once a negative value arrives), and
//! it stores its config and a naive `f64` sum in every state. Here a store starts sparse (8 bytes
//! per distinct key) and turns dense (8 bytes per key of its range) once it has 32 keys filling
//! half of its range; either form gives the same quantiles.
//!
//! Bounded memory: each sign's store keeps at most [`MAX_BINS`] bins (a value range of
//! `γ^2048 ≈ 6·10^17`). Keys more than that below the largest key are counted in the lowest bin,
//! as DDSketch's collapsing store does; quantiles that land there lose the guarantee. The
//! collapsed state is still a pure function of the multiset: the lowest bin is always
//! `max(min key, max key − 2047)` and holds every key at or below it.
//!
//! Bins are computed with `f64::ln` and reported with `f64::exp`; both are deterministic for a
//! given build, so replicas running the same image agree bit for bit.

use serde::{Deserialize, Serialize};

/// Bin width in natural-log space: `ln γ`.
const LN_GAMMA: f64 = 0.02;
/// `1 / ln γ`, exact in binary, so computing a key needs no division.
const KEYS_PER_LN: f64 = 50.0;
/// Most bins a store keeps (per sign).
pub const MAX_BINS: usize = 2048;
/// Guaranteed relative accuracy of a quantile: `tanh(LN_GAMMA / 2)`, just under 1%.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Sparse bins convert to dense ones once they have this many keys and fill half their range.
const SPARSE_MIN_KEYS_TO_CONVERT: usize = 32;

/// Bins of one sign: a count per key, where every key more than `MAX_BINS - 1` below the largest
/// is counted at that floor. Which form holds them depends on history; what they hold, and so
/// every quantile, does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBins")]
enum Bins {
    /// Ascending keys with their counts, packed as `(key + 2^31) << 32 | count` (count < 2^32):
    /// 8 bytes per distinct key, for few keys spread over a wide range.
    Sparse(Vec<u64>),
    /// Counts for the keys `offset ..= offset + counts.len() - 1`; the first and last are non-zero.
    Dense { offset: i32, counts: Box<[u64]> },
}

/// The serialized form of [`Bins`], checked on the way in.
#[derive(Deserialize)]
enum RawBins {
    Sparse(Vec<u64>),
    Dense { offset: i32, counts: Box<[u64]> },
}

impl TryFrom<RawBins> for Bins {
    type Error = &'static str;

    fn try_from(raw: RawBins) -> Result<Self, Self::Error> {
        let valid = match &raw {
            RawBins::Sparse(entries) => {
                entries.iter().all(|&e| count_of(e) != 0)
                    && entries.windows(2).all(|w| key_of(w[0]) < key_of(w[1]))
                    && match (entries.first(), entries.last()) {
                        (Some(&lo), Some(&hi)) => key_of(hi) - key_of(lo) < MAX_BINS as i32,
                        _ => true,
                    }
            }
            RawBins::Dense { offset, counts } => {
                counts.first().is_some_and(|&c| c != 0)
                    && counts.last().is_some_and(|&c| c != 0)
                    && counts.len() <= MAX_BINS
                    && offset.checked_add(MAX_BINS as i32).is_some()
            }
        };
        match raw {
            _ if !valid => Err("invalid percentile sketch bins"),
            RawBins::Sparse(entries) => Ok(Bins::Sparse(entries)),
            RawBins::Dense { offset, counts } => Ok(Bins::Dense { offset, counts }),
        }
    }
}

impl Default for Bins {
    fn default() -> Self {
        Bins::Sparse(Vec::new())
    }
}

fn pack(key: i32, count: u64) -> u64 {
    debug_assert!(count <= u64::from(u32::MAX));
    u64::from(key.wrapping_sub(i32::MIN) as u32) << 32 | count
}

fn key_of(entry: u64) -> i32 {
    ((entry >> 32) as u32 as i32).wrapping_add(i32::MIN)
}

fn count_of(entry: u64) -> u64 {
    entry & u64::from(u32::MAX)
}

/// The lowest key kept apart when `max_key` is the largest: lower keys are counted there.
fn floor(max_key: i32) -> i32 {
    max_key.saturating_sub(MAX_BINS as i32 - 1)
}

impl Bins {
    /// The `(key, count)` pairs in ascending key order.
    fn pairs(&self) -> Vec<(i32, u64)> {
        match self {
            Bins::Sparse(entries) => entries.iter().map(|&e| (key_of(e), count_of(e))).collect(),
            Bins::Dense { offset, counts } => counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != 0)
                .map(|(i, &c)| (offset + i as i32, c))
                .collect(),
        }
    }

    fn total(&self) -> u64 {
        match self {
            Bins::Sparse(entries) => entries.iter().map(|&e| count_of(e)).sum(),
            Bins::Dense { counts, .. } => counts.iter().sum(),
        }
    }

    /// Adds `count > 0` at `key`.
    fn add(&mut self, key: i32, count: u64) {
        match self {
            Bins::Sparse(entries) => {
                if !add_sparse(entries, key, count) {
                    let mut dense = Bins::Dense { offset: key, counts: Box::new([count]) };
                    dense.merge(self);
                    *self = dense;
                }
            }
            Bins::Dense { offset, counts } => add_dense(offset, counts, key, count),
        }
    }

    fn merge(&mut self, other: &Bins) {
        let pairs = other.pairs();
        // The largest key first, so that a dense range is widened at most twice.
        if let Some((&(key, count), rest)) = pairs.split_last() {
            self.add(key, count);
            for &(key, count) in rest {
                self.add(key, count);
            }
        }
    }

    /// The key of the value at `rank` (0-based) counting up from the lowest key.
    fn key_at_rank(&self, rank: u64) -> i32 {
        let mut seen = 0;
        for (key, count) in self.pairs() {
            seen += count;
            if seen > rank {
                return key;
            }
        }
        unreachable!("rank {rank} is below the count {seen}")
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Bins::Sparse(entries) => entries.capacity() * 8,
            Bins::Dense { counts, .. } => counts.len() * 8,
        }
    }
}

/// Adds to sparse bins; `false`, leaving them unchanged, when they should turn dense first
/// (a count reaching 2^32, or enough keys to fill half their range).
fn add_sparse(entries: &mut Vec<u64>, key: i32, count: u64) -> bool {
    let max_key = entries.last().map_or(key, |&e| key_of(e).max(key));
    let floor = floor(max_key);
    let key = key.max(floor);
    let below = entries.partition_point(|&e| key_of(e) <= floor);
    if below > 0 && key_of(entries[0]) < floor {
        let folded: u64 = entries[..below].iter().map(|&e| count_of(e)).sum();
        if folded > u64::from(u32::MAX) {
            return false;
        }
        entries.splice(..below, [pack(floor, folded)]);
    }
    let at = entries.partition_point(|&e| key_of(e) < key);
    if let Some(entry) = entries.get_mut(at).filter(|e| key_of(**e) == key) {
        let total = count_of(*entry) + count;
        if total > u64::from(u32::MAX) {
            return false;
        }
        *entry = pack(key, total);
        return true;
    }
    let min_key = entries.first().map_or(key, |&e| key_of(e).min(key));
    let keys = entries.len() + 1;
    if count > u64::from(u32::MAX)
        || (keys >= SPARSE_MIN_KEYS_TO_CONVERT && keys * 2 >= (max_key - min_key + 1) as usize)
    {
        return false;
    }
    if entries.len() == entries.capacity() {
        // Grow by half, not double, so a sparse store stays near its size.
        entries.reserve_exact((entries.len() / 2).max(2));
    }
    entries.insert(at, pack(key, count));
    true
}

/// Adds to dense bins, widening them to cover the key and folding keys below the floor.
fn add_dense(offset: &mut i32, counts: &mut Box<[u64]>, key: i32, count: u64) {
    let max_key = *offset + counts.len() as i32 - 1;
    let new_max = max_key.max(key);
    let floor = floor(new_max);
    let key = key.max(floor);
    let new_min = (*offset).min(key).max(floor);
    if new_min != *offset || new_max != max_key {
        let mut widened = vec![0; (new_max - new_min + 1) as usize];
        for (i, &c) in counts.iter().enumerate() {
            let k = (*offset + i as i32).max(new_min);
            widened[(k - new_min) as usize] += c;
        }
        *offset = new_min;
        *counts = widened.into_boxed_slice();
    }
    counts[(key - *offset) as usize] += count;
}

/// A DDSketch over `f64` values: see the module documentation for its guarantees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PercentileSketch {
    /// Keys of `v > 0`.
    positive: Bins,
    /// Keys of `-v` for `v < 0`.
    negative: Bins,
    /// Number of zeros.
    zeros: u64,
}

impl PercentileSketch {
    /// Folds in a finite value (the caller rejects NaN and infinities).
    pub fn add(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        if value > 0.0 {
            self.positive.add(key(value), 1);
        } else if value < 0.0 {
            self.negative.add(key(-value), 1);
        } else {
            self.zeros += 1;
        }
    }

    /// Adds the state of another partial sketch.
    pub fn merge(&mut self, other: &PercentileSketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zeros += other.zeros;
    }

    /// Number of values folded in.
    pub fn count(&self) -> u64 {
        self.positive.total() + self.negative.total() + self.zeros
    }

    /// The `q`-quantile: an estimate of the value at 0-based rank `⌊q·(n−1)⌋` of the `n` values in
    /// ascending order, within [`RELATIVE_ACCURACY`] of it; `None` when empty. `q` is clamped to
    /// `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // `as` saturates, and maps NaN to 0.
        let rank = ((q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64).min(n - 1);
        let negatives = self.negative.total();
        Some(if rank < negatives {
            // Ascending values are descending keys of the mirrored store.
            -representative(self.negative.key_at_rank(negatives - 1 - rank))
        } else if rank < negatives + self.zeros {
            0.0
        } else {
            representative(self.positive.key_at_rank(rank - negatives - self.zeros))
        })
    }

    /// Bytes held on the heap (bins only; the sketch itself is counted by its owner).
    pub fn heap_bytes(&self) -> usize {
        self.positive.heap_bytes() + self.negative.heap_bytes()
    }
}

/// The bin of a value `v > 0`.
fn key(v: f64) -> i32 {
    // |ln v| <= 745 for every positive finite double, so this fits i32 comfortably.
    (v.ln() * KEYS_PER_LN).ceil() as i32
}

/// The value that represents bin `k`: `2γ^k / (1 + γ)`, equally far in relative terms from both
/// bin edges.
fn representative(k: i32) -> f64 {
    let gamma = LN_GAMMA.exp();
    (2.0 * (f64::from(k) * LN_GAMMA).exp() / (1.0 + gamma)).min(f64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: &[f64]) -> PercentileSketch {
        let mut s = PercentileSketch::default();
        values.iter().for_each(|&v| s.add(v));
        s
    }

    fn assert_close(estimate: f64, exact: f64) {
        assert!(
            (estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs(),
            "estimate {estimate} vs exact {exact}"
        );
    }

    #[test]
    fn accuracy_constant_holds() {
        assert!((LN_GAMMA / 2.0).tanh() <= RELATIVE_ACCURACY);
        assert_eq!(KEYS_PER_LN * LN_GAMMA, 1.0);
    }

    #[test]
    fn every_bin_edge_is_within_accuracy() {
        for v in
            [1e-300, f64::MIN_POSITIVE, 1e-9, 0.001, 0.999, 1.0, 1.0202, 12.5, 1e9, 1e300, f64::MAX]
        {
            assert_close(sketch(&[v]).quantile(0.5).unwrap(), v);
        }
    }

    #[test]
    fn ranks_are_floor_q_times_n_minus_one() {
        let s = sketch(&[1.0, 2.0, 3.0, 4.0]);
        for (q, exact) in [
            (0.0, 1.0),
            (0.33, 1.0),
            (0.34, 2.0),
            (0.66, 2.0),
            (0.67, 3.0),
            (0.99, 3.0),
            (1.0, 4.0),
        ] {
            assert_close(s.quantile(q).unwrap(), exact);
        }
    }

    #[test]
    fn zeros_and_negatives() {
        let s = sketch(&[-10.0, -1.0, 0.0, -0.0, 5.0]);
        assert_close(s.quantile(0.0).unwrap(), -10.0);
        assert_close(s.quantile(0.25).unwrap(), -1.0);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.quantile(0.75), Some(0.0));
        assert_close(s.quantile(1.0).unwrap(), 5.0);
        assert_eq!(PercentileSketch::default().quantile(0.5), None);
    }

    #[test]
    fn a_huge_range_collapses_the_lowest_bins_only() {
        // 1e10 / MAX_BINS bins reach down to ~1.7e-8: the two tiny values share the lowest bin.
        let s = sketch(&[1e-300, 1e-200, 1.0, 1e10]);
        let keys = s.positive.pairs();
        assert_eq!(keys.last().unwrap().0 - keys[0].0, MAX_BINS as i32 - 1);
        assert_eq!(s.count(), 4);
        assert_close(s.quantile(1.0).unwrap(), 1e10);
        assert_close(s.quantile(0.67).unwrap(), 1.0);
        let lowest = s.quantile(0.0).unwrap();
        assert!(lowest > 1e-9 && lowest < 1e-7, "{lowest}");
        assert_eq!(s.quantile(0.34), s.quantile(0.0));
    }

    #[test]
    fn few_values_cost_few_bytes() {
        let one = sketch(&[0.123]);
        assert!(matches!(one.positive, Bins::Sparse(_)));
        assert!(one.heap_bytes() <= 16, "{}", one.heap_bytes());
        // Ten values over six decades: sparse, ~8 bytes per key, not 8 per bin of the range.
        let wide: Vec<f64> = (0..10).map(|i| 10f64.powf(i as f64 * 0.6 - 3.0)).collect();
        assert!(sketch(&wide).heap_bytes() <= 160, "{}", sketch(&wide).heap_bytes());
    }

    #[test]
    fn sparse_and_dense_bins_give_the_same_quantiles() {
        let values: Vec<f64> = (0..5_000).map(|i| 1.0 + (i % 400) as f64 * 0.05).collect();
        let dense = sketch(&values);
        assert!(matches!(dense.positive, Bins::Dense { .. }));
        let mut sparse = Bins::Sparse(Vec::new());
        for (key, count) in dense.positive.pairs() {
            let ok = add_sparse_unbounded(&mut sparse, key, count);
            assert!(ok);
        }
        let sparse = PercentileSketch { positive: sparse, ..Default::default() };
        for q in [0.0, 0.1, 0.5, 0.9, 0.999, 1.0] {
            assert_eq!(sparse.quantile(q), dense.quantile(q), "q={q}");
        }
    }

    /// Builds sparse bins past the conversion point, for comparison only.
    fn add_sparse_unbounded(bins: &mut Bins, key: i32, count: u64) -> bool {
        let Bins::Sparse(entries) = bins else {
            return false;
        };
        let at = entries.partition_point(|&e| key_of(e) < key);
        entries.insert(at, pack(key, count));
        true
    }

    #[test]
    fn counts_beyond_u32_turn_sparse_bins_dense() {
        let mut bins = Bins::default();
        bins.add(5, u64::from(u32::MAX));
        bins.add(-3, 1);
        assert!(matches!(bins, Bins::Sparse(_)));
        bins.add(5, 1);
        assert!(matches!(bins, Bins::Dense { .. }));
        assert_eq!(bins.pairs(), [(-3, 1), (5, 1 << 32)]);
    }

    #[test]
    fn keys_survive_packing() {
        for key in [i32::MIN, -37_000, -1, 0, 1, 35_000, i32::MAX] {
            let entry = pack(key, 12_345);
            assert_eq!((key_of(entry), count_of(entry)), (key, 12_345));
        }
    }

    #[test]
    fn corrupt_bins_are_refused() {
        let unsorted = Bins::Sparse(vec![pack(5, 1), pack(3, 1)]);
        let bytes = postcard::to_allocvec(&unsorted).unwrap();
        assert!(postcard::from_bytes::<Bins>(&bytes).is_err());
        let zero_edge = Bins::Dense { offset: 7, counts: Box::new([0, 1]) };
        let bytes = postcard::to_allocvec(&zero_edge).unwrap();
        assert!(postcard::from_bytes::<Bins>(&bytes).is_err());
    }
}
