//! Per-window, per-group aggregate states: exact where they must be, mergeable, and
//! order-independent, so replay equals batch truth (design §3.1).
//!
//! Every state's [`AggState::result`] is a pure function of the multiset of values folded in
//! (for `approx_distinct`, of their set): folding in any order, pre-aggregating on any number of
//! threads or replicas and merging the partial states in any tree gives the same JSON, bit for
//! bit. States serialize with serde (snapshots use `postcard`).
//!
//! | kind | state | result with no values | result |
//! | --- | --- | --- | --- |
//! | `count` | `u64` | `0` | records folded, nulls included |
//! | `sum` | exact superaccumulator ([`sum`]) | `null` (SQL) | integer if every input was an integer and the sum fits `i64`, else the correctly rounded double; `null` if beyond the double range |
//! | `avg` | same as `sum` | `null` | correctly rounded sum / count (one division) |
//! | `min`, `max` | `f64` | `null` | integer if every input was an integer, else double |
//! | `approx_distinct` | HyperLogLog p=14 ([`distinct`]) | `0` | estimate, standard error 0.81%, exact up to 3072 (barring 25-bit hash collisions) |
//! | `approx_percentile(q)` | DDSketch ([`percentile`]) | `null` | SQL `percentile_disc(q)`: within 1% of the value at 1-based rank ⌈q·n⌉ and clamped into [min, max]; exact for up to 32 values and at the lowest and highest rank |
//!
//! Missing and null values are skipped by everything but `count` (SQL semantics). A present value
//! of the wrong type is an [`AggError`]; so is a NaN or infinite double (JSON has neither, but a
//! derived field can compute one), which would otherwise make results order-dependent.
//! `min`/`max` convert integers to `f64`, exactly when `|i| ≤ 2^53`.

pub mod distinct;
pub mod percentile;
pub mod sum;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::value::Value;
use distinct::DistinctSketch;
use percentile::PercentileSketch;
use sum::SumState;

/// What to compute over a field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum AggKind {
    /// Number of records.
    Count,
    /// Exact sum.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean: exact sum / count.
    Avg,
    /// Approximate number of distinct values (strings, numbers, bools).
    ApproxDistinct,
    /// Approximate `q`-quantile, `q` in `(0, 1)` (checked by the job definition; clamped here).
    ApproxPercentile(f64),
}

impl AggKind {
    /// Checks that [`AggState::update`] accepts `value`, without touching any state, and reads
    /// it into the form the state folds ([`AggState::apply`]). The store prepares every
    /// aggregate of a record before folding any, so a record is folded whole or not at all, and
    /// each value is read once.
    pub fn prepare(&self, value: &Value<'_>) -> Result<Input, AggError> {
        self.reads().read(value)
    }

    fn reads(&self) -> Reads {
        match self {
            AggKind::Count => Reads::Nothing,
            AggKind::ApproxDistinct => Reads::Hash,
            _ => Reads::Number,
        }
    }
}

/// What an aggregate reads of its field's value.
#[derive(Clone, Copy)]
enum Reads {
    /// Nothing: `count` counts records, nulls included.
    Nothing,
    /// The value's stable hash ([`distinct::hash_value`]).
    Hash,
    /// The value as a finite number.
    Number,
}

impl Reads {
    #[inline]
    fn read(self, value: &Value<'_>) -> Result<Input, AggError> {
        Ok(match self {
            Reads::Nothing => Input::Record,
            Reads::Hash => distinct::hash_value(value)?.map_or(Input::Skip, Input::Hash),
            Reads::Number => number(value)?.map_or(Input::Skip, Input::Number),
        })
    }
}

/// One record's contribution to one aggregate, from [`AggKind::prepare`].
#[derive(Clone, Copy, Debug)]
pub enum Input {
    /// Nothing to fold: a missing or null value, or a record the aggregate's `where` excludes.
    Skip,
    /// The record itself (`count`).
    Record,
    /// A finite number.
    Number(Number),
    /// A value's stable hash (`approx_distinct`).
    Hash(u64),
}

