//! Approximate percentiles: a DDSketch with 1% relative accuracy whose state is a pure function of
//! the multiset of values, so any fold order and merge tree give the same quantiles.
//!
//! - Exact while small: up to [`EXACT_LIMIT`] values are kept as they are (sorted), and a
//!   quantile is then the exact value at its rank. The next value bins them all.
//! - Bins: each value `v > 0` falls in the bin `k` with `2^((k−1)/35) < v ≤ 2^(k/35)`: 35 bins
//!   per octave, so with `γ = 2^(1/35)` a bin spans a factor of `γ`. A bin is reported as
//!   `2·lo·hi/(lo+hi)` of its edges, within `(γ−1)/(γ+1) ≈ 0.9902%` of every value in it.
//!   Negative values use a mirrored store; zeros (and `-0.0`) are counted apart, so zero is
//!   reported exactly.
//! - The bin of a value is computed from its bits, without a logarithm: the exponent gives the
//!   octave, the top 7 mantissa bits pick one of 128 cells of a table, and one comparison with a
//!   tabulated bin edge (`EDGES`, the 52-bit mantissas `⌊2^52·(2^(j/35) − 1)⌋`) settles the bin,
//!   because a bin is wider than a cell. That is exactly logarithmic binning (unlike DDSketch's
//!   "fast" interpolated mappings, which need more bins for the same accuracy), integer-only, and
//!   reproducible on every platform. Subnormal values are scaled by 2^64 first, so they keep the
//!   guarantee, except that a result below 2.2e-308 is rounded to the subnormal grid.
//! - The smallest and largest value are tracked exactly (order-independent, like the bins). The
//!   lowest and highest rank report them, and every other quantile is clamped into `[min, max]`:
//!   that can only bring it closer to the true value. So a window whose latencies are all 13
//!   reports 13, not 13.065, however many there are.
//!
//! Why not `sketches-ddsketch` 0.4: its bins grow in chunks of 128 `u64`s, so a sketch holding one
//! value costs 1 KiB of bins plus a 176-byte struct (2 KiB more once a negative value arrives), and
//! it stores its config and a naive `f64` sum in every state. Here a store starts sparse (4 bytes
//! per distinct key) and turns dense (4 bytes per key of its range, 8 once a count passes 2^32)
//! once it has 32 keys spanning at most twice as many, or 128 keys spanning at most 8 times as
//! many, or a count passes 2^21; either form gives the same quantiles and the same serialized
//! bytes. On the many-small-windows workload (~38 latencies a window) this took the sketch from
//! 520 to 297 bytes a window (8-byte sparse entries and dense bins at 8 times the keys before).
//!
//! Bounded memory: each sign's store keeps at most [`MAX_BINS`] bins (a value range of
//! `γ^2048 ≈ 4·10^17`). Keys more than that below the largest key are counted in the lowest bin,
//! as DDSketch's collapsing store does; quantiles that land there lose the guarantee (but stay
//! within `[min, max]`). The collapsed state is still a pure function of the multiset: the lowest
//! bin is always `max(min key, max key − 2047)` and holds every key at or below it.
//!
//! Everything is integer arithmetic or correctly rounded IEEE operations (no `ln`, no `exp`), so
//! replicas agree bit for bit across builds and platforms.

use serde::{Deserialize, Serialize};

/// Bins per octave (factor of 2 in value).
const BINS_PER_OCTAVE: i32 = 35;
/// Most bins a store keeps (per sign).
pub const MAX_BINS: usize = 2048;
/// Guaranteed relative accuracy of a quantile: `(γ−1)/(γ+1)` with `γ = 2^(1/35)` is 0.99018%,
/// just under 1%.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Most values a sketch keeps exactly; with more, it bins them.
pub const EXACT_LIMIT: usize = 32;

/// Sparse bins turn dense once they have this many keys,
const SPARSE_MIN_KEYS_TO_CONVERT: usize = 32;
/// and their range is at most this many times as many keys (dense bins then take at most twice
/// the bytes of sparse ones),
const DENSE_RANGE_PER_KEY: usize = 2;
/// or, once they have this many keys, at most this many times as many: a window with that many
/// distinct values is a busy one, where adding by indexing pays for the bytes.
const BUSY_KEYS: usize = 128;
const BUSY_RANGE_PER_KEY: usize = 8;

/// The bin edges within an octave, as 52-bit mantissas: `EDGES[j] = ⌊2^52·(2^(j/35) − 1)⌋`
/// (computed to 80 digits), and `EDGES[35] = 2^52`. Bin `j` (1..=35) of the octave `2^e` holds
/// `2^e·(1 + m/2^52)` for the mantissas `EDGES[j−1] < m ≤ EDGES[j]`; `2^e` itself (`m = 0`) is
/// the top of bin 35 of the octave below.
const EDGES: [u64; 36] = [
    0x0,
    0x51ed_3525_4d7a,
    0xa57d_e9c1_6bc7,
    0xfaba_81d4_e5df,
    0x1_51ab_8c56_eea2,
    0x1_aa59_c411_5e7d,
    0x2_04ce_1081_1781,
    0x2_6111_86ba_e674,
    0x2_bf2d_6a54_f7da,
    0x3_1f2b_2e54_f85c,
    0x3_8114_7622_f886,
    0x3_e4f3_1681_2c2f,
    0x4_4ad1_1688_9e7b,
    0x4_b2b8_b0aa_f3c7,
    0x5_1cb4_53b9_536c,
    0x5_88ce_a3f0_93bd,
    0x5_f712_7c0a_c329,
    0x6_678a_ee56_29f7,
    0x6_da43_45d1_e0ad,
    0x7_4f47_0750_179f,
    0x7_c6a1_f29e_2ce6,
    0x8_4060_03b2_ae5c,
    0x8_bc8d_73e1_660f,
    0x9_3b36_bb15_8ffe,
    0x9_bc68_9112_58bf,
    0xa_402f_eeb9_c532,
    0xa_c69a_0f5a_241c,
    0xb_4fb4_7202_2b1a,
    0xb_db8c_dadb_e120,
    0xc_6a31_548e_794d,
    0xc_fbb0_31a7_41a4,
    0xd_9018_0e09_c9e3,
    0xe_2777_d067_6770,
    0xe_c1de_abbe_3c14,
    0xf_5f5c_20df_e5f2,
    0x10_0000_0000_0000,
];

