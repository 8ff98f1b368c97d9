//! Throughput and memory of the aggregate states: ns per `update` (10M updates per kind) and
//! bytes per state. Run with `cargo run --release --example agg_bench`.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

use kappa_engine::aggregate::{AggKind, AggState};
use kappa_engine::value::Value;

const UPDATES: usize = 10_000_000;
const DISTINCT_VALUES: usize = 1_000_000;

/// xorshift64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn latency(rng: &mut Rng) -> f64 {
    // Log-uniform between ~1 ms and ~3 s.
    (-7.0 + 8.0 * rng.unit()).exp()
}

fn time_updates(kind: &AggKind, values: &[Value<'_>]) -> (f64, AggState) {
    let mut state = AggState::new(kind);
    let start = Instant::now();
    for i in 0..UPDATES {
        state.update(black_box(&values[i % values.len()])).unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / UPDATES as f64;
    (ns, black_box(state))
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ints: Vec<Value> =
        (0..DISTINCT_VALUES).map(|_| Value::Int((rng.next() % 100_000) as i64)).collect();
    let amounts: Vec<Value> = (0..DISTINCT_VALUES)
        .map(|_| Value::Float((rng.next() % 1_000_000) as f64 / 100.0))
        .collect();
    let latencies: Vec<Value> =
        (0..DISTINCT_VALUES).map(|_| Value::Float(latency(&mut rng))).collect();
    let user_ids: Vec<String> =
        (0..DISTINCT_VALUES).map(|i| format!("user-{}", i % 100_000)).collect();
    let users: Vec<Value> =
        user_ids.iter().map(|u| Value::Str(Cow::Borrowed(u.as_str()))).collect();

    println!("ns per update ({UPDATES} updates into one state, 1M distinct inputs cycled):");
    let cases: [(&str, AggKind, &[Value]); 9] = [
        ("count", AggKind::Count, &ints),
        ("sum (ints)", AggKind::Sum, &ints),
        ("sum (amounts, 2 decimals)", AggKind::Sum, &amounts),
        ("avg (latencies)", AggKind::Avg, &latencies),
        ("min (latencies)", AggKind::Min, &latencies),
        ("max (latencies)", AggKind::Max, &latencies),
        ("approx_distinct (100k user ids)", AggKind::ApproxDistinct, &users),
        ("approx_distinct (100k ints)", AggKind::ApproxDistinct, &ints),
        ("approx_percentile (latencies)", AggKind::ApproxPercentile(0.99), &latencies),
    ];
    for (name, kind, values) in cases {
        let (ns, state) = time_updates(&kind, values);
        println!("  {name:<34} {ns:6.1} ns   result {}", state.result(&kind));
    }

    println!(
        "\nbytes per state (inline {} + heap; postcard snapshot size):",
        std::mem::size_of::<AggState>()
    );
    for (name, kind, values) in [
        ("count", AggKind::Count, &ints),
        ("sum (amounts)", AggKind::Sum, &amounts),
        ("min", AggKind::Min, &latencies),
    ] {
        let mut state = AggState::new(&kind);
        for v in &values[..1000] {
            state.update(v).unwrap();
        }
        let snapshot = postcard::to_allocvec(&state).unwrap().len();
        println!(
            "  {name:<24} after 1000 values: {:6} B   snapshot {snapshot} B",
            state.memory_bytes()
        );
    }
    let counts = [1usize, 10, 100, 1_000, 10_000, 100_000];
    for (name, kind, values) in [
        ("approx_distinct", AggKind::ApproxDistinct, &users),
        ("approx_percentile", AggKind::ApproxPercentile(0.5), &latencies),
    ] {
        for &n in &counts {
            let mut state = AggState::new(&kind);
            for v in &values[..n] {
                state.update(v).unwrap();
            }
            let snapshot = postcard::to_allocvec(&state).unwrap().len();
            println!(
                "  {name:<24} {n:>6} values: {:6} B   snapshot {snapshot:6} B   result {}",
                state.memory_bytes(),
                state.result(&kind)
            );
        }
    }
}
