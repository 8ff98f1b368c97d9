//! Tests of the aggregate contract: per-kind behaviour, order and merge independence, exactness
//! against independent references, sketch accuracy, and snapshot round trips.

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::json;

use super::*;

const ALL_KINDS: [AggKind; 9] = [
    AggKind::Count,
    AggKind::Sum,
    AggKind::Min,
    AggKind::Max,
    AggKind::Avg,
    AggKind::ApproxDistinct,
    AggKind::ApproxPercentile(0.01),
    AggKind::ApproxPercentile(0.5),
    AggKind::ApproxPercentile(0.99),
];

fn fold(kind: &AggKind, values: &[Value<'_>]) -> AggState {
    let mut state = AggState::new(kind);
    for v in values {
        state.update(v).unwrap();
    }
    state
}

/// The output as JSON text, so that `0.0` and `-0.0` differ (they compare equal as numbers).
fn result_text(state: &AggState, kind: &AggKind) -> String {
    state.result(kind).to_string()
}

fn postcard_round_trip(state: &AggState) -> AggState {
    postcard::from_bytes(&postcard::to_allocvec(state).unwrap()).unwrap()
}

/// A small deterministic generator for shuffles and merge trees.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Shuffles the values, deals them to `parts` partial states, sends some partials through a
/// snapshot, and merges them pairwise in a random tree.
fn fold_split_merge(kind: &AggKind, values: &[Value<'_>], seed: u64, parts: usize) -> AggState {
    let mut rng = XorShift(seed | 1);
    let mut shuffled = values.to_vec();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    let mut pool: Vec<AggState> = (0..parts).map(|_| AggState::new(kind)).collect();
    for v in &shuffled {
        let part = rng.below(parts);
        pool[part].update(v).unwrap();
    }
    for state in pool.iter_mut() {
        if rng.below(2) == 0 {
            *state = postcard_round_trip(state);
        }
    }
    while pool.len() > 1 {
        let b = pool.swap_remove(rng.below(pool.len()));
        let a = rng.below(pool.len());
        pool[a].merge(&b);
    }
    pool.pop().unwrap()
}

fn s(text: &str) -> Value<'static> {
    Value::Str(Cow::Owned(text.to_owned()))
}

// ---- Per-kind behaviour ----

#[test]
fn count_counts_every_record_including_nulls() {
    let values = [Value::Int(1), Value::Null, Value::Missing, s("x"), Value::Composite];
    assert_eq!(fold(&AggKind::Count, &values).result(&AggKind::Count), json!(5));
    assert_eq!(AggState::new(&AggKind::Count).result(&AggKind::Count), json!(0));
}

#[test]
fn sum_skips_nulls_and_is_null_when_empty() {
    let kind = AggKind::Sum;
    assert_eq!(fold(&kind, &[]).result(&kind), json!(null));
    assert_eq!(fold(&kind, &[Value::Null, Value::Missing]).result(&kind), json!(null));
    assert_eq!(fold(&kind, &[Value::Int(2), Value::Null, Value::Int(3)]).result(&kind), json!(5));
    assert_eq!(fold(&kind, &[Value::Int(2), Value::Float(3.0)]).result(&kind), json!(5.0));
    let tenths = [Value::Float(0.1), Value::Float(0.2), Value::Float(0.3)];
    assert_eq!(fold(&kind, &tenths).result(&kind), json!(0.6)); // naively 0.6000000000000001
}

#[test]
fn sum_output_type_follows_input_types() {
    let kind = AggKind::Sum;
    let ints = fold(&kind, &[Value::Int(1), Value::Int(2)]).result(&kind);
    assert!(ints.is_i64(), "{ints}");
    let mixed = fold(&kind, &[Value::Float(1.5), Value::Float(1.5)]).result(&kind);
    assert!(mixed.is_f64(), "{mixed}");
}

#[test]
fn wrong_types_are_errors_and_leave_the_state_unchanged() {
    for kind in
        [AggKind::Sum, AggKind::Min, AggKind::Max, AggKind::Avg, AggKind::ApproxPercentile(0.5)]
    {
        let mut state = fold(&kind, &[Value::Int(7)]);
        let before = state.clone();
        assert_eq!(
            state.update(&s("7")),
            Err(AggError::WrongType { expected: "number", found: "string" })
        );
        assert!(state.update(&Value::Bool(true)).is_err());
        assert!(state.update(&Value::Composite).is_err());
        assert!(state.update(&Value::Float(f64::NAN)).is_err());
        assert!(state.update(&Value::Float(f64::INFINITY)).is_err());
        assert_eq!(state, before, "{kind:?}");
    }
    let mut distinct = AggState::new(&AggKind::ApproxDistinct);
    assert!(distinct.update(&Value::Composite).is_err());
    assert!(distinct.update(&s("7")).is_ok());
}

#[test]
fn min_and_max() {
    let values = [Value::Int(3), Value::Null, Value::Int(-2), Value::Int(10)];
    assert_eq!(fold(&AggKind::Min, &values).result(&AggKind::Min), json!(-2));
    assert_eq!(fold(&AggKind::Max, &values).result(&AggKind::Max), json!(10));
    let values = [Value::Int(3), Value::Float(2.5)];
    assert_eq!(fold(&AggKind::Min, &values).result(&AggKind::Min), json!(2.5));
    assert_eq!(fold(&AggKind::Max, &values).result(&AggKind::Max), json!(3.0));
    assert_eq!(AggState::new(&AggKind::Min).result(&AggKind::Min), json!(null));
    // -0.0 < 0.0 in every order.
    let zeros = [Value::Float(0.0), Value::Float(-0.0)];
    let rev = [Value::Float(-0.0), Value::Float(0.0)];
    for kind in [AggKind::Min, AggKind::Max] {
        assert_eq!(
            result_text(&fold(&kind, &zeros), &kind),
            result_text(&fold(&kind, &rev), &kind)
        );
    }
    assert_eq!(result_text(&fold(&AggKind::Min, &zeros), &AggKind::Min), "-0.0");
}

#[test]
fn avg_is_exact_sum_over_count() {
    let kind = AggKind::Avg;
    assert_eq!(fold(&kind, &[]).result(&kind), json!(null));
    assert_eq!(fold(&kind, &[Value::Int(1), Value::Int(2)]).result(&kind), json!(1.5));
    let tenths: Vec<Value> = (0..10).map(|_| Value::Float(0.1)).collect();
    assert_eq!(fold(&kind, &tenths).result(&kind), json!(0.1));
    assert_eq!(fold(&kind, &[Value::Null, Value::Int(4)]).result(&kind), json!(4.0));
}

#[test]
fn approx_distinct_counts_values_not_spellings() {
    let kind = AggKind::ApproxDistinct;
    let values = [
        Value::Int(5),
        Value::Float(5.0),
        s("5"),
        Value::Bool(true),
        Value::Int(1),
        Value::Null,
        s("a"),
        s("a"),
    ];
    assert_eq!(fold(&kind, &values).result(&kind), json!(5));
    assert_eq!(AggState::new(&kind).result(&kind), json!(0));
}

#[test]
fn approx_percentile_of_latencies() {
    let kind = AggKind::ApproxPercentile(0.5);
    assert_eq!(AggState::new(&kind).result(&kind), json!(null));
    let values: Vec<Value> = (1..=100).map(Value::Int).collect();
    let p50 = fold(&kind, &values).result(&kind).as_f64().unwrap();
    assert!((p50 - 50.0).abs() <= 0.5, "{p50}");
    let p99 = AggKind::ApproxPercentile(0.99);
    let got = fold(&p99, &values).result(&p99).as_f64().unwrap();
    assert!((got - 99.0).abs() <= 0.99, "{got}");
}

#[test]
fn approx_percentile_stays_within_min_and_max() {
    // One latency: 13, not the bin's 13.065.
    let p95 = AggKind::ApproxPercentile(0.95);
    assert_eq!(fold(&p95, &[Value::Int(13)]).result(&p95), json!(13.0));
    // Exact while few: SQL's percentile_disc, the value at 1-based rank ⌈q·n⌉ itself. Of 5
    // values p95 is the largest (rank 5), p80 the fourth (⌈4.0⌉), p50 the median (⌈2.5⌉ = 3).
    let few: Vec<Value> = [40, 7, 13, 250, 31].map(Value::Int).to_vec();
    assert_eq!(fold(&p95, &few).result(&p95), json!(250.0));
    for (q, exact) in [(0.8, 40.0), (0.5, 31.0), (0.2, 7.0), (0.21, 13.0)] {
        let kind = AggKind::ApproxPercentile(q);
        assert_eq!(fold(&kind, &few).result(&kind), json!(exact), "q={q}");
    }
    // The README's example: of 8 ms and 36 ms, p95 is 36 ms, and p50 is 8 ms.
    let two: Vec<Value> = [8, 36].map(Value::Int).to_vec();
    assert_eq!(fold(&p95, &two).result(&p95), json!(36.0));
    let p50 = AggKind::ApproxPercentile(0.5);
    assert_eq!(fold(&p50, &two).result(&p50), json!(8.0));
    // Binned: the extremes are exact, the rest clamped into [min, max].
    let many: Vec<Value> =
        (0..1_000).map(|i| Value::Int(if i % 2 == 0 { 13 } else { 14 })).collect();
    for (q, exact) in [(0.0, 13.0), (0.3, 13.0), (0.7, 14.0), (1.0, 14.0)] {
        let kind = AggKind::ApproxPercentile(q);
        let got = fold(&kind, &many).result(&kind).as_f64().unwrap();
        assert!((13.0..=14.0).contains(&got), "q={q}: {got}");
        assert!((got - exact).abs() <= percentile::RELATIVE_ACCURACY * exact, "q={q}: {got}");
    }
    let all_13: Vec<Value> = (0..1_000).map(|_| Value::Int(13)).collect();
    assert_eq!(fold(&p95, &all_13).result(&p95), json!(13.0));
}

#[test]
#[should_panic(expected = "different kinds")]
fn merging_different_kinds_is_a_bug() {
    AggState::new(&AggKind::Sum).merge(&AggState::new(&AggKind::Avg));
}

#[test]
fn states_are_small() {
    assert!(std::mem::size_of::<AggState>() <= 40, "{}", std::mem::size_of::<AggState>());
    assert_eq!(
        AggState::new(&AggKind::ApproxDistinct).memory_bytes(),
        std::mem::size_of::<AggState>()
    );
}

// ---- (3) HyperLogLog accuracy on a deterministic set ----

#[test]
fn approx_distinct_is_within_two_percent() {
    let kind = AggKind::ApproxDistinct;
    let mut state = AggState::new(&kind);
    let mut inserted = 0;
    for n in [1_000u64, 10_000, 100_000] {
        while inserted < n {
            state.update(&s(&format!("user-{inserted}"))).unwrap();
            inserted += 1;
        }
        // Repeats change nothing.
        state.update(&s("user-0")).unwrap();
        let estimate = state.result(&kind).as_u64().unwrap();
        let error = (estimate as f64 - n as f64).abs() / n as f64;
        assert!(error <= 0.02, "n={n}: estimate {estimate}, error {error:.4}");
    }
}

// ---- Proptest strategies ----

/// Numbers the way records carry them: integers, amounts with two decimals, large and small
/// magnitudes, subnormals, any double; and nulls.
fn numeric_value() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        (-1_000_000i64..1_000_000).prop_map(Value::Int),
        (-10_000_000i64..10_000_000).prop_map(|cents| Value::Float(cents as f64 / 100.0)),
        (-1e6f64..1e6).prop_map(Value::Float),
        (any::<bool>(), 1.0f64..10.0, -300i32..300)
            .prop_map(|(neg, m, e)| Value::Float(if neg { -m } else { m } * 10f64.powi(e))),
        (proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO)
            .prop_map(Value::Float),
        Just(Value::Null),
        Just(Value::Missing),
    ]
}