/// Mantissa bits below the cell index.
const CELL_SHIFT: u32 = 45;

/// For each of the 128 cells of an octave (the top 7 mantissa bits), how many of `EDGES[..35]`
/// lie below the cell's start. A bin spans at least 2% of an octave, a cell 0.8%, so a cell
/// holds at most one edge: the one at this position.
const CELLS: [u8; 128] = {
    let mut cells = [0u8; 128];
    let mut cell = 0;
    while cell < 128 {
        let mut below = 0;
        while below < 35 && EDGES[below] < (cell as u64) << CELL_SHIFT {
            below += 1;
        }
        cells[cell] = below as u8;
        cell += 1;
    }
    cells
};

/// 2^64, to scale subnormal values into the normal range exactly.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// The bin of a finite value `v > 0`.
fn key(v: f64) -> i32 {
    debug_assert!(v > 0.0 && v.is_finite());
    let (bits, scale) =
        if v < f64::MIN_POSITIVE { ((v * TWO_POW_64).to_bits(), 64) } else { (v.to_bits(), 0) };
    let exponent = (bits >> 52) as i32 - 1023 - scale;
    let mantissa = bits & ((1 << 52) - 1);
    let below = CELLS[(mantissa >> CELL_SHIFT) as usize & 127];
    let bin = i32::from(below) + i32::from(mantissa > EDGES[usize::from(below)]);
    BINS_PER_OCTAVE * exponent + bin
}

/// The value that represents bin `k`: `2·lo·hi/(lo+hi)` of its edges, equally far in relative
/// terms from both.
fn representative(k: i32) -> f64 {
    let octave = (k - 1).div_euclid(BINS_PER_OCTAVE);
    let bin = (k - 1).rem_euclid(BINS_PER_OCTAVE) as usize + 1;
    // Exact: the edges have 52 fraction bits.
    let edge = |j: usize| 1.0 + EDGES[j] as f64 / (1u64 << 52) as f64;
    let (lo, hi) = (edge(bin - 1), edge(bin));
    ldexp(2.0 * lo * hi / (lo + hi), octave)
}

/// `x · 2^exp` in two steps, each factor a normal power of two: exact unless the result is
/// subnormal (rounded once) or beyond `f64::MAX` (never, for a representative).
fn ldexp(x: f64, exp: i32) -> f64 {
    let half = exp / 2;
    x * pow2(half) * pow2(exp - half)
}

/// 2^k for k in -1022..=1023.
fn pow2(k: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// The lowest and highest key of any finite positive double (2^-1074 and `f64::MAX`).
const MIN_KEY: i32 = -1074 * BINS_PER_OCTAVE;
const MAX_KEY: i32 = 1024 * BINS_PER_OCTAVE;

/// Bins of one sign: a count per key, where every key more than `MAX_BINS - 1` below the largest
/// is counted at that floor. Which form holds them depends on history; what they hold, and so
/// equality, the serialized form and every quantile, does not.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawBins")]
enum Bins {
    /// Ascending keys with their counts, each packed in 4 bytes as
    /// `(key − base) << 21 | count` ([`pack`]): for few keys spread over a wide range. `base`
    /// is the lowest key (any key when empty), so the offsets fit 11 bits (keys span less than
    /// [`MAX_BINS`]); a count beyond [`SPARSE_COUNT_MAX`] turns the bins dense.
    Sparse { base: i32, entries: Vec<u32> },
    /// Counts below 2^32 for the keys `offset ..= offset + counts.len() - 1`; the first and last
    /// are non-zero: 4 bytes per key of the range, and adding is indexing.
    Dense { offset: i32, counts: Box<[u32]> },
    /// The same with 64-bit counts, once a count reaches 2^32.
    Wide { offset: i32, counts: Box<[u64]> },
}

/// The serialized form of [`Bins`]: the `(key, count)` pairs in ascending key order, each key
/// written as its step from the one before (the first from 0). The same for every form, and
/// about three bytes a key.
#[derive(Deserialize)]
struct RawBins(Vec<(i32, u64)>);

impl TryFrom<RawBins> for Bins {
    type Error = &'static str;

    fn try_from(raw: RawBins) -> Result<Self, Self::Error> {
        let invalid = "invalid percentile sketch bins";
        let mut pairs = Vec::with_capacity(raw.0.len());
        let mut key = 0i64;
        let mut total = 0u64;
        for (i, &(step, count)) in raw.0.iter().enumerate() {
            key += i64::from(step);
            if (i > 0 && step < 1) || count == 0 || !(MIN_KEY..=MAX_KEY).contains(&(key as i32)) {
                return Err(invalid);
            }
            total = total.checked_add(count).ok_or(invalid)?;
            pairs.push((key as i32, count));
        }
        match (pairs.first(), pairs.last()) {
            (Some(lo), Some(hi)) if hi.0 - lo.0 >= MAX_BINS as i32 => Err(invalid),
            _ => Ok(Bins::from_pairs(&pairs)),
        }
    }
}

impl Serialize for Bins {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut previous = 0;
        let steps: Vec<(i32, u64)> = self
            .pairs()
            .map(|(key, count)| (key - std::mem::replace(&mut previous, key), count))
            .collect();
        steps.serialize(serializer)
    }
}

