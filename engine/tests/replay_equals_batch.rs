//! The central promise: whatever the partition interleaving, thread count, chunking, flushes,
//! snapshots and restores, the engine's output equals a straightforward batch computation over
//! the same records, written here independently of the engine (chrono for timestamps, exact
//! fixed-point sums, exact distinct sets and sorted latency lists).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use kappa_engine::replay::{replay_files, ReplayOptions};
use kappa_engine::{JobPlan, Processor};
use proptest::prelude::*;
use serde_json::Value as Json;

const SERVERS: [&str; 3] = ["srv-1", "srv-2", "srv-3"];
const KINDS: [&str; 3] = ["payment", "refund", "fee"];
const STATUSES: [&str; 3] = ["ok", "fail", "test"];

#[derive(Debug, Clone)]
struct Rec {
    server: usize,
    kind: usize,
    status: usize,
    amount_cents: i64,
    latency: i64,
    user: u32,
    event: i64,
    log: i64,
}

#[derive(Debug, Clone)]
enum Line {
    Good(Rec),
    /// A line the engine must dead-letter, whatever the job parameters.
    Bad(String),
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Good(r) => serde_json::json!({
                "event_time": rfc3339(r.event),
                "logged_time": r.log,
                "server": SERVERS[r.server],
                "kind": KINDS[r.kind],
                "status": STATUSES[r.status],
                "amount": r.amount_cents as f64 / 100.0,
                "latency_ms": r.latency,
                "user_id": format!("u-{}", r.user),
                "extra": {"ignored": [1, 2, {"deep": true}]},
            })
            .to_string(),
            Line::Bad(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    partitions: Vec<Vec<Line>>,
    lateness_ms: i64,
    window: (i64, i64),
    /// Order in which partitions deliver their next record (the interleaving).
    schedule: Vec<usize>,
    threads: usize,
    chunk_bytes: usize,
    /// Bytes a replay worker claims at a time: tiny ones put stripe boundaries inside lines
    /// and leave stripes that hold no line start.
    stripe_bytes: usize,
    /// Log time after a window's end at which replay workers hand their partial state to the
    /// coordinator's merger: 0 hands windows over as soon as they end, so later records open
    /// partials again and again.
    settle_after_ms: i64,
    /// Positions (in delivery order) at which the processor flushes / snapshots and restores.
    flush_at: BTreeSet<usize>,
    restore_at: BTreeSet<usize>,
    /// Drives the simulated sink of [`run_with_slow_sink`]: when it stages, batches,
    /// acknowledges, and which unacknowledged writes land before a crash.
    sink_seed: u64,
}

fn job_yaml(lateness_ms: i64, (size, slide): (i64, i64)) -> String {
    let window = if size == slide {
        format!("tumbling: {size}ms")
    } else {
        format!("hopping: {{size: {size}ms, slide: {slide}ms}}")
    };
    format!(
        r#"
apiVersion: kappa.dev/v1alpha1
kind: StreamJob
metadata: {{name: prop-job}}
spec:
  version: v1
  source: {{kafka: {{bootstrapServers: "localhost:9092", topic: t}}}}
  pipeline:
    eventTime: {{field: event_time, format: rfc3339}}
    logTime: {{field: logged_time, format: epochMillis}}
    maxLateness: {lateness_ms}ms
    filter: "status != 'test'"
    groupBy: [server, kind]
    window: {{{window}}}
    aggregates:
      - {{name: n, op: count}}
      - {{name: amount_sum, op: sum, field: amount}}
      - {{name: lat_min, op: min, field: latency_ms}}
      - {{name: lat_max, op: max, field: latency_ms}}
      - {{name: lat_avg, op: avg, field: latency_ms}}
      - {{name: failures, op: count, where: "status == 'fail'"}}
      - {{name: users, op: approx_distinct, field: user_id}}
      - {{name: p90, op: approx_percentile, field: latency_ms, percentile: 0.9}}
      - {{name: big_sum, op: sum, field: amount, where: "amount > 500.0 && kind in ['payment', 'fee']"}}
  sink:
    elasticsearch: {{url: "http://localhost:9200", alias: prop}}
"#
    )
}

fn bad_line(kind: u8, log: i64) -> String {
    match kind % 4 {
        0 => format!(
            r#"{{"event_time":"2024-01-01T00:00:00.000Z","logged_time":{log},"server":"srv-1""#
        ),
        1 => format!(r#"{{"logged_time":{log},"server":"srv-1","kind":"fee","status":"ok"}}"#),
        2 => format!(r#"{{"event_time":"2024-13-45 99:99","logged_time":{log},"status":"ok"}}"#),
        _ => format!(
            r#"{{"event_time":"{}","logged_time":{log},"server":"srv-2","kind":"fee","status":"ok","amount":"12,50","latency_ms":3,"user_id":"u-1"}}"#,
            rfc3339(log)
        ),
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let base = 1_704_067_200_000i64;
    let record = (
        0..3usize,
        0..3usize,
        prop_oneof![8 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        0..100_000i64,
        0..5_000i64,
        0..40u32,
        prop_oneof![6 => 0..2_000i64, 3 => 0..60_000i64, 1 => 0..400_000i64],
        0..3_000i64,
        0..30u8,
    );
    let partition = prop::collection::vec(record, 0..60).prop_map(move |rs| {
        let mut log = base;
        rs.into_iter()
            .map(|(server, kind, status, cents, latency, user, lag, step, bad)| {
                log += step;
                if bad == 0 {
                    Line::Bad(bad_line(step as u8, log))
                } else {
                    Line::Good(Rec {
                        server,
                        kind,
                        status,
                        amount_cents: cents,
                        latency,
                        user,
                        event: log - lag,
                        log,
                    })
                }
            })
            .collect::<Vec<_>>()
    });
    (
        prop::collection::vec(partition, 1..4),
        prop_oneof![Just(0i64), Just(5_000), Just(30_000), Just(3_600_000)],
        prop_oneof![
            Just((10_000i64, 10_000i64)),
            Just((60_000, 60_000)),
            Just((60_000, 20_000)),
            Just((30_000, 10_000))
        ],
        any::<u64>(),
        1..4usize,
        (1..2_048usize, 1..8_192usize, prop_oneof![Just(0i64), 0i64..600_000, Just(3_600_000)]),
        prop::collection::btree_set(0..200usize, 0..6),
        prop::collection::btree_set(0..200usize, 0..4),
        any::<u64>(),
    )
        .prop_map(
            |(
                partitions,
                lateness_ms,
                window,
                seed,
                threads,
                (chunk_bytes, stripe_bytes, settle_after_ms),
                flush_at,
                restore_at,
                sink_seed,
            )| {
                let mut remaining: Vec<usize> = partitions.iter().map(Vec::len).collect();
                let mut schedule = Vec::new();
                let mut state = seed | 1;
                while remaining.iter().any(|&r| r > 0) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let live: Vec<usize> =
                        (0..remaining.len()).filter(|&p| remaining[p] > 0).collect();
                    let p = live[(state % live.len() as u64) as usize];
                    remaining[p] -= 1;
                    schedule.push(p);
                }
                Case {
                    partitions,
                    lateness_ms,
                    window,
                    schedule,
                    threads,
                    chunk_bytes,
                    stripe_bytes,
                    settle_after_ms,
                    flush_at,
                    restore_at,
                    sink_seed,
                }
            },
        )
}

/// Expected value of one document: (window_start, server, kind) → fields.
#[derive(Debug, Default)]
struct Expected {
    n: u64,
    amount_fixed: i128,
    lat_min: Option<i64>,
    lat_max: Option<i64>,
    lat_sum: i64,
    failures: u64,
    users: BTreeSet<u32>,
    latencies: Vec<i64>,
    big_fixed: i128,
    big_any: bool,
    amounts: Vec<f64>,
}

/// Exact value of an f64 as a fixed-point integer with 80 fractional bits (exact for these
/// magnitudes), so sums are exact whatever the order.
fn fixed(x: f64) -> i128 {
    let scaled = x * 2f64.powi(80);
    assert_eq!(scaled.fract(), 0.0);
    scaled as i128
}

fn unfixed(v: i128) -> f64 {
    (v as f64) * 2f64.powi(-80)
}

struct Reference {
    docs: BTreeMap<(String, String, String), (Expected, bool)>,
    late: u64,
    dead: u64,
    filtered: u64,
}

fn reference(case: &Case) -> Reference {
    let (size, slide) = case.window;
    let mut docs: BTreeMap<(i64, usize, usize), Expected> = BTreeMap::new();
    let (mut late, mut dead, mut filtered) = (0, 0, 0);
    let mut max_log = i64::MIN;
    for part in &case.partitions {
        for line in part {
            let r = match line {
                Line::Bad(_) => {
                    dead += 1;
                    continue;
                }
                Line::Good(r) => r,
            };
            max_log = max_log.max(r.log);
            if r.log - r.event > case.lateness_ms {
                late += 1;
                continue;
            }
            if STATUSES[r.status] == "test" {
                filtered += 1;
                continue;
            }
            let last = r.event.div_euclid(slide) * slide;
            let mut start = last - size + slide;
            while start <= last {
                let e = docs.entry((start, r.server, r.kind)).or_default();
                let amount = r.amount_cents as f64 / 100.0;
                e.n += 1;
                e.amount_fixed += fixed(amount);
                e.amounts.push(amount);
                e.lat_min = Some(e.lat_min.map_or(r.latency, |m| m.min(r.latency)));
                e.lat_max = Some(e.lat_max.map_or(r.latency, |m| m.max(r.latency)));
                e.lat_sum += r.latency;
                e.failures += u64::from(STATUSES[r.status] == "fail");
                e.users.insert(r.user);
                e.latencies.push(r.latency);
                if amount > 500.0 && (KINDS[r.kind] == "payment" || KINDS[r.kind] == "fee") {
                    e.big_fixed += fixed(amount);
                    e.big_any = true;
                }
                start += slide;
            }
        }
    }
    // Bad lines still carry a log time the engine may read (all but the truncated ones).
    for part in &case.partitions {
        for line in part {
            if let Line::Bad(s) = line {
                if let Ok(v) = serde_json::from_str::<Json>(s) {
                    if let Some(t) = v.get("logged_time").and_then(Json::as_i64) {
                        max_log = max_log.max(t);
                    }
                }
            }
        }
    }
    let docs = docs
        .into_iter()
        .map(|((start, s, k), e)| {
            let fin = max_log != i64::MIN && max_log >= start + size + case.lateness_ms;
            ((rfc3339(start), SERVERS[s].to_string(), KINDS[k].to_string()), (e, fin))
        })
        .collect();
    Reference { docs, late, dead, filtered }
}

fn check(
    case: &Case,
    reference: &Reference,
    docs: &HashMap<(String, String, String), Json>,
    how: &str,
) {
    assert_eq!(docs.len(), reference.docs.len(), "{how}: number of documents");
    for (key, (e, fin)) in &reference.docs {
        let d = docs.get(key).unwrap_or_else(|| panic!("{how}: missing document {key:?}"));
        let ctx = format!("{how}: document {key:?}: {d}");
        let (size, _) = case.window;
        let start = DateTime::parse_from_rfc3339(&key.0).unwrap().timestamp_millis();
        assert_eq!(d["window_end"], Json::from(rfc3339(start + size)), "{ctx}");
        assert_eq!(d["n"].as_u64(), Some(e.n), "{ctx}");
        assert_eq!(
            d["amount_sum"].as_f64(),
            Some(unfixed(e.amount_fixed)),
            "{ctx} {:?}",
            e.amounts
        );
        assert_eq!(
            d["lat_min"].as_i64().or(d["lat_min"].as_f64().map(|f| f as i64)),
            e.lat_min,
            "{ctx}"
        );
        assert_eq!(
            d["lat_max"].as_i64().or(d["lat_max"].as_f64().map(|f| f as i64)),
            e.lat_max,
            "{ctx}"
        );
        assert_eq!(d["lat_avg"].as_f64(), Some(e.lat_sum as f64 / e.n as f64), "{ctx}");
        assert_eq!(d["failures"].as_u64(), Some(e.failures), "{ctx}");
        let big = if e.big_any { Json::from(unfixed(e.big_fixed)) } else { Json::Null };
        assert_eq!(d["big_sum"].as_f64(), big.as_f64(), "{ctx}");
        let distinct = e.users.len() as f64;
        let est = d["users"].as_f64().unwrap();
        assert!(
            (est - distinct).abs() <= (0.065 * distinct).max(1.0),
            "{ctx}: distinct {distinct}"
        );
        let mut lat = e.latencies.clone();
        lat.sort_unstable();
        // SQL's percentile_disc(0.9): the value at 1-based rank ⌈0.9·n⌉.
        let rank = ((0.9 * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        let exact = lat[rank - 1] as f64;
        let p = d["p90"].as_f64().unwrap();
        assert!((p - exact).abs() <= 0.01 * exact + 1e-9, "{ctx}: p90 not within 1% of {exact}");
        assert_eq!(d["final"], Json::Bool(*fin), "{ctx}");
    }
}

fn key_of(doc: &Json) -> (String, String, String) {
    (
        doc["window_start"].as_str().unwrap().to_string(),
        doc["server"].as_str().unwrap().to_string(),
        doc["kind"].as_str().unwrap().to_string(),
    )
}

fn plan_for(case: &Case) -> Arc<JobPlan> {
    let job = kappa_crds::load_manifest(&job_yaml(case.lateness_ms, case.window)).unwrap();
    Arc::new(JobPlan::compile(&job).unwrap())
}

fn run_processor(
    case: &Case,
) -> (HashMap<(String, String, String), Json>, kappa_engine::store::Counters) {
    let plan = plan_for(case);
    let mut processor = Processor::new(Arc::clone(&plan));
    for p in 0..case.partitions.len() {
        processor.assign(p as u32);
    }
    let mut docs = HashMap::new();
    let mut next = vec![0usize; case.partitions.len()];
    let emit = |ds: Vec<kappa_engine::output::WindowDoc>, docs: &mut HashMap<_, Json>| {
        for d in ds {
            let v: Json = serde_json::from_str(&d.body).unwrap();
            docs.insert(key_of(&v), v);
        }
    };
    for (i, &p) in case.schedule.iter().enumerate() {
        let line = case.partitions[p][next[p]].text();
        processor.process(p as u32, next[p] as i64, None, line.as_bytes()).expect("new offset");
        next[p] += 1;
        if case.flush_at.contains(&i) {
            emit(processor.flush(), &mut docs);
        }
        if case.restore_at.contains(&i) {
            // A checkpoint is taken after a flush; restore, then re-deliver the last record to
            // prove re-delivery below the checkpoint is ignored.
            emit(processor.flush(), &mut docs);
            let bytes = processor.snapshot_bytes();
            processor = Processor::restore_bytes(Arc::clone(&plan), &bytes).unwrap();
            assert_eq!(
                processor.process(p as u32, next[p] as i64 - 1, None, line.as_bytes()),
                None
            );
        }
    }
    for p in 0..case.partitions.len() {
        processor.mark_ended(p as u32);
    }
    emit(processor.flush(), &mut docs);
    emit(processor.open_documents(), &mut docs);
    (docs, processor.counters())
}

/// An index as Elasticsearch keeps it under `version_type=external_gte`: a write with a lower
/// version than the stored one is refused.
type Index = HashMap<String, (u64, Json)>;

fn index_write(index: &mut Index, docs: &[kappa_engine::output::WindowDoc]) {
    for d in docs {
        if index.get(&d.id).is_some_and(|(stored, _)| *stored > d.version) {
            continue;
        }
        index.insert(d.id.clone(), (d.version, serde_json::from_str(&d.body).unwrap()));
    }
}

/// What a reader of `index` sees, keyed like the reference.
fn index_documents(index: &Index) -> HashMap<(String, String, String), Json> {
    index.values().map(|(_, d)| (key_of(d), d.clone())).collect()
}

/// The delivered positions' promise: every record below them has its effect in the index. For
/// each window of the batch result over those records, the index's document counts at least
/// as many records.
fn assert_delivered_is_in_index(case: &Case, delivered: &BTreeMap<u32, i64>, index: &Index) {
    let mut prefix = case.clone();
    for (p, lines) in prefix.partitions.iter_mut().enumerate() {
        let below = delivered.get(&(p as u32)).copied().unwrap_or(0).max(0) as usize;
        lines.truncate(below);
    }
    let docs = index_documents(index);
    for (key, (e, _)) in reference(&prefix).docs {
        let n = docs.get(&key).and_then(|d| d["n"].as_u64()).unwrap_or(0);
        assert!(n >= e.n, "delivered {delivered:?}, but {key:?} holds {n} of {} records", e.n);
    }
}

/// A small deterministic stream of choices (xorshift).
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The engine service's delivery, against a simulated sink that writes late and loses what
/// is in flight when the process crashes. After each record the script may stage documents
/// (with room for none: the replay phase, or for a few), hand a batch to the sink, let the
/// sink write and acknowledge the oldest batch, take a checkpoint (a snapshot, without waiting
/// for the sink; also at `flush_at`) or crash (also at `restore_at`): some unacknowledged
/// batches still land in the index, the rest are lost, and the engine resumes from the last
/// checkpoint and re-reads every partition from there. Returns what a reader of the index sees at the end.
fn run_with_slow_sink(case: &Case) -> HashMap<(String, String, String), Json> {
    let plan = plan_for(case);
    let fresh = || {
        let mut p = Processor::new(Arc::clone(&plan));
        for i in 0..case.partitions.len() {
            p.assign(i as u32);
        }
        p
    };
    let consumed = |next: &[usize]| -> BTreeMap<u32, i64> {
        next.iter().enumerate().map(|(p, &n)| (p as u32, n as i64)).collect()
    };
    let mut choices = Choices(case.sink_seed | 1);
    let mut processor = fresh();
    let mut index = Index::new();
    let mut sent: Vec<kappa_engine::delivery::Batch> = Vec::new();
    let mut checkpoint: Option<Vec<u8>> = None;
    let mut next = vec![0usize; case.partitions.len()];
    for (i, &p) in case.schedule.iter().enumerate() {
        let line = case.partitions[p][next[p]].text();
        processor.process(p as u32, next[p] as i64, None, line.as_bytes()).expect("new offset");
        next[p] += 1;
        match choices.below(10) {
            0..=2 => {
                let room = [0, 1, 3, usize::MAX][choices.below(4) as usize];
                processor.stage(room, &consumed(&next));
            }
            3 | 4 => sent.extend(processor.next_batch(1 + choices.below(4) as usize, usize::MAX)),
            5 | 6 if !sent.is_empty() => {
                let batch = sent.remove(0);
                index_write(&mut index, &batch.docs);
                assert!(processor.acknowledge(batch.id));
                assert_delivered_is_in_index(case, processor.delivered(), &index);
            }
            _ => {}
        }
        if case.flush_at.contains(&i) || choices.below(10) == 0 {
            checkpoint = Some(processor.snapshot_bytes());
        }
        if case.restore_at.contains(&i) || choices.below(20) == 0 {
            for batch in sent.drain(..) {
                if choices.below(2) == 0 {
                    index_write(&mut index, &batch.docs);
                }
            }
            processor = match &checkpoint {
                Some(bytes) => Processor::restore_bytes(Arc::clone(&plan), bytes).unwrap(),
                None => fresh(),
            };
            assert_delivered_is_in_index(case, processor.delivered(), &index);
            // Re-read each partition from the checkpoint's position up to where the crashed
            // process was (a new interleaving: partition by partition).
            for (p, &upto) in next.iter().enumerate() {
                let from = processor.positions().get(&(p as u32)).copied().unwrap_or(0) as usize;
                for offset in from..upto {
                    let line = case.partitions[p][offset].text();
                    processor.process(p as u32, offset as i64, None, line.as_bytes());
                }
            }
        }
    }
    for p in 0..case.partitions.len() {
        processor.mark_ended(p as u32);
    }
    processor.stage(usize::MAX, &consumed(&next));
    for batch in sent.drain(..) {
        index_write(&mut index, &batch.docs);
        processor.acknowledge(batch.id);
    }
    while let Some(batch) = processor.next_batch(1 + choices.below(8) as usize, usize::MAX) {
        index_write(&mut index, &batch.docs);
        processor.acknowledge(batch.id);
    }
    assert_eq!(processor.backlog(), 0);
    assert_eq!(processor.delivered(), &consumed(&next), "everything read is delivered");
    assert_delivered_is_in_index(case, processor.delivered(), &index);
    index_documents(&index)
}

fn run_files(
    case: &Case,
) -> (HashMap<(String, String, String), Json>, kappa_engine::store::Counters, usize) {
    let plan = plan_for(case);
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, part) in case.partitions.iter().enumerate() {
        let path = dir.path().join(format!("p{i}.ndjson"));
        let mut f = std::fs::File::create(&path).unwrap();
        for line in part {
            writeln!(f, "{}", line.text()).unwrap();
        }
        paths.push(path);
    }
    let options = ReplayOptions {
        threads: case.threads,
        chunk_bytes: case.chunk_bytes,
        stripe_bytes: case.stripe_bytes,
        settle_after_ms: case.settle_after_ms,
    };
    let mut dead = 0;
    let report = replay_files(
        plan,
        &paths,
        &options,
        |_| {
            dead += 1;
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    let mut docs = HashMap::new();
    let mut previous: Option<(String, String, String)> = None;
    for d in &report.documents {
        let v: Json = serde_json::from_str(&d.body).unwrap();
        let k = key_of(&v);
        if let Some(p) = &previous {
            assert!(p < &k || p.0 < k.0, "documents must be sorted by window start then keys");
        }
        previous = Some(k.clone());
        assert!(docs.insert(k, v).is_none(), "one document per window and key");
    }
    (docs, report.counters, dead)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn streaming_with_flushes_snapshots_and_restores_equals_batch(case in case_strategy()) {
        let reference = reference(&case);
        let (docs, counters) = run_processor(&case);
        check(&case, &reference, &docs, "processor");
        prop_assert_eq!(counters.late, reference.late);
        prop_assert_eq!(counters.dead, reference.dead);
        prop_assert_eq!(counters.filtered, reference.filtered);
    }

    #[test]
    fn streaming_into_a_slow_sink_with_crashes_equals_batch(case in case_strategy()) {
        let reference = reference(&case);
        let docs = run_with_slow_sink(&case);
        check(&case, &reference, &docs, "slow sink");
    }

    #[test]
    fn file_replay_on_any_thread_count_equals_batch(case in case_strategy()) {
        let reference = reference(&case);
        let (docs, counters, dead) = run_files(&case);
        check(&case, &reference, &docs, "replay");
        prop_assert_eq!(counters.late, reference.late);
        prop_assert_eq!(counters.dead, reference.dead);
        prop_assert_eq!(dead as u64, reference.dead);
        prop_assert_eq!(counters.filtered, reference.filtered);
    }
}
