//! Approximate distinct counts: a HyperLogLog (precision 14, standard error 1.04/√16384 ≈ 0.81%)
//! with an exact sparse representation for small sets, whose state is a pure function of the
//! *set* of hashes, so any fold order and merge tree give the same estimate.
//!
//! - Values are hashed with `xxh3_64` (stable across versions, platforms and processes) over a
//!   canonical encoding, so every replica and every replay agrees: strings by their UTF-8 bytes,
//!   numbers so that `5`, `5.0` and `-0.0`/`0` coincide, booleans apart; the type is the hash
//!   seed, so `"5"`, `5` and `true` stay distinct.
//! - Sparse: the set of `(25-bit index, rank)` entries, the largest rank per index, as in
//!   HyperLogLog++. The estimate is the number of entries: exact up to collisions of 25-bit
//!   indices (linear counting over 2^25 buckets would add less than 0.07 at the largest sparse
//!   size, which rounds away). Entries are sorted in lazily ([`SparseSet`]): an insert appends,
//!   and the appended entries are sorted and merged in once they number half the sorted ones,
//!   which keeps memory access sequential (no binary search and shift per insert, no hash-table
//!   cache miss). The sketch turns dense once it holds more than [`SPARSE_LIMIT`] distinct
//!   entries, the point where they would outgrow the dense registers; that depends only on the
//!   set. Estimates, equality, merges and snapshots see the
//!   entries sorted in (a snapshot holds them ascending, so equal sets serialize identically).
//! - Dense: 2^14 registers of 6 bits (12 KiB), estimated with Ertl's improved estimator
//!   ("New cardinality estimation algorithms for HyperLogLog sketches", 2017), which needs no
//!   bias tables and is accurate from small to huge cardinalities. A sparse entry converts to
//!   exactly the register update its hash would have made, so converting early or late gives the
//!   same registers.
//!
//! Why not `cardinality-estimator` (Cloudflare): its HyperLogLog keeps the harmonic sum of the
//! registers as an `f32` updated on every register change, so the rounding, and the estimate,
//! depend on insertion order and on the merge tree (200,000 ids gave 193257, 193258 or 193259
//! depending on the order), and its serialized form includes a heap pointer.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::AggError;
use crate::value::Value;

/// Register index bits of the dense representation.
pub const PRECISION: u32 = 14;
/// Relative standard error of a dense estimate: `1.04 / √(2^PRECISION)`.
pub const STANDARD_ERROR: f64 = 0.0081;
/// Number of dense registers.
const REGISTERS: usize = 1 << PRECISION;
/// Bytes of the dense registers: 6 bits each, 4 registers per 3 bytes.
const DENSE_BYTES: usize = REGISTERS / 4 * 3;
/// Index bits of a sparse entry.
const SPARSE_PRECISION: u32 = 25;
/// Most entries the sparse representation holds: as many bytes as the dense registers.
pub const SPARSE_LIMIT: usize = DENSE_BYTES / 4;
/// Most entries, sorted in and pending, the sparse vector holds between sorts.
const SPARSE_CAPACITY: usize = SPARSE_LIMIT + SPARSE_LIMIT / 6;

/// 2^63, exactly: the end of the `i64` range.
const TWO_POW_63: f64 = (1u64 << 63) as f64;

/// Hash seeds that tag the type of a hashed value.
const SEED_STRING: u64 = 0x7374_7269_6e67; // "string"
const SEED_INTEGER: u64 = 0x0069_6e74_6567_6572; // "integer"
const SEED_DOUBLE: u64 = 0x646f_7562_6c65; // "double"
const SEED_BOOL: u64 = 0x626f_6f6c; // "bool"

/// The stable hash of a value for distinct counting; `None` for missing and null values.
pub fn hash_value(value: &Value<'_>) -> Result<Option<u64>, AggError> {
    Ok(Some(match value {
        Value::Missing | Value::Null => return Ok(None),
        Value::Str(s) => xxh3_64_with_seed(s.as_bytes(), SEED_STRING),
        Value::Int(i) => hash_integer(*i),
        Value::Float(f) if !f.is_finite() => return Err(super::non_finite()),
        // Integral doubles in i64 range hash as the integer they equal (5.0 as 5, -0.0 as 0).
        Value::Float(f) if f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(f) => {
            hash_integer(*f as i64)
        }
        Value::Float(f) => xxh3_64_with_seed(&f.to_bits().to_le_bytes(), SEED_DOUBLE),
        Value::Bool(b) => xxh3_64_with_seed(&[u8::from(*b)], SEED_BOOL),
        Value::Composite => {
            return Err(AggError::WrongType {
                expected: "string, number or bool",
                found: value.type_name(),
            });
        }
    }))
}