impl PartialEq for Bins {
    fn eq(&self, other: &Self) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Default for Bins {
    fn default() -> Self {
        Bins::Sparse { base: 0, entries: Vec::new() }
    }
}

/// Bits of a sparse entry that hold its count; the 11 above hold the key's offset from the base.
const COUNT_BITS: u32 = 21;
/// The largest count a sparse entry holds (2,097,151).
const SPARSE_COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// A sparse entry: `offset < MAX_BINS`, `count <= SPARSE_COUNT_MAX`.
fn pack(offset: i32, count: u64) -> u32 {
    debug_assert!((0..MAX_BINS as i32).contains(&offset) && count <= SPARSE_COUNT_MAX);
    (offset as u32) << COUNT_BITS | count as u32
}

fn offset_of(entry: u32) -> i32 {
    (entry >> COUNT_BITS) as i32
}

fn count_of(entry: u32) -> u64 {
    u64::from(entry) & SPARSE_COUNT_MAX
}

/// The lowest key kept apart when `max_key` is the largest: lower keys are counted there.
fn floor(max_key: i32) -> i32 {
    max_key.saturating_sub(MAX_BINS as i32 - 1)
}

/// Whether `keys` keys spanning `range` keys are better off dense, where adding is indexing
/// rather than a binary search and an insertion. A small window (a few dozen values: latencies
/// of one minute of one key, typically spread over 5 to 10 octaves, hundreds of keys) stays
/// sparse, at 4 bytes a value; dense bins of its range took 1 KiB, most of the memory of the
/// many-small-windows workload.
fn dense_fits(keys: usize, range: usize) -> bool {
    (keys >= SPARSE_MIN_KEYS_TO_CONVERT && range <= DENSE_RANGE_PER_KEY * keys)
        || (keys >= BUSY_KEYS && range <= BUSY_RANGE_PER_KEY * keys)
}

/// A dense bin count: `u32`, or `u64` once a count outgrows it.
trait Count: Copy + Default + Into<u64> + TryFrom<u64> {
    fn checked_add(self, other: Self) -> Option<Self>;
}

impl Count for u32 {
    fn checked_add(self, other: Self) -> Option<Self> {
        self.checked_add(other)
    }
}

impl Count for u64 {
    fn checked_add(self, other: Self) -> Option<Self> {
        self.checked_add(other)
    }
}

/// Dense counts for `pairs` (ascending keys spanning less than [`MAX_BINS`]): the offset and
/// counts, or `None` if a count does not fit.
fn dense_counts<C: Count>(pairs: &[(i32, u64)]) -> Option<(i32, Box<[C]>)> {
    let (Some(&(lo, _)), Some(&(hi, _))) = (pairs.first(), pairs.last()) else {
        return Some((0, Box::default()));
    };
    let mut counts = vec![C::default(); (hi - lo + 1) as usize].into_boxed_slice();
    for &(key, count) in pairs {
        counts[(key - lo) as usize] = C::try_from(count).ok()?;
    }
    Some((lo, counts))
}

/// The `(key, count)` pairs of bins in ascending key order, from either end, without
/// collecting them (a merge or a quantile walks them once; collecting cost a growing `Vec` per
/// call, most of the final merge's allocations).
#[derive(Clone)]
enum Pairs<'a> {
    Sparse(i32, std::slice::Iter<'a, u32>),
    Dense(DensePairs<'a, u32>),
    Wide(DensePairs<'a, u64>),
}

/// The non-zero counts of dense bins with their keys.
#[derive(Clone)]
struct DensePairs<'a, C> {
    offset: i32,
    counts: std::iter::Enumerate<std::slice::Iter<'a, C>>,
}

impl<'a, C: Count> DensePairs<'a, C> {
    fn new(offset: i32, counts: &'a [C]) -> Self {
        Self { offset, counts: counts.iter().enumerate() }
    }

    fn pair(&self, (i, &c): (usize, &C)) -> Option<(i32, u64)> {
        let c: u64 = c.into();
        (c != 0).then_some((self.offset + i as i32, c))
    }
}

impl<C: Count> Iterator for DensePairs<'_, C> {
    type Item = (i32, u64);

    fn next(&mut self) -> Option<(i32, u64)> {
        loop {
            let next = self.counts.next()?;
            if let Some(pair) = self.pair(next) {
                return Some(pair);
            }
        }
    }
}

impl<C: Count> DoubleEndedIterator for DensePairs<'_, C> {
    fn next_back(&mut self) -> Option<(i32, u64)> {
        loop {
            let next = self.counts.next_back()?;
            if let Some(pair) = self.pair(next) {
                return Some(pair);
            }
        }
    }
}

impl Iterator for Pairs<'_> {
    type Item = (i32, u64);

    #[inline]
    fn next(&mut self) -> Option<(i32, u64)> {
        match self {
            Pairs::Sparse(base, entries) => {
                entries.next().map(|&e| (*base + offset_of(e), count_of(e)))
            }
            Pairs::Dense(pairs) => pairs.next(),
            Pairs::Wide(pairs) => pairs.next(),
        }
    }
}

impl DoubleEndedIterator for Pairs<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<(i32, u64)> {
        match self {
            Pairs::Sparse(base, entries) => {
                entries.next_back().map(|&e| (*base + offset_of(e), count_of(e)))
            }
            Pairs::Dense(pairs) => pairs.next_back(),
            Pairs::Wide(pairs) => pairs.next_back(),
        }
    }
}

impl Bins {
    /// Bins holding `pairs`: ascending keys spanning less than [`MAX_BINS`], non-zero counts.
    fn from_pairs(pairs: &[(i32, u64)]) -> Self {
        let (Some(&(lo, _)), Some(&(hi, _))) = (pairs.first(), pairs.last()) else {
            return Bins::default();
        };
        let sparse_counts = pairs.iter().all(|&(_, count)| count <= SPARSE_COUNT_MAX);
        if sparse_counts && !dense_fits(pairs.len(), (hi - lo + 1) as usize) {
            let entries = pairs.iter().map(|&(key, count)| pack(key - lo, count)).collect();
            Bins::Sparse { base: lo, entries }
        } else if let Some((offset, counts)) = dense_counts::<u32>(pairs) {
            Bins::Dense { offset, counts }
        } else {
            let (offset, counts) = dense_counts::<u64>(pairs).expect("u64 counts");
            Bins::Wide { offset, counts }
        }
    }

    /// Bins counting each of `keys` (ascending, repeats allowed) once: the keys more than
    /// `MAX_BINS - 1` below the largest are counted at that floor, as [`Bins::add`] does.
    fn from_sorted_keys(keys: impl Iterator<Item = i32>) -> Self {
        let mut pairs: Vec<(i32, u64)> = Vec::with_capacity(EXACT_LIMIT);
        for key in keys {
            match pairs.last_mut() {
                Some((last, count)) if *last == key => *count += 1,
                _ => pairs.push((key, 1)),
            }
        }
        if let Some(&(max_key, _)) = pairs.last() {
            let floor = floor(max_key);
            let below = pairs.partition_point(|&(key, _)| key <= floor);
            if below > 0 && pairs[0].0 < floor {
                let folded = pairs[..below].iter().map(|&(_, count)| count).sum();
                pairs.splice(..below, [(floor, folded)]);
            }
        }
        Bins::from_pairs(&pairs)
    }