/// Values for distinct counting: a small pool of strings (so that there are repeats), numbers
/// written as integers or doubles, bools.
fn distinct_value() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        (0u32..200).prop_map(|i| s(&format!("u{i}"))),
        (-50i64..50).prop_map(Value::Int),
        (-50i64..50).prop_map(|i| Value::Float(i as f64)),
        (-50i64..50).prop_map(|i| Value::Float(i as f64 / 4.0)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

/// Exact fsum by Shewchuk's algorithm with Python's final rounding: an independent reference
/// for inputs whose partial sums stay finite.
fn shewchuk_sum(values: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &v in values {
        let mut x = v;
        let mut kept = 0;
        for i in 0..partials.len() {
            let mut y = partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        partials.push(x);
    }
    let Some(mut n) = partials.len().checked_sub(1) else {
        return 0.0;
    };
    let mut total = partials[n];
    while n > 0 {
        let old = total;
        n -= 1;
        let x = partials[n];
        total = old + x;
        let error = x - (total - old);
        if error != 0.0 {
            if n > 0
                && ((error < 0.0 && partials[n - 1] < 0.0)
                    || (error > 0.0 && partials[n - 1] > 0.0))
            {
                let y = error * 2.0;
                let x = total + y;
                if y == x - total {
                    total = x;
                }
            }
            break;
        }
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // ---- (1) Order and merge independence ----

    #[test]
    fn results_do_not_depend_on_order_or_merge_tree(
        values in prop::collection::vec(numeric_value(), 0..200),
        seed in any::<u64>(),
        parts in 1usize..8,
    ) {
        for kind in &ALL_KINDS {
            let sequential = result_text(&fold(kind, &values), kind);
            let merged = result_text(&fold_split_merge(kind, &values, seed, parts), kind);
            prop_assert_eq!(&sequential, &merged, "{:?}", kind);
        }
    }

    #[test]
    fn distinct_does_not_depend_on_order_or_merge_tree(
        values in prop::collection::vec(distinct_value(), 0..300),
        seed in any::<u64>(),
        parts in 1usize..8,
    ) {
        let kind = AggKind::ApproxDistinct;
        let sequential = fold(&kind, &values);
        let merged = fold_split_merge(&kind, &values, seed, parts);
        prop_assert_eq!(result_text(&sequential, &kind), result_text(&merged, &kind));
        // Stronger: the sketch itself, and its snapshot, are functions of the set.
        prop_assert_eq!(
            postcard::to_allocvec(&sequential).unwrap(),
            postcard::to_allocvec(&merged).unwrap()
        );
        prop_assert_eq!(sequential, merged);
    }

    #[test]
    fn distinct_is_canonical_across_the_sparse_dense_switch(
        n in 2_500usize..4_500,
        repeats in 0usize..500,
        seed in any::<u64>(),
        parts in 2usize..6,
    ) {
        let kind = AggKind::ApproxDistinct;
        let values: Vec<Value> = (0..n + repeats).map(|i| Value::Int((i % n) as i64)).collect();
        let sequential = fold(&kind, &values);
        let merged = fold_split_merge(&kind, &values, seed, parts);
        prop_assert_eq!(&sequential, &merged);
        prop_assert_eq!(
            postcard::to_allocvec(&sequential).unwrap(),
            postcard::to_allocvec(&merged).unwrap()
        );
        let estimate = sequential.result(&kind).as_f64().unwrap();
        prop_assert!((estimate - n as f64).abs() / n as f64 <= 3.0 * distinct::STANDARD_ERROR);
    }

    #[test]
    fn percentile_does_not_depend_on_order_or_merge_tree(
        values in prop::collection::vec(
            prop_oneof![
                400 => (-7.0f64..6.0).prop_map(|e| Value::Float(e.exp())),
                20 => Just(Value::Int(0)),
                20 => (1i64..1_000).prop_map(|i| Value::Int(-i)),
                // Rare and far apart, so that the lowest bins collapse, in sparse and in dense
                // bins: 1e-20 below the latencies, and 1e15 puts the floor at ~2.4 ms, inside
                // them.
                1 => prop_oneof![Just(Value::Float(1e-20)), Just(Value::Float(1e15))],
            ],
            0..3_000,
        ),
        seed in any::<u64>(),
        parts in 1usize..12,
    ) {
        let kinds = [0.0, 0.001, 0.05, 0.5, 0.95, 0.999, 1.0].map(AggKind::ApproxPercentile);
        let sequential = fold(&kinds[0], &values);
        let merged = fold_split_merge(&kinds[0], &values, seed, parts);
        for kind in &kinds {
            prop_assert_eq!(result_text(&sequential, kind), result_text(&merged, kind), "{:?}", kind);
        }
        // Stronger: the state (whichever form its bins took) and its snapshot.
        prop_assert_eq!(
            postcard::to_allocvec(&sequential).unwrap(),
            postcard::to_allocvec(&merged).unwrap()
        );
        prop_assert_eq!(sequential, merged);
    }

    // ---- (2) Sum and avg against exact references ----

    #[test]
    fn sum_matches_fixed_point_reference(
        terms in prop::collection::vec(
            prop_oneof![
                // ±mantissa · 2^e with |v| in [2^-28, 2^36): multiples of 2^-80.
                (any::<bool>(), (1u64 << 52)..(1u64 << 53), -80i32..=-17).prop_map(|(neg, m, e)| {
                    let v = m as f64 * 2f64.powi(e);
                    if neg { -v } else { v }
                }),
                (-10_000_000i64..10_000_000).prop_map(|cents| cents as f64 / 100.0),
            ],
            1..200,
        ),
    ) {
        let scale = 2f64.powi(80);
        let exact: i128 = terms.iter().map(|&v| (v * scale) as i128).sum();
        let expected_sum = exact as f64 / scale; // one correct rounding, then an exact scaling
        let values: Vec<Value> = terms.iter().map(|&v| Value::Float(v)).collect();
        prop_assert_eq!(fold(&AggKind::Sum, &values).result(&AggKind::Sum), json!(expected_sum));
        prop_assert_eq!(
            fold(&AggKind::Avg, &values).result(&AggKind::Avg),
            json!(expected_sum / terms.len() as f64)
        );
    }

    #[test]
    fn integer_sum_is_exact(ints in prop::collection::vec(any::<i64>(), 1..100)) {
        let exact: i128 = ints.iter().map(|&i| i128::from(i)).sum();
        let values: Vec<Value> = ints.iter().map(|&i| Value::Int(i)).collect();
        let expected = match i64::try_from(exact) {
            Ok(i) => json!(i),
            Err(_) => json!(exact as f64),
        };
        prop_assert_eq!(fold(&AggKind::Sum, &values).result(&AggKind::Sum), expected);
    }

    #[test]
    fn sum_matches_shewchuk_over_all_magnitudes(
        terms in prop::collection::vec(
            prop_oneof![
                (any::<bool>(), 1.0f64..10.0, -320i32..300)
                    .prop_map(|(neg, m, e)| if neg { -m } else { m } * 10f64.powi(e)),
                proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
                -1e3f64..1e3,
                // Near-ties: a big integer, a half, and a tiny nudge either way.
                (0u64..8).prop_map(|k| (1u64 << 53) as f64 + k as f64),
                prop_oneof![Just(0.5), Just(-0.5), Just(1.0), Just(-1.0)],
                (any::<bool>(), 54i32..120).prop_map(|(neg, k)| if neg { -1.0 } else { 1.0 } * 2f64.powi(-k)),
            ],
            1..100,
        ),
    ) {
        let values: Vec<Value> = terms.iter().map(|&v| Value::Float(v)).collect();
        let expected = shewchuk_sum(&terms);
        // Compare as text: `json!` would map -0.0 and 0.0 to equal numbers.
        let got = fold(&AggKind::Sum, &values).result(&AggKind::Sum);
        prop_assert_eq!(got.as_f64().unwrap().to_bits(), (expected + 0.0).to_bits(), "{:?}", terms);
    }

    // ---- (4) Percentile accuracy ----

    #[test]
    fn percentile_is_within_one_percent_of_the_exact_rank(
        exponents in prop::collection::vec(-7.0f64..6.0, 1..2_000),
        zeros in 0usize..20,
    ) {
        // Latency-like: log-uniform from ~1 ms to ~400 s, plus some zeros.
        let mut latencies: Vec<f64> = exponents.iter().map(|e| e.exp()).collect();
        latencies.extend(std::iter::repeat_n(0.0, zeros));
        let values: Vec<Value> = latencies.iter().map(|&v| Value::Float(v)).collect();
        latencies.sort_by(f64::total_cmp);
        let n = latencies.len();
        let sketch = fold(&AggKind::ApproxPercentile(0.5), &values);
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999] {
            let estimate = sketch.result(&AggKind::ApproxPercentile(q)).as_f64().unwrap();
            let exact = latencies[percentile::rank_of(q, n as u64) as usize];
            prop_assert!(
                (estimate - exact).abs() <= percentile::RELATIVE_ACCURACY * exact,
                "q={} estimate {} exact {}", q, estimate, exact
            );
        }
    }

    /// SQL's `percentile_disc(q)` against an exact sort: any size from one record to 5000,
    /// latency-like values, heavy ties, small integers with negatives and zeros; any record
    /// order and merge tree. Within 1% of the exact value, and the exact value itself while the
    /// sketch still keeps values exactly or at the lowest and highest rank.
    #[test]
    fn percentile_is_sql_percentile_disc_within_one_percent(
        values in prop_oneof![
            // Latency-like: log-uniform from ~1 ms to ~400 s.
            prop::collection::vec((-7.0f64..6.0).prop_map(f64::exp), 1..5_000),
            // Heavy ties: a few distinct values, repeated.
            (prop::collection::vec(1u32..1_000, 1..4), prop::collection::vec(any::<prop::sample::Index>(), 1..5_000))
                .prop_map(|(distinct, picks)| picks.iter().map(|i| f64::from(*i.get(&distinct))).collect()),
            // Small integers around zero.
            prop::collection::vec((-20i32..20).prop_map(f64::from), 1..5_000),
            // Small windows, where p95 is the largest value.
            prop::collection::vec((1u32..500).prop_map(f64::from), 1..40),
        ],
        extra_q in 0.0f64..1.0,
        seed in any::<u64>(),
        parts in 1usize..8,
    ) {
        let n = values.len();
        let records: Vec<Value> = values.iter().map(|&v| Value::Float(v)).collect();
        let state = fold_split_merge(&AggKind::ApproxPercentile(0.5), &records, seed, parts);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0, extra_q] {
            // The 1-based rank ⌈q·n⌉, written out here rather than through `rank_of`.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            let exact = sorted[rank - 1];
            let got = state.result(&AggKind::ApproxPercentile(q)).as_f64().unwrap();
            if n <= percentile::EXACT_LIMIT || rank == 1 || rank == n {
                prop_assert_eq!(got, exact, "q={} n={}", q, n);
            } else {
                prop_assert!(
                    (got - exact).abs() <= percentile::RELATIVE_ACCURACY * exact.abs(),
                    "q={} n={} got {} exact {}", q, n, got, exact
                );
            }
        }
    }

    // ---- (5) Snapshots ----

    #[test]
    fn postcard_round_trip_preserves_results_and_merges(
        first in prop::collection::vec(numeric_value(), 0..100),
        second in prop::collection::vec(numeric_value(), 0..100),
        words in prop::collection::vec(distinct_value(), 0..100),
    ) {
        for kind in &ALL_KINDS {
            let (first, second) = if *kind == AggKind::ApproxDistinct {
                (&words[..words.len() / 2], &words[words.len() / 2..])
            } else {
                (&first[..], &second[..])
            };
            let mut original = fold(kind, first);
            let mut restored = postcard_round_trip(&original);
            prop_assert_eq!(result_text(&original, kind), result_text(&restored, kind));
            let other = fold(kind, second);
            original.merge(&other);
            restored.merge(&postcard_round_trip(&other));
            prop_assert_eq!(result_text(&original, kind), result_text(&restored, kind));
        }
    }
}

#[test]
fn a_dense_sketch_survives_a_snapshot() {
    let kind = AggKind::ApproxDistinct;
    let values: Vec<Value> = (0..20_000).map(Value::Int).collect();
    let state = fold(&kind, &values);
    let restored = postcard_round_trip(&state);
    assert_eq!(state, restored);
    assert!(postcard::from_bytes::<AggState>(&[5, 1, 9]).is_err());
}