/// A value could not be folded into an aggregate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AggError {
    /// The field holds a value of a type the aggregate cannot use.
    #[error(
        "expected {expected}, found {found}: aggregate a field of that type, or derive one that converts it"
    )]
    WrongType {
        /// The type(s) the aggregate accepts.
        expected: &'static str,
        /// The type the record holds.
        found: &'static str,
    },
}

/// The error for NaN and infinite doubles.
fn non_finite() -> AggError {
    AggError::WrongType { expected: "finite number", found: "NaN or infinite double" }
}

/// The number in a value: `Ok(None)` when absent; an error for other types and non-finite doubles.
fn number(value: &Value<'_>) -> Result<Option<Number>, AggError> {
    match value {
        Value::Missing | Value::Null => Ok(None),
        Value::Int(i) => Ok(Some(Number::Int(*i))),
        Value::Float(f) if f.is_finite() => Ok(Some(Number::Float(*f))),
        Value::Float(_) => Err(non_finite()),
        other => Err(AggError::WrongType { expected: "number", found: other.type_name() }),
    }
}

/// A finite number as JSON wrote it: integers stay exact.
#[derive(Clone, Copy, Debug)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A finite double.
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// The state of `min` or `max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extremum {
    /// The extreme value so far, by IEEE total order (so `-0.0 < 0.0`, deterministically).
    value: Option<f64>,
    /// Whether every value folded in was an integer; decides the output type.
    all_int: bool,
}

impl Default for Extremum {
    fn default() -> Self {
        Self { value: None, all_int: true }
    }
}

impl Extremum {
    fn fold(&mut self, candidate: f64, all_int: bool, keep_larger: bool) {
        self.all_int &= all_int;
        let wanted =
            if keep_larger { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less };
        if self.value.is_none_or(|current| candidate.total_cmp(&current) == wanted) {
            self.value = Some(candidate);
        }
    }

    fn merge(&mut self, other: &Extremum, keep_larger: bool) {
        match other.value {
            Some(v) => self.fold(v, other.all_int, keep_larger),
            None => self.all_int &= other.all_int,
        }
    }

    fn json(&self) -> serde_json::Value {
        match self.value {
            None => serde_json::Value::Null,
            // Exact for |i| <= 2^53; larger integers were already rounded to the nearest double.
            Some(v) if self.all_int => (v as i64).into(),
            Some(v) => serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into),
        }
    }
}

/// The partial aggregate of one kind for one window and group key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AggState {
    /// Records folded in.
    Count(u64),
    /// Exact sum.
    Sum(SumState),
    /// Smallest value.
    Min(Extremum),
    /// Largest value.
    Max(Extremum),
    /// Exact sum and count.
    Avg(SumState),
    /// HyperLogLog sketch.
    ApproxDistinct(DistinctSketch),
    /// DDSketch (boxed: it is larger than the other states, and rarer).
    ApproxPercentile(Box<PercentileSketch>),
}

impl AggState {
    /// The empty state of an aggregate.
    pub fn new(kind: &AggKind) -> Self {
        match kind {
            AggKind::Count => Self::Count(0),
            AggKind::Sum => Self::Sum(SumState::default()),
            AggKind::Min => Self::Min(Extremum::default()),
            AggKind::Max => Self::Max(Extremum::default()),
            AggKind::Avg => Self::Avg(SumState::default()),
            AggKind::ApproxDistinct => Self::ApproxDistinct(DistinctSketch::default()),
            AggKind::ApproxPercentile(_) => Self::ApproxPercentile(Box::default()),
        }
    }