    /// The `(key, count)` pairs in ascending key order.
    fn pairs(&self) -> Pairs<'_> {
        match self {
            Bins::Sparse { base, entries } => Pairs::Sparse(*base, entries.iter()),
            Bins::Dense { offset, counts } => Pairs::Dense(DensePairs::new(*offset, counts)),
            Bins::Wide { offset, counts } => Pairs::Wide(DensePairs::new(*offset, counts)),
        }
    }

    fn total(&self) -> u64 {
        match self {
            Bins::Sparse { entries, .. } => entries.iter().map(|&e| count_of(e)).sum(),
            Bins::Dense { counts, .. } => counts.iter().map(|&c| u64::from(c)).sum(),
            Bins::Wide { counts, .. } => counts.iter().sum(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Bins::Sparse { entries, .. } => entries.is_empty(),
            Bins::Dense { counts, .. } => counts.is_empty(),
            Bins::Wide { counts, .. } => counts.is_empty(),
        }
    }

    /// Adds `count > 0` at `key`.
    fn add(&mut self, key: i32, count: u64) {
        let added = match self {
            Bins::Sparse { base, entries } => add_sparse(base, entries, key, count),
            Bins::Dense { offset, counts } => {
                let slot = counts.get_mut(key.wrapping_sub(*offset) as u32 as usize);
                match (slot, u32::try_from(count)) {
                    // Within the range, so at or above the floor: just count.
                    (Some(c), Ok(n)) if c.checked_add(n).is_some() => {
                        *c += n;
                        true
                    }
                    (_, Ok(n)) => add_dense(offset, counts, key, n),
                    (_, Err(_)) => false,
                }
            }
            Bins::Wide { offset, counts } => add_dense(offset, counts, key, count),
        };
        if !added {
            self.widen();
            self.add(key, count);
        }
    }

    /// Turns sparse bins dense, and dense bins wide.
    fn widen(&mut self) {
        let pairs: Vec<(i32, u64)> = self.pairs().collect();
        *self = match (&*self, dense_counts::<u32>(&pairs)) {
            (Bins::Sparse { .. }, Some((offset, counts))) => Bins::Dense { offset, counts },
            (Bins::Wide { .. }, _) => unreachable!("wide bins take any count"),
            _ => {
                let (offset, counts) = dense_counts::<u64>(&pairs).expect("u64 counts");
                Bins::Wide { offset, counts }
            }
        };
    }

    fn merge(&mut self, other: &Bins) {
        let mut pairs = other.pairs();
        // The largest key first, so that a dense range is widened at most twice.
        if let Some((key, count)) = pairs.next_back() {
            self.add(key, count);
            for (key, count) in pairs {
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
            Bins::Sparse { entries, .. } => entries.capacity() * 4,
            Bins::Dense { counts, .. } => counts.len() * 4,
            Bins::Wide { counts, .. } => counts.len() * 8,
        }
    }
}

/// Adds to sparse bins; `false`, leaving them unchanged, when they should turn dense first
/// (a count beyond [`SPARSE_COUNT_MAX`], or enough keys close enough together).
fn add_sparse(base: &mut i32, entries: &mut Vec<u32>, key: i32, count: u64) -> bool {
    if count > SPARSE_COUNT_MAX {
        return false;
    }
    let Some(&last) = entries.last() else {
        *base = key;
        entries.reserve_exact(4);
        entries.push(pack(0, count));
        return true;
    };
    let max_key = (*base + offset_of(last)).max(key);
    let floor = floor(max_key);
    let key = key.max(floor);
    if *base < floor {
        // The lowest keys fall below the floor: one entry at the floor, the new base, counts
        // them all.
        let below = entries.partition_point(|&e| *base + offset_of(e) <= floor);
        let folded: u64 = entries[..below].iter().map(|&e| count_of(e)).sum();
        if folded > SPARSE_COUNT_MAX {
            return false;
        }
        let shift = floor - *base;
        entries.drain(..below - 1);
        entries[0] = pack(0, folded);
        for e in &mut entries[1..] {
            *e = pack(offset_of(*e) - shift, count_of(*e));
        }
        *base = floor;
    }
    let offset = key - *base;
    let at = entries.partition_point(|&e| offset_of(e) < offset);
    if let Some(entry) = entries.get_mut(at).filter(|e| offset_of(**e) == offset) {
        if count_of(*entry) + count > SPARSE_COUNT_MAX {
            return false;
        }
        *entry += count as u32;
        return true;
    }
    let min_key = (*base).min(key);
    if dense_fits(entries.len() + 1, (max_key - min_key + 1) as usize) {
        return false;
    }
    if entries.len() == entries.capacity() {
        // Grow by half, not double, so a sparse store stays near its size.
        entries.reserve_exact((entries.len() / 2).max(4));
    }
    if offset < 0 {
        // A new lowest key (at `at == 0`) becomes the base: every offset moves up.
        for e in entries.iter_mut() {
            *e = pack(offset_of(*e) - offset, count_of(*e));
        }
        *base = key;
        entries.insert(0, pack(0, count));
    } else {
        entries.insert(at, pack(offset, count));
    }
    true
}

/// Adds to dense counts, widening them to cover the key and folding keys below the floor;
/// `false`, changing nothing, if a count would overflow.
fn add_dense<C: Count>(offset: &mut i32, counts: &mut Box<[C]>, key: i32, count: C) -> bool {
    if counts.is_empty() {
        (*offset, *counts) = (key, Box::new([count]));
        return true;
    }
    let max_key = *offset + counts.len() as i32 - 1;
    let new_max = max_key.max(key);
    let floor = floor(new_max);
    let key = key.max(floor);
    let new_min = (*offset).min(key).max(floor);
    if new_min == *offset && new_max == max_key {
        let c = &mut counts[(key - *offset) as usize];
        let Some(sum) = c.checked_add(count) else {
            return false;
        };
        *c = sum;
        return true;
    }
    let mut widened = vec![C::default(); (new_max - new_min + 1) as usize].into_boxed_slice();
    let moved = counts.iter().enumerate().map(|(i, &c)| ((*offset + i as i32).max(new_min), c));
    for (k, c) in moved.chain([(key, count)]) {
        let slot = &mut widened[(k - new_min) as usize];
        let Some(sum) = slot.checked_add(c) else {
            return false;
        };
        *slot = sum;
    }
    (*offset, *counts) = (new_min, widened);
    true
}

/// A DDSketch over `f64` values: see the module documentation for its guarantees.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawSketch")]
pub struct PercentileSketch {
    /// Number of values folded in.
    count: u64,
    /// The smallest and largest value folded in (`+∞` and `-∞` when none).
    min: f64,
    max: f64,
    /// While `count <= EXACT_LIMIT`: every value, ascending, `-0.0` as `0.0`. Then empty.
    exact: Vec<f64>,
    /// Once `count > EXACT_LIMIT`: keys of `v > 0`,
    positive: Bins,
    /// keys of `-v` for `v < 0`,
    negative: Bins,
    /// and the number of zeros.
    zeros: u64,
}

impl Default for PercentileSketch {
    fn default() -> Self {
        Self {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            exact: Vec::new(),
            positive: Bins::default(),
            negative: Bins::default(),
            zeros: 0,
        }
    }
}

/// The serialized form of [`PercentileSketch`] (the count follows from it).
#[derive(Serialize)]
#[serde(rename = "PercentileSketch")]
struct SerializedSketch<'a> {
    min: f64,
    max: f64,
    exact: &'a [f64],
    positive: &'a Bins,
    negative: &'a Bins,
    zeros: u64,
}