fn hash_integer(i: i64) -> u64 {
    xxh3_64_with_seed(&i.to_le_bytes(), SEED_INTEGER)
}

/// A HyperLogLog sketch: see the module documentation.
///
/// What it shows (its estimate, equality, merges and serialized form) depends only on the set of
/// hashes folded in; in memory, a sparse sketch may also hold entries it has not sorted in yet.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawDistinctSketch")]
pub enum DistinctSketch {
    /// Entries `index << 6 | rank` with a 25-bit index and the largest rank (1..=40) seen for it:
    /// at most [`SPARSE_LIMIT`] once sorted in.
    Sparse(SparseSet),
    /// 2^14 six-bit registers, four per three bytes, little-endian.
    Dense(Box<[u8]>),
}

/// The serialized form of [`DistinctSketch`]: sparse entries in ascending order, one per index,
/// so that equal sets serialize identically.
#[derive(Serialize)]
#[serde(rename = "DistinctSketch")]
enum SerializedSketch<'a> {
    Sparse(&'a [u32]),
    Dense(&'a [u8]),
}

/// The serialized form of [`DistinctSketch`], checked on the way in.
#[derive(Deserialize)]
enum RawDistinctSketch {
    Sparse(Vec<u32>),
    Dense(Box<[u8]>),
}

impl TryFrom<RawDistinctSketch> for DistinctSketch {
    type Error = &'static str;

    fn try_from(raw: RawDistinctSketch) -> Result<Self, Self::Error> {
        match raw {
            RawDistinctSketch::Sparse(entries)
                if entries.len() <= SPARSE_LIMIT
                    && entries.windows(2).all(|w| w[0] >> 6 < w[1] >> 6)
                    && entries.iter().all(|&e| e >> 31 == 0 && (1..=40).contains(&(e & 63))) =>
            {
                let sorted = entries.len() as u32;
                Ok(Self::Sparse(SparseSet { entries, sorted }))
            }
            RawDistinctSketch::Dense(registers) if registers.len() == DENSE_BYTES => {
                Ok(Self::Dense(registers))
            }
            _ => Err("invalid distinct-count sketch"),
        }
    }
}

impl Serialize for DistinctSketch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &*self.canonical() {
            Self::Sparse(set) => SerializedSketch::Sparse(&set.entries).serialize(serializer),
            Self::Dense(registers) => SerializedSketch::Dense(registers).serialize(serializer),
        }
    }
}

impl PartialEq for DistinctSketch {
    fn eq(&self, other: &Self) -> bool {
        match (&*self.canonical(), &*other.canonical()) {
            (Self::Sparse(a), Self::Sparse(b)) => a.entries == b.entries,
            (Self::Dense(a), Self::Dense(b)) => a == b,
            // Canonically sparse exactly when the set has at most SPARSE_LIMIT entries.
            _ => false,
        }
    }
}

impl Eq for DistinctSketch {}

impl Default for DistinctSketch {
    fn default() -> Self {
        Self::Sparse(SparseSet::default())
    }
}

impl DistinctSketch {
    /// Folds in the hash of a value (see [`hash_value`]).
    pub fn insert_hash(&mut self, hash: u64) {
        match self {
            Self::Sparse(set) => {
                if !set.push(sparse_entry(hash)) {
                    *self = Self::Dense(to_dense(&set.entries));
                }
            }
            Self::Dense(registers) => {
                let (index, rank) = dense_update(hash);
                update_register(registers, index, rank);
            }
        }
    }

    /// Sorts in a sparse sketch's pending entries, turning it dense if they make it too large.
    fn normalize(&mut self) {
        if let Self::Sparse(set) = self {
            if !set.sort_in() {
                *self = Self::Dense(to_dense(&set.entries));
            }
        }
    }