    /// Folds one value in. `count` counts every record; the others skip missing and null values.
    ///
    /// ```
    /// # use kappa_engine::aggregate::{AggKind, AggState};
    /// # use kappa_engine::value::Value;
    /// let mut sum = AggState::new(&AggKind::Sum);
    /// for v in [Value::Float(0.1), Value::Null, Value::Float(0.2), Value::Int(-3)] {
    ///     sum.update(&v).unwrap();
    /// }
    /// assert_eq!(sum.result(&AggKind::Sum), serde_json::json!(-2.7)); // not -2.6999999999999997
    /// assert!(sum.update(&Value::Bool(true)).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`AggError::WrongType`] for a present value of a type the aggregate cannot use; the state
    /// is unchanged.
    pub fn update(&mut self, value: &Value<'_>) -> Result<(), AggError> {
        let reads = match self {
            Self::Count(_) => Reads::Nothing,
            Self::ApproxDistinct(_) => Reads::Hash,
            _ => Reads::Number,
        };
        self.apply(reads.read(value)?);
        Ok(())
    }

    /// Folds in an input that [`AggKind::prepare`] read for this state's kind.
    ///
    /// # Panics
    ///
    /// If the input has another kind's form (a number for `approx_distinct`, say).
    #[inline]
    pub fn apply(&mut self, input: Input) {
        match (self, input) {
            (_, Input::Skip) => {}
            (Self::Count(n), Input::Record) => *n += 1,
            (Self::ApproxDistinct(sketch), Input::Hash(hash)) => sketch.insert_hash(hash),
            (Self::Sum(s) | Self::Avg(s), Input::Number(Number::Int(i))) => s.add_i64(i),
            (Self::Sum(s) | Self::Avg(s), Input::Number(Number::Float(f))) => s.add_f64(f),
            (Self::Min(e), Input::Number(n)) => {
                e.fold(n.as_f64(), matches!(n, Number::Int(_)), false)
            }
            (Self::Max(e), Input::Number(n)) => {
                e.fold(n.as_f64(), matches!(n, Number::Int(_)), true)
            }
            (Self::ApproxPercentile(sketch), Input::Number(n)) => sketch.add(n.as_f64()),
            (state, input) => panic!("input {input:?} was not prepared for {state:?}"),
        }
    }

    /// Adds another partial state of the same aggregate (from another thread, replica or
    /// snapshot).
    ///
    /// # Panics
    ///
    /// If the states are of different kinds: that is a bug in the caller.
    pub fn merge(&mut self, other: &AggState) {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::Sum(a), Self::Sum(b)) | (Self::Avg(a), Self::Avg(b)) => a.merge(b),
            (Self::Min(a), Self::Min(b)) => a.merge(b, false),
            (Self::Max(a), Self::Max(b)) => a.merge(b, true),
            (Self::ApproxDistinct(a), Self::ApproxDistinct(b)) => a.merge(b),
            (Self::ApproxPercentile(a), Self::ApproxPercentile(b)) => a.merge(b),
            (a, b) => panic!("cannot merge aggregate states of different kinds: {a:?} and {b:?}"),
        }
    }

    /// The output value (see the table in the module documentation).
    pub fn result(&self, kind: &AggKind) -> serde_json::Value {
        match self {
            Self::Count(n) => (*n).into(),
            Self::Sum(s) => s.sum_json(),
            Self::Avg(s) => s.avg_json(),
            Self::Min(e) | Self::Max(e) => e.json(),
            Self::ApproxDistinct(sketch) => sketch.estimate().into(),
            Self::ApproxPercentile(sketch) => {
                let AggKind::ApproxPercentile(q) = kind else {
                    panic!("a percentile state needs a percentile kind, got {kind:?}");
                };
                sketch
                    .quantile(*q)
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, Into::into)
            }
        }
    }

    /// Approximate bytes this state occupies, inline and on the heap (for memory accounting).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Self::Count(_) | Self::Min(_) | Self::Max(_) => 0,
                Self::Sum(s) | Self::Avg(s) => s.heap_bytes(),
                Self::ApproxDistinct(sketch) => sketch.heap_bytes(),
                Self::ApproxPercentile(sketch) => {
                    std::mem::size_of::<PercentileSketch>() + sketch.heap_bytes()
                }
            }
    }
}