/// The serialized form of [`PercentileSketch`], checked on the way in.
#[derive(Deserialize)]
struct RawSketch {
    min: f64,
    max: f64,
    exact: Vec<f64>,
    positive: Bins,
    negative: Bins,
    zeros: u64,
}

impl Serialize for PercentileSketch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SerializedSketch {
            min: self.min,
            max: self.max,
            exact: &self.exact,
            positive: &self.positive,
            negative: &self.negative,
            zeros: self.zeros,
        }
        .serialize(serializer)
    }
}

impl TryFrom<RawSketch> for PercentileSketch {
    type Error = &'static str;

    fn try_from(raw: RawSketch) -> Result<Self, Self::Error> {
        let binned = raw
            .positive
            .total()
            .checked_add(raw.negative.total())
            .and_then(|n| n.checked_add(raw.zeros));
        let count = match (raw.exact.first(), raw.exact.last(), binned) {
            (None, _, Some(0)) if raw.min == f64::INFINITY && raw.max == f64::NEG_INFINITY => 0,
            (Some(&lo), Some(&hi), Some(0))
                if raw.exact.len() <= EXACT_LIMIT
                    && raw
                        .exact
                        .iter()
                        .all(|v| v.is_finite() && v.to_bits() != (-0.0f64).to_bits())
                    && raw.exact.windows(2).all(|w| w[0] <= w[1])
                    && lo == raw.min
                    && hi == raw.max =>
            {
                raw.exact.len() as u64
            }
            (None, _, Some(n))
                if n as usize > EXACT_LIMIT
                    && raw.min.is_finite()
                    && raw.max.is_finite()
                    && raw.min <= raw.max
                    && raw.negative.is_empty() == (raw.min >= 0.0)
                    && raw.positive.is_empty() == (raw.max <= 0.0)
                    && (raw.zeros == 0 || (raw.min <= 0.0 && raw.max >= 0.0)) =>
            {
                n
            }
            _ => return Err("invalid percentile sketch"),
        };
        Ok(Self {
            count,
            min: raw.min,
            max: raw.max,
            exact: raw.exact,
            positive: raw.positive,
            negative: raw.negative,
            zeros: raw.zeros,
        })
    }
}

impl PercentileSketch {
    /// Folds in a finite value (the caller rejects NaN and infinities).
    pub fn add(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        let value = value + 0.0; // -0.0 as 0.0
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.count += 1;
        if self.count as usize <= EXACT_LIMIT {
            let at = self.exact.partition_point(|&v| v < value);
            self.exact.insert(at, value);
        } else {
            if !self.exact.is_empty() {
                self.bin_exact();
            }
            self.bin(value, 1);
        }
    }

    /// Adds `count` copies of a finite value to the bins.
    fn bin(&mut self, value: f64, count: u64) {
        if value > 0.0 {
            self.positive.add(key(value), count);
        } else if value < 0.0 {
            self.negative.add(key(-value), count);
        } else {
            self.zeros += count;
        }
    }

    /// Moves the exact values into the bins, which are empty while there are exact values.
    /// The values are sorted, so each sign's keys come out in order and the bins are built
    /// whole, in one allocation each, rather than by one insertion per value (that was a
    /// quarter of the percentile's cost on windows of a few dozen values).
    fn bin_exact(&mut self) {
        debug_assert!(self.positive.is_empty() && self.negative.is_empty() && self.zeros == 0);
        let exact = std::mem::take(&mut self.exact);
        let zero = exact.partition_point(|&v| v < 0.0);
        let positive = exact.partition_point(|&v| v <= 0.0);
        self.zeros = (positive - zero) as u64;
        // Ascending negative values are descending keys of the mirrored store.
        self.negative = Bins::from_sorted_keys(exact[..zero].iter().rev().map(|&v| key(-v)));
        self.positive = Bins::from_sorted_keys(exact[positive..].iter().map(|&v| key(v)));
    }