    /// This sketch with no pending entries: the one form of its set.
    fn canonical(&self) -> std::borrow::Cow<'_, DistinctSketch> {
        match self {
            Self::Sparse(set) if set.pending() > 0 => {
                let mut sketch = self.clone();
                sketch.normalize();
                std::borrow::Cow::Owned(sketch)
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    /// Adds another partial sketch: the result is the sketch of the union of both sets.
    pub fn merge(&mut self, other: &DistinctSketch) {
        self.normalize();
        let other = other.canonical();
        match (&mut *self, &*other) {
            (Self::Sparse(mine), Self::Sparse(theirs)) => {
                let entries = union_sorted(&mine.entries, &theirs.entries);
                *self = if entries.len() > SPARSE_LIMIT {
                    Self::Dense(to_dense(&entries))
                } else {
                    Self::Sparse(SparseSet { sorted: entries.len() as u32, entries })
                };
            }
            (Self::Dense(registers), Self::Sparse(theirs)) => {
                merge_into_dense(registers, &theirs.entries);
            }
            (Self::Sparse(mine), Self::Dense(theirs)) => {
                let mut registers = theirs.clone();
                merge_into_dense(&mut registers, &mine.entries);
                *self = Self::Dense(registers);
            }
            (Self::Dense(mine), Self::Dense(theirs)) => {
                for (a, b) in mine.chunks_exact_mut(3).zip(theirs.chunks_exact(3)) {
                    let (x, y) = (group(a), group(b));
                    let mut max = 0;
                    for shift in [0, 6, 12, 18] {
                        max |= ((x >> shift) & 63).max((y >> shift) & 63) << shift;
                    }
                    a.copy_from_slice(&max.to_le_bytes()[..3]);
                }
            }
        }
    }

    /// The estimated number of distinct values.
    pub fn estimate(&self) -> u64 {
        match &*self.canonical() {
            Self::Sparse(set) => set.entries.len() as u64,
            Self::Dense(registers) => {
                let mut histogram = [0u32; 64];
                for g in registers.chunks_exact(3).map(group) {
                    for shift in [0, 6, 12, 18] {
                        histogram[((g >> shift) & 63) as usize] += 1;
                    }
                }
                ertl_estimate(&histogram).round() as u64
            }
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Self::Sparse(set) => set.entries.capacity() * 4,
            Self::Dense(registers) => registers.len(),
        }
    }
}

/// The sparse entry of a hash: top 25 bits as index, then the rank of the remaining 39 bits.
fn sparse_entry(hash: u64) -> u32 {
    let index = (hash >> (64 - SPARSE_PRECISION)) as u32;
    let rank = (hash << SPARSE_PRECISION).leading_zeros().min(64 - SPARSE_PRECISION) + 1;
    (index << 6) | rank
}

/// The dense register update of a hash: top 14 bits as index, rank of the remaining 50 bits.
fn dense_update(hash: u64) -> (usize, u32) {
    let index = (hash >> (64 - PRECISION)) as usize;
    let rank = (hash << PRECISION).leading_zeros().min(64 - PRECISION) + 1;
    (index, rank)
}

/// The dense register update that the hash behind a sparse entry makes: the same as
/// [`dense_update`] of that hash.
fn decode_sparse(entry: u32) -> (usize, u32) {
    let sparse_index = entry >> 6;
    let extra_bits = SPARSE_PRECISION - PRECISION;
    let index = (sparse_index >> extra_bits) as usize;
    let between = sparse_index & ((1 << extra_bits) - 1);
    let rank = if between != 0 {
        between.leading_zeros() - (32 - extra_bits) + 1
    } else {
        extra_bits + (entry & 63)
    };
    (index, rank)
}

/// The sparse entries, sorted in lazily so that an insert is an append (a hash table would cost
/// a cache miss per insert, and growing it; a sorted vector, a binary search and a shift).
///
/// `entries[..sorted]` are in ascending order, one per index (with its largest rank); the
/// entries after them are pending, in arrival order, repeats included. Once the pending entries
/// number half the sorted ones (at least `MIN_PENDING`; at most what fits in 7/6 of the dense
/// registers' bytes, and at least 512 since at most [`SPARSE_LIMIT`] are sorted in), they are
/// sorted and merged in: each entry is sorted once, in a batch, and merged a few times, all
/// sequential memory access. So the vector holds at most 1.5 times the distinct entries, and at
/// most 14 KiB.
#[derive(Clone, Debug, Default)]
pub struct SparseSet {
    entries: Vec<u32>,
    /// How many entries are sorted in.
    sorted: u32,
}

/// Fewest pending entries that are sorted in.
const MIN_PENDING: usize = 4;

/// How many pending entries are sorted in, after `sorted` sorted entries.
fn pending_limit(sorted: usize) -> usize {
    (sorted / 2).min(SPARSE_CAPACITY.saturating_sub(sorted)).max(MIN_PENDING)
}

impl SparseSet {
    fn pending(&self) -> usize {
        self.entries.len() - self.sorted as usize
    }

    /// Appends an entry, sorting the pending ones in when they are enough; `false` if that shows
    /// more than [`SPARSE_LIMIT`] entries (which are then left unsorted).
    fn push(&mut self, entry: u32) -> bool {
        let sorted = self.sorted as usize;
        let limit = pending_limit(sorted);
        if self.entries.len() == self.entries.capacity() {
            // Room up to the next sort (a deserialized vector comes without).
            self.entries.reserve_exact((sorted + limit - self.entries.len()).max(1));
        }
        self.entries.push(entry);
        self.pending() < limit || self.sort_in()
    }

    /// Sorts the pending entries in; `false` if that would make more than [`SPARSE_LIMIT`].
    fn sort_in(&mut self) -> bool {
        if self.pending() == 0 {
            return true;
        }
        let sorted = self.sorted as usize;
        self.entries[sorted..].sort_unstable();
        union_in_place(&mut self.entries, sorted);
        if self.entries.len() > SPARSE_LIMIT {
            return false;
        }
        self.sorted = self.entries.len() as u32;
        true
    }
}

/// Pending entries up to this many are merged in through a stack buffer; more take a heap one.
const STACK_PENDING: usize = 256;

/// [`union_sorted`] of `v[..sorted]` and `v[sorted..]` (both ascending), left in `v`.
///
/// In place, so a sort-in allocates nothing (a new vector per sort-in was most of the
/// allocator's time in a replay): the pending entries are copied aside, and the union is written
/// from the back, where it never overtakes the sorted entries still to be read. Descending, the
/// first entry of an index is the one with its largest rank; later ones are skipped. The sorted
/// entries below every pending one are not moved at all.
fn union_in_place(v: &mut Vec<u32>, sorted: usize) {
    let n = v.len();
    let mut stack = [0u32; STACK_PENDING];
    let heap: Vec<u32>;
    let pending: &[u32] = if n - sorted <= STACK_PENDING {
        stack[..n - sorted].copy_from_slice(&v[sorted..]);
        &stack[..n - sorted]
    } else {
        heap = v[sorted..].to_vec();
        &heap
    };
    let (mut i, mut j, mut w) = (sorted, pending.len(), n);
    // Not an index (they have 25 bits), so the first entry is never skipped.
    let mut last = u32::MAX;
    // Branch-free, as the comparisons are unpredictable: a repeat of the last index rewrites
    // the entry already there with itself. `w >= i + j` throughout, so every write lands at or
    // after what is still to be read.
    let mut put = |v: &mut [u32], x: u32| {
        let new = usize::from(x >> 6 != last >> 6);
        w -= new;
        v[w] = if new == 1 { x } else { v[w] };
        last = v[w];
    };
    while i > 0 && j > 0 {
        let (x, y) = (v[i - 1], pending[j - 1]);
        let take_sorted = x > y;
        i -= usize::from(take_sorted);
        j -= usize::from(!take_sorted);
        put(v, if take_sorted { x } else { y });
    }
    while j > 0 {
        j -= 1;
        put(v, pending[j]);
    }
    // The sorted entries left have one entry per index, and only the first of them can repeat
    // the last index written: the rest stay where they are, at the front.
    let mut kept = 0;
    if i > 0 {
        kept = i - 1;
        let x = v[kept];
        put(v, x);
    }
    if w > kept {
        v.copy_within(w..n, kept);
    }
    v.truncate(kept + n - w);
}

/// The union of two lists of entries in ascending order, which may repeat an index: in ascending
/// order, one entry per index with its largest rank, with room for the next pending entries.
fn union_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let most = a.len() + b.len();
    let mut out = vec![0; most + pending_limit(most)];
    let (mut i, mut j, mut k) = (0, 0, 0);
    // Not an index (they have 25 bits), so the first entry never replaces it.
    let mut last = u32::MAX;
    // Branch-free: the comparisons are unpredictable. Entries of one index come in ascending
    // rank order, so each overwrites the one before.
    let mut put = |v: u32| {
        k -= usize::from(v >> 6 == last >> 6);
        out[k] = v;
        k += 1;
        last = v;
    };
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        let take_a = x <= y;
        put(if take_a { x } else { y });
        i += usize::from(take_a);
        j += usize::from(!take_a);
    }
    a[i..].iter().chain(&b[j..]).for_each(|&v| put(v));
    out.truncate(k);
    out.shrink_to(k + pending_limit(k));
    out
}

