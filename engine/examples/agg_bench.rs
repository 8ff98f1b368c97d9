//! Throughput and memory of the aggregate states: ns per `update` (10M updates per kind into one
//! state; and a windowed workload shaped like the reference job's, where states are created,
//! filled with a few hundred values and dropped) and bytes per state. Run with
//! `cargo run --release -p kappa-engine --example agg_bench [NAME]` (only the timings whose name
//! contains NAME).

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

/// The generator's latency in ms: log-normal-ish (median 40 ms) with a 1 % tail of 0.5-8 s.
fn gen_latency(rng: &mut Rng) -> i64 {
    let millis = if rng.next() % 1000 < 10 {
        500.0 * (rng.unit() * 4.0 * std::f64::consts::LN_2).exp()
    } else {
        let draw = rng.next();
        let lanes: u64 = (0..4).map(|i| (draw >> (16 * i)) & 0xFFFF).sum();
        let z = ((lanes as f64 + 2.0) / 65_536.0 - 2.0) * 3f64.sqrt();
        40.0 * (0.9 * z).exp()
    };
    ((millis + 0.5) as i64).max(1)
}

/// Records per 1-minute window (200 records/s) and group keys, as in the reference job.
const WINDOW_RECORDS: usize = 12_000;
const KEYS: usize = 24;

/// ns per update over a stream of windows: each window's records go to `KEYS` states (skewed, a
/// few hundred values each), which are created at the window start and dropped at its end; plus
/// `tiny` states of 1-3 values (late data), created and dropped the same way.
fn time_windowed(kind: &AggKind, keys: &[usize], values: &[Value<'_>]) -> f64 {
    let start = Instant::now();
    let mut updates = 0;
    for (w, window) in values.chunks(WINDOW_RECORDS).enumerate() {
        let mut states: Vec<AggState> = (0..KEYS).map(|_| AggState::new(kind)).collect();
        for (i, v) in window.iter().enumerate() {
            states[keys[w * WINDOW_RECORDS + i]].update(black_box(v)).unwrap();
        }
        updates += window.len();
        black_box(&states);
    }
    start.elapsed().as_nanos() as f64 / updates as f64
}

fn time_tiny(kind: &AggKind, values: &[Value<'_>]) -> f64 {
    let start = Instant::now();
    for chunk in values.chunks(2) {
        let mut state = AggState::new(kind);
        for v in chunk {
            state.update(black_box(v)).unwrap();
        }
        black_box(&state);
    }
    start.elapsed().as_nanos() as f64 / values.len() as f64
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
    // An optional argument runs only the timings whose name contains it (for profiling).
    let only = std::env::args().nth(1).unwrap_or_default();
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
    for (name, kind, values) in cases.into_iter().filter(|c| c.0.contains(&only)) {
        let (ns, state) = time_updates(&kind, values);
        println!("  {name:<34} {ns:6.1} ns   result {}", state.result(&kind));
    }

    // The windowed workload: keys weighted like the generator's servers x tx types, the generator's latencies and
    // amounts, users skewed towards low ids (u^3 over 50 000).
    let records = 100 * WINDOW_RECORDS;
    let weights: Vec<u64> = [500u64, 300, 200]
        .iter()
        .flat_map(|s| [450u64, 180, 110, 100, 70, 60, 20, 10].map(|t| s * t))
        .collect();
    let total: u64 = weights.iter().sum();
    let keys: Vec<usize> = (0..records)
        .map(|_| {
            let mut draw = rng.next() % total;
            weights.iter().position(|&w| draw < w || (draw -= w, false).1).unwrap()
        })
        .collect();
    let w_latencies: Vec<Value> = (0..records).map(|_| Value::Int(gen_latency(&mut rng))).collect();
    let w_amounts: Vec<Value> =
        (0..records).map(|_| Value::Float((rng.next() % 1_000_000) as f64 / 100.0)).collect();
    let w_user_ids: Vec<String> = (0..records)
        .map(|_| {
            let u = rng.unit();
            format!("u-{:06}", ((u * u * u * 50_000.0) as u32).min(49_999))
        })
        .collect();
    let w_users: Vec<Value> =
        w_user_ids.iter().map(|u| Value::Str(Cow::Borrowed(u.as_str()))).collect();
    println!(
        "\nns per update, windowed ({KEYS} states per window of {WINDOW_RECORDS} records; \
         tiny: fresh states of 2 values):"
    );
    let cases: [(&str, AggKind, &[Value]); 5] = [
        ("count", AggKind::Count, &w_latencies),
        ("sum (amounts)", AggKind::Sum, &w_amounts),
        ("avg (latency ms)", AggKind::Avg, &w_latencies),
        ("approx_distinct (users)", AggKind::ApproxDistinct, &w_users),
        ("approx_percentile (latency ms)", AggKind::ApproxPercentile(0.95), &w_latencies),
    ];
    for (name, kind, values) in cases.into_iter().filter(|c| c.0.contains(&only)) {
        // The best of a few runs: the machine may be busy.
        let best = |f: &dyn Fn() -> f64| (0..5).map(|_| f()).fold(f64::INFINITY, f64::min);
        let ns = best(&|| time_windowed(&kind, &keys, values));
        let tiny = best(&|| time_tiny(&kind, &values[..1_000_000]));
        println!("  {name:<34} {ns:6.1} ns   tiny {tiny:6.1} ns");
    }
    let kind = AggKind::ApproxPercentile(0.95);
    let mut state = AggState::new(&kind);
    let mut distinct = AggState::new(&AggKind::ApproxDistinct);
    for (i, (v, u)) in w_latencies.iter().zip(&w_users).enumerate().take(WINDOW_RECORDS) {
        if keys[i] == 0 {
            state.update(v).unwrap();
            distinct.update(u).unwrap();
        }
    }
    println!(
        "  one window's busiest key: percentile {} B (snapshot {} B), distinct {} B (snapshot {} B, \
         result {})",
        state.memory_bytes(),
        postcard::to_allocvec(&state).unwrap().len(),
        distinct.memory_bytes(),
        postcard::to_allocvec(&distinct).unwrap().len(),
        distinct.result(&AggKind::ApproxDistinct),
    );

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