    /// Adds the state of another partial sketch.
    pub fn merge(&mut self, other: &PercentileSketch) {
        if other.count == 0 {
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        if self.count as usize <= EXACT_LIMIT {
            self.exact.extend_from_slice(&other.exact);
            self.exact.sort_by(f64::total_cmp);
            return;
        }
        if !self.exact.is_empty() {
            self.bin_exact();
        }
        for run in other.exact.chunk_by(|a, b| a == b) {
            self.bin(run[0], run.len() as u64);
        }
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zeros += other.zeros;
    }

    /// Number of values folded in.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile as SQL's `percentile_disc(q)` defines it: the smallest value whose
    /// cumulative share of the `n` values is at least `q`, that is the value at 1-based rank
    /// `⌈q·n⌉` in ascending order (rank 1 for `q = 0`). Exact while `n <= EXACT_LIMIT` and at
    /// the lowest and highest rank, else within [`RELATIVE_ACCURACY`] of it and clamped to the
    /// lowest and highest value. `None` when empty. `q` is clamped to `[0, 1]`.
    ///
    /// For the two values 8 and 36, every `q` above 0.5 gives 36: p95 of a small window is its
    /// largest value, as in PostgreSQL, DuckDB, Spark SQL and BigQuery.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count;
        if n == 0 {
            return None;
        }
        let rank = rank_of(q, n);
        if let Some(&exact) = self.exact.get(rank as usize) {
            return Some(exact);
        }
        if rank == 0 {
            return Some(self.min);
        }
        if rank == n - 1 {
            return Some(self.max);
        }
        let negatives = self.negative.total();
        let estimate = if rank < negatives {
            // Ascending values are descending keys of the mirrored store.
            -representative(self.negative.key_at_rank(negatives - 1 - rank))
        } else if rank < negatives + self.zeros {
            0.0
        } else {
            representative(self.positive.key_at_rank(rank - negatives - self.zeros))
        };
        Some(estimate.clamp(self.min, self.max))
    }

    /// Bytes held on the heap (values and bins; the sketch itself is counted by its owner).
    pub fn heap_bytes(&self) -> usize {
        self.exact.capacity() * 8 + self.positive.heap_bytes() + self.negative.heap_bytes()
    }
}