/// Applies sparse entries (in any order, repeats allowed) to dense registers.
fn merge_into_dense(registers: &mut [u8], entries: &[u32]) {
    for &entry in entries {
        let (index, rank) = decode_sparse(entry);
        update_register(registers, index, rank);
    }
}

fn to_dense(entries: &[u32]) -> Box<[u8]> {
    let mut registers = vec![0u8; DENSE_BYTES].into_boxed_slice();
    merge_into_dense(&mut registers, entries);
    registers
}

/// Four 6-bit registers from three bytes.
fn group(bytes: &[u8]) -> u32 {
    u32::from(bytes[0]) | u32::from(bytes[1]) << 8 | u32::from(bytes[2]) << 16
}

fn update_register(registers: &mut [u8], index: usize, rank: u32) {
    let bytes = &mut registers[index / 4 * 3..index / 4 * 3 + 3];
    let shift = (index % 4) * 6;
    let g = group(bytes);
    if (g >> shift) & 63 < rank {
        let g = (g & !(63 << shift)) | (rank << shift);
        bytes.copy_from_slice(&g.to_le_bytes()[..3]);
    }
}

/// Ertl's improved raw estimator from the histogram of register values.
fn ertl_estimate(histogram: &[u32; 64]) -> f64 {
    let m = REGISTERS as f64;
    let q = (64 - PRECISION) as usize;
    let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + f64::from(histogram[k]));
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    m * m / (2.0 * std::f64::consts::LN_2) / z
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn hash(value: Value<'_>) -> u64 {
        hash_value(&value).unwrap().unwrap()
    }

    #[test]
    fn equal_numbers_hash_equal_and_types_stay_apart() {
        assert_eq!(hash(Value::Int(5)), hash(Value::Float(5.0)));
        assert_eq!(hash(Value::Int(0)), hash(Value::Float(-0.0)));
        assert_eq!(hash(Value::Int(1 << 60)), hash(Value::Float((1u64 << 60) as f64)));
        assert_ne!(hash(Value::Int(5)), hash(Value::Str(Cow::Borrowed("5"))));
        assert_ne!(hash(Value::Int(1)), hash(Value::Bool(true)));
        assert_ne!(hash(Value::Float(0.5)), hash(Value::Int(0)));
        assert_eq!(hash_value(&Value::Null), Ok(None));
        assert!(hash_value(&Value::Composite).is_err());
        assert!(hash_value(&Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn hashes_are_stable_across_builds() {
        // Pinned: a change here would change every stored distinct count.
        assert_eq!(hash(Value::Str(Cow::Borrowed("user-1"))), 0x4b8b_2a61_e610_7e5d);
    }

    #[test]
    fn sparse_entries_decode_to_the_dense_update() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Also hashes whose bits after the dense index are mostly zero.
            for hash in [x, x & !(((1 << 40) - 1) << 10), x >> 50 << 50] {
                assert_eq!(decode_sparse(sparse_entry(hash)), dense_update(hash), "{hash:#x}");
            }
        }
    }

    #[test]
    fn small_sets_are_counted_exactly_and_duplicates_ignored() {
        let mut s = DistinctSketch::default();
        for round in 0..3 {
            for i in 0..1000 {
                s.insert_hash(hash(Value::Str(Cow::Owned(format!("user-{i}")))));
            }
            assert_eq!(s.estimate(), 1000, "round {round}");
        }
        assert!(matches!(s, DistinctSketch::Sparse(_)));
    }

    #[test]
    fn turns_dense_past_the_sparse_limit() {
        let mut s = DistinctSketch::default();
        for i in 0..(SPARSE_LIMIT as i64 + 100) {
            s.insert_hash(hash(Value::Int(i)));
            assert!(s.heap_bytes() <= SPARSE_CAPACITY * 4, "{} bytes after {i}", s.heap_bytes());
        }
        let n = SPARSE_LIMIT as f64 + 100.0;
        assert!((s.estimate() as f64 - n).abs() / n < 3.0 * STANDARD_ERROR);
        s.normalize();
        assert!(matches!(s, DistinctSketch::Dense(_)));
        assert_eq!(s.heap_bytes(), DENSE_BYTES);
    }

    /// Distinct hashes whose sparse entries have distinct indices, the first `n` of them.
    fn distinct_index_hashes(n: usize) -> Vec<u64> {
        let mut seen = std::collections::HashSet::new();
        (0..)
            .map(|i| hash(Value::Int(i)))
            .filter(|&h| seen.insert(sparse_entry(h) >> 6))
            .take(n)
            .collect()
    }

    #[test]
    fn the_sparse_limit_is_exact_whatever_the_repeats() {
        let hashes = distinct_index_hashes(SPARSE_LIMIT + 1);
        let mut s = DistinctSketch::default();
        for round in 0..3 {
            for &h in &hashes[..SPARSE_LIMIT] {
                s.insert_hash(h);
            }
            assert!(matches!(s, DistinctSketch::Sparse(_)), "round {round}");
            assert_eq!(s.estimate(), SPARSE_LIMIT as u64);
        }
        s.normalize();
        assert!(matches!(s, DistinctSketch::Sparse(_)));
        s.insert_hash(hashes[SPARSE_LIMIT]);
        s.normalize();
        assert!(matches!(s, DistinctSketch::Dense(_)));
    }

    #[test]
    fn pending_entries_do_not_show() {
        // Three values, two of one index, all pending (fewer than MIN_PENDING); then the same
        // set sorted in.
        let hashes = [1u64 << 40, 7 << 50, (7 << 50) | 1];
        let mut pending = DistinctSketch::default();
        for &h in &hashes {
            pending.insert_hash(h);
        }
        let DistinctSketch::Sparse(set) = &pending else { panic!("sparse") };
        assert!(set.pending() > 0);
        let mut sorted = pending.clone();
        sorted.normalize();
        assert_eq!(pending, sorted);
        assert_eq!(pending.estimate(), 2);
        let bytes = postcard::to_allocvec(&pending).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&sorted).unwrap());
        assert_eq!(postcard::from_bytes::<DistinctSketch>(&bytes).unwrap(), pending);
    }

    #[test]
    fn union_keeps_the_largest_rank_per_index() {
        let e = |index: u32, rank: u32| index << 6 | rank;
        let a = [e(1, 3), e(2, 1), e(2, 5), e(9, 2)];
        let b = [e(0, 1), e(2, 4), e(9, 2), e(9, 7), e(10, 1)];
        let union = union_sorted(&a, &b);
        assert_eq!(union, [e(0, 1), e(1, 3), e(2, 5), e(9, 7), e(10, 1)]);
        assert_eq!(union_sorted(&[], &b[..2]), b[..2]);
        assert!(union_sorted(&[], &[]).is_empty());
    }

    proptest::proptest! {
        /// The in-place sort-in gives what the two-slice union gives, on both sides of the
        /// stack buffer's size, with repeated indices and ranks in both halves.
        #[test]
        fn union_in_place_is_the_union(
            sorted in proptest::collection::btree_map(0u32..600, 1u32..8, 0..400),
            pending in proptest::collection::vec((0u32..600, 1u32..8), 0..700),
        ) {
            let e = |(index, rank): (u32, u32)| index << 6 | rank;
            let a: Vec<u32> = sorted.into_iter().map(e).collect();
            let mut b: Vec<u32> = pending.into_iter().map(e).collect();
            b.sort_unstable();
            let mut v = a.clone();
            v.extend_from_slice(&b);
            union_in_place(&mut v, a.len());
            proptest::prop_assert_eq!(v, union_sorted(&a, &b));
        }
    }

    #[test]
    fn stated_standard_error_matches_precision() {
        assert!((1.04 / (REGISTERS as f64).sqrt() - STANDARD_ERROR).abs() < 1e-4);
    }
}