/// The 0-based rank of SQL's `percentile_disc(q)` among `n >= 1` values: `⌈q·n⌉ − 1`, at
/// least 0 and at most `n − 1`. The product is taken in `f64` as PostgreSQL does
/// (`ceil(percentile * number_of_rows)`), so the rank is PostgreSQL's for every `q` and `n`.
pub fn rank_of(q: f64, n: u64) -> u64 {
    // `as` saturates, and maps NaN to 0.
    let one_based = (q.clamp(0.0, 1.0) * n as f64).ceil() as u64;
    one_based.clamp(1, n) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: &[f64]) -> PercentileSketch {
        let mut s = PercentileSketch::default();
        values.iter().for_each(|&v| s.add(v));
        s
    }

    /// `values` plus enough copies of `filler` to be binned.
    fn binned(values: &[f64], filler: f64) -> PercentileSketch {
        let mut s = sketch(values);
        while s.count() as usize <= EXACT_LIMIT {
            s.add(filler);
        }
        s
    }

    fn assert_close(estimate: f64, exact: f64) {
        assert!(
            (estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs(),
            "estimate {estimate} vs exact {exact}"
        );
    }

    /// The key by definition: the bin of `2^e · (1 + m/2^52)` is `35e + #{j < 35 : EDGES[j] < m}`.
    fn reference_key(v: f64) -> i32 {
        let (bits, scale) = if v < f64::MIN_POSITIVE {
            ((v * 2f64.powi(64)).to_bits(), 64)
        } else {
            (v.to_bits(), 0)
        };
        let exponent = (bits >> 52) as i32 - 1023 - scale;
        let mantissa = bits & ((1 << 52) - 1);
        35 * exponent + EDGES[..35].partition_point(|&e| e < mantissa) as i32
    }

    /// A deterministic spread of positive doubles: random bits, and bin edges and their
    /// neighbours in a few octaves.
    fn test_values() -> Vec<f64> {
        let mut values = vec![f64::from_bits(1), f64::MIN_POSITIVE, f64::MAX, 1.0, 2.0, 0.5, 13.0];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x >> 1)); // a positive double, or infinity/NaN
        }
        for exponent in [-1074i64 + 60, -1022, -30, -1, 0, 12, 1023] {
            for &edge in &EDGES[..35] {
                for m in [edge.saturating_sub(1), edge, edge + 1] {
                    values.push(f64::from_bits(((exponent + 1023) as u64) << 52 | m));
                }
            }
        }
        values.retain(|v| v.is_finite() && *v > 0.0);
        values
    }

    #[test]
    fn edges_are_exactly_logarithmic() {
        for (j, &edge) in EDGES.iter().enumerate() {
            let ideal = (2f64.powf(j as f64 / 35.0) - 1.0) * (1u64 << 52) as f64;
            assert!((edge as f64 - ideal).abs() <= 4.0, "EDGES[{j}] = {edge:#x}, not {ideal}");
        }
        // The worst bin is within the stated accuracy: (γ−1)/(γ+1), plus rounding.
        let worst = (1..=35)
            .map(|j| {
                let edge = |j: usize| 1.0 + EDGES[j] as f64 / (1u64 << 52) as f64;
                (edge(j) - edge(j - 1)) / (edge(j) + edge(j - 1))
            })
            .fold(0.0, f64::max);
        // Below 0.009902, so below RELATIVE_ACCURACY.
        assert!(worst < 0.009_902, "{worst}");
    }

    #[test]
    fn cells_hold_at_most_one_edge() {
        for (cell, &below) in CELLS.iter().enumerate() {
            let start = (cell as u64) << CELL_SHIFT;
            assert_eq!(usize::from(below), EDGES[..35].partition_point(|&e| e < start));
            let next = EDGES.get(usize::from(below) + 1).copied().unwrap_or(u64::MAX);
            assert!(next >= start + (1 << CELL_SHIFT), "cell {cell}");
        }
    }

    #[test]
    fn keys_match_their_definition_and_ascend() {
        let mut values = test_values();
        for &v in &values {
            assert_eq!(key(v), reference_key(v), "{v:e}");
        }
        values.sort_by(f64::total_cmp);
        assert!(values.windows(2).all(|w| key(w[0]) <= key(w[1])));
        assert_eq!(key(f64::from_bits(1)), MIN_KEY);
        assert_eq!(key(f64::MAX), MAX_KEY);
        for e in -1074..=1023 {
            let power = if e >= -1022 { pow2(e) } else { f64::from_bits(1 << (e + 1074)) };
            assert_eq!(key(power), 35 * e, "2^{e}");
        }
    }

    #[test]
    fn every_value_is_within_accuracy_of_its_bin() {
        for v in test_values() {
            let r = representative(key(v));
            if v >= f64::MIN_POSITIVE {
                assert!((r - v).abs() <= 0.009_902 * v, "{v:e}: bin reported as {r:e}");
            } else {
                // Subnormal: rounded to the grid of 2^-1074.
                assert!((r - v).abs() <= 0.009_902 * v + f64::from_bits(1), "{v:e}: {r:e}");
            }
        }
    }

    #[test]
    fn few_values_are_exact() {
        let values = [5.0, -2.5, 13.0, 0.0, -0.0, 1e-300, 7.0];
        let s = sketch(&values);
        let mut sorted = values.map(|v| v + 0.0);
        sorted.sort_by(f64::total_cmp);
        for (i, &v) in sorted.iter().enumerate() {
            let q = i as f64 / (sorted.len() - 1) as f64;
            assert_eq!(s.quantile(q).map(f64::to_bits), Some(v.to_bits()), "q={q}");
        }
        assert_eq!(sketch(&[13.0]).quantile(0.95), Some(13.0));
        assert_eq!(sketch(&[-0.0]).quantile(0.5).map(f64::to_bits), Some(0));
    }

    #[test]
    fn binned_results_are_clamped_to_min_and_max() {
        // 33 values: binned. Every estimate stays within the values' range.
        let s = binned(&[13.0], 13.0);
        assert!(s.exact.is_empty());
        assert_eq!(s.quantile(0.0), Some(13.0));
        assert_eq!(s.quantile(1.0), Some(13.0));
        let s = binned(&[-13.0, 0.5, 13.0], 1.0);
        assert_eq!(s.quantile(0.0), Some(-13.0));
        assert_eq!(s.quantile(1.0), Some(13.0));
        assert_close(s.quantile(0.5).unwrap(), 1.0);
        let s = binned(&[13.1, 13.0], 13.1);
        let lowest_but_one = s.quantile(1.0 / 32.0).unwrap();
        assert_close(lowest_but_one, 13.1);
        assert!(lowest_but_one <= 13.1 && s.quantile(0.0) == Some(13.0));
    }

    #[test]
    fn ranks_are_those_of_percentile_disc() {
        // 40 values: 10 each of 1, 2, 3 and 4. The smallest value whose cumulative share is at
        // least q: 1 up to q = 0.25, then 2 up to 0.5, and so on.
        let values: Vec<f64> = (1..=4).flat_map(|v| [f64::from(v); 10]).collect();
        let s = sketch(&values);
        assert!(s.exact.is_empty());
        for (q, exact) in [
            (0.0, 1.0),
            (0.25, 1.0),
            (0.2501, 2.0),
            (0.5, 2.0),
            (0.51, 3.0),
            (0.75, 3.0),
            (0.76, 4.0),
            (1.0, 4.0),
        ] {
            assert_close(s.quantile(q).unwrap(), exact);
        }
    }

    #[test]
    fn zeros_and_negatives() {
        let s = binned(&[-10.0, -1.0, 0.0, -0.0, 5.0], 0.0);
        let n = s.count() as f64 - 1.0;
        assert_eq!(s.quantile(0.0), Some(-10.0));
        assert_close(s.quantile(1.0 / n).unwrap(), -1.0);
        assert_eq!(s.quantile(2.0 / n).map(f64::to_bits), Some(0));
        assert_eq!(s.quantile((n - 1.0) / n), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(5.0));
        assert_eq!(PercentileSketch::default().quantile(0.5), None);
    }

    #[test]
    fn a_huge_range_collapses_the_lowest_bins_only() {
        // 1e10 / γ^MAX_BINS reaches down to ~2.4e-8: the two tiny values share the lowest bin.
        let s = binned(&[1e-300, 1e-200, 1e10], 1.0);
        let keys: Vec<_> = s.positive.pairs().collect();
        assert_eq!(keys.last().unwrap().0 - keys[0].0, MAX_BINS as i32 - 1);
        assert_eq!(s.count(), EXACT_LIMIT as u64 + 1);
        assert_close(s.quantile(1.0).unwrap(), 1e10);
        assert_close(s.quantile(0.5).unwrap(), 1.0);
        // The minimum is exact; the next value, 1e-200, is in the collapsed bin: no guarantee.
        assert_eq!(s.quantile(0.0), Some(1e-300));
        let collapsed = s.quantile(1.0 / 32.0).unwrap();
        assert!(collapsed > 1e-9 && collapsed < 1e-7, "{collapsed}");
    }

    #[test]
    fn few_values_cost_few_bytes() {
        let one = sketch(&[0.123]);
        assert!(one.heap_bytes() <= 32, "{}", one.heap_bytes());
        assert!(sketch(&[0.5; EXACT_LIMIT]).heap_bytes() <= EXACT_LIMIT * 8);
        // 40 values over six decades: sparse, ~4 bytes per key, not 4 per bin of the range.
        let wide: Vec<f64> = (0..40).map(|i| 10f64.powf(i as f64 * 0.15 - 3.0)).collect();
        let s = sketch(&wide);
        assert!(matches!(s.positive, Bins::Sparse { .. }));
        assert!(s.heap_bytes() <= 40 * 4 * 3 / 2, "{}", s.heap_bytes());
    }

    #[test]
    fn sparse_and_dense_bins_are_equal_and_serialize_alike() {
        let values: Vec<f64> = (0..5_000).map(|i| 1.0 + (i % 400) as f64 * 0.05).collect();
        let dense = sketch(&values);
        assert!(matches!(dense.positive, Bins::Dense { .. }));
        let pairs: Vec<_> = dense.positive.pairs().collect();
        let base = pairs[0].0;
        let entries = pairs.iter().map(|&(key, count)| pack(key - base, count)).collect();
        let sparse = Bins::Sparse { base, entries };
        // Walked from the top (as a merge does), both forms give the same pairs.
        assert!(dense.positive.pairs().rev().eq(pairs.iter().rev().copied()));
        assert!(sparse.pairs().rev().eq(pairs.iter().rev().copied()));
        let sparse = PercentileSketch { positive: sparse, ..dense.clone() };
        for q in [0.0, 0.1, 0.5, 0.9, 0.999, 1.0] {
            assert_eq!(sparse.quantile(q), dense.quantile(q), "q={q}");
        }
        assert_eq!(sparse, dense);
        let bytes = postcard::to_allocvec(&dense).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&sparse).unwrap());
        assert!(bytes.len() < pairs.len() * 4, "{} bytes for {} keys", bytes.len(), pairs.len());
        assert_eq!(postcard::from_bytes::<PercentileSketch>(&bytes).unwrap(), dense);
    }

    #[test]
    fn counts_beyond_sparse_entries_turn_bins_dense_then_wide() {
        let mut bins = Bins::default();
        bins.add(5, SPARSE_COUNT_MAX);
        bins.add(-3, 1);
        assert!(matches!(bins, Bins::Sparse { .. }));
        bins.add(5, 1);
        assert!(matches!(bins, Bins::Dense { .. }));
        bins.add(5, u64::from(u32::MAX));
        assert!(matches!(bins, Bins::Wide { .. }));
        assert_eq!(bins.pairs().collect::<Vec<_>>(), [(-3, 1), (5, (1 << 21) + (1 << 32) - 1)]);
        // A count beyond a sparse entry in a snapshot restores as dense bins.
        let bytes = postcard::to_allocvec(&vec![(7, SPARSE_COUNT_MAX + 1)]).unwrap();
        let restored = postcard::from_bytes::<Bins>(&bytes).unwrap();
        assert!(matches!(restored, Bins::Dense { .. }));
        assert_eq!(restored.pairs().collect::<Vec<_>>(), [(7, SPARSE_COUNT_MAX + 1)]);

        // Dense bins, whose floor bin overflows when a high key folds the lowest ones into it.
        let mut bins = Bins::default();
        for key in 0..40 {
            bins.add(key, u64::from(u32::MAX / 2));
        }
        assert!(matches!(bins, Bins::Dense { .. }));
        let before = bins.clone();
        bins.add(MAX_BINS as i32 + 1, 1);
        assert!(matches!(bins, Bins::Wide { .. }));
        let mut expected = vec![(2, 3 * u64::from(u32::MAX / 2))];
        expected.extend((3..40).map(|k| (k, u64::from(u32::MAX / 2))));
        expected.push((MAX_BINS as i32 + 1, 1));
        assert_eq!(bins.pairs().collect::<Vec<_>>(), expected);
        assert_ne!(bins, before);
        // Huge counts survive a snapshot.
        let bytes = postcard::to_allocvec(&bins).unwrap();
        assert_eq!(postcard::from_bytes::<Bins>(&bytes).unwrap(), bins);
    }

    #[test]
    fn exact_values_are_binned_as_adding_them_one_by_one_would() {
        let cases: [&[f64]; 4] = [
            &[3.0, -2.0, 0.0, -0.0, 7.5, 7.5, 1e-300, 1e10, -1e12, -3.0, 2.0],
            &[1.0; 40],
            &[-5.0, -5.0, -4.0, -1e-5, -1e9],
            &[0.0, 0.0],
        ];
        for values in cases {
            let mut exact: Vec<f64> = values.iter().map(|v| v + 0.0).collect();
            exact.sort_by(f64::total_cmp);
            let mut binned = PercentileSketch { exact, ..Default::default() };
            binned.bin_exact();
            let mut one_by_one = PercentileSketch::default();
            for &v in values {
                one_by_one.bin(v + 0.0, 1);
            }
            assert!(binned.exact.is_empty());
            assert_eq!(binned.positive, one_by_one.positive, "{values:?}");
            assert_eq!(binned.negative, one_by_one.negative, "{values:?}");
            assert_eq!(binned.zeros, one_by_one.zeros, "{values:?}");
        }
    }

    #[test]
    fn sparse_entries_keep_every_offset_and_count() {
        for offset in [0, 1, 1000, MAX_BINS as i32 - 1] {
            for count in [1, 12_345, SPARSE_COUNT_MAX] {
                let entry = pack(offset, count);
                assert_eq!((offset_of(entry), count_of(entry)), (offset, count));
            }
        }
    }

    #[test]
    fn sparse_bins_move_their_base_down_and_fold_below_the_floor() {
        let mut bins = Bins::default();
        for key in [100, 40, 70, -500, 40] {
            bins.add(key, 2);
        }
        assert!(matches!(bins, Bins::Sparse { base: -500, .. }));
        assert_eq!(bins.pairs().collect::<Vec<_>>(), [(-500, 2), (40, 4), (70, 2), (100, 2)]);
        // A key 2,047 above 40 folds -500 and 40 into the floor, the new base.
        bins.add(2_087, 1);
        assert!(matches!(bins, Bins::Sparse { base: 40, .. }));
        assert_eq!(bins.pairs().collect::<Vec<_>>(), [(40, 6), (70, 2), (100, 2), (2_087, 1)]);
        // A key far above every other folds them all.
        bins.add(100_000, 1);
        assert_eq!(bins.pairs().collect::<Vec<_>>(), [(97_953, 11), (100_000, 1)]);
        assert!(matches!(bins, Bins::Sparse { base: 97_953, .. }));
    }

    #[test]
    fn corrupt_sketches_are_refused() {
        let bins = |steps: &[(i32, u64)]| postcard::to_allocvec(&steps.to_vec()).unwrap();
        assert!(postcard::from_bytes::<Bins>(&bins(&[(5, 1), (3, 1)])).is_ok());
        assert!(postcard::from_bytes::<Bins>(&bins(&[(5, 1), (0, 1)])).is_err());
        assert!(postcard::from_bytes::<Bins>(&bins(&[(5, 1), (2, 0)])).is_err());
        assert!(postcard::from_bytes::<Bins>(&bins(&[(5, 1), (2048, 1)])).is_err());
        assert!(postcard::from_bytes::<Bins>(&bins(&[(MAX_KEY + 1, 1)])).is_err());
        let valid = binned(&[-1.0, 2.0], 0.0);
        let bytes = postcard::to_allocvec(&valid).unwrap();
        assert_eq!(postcard::from_bytes::<PercentileSketch>(&bytes).unwrap(), valid);
        let mut swapped = valid.clone();
        (swapped.min, swapped.max) = (valid.max, valid.min);
        assert!(postcard::from_bytes::<PercentileSketch>(
            &postcard::to_allocvec(&swapped).unwrap()
        )
        .is_err());
        let unsorted = PercentileSketch {
            exact: vec![2.0, 1.0],
            min: 2.0,
            max: 1.0,
            count: 2,
            ..Default::default()
        };
        assert!(postcard::from_bytes::<PercentileSketch>(
            &postcard::to_allocvec(&unsorted).unwrap()
        )
        .is_err());
    }
}
