//! Decode bench: what one JSON record costs to parse, with the reference job's paths.
//!
//! Compares full-document parsers (serde_json, sonic-rs `Value`), sonic-rs `get_many` (which
//! stops once every path is found, so it validates less), serde_json and sonic-rs deserializing
//! into a struct written for the reference record (the fastest a general parser gets, but only
//! for one fixed schema), and our [`decode_into`] and [`RecordDecoder`] (which reads each
//! record along the member layout of the one before); then
//! chrono's RFC 3339 parser against [`parse_rfc3339`] on the records' `event_time` strings,
//! and [`parse_rfc3339_cached`] reading them in record order as a worker does.
//!
//! ```text
//! cargo bench -p kappa-engine --bench decode
//! KAPPA_BENCH_RECORDS=1000000 cargo bench -p kappa-engine --bench decode
//! KAPPA_BENCH_FILE=/tmp/dec/part-0.ndjson cargo bench -p kappa-engine --bench decode
//! ```
//!
//! `KAPPA_BENCH_ONLY=decode_into` runs only the cases whose name contains that text (for
//! `perf record`). It measures, it never asserts; every case is run a few times and the fastest
//! run is shown, by the wall clock and (on Linux) by this thread's CPU time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kappa_engine::decode::{decode_into, RecordDecoder};
use kappa_engine::gen::{GenConfig, LogGenerator};
use kappa_engine::time::{parse_rfc3339, parse_rfc3339_cached, MinuteCache};
use kappa_engine::value::Value;
use kappa_engine::JobPlan;

/// The reference job (issue 2): its paths are what `decode_into` and `get_many` extract.
const REFERENCE_JOB: &str = include_str!("../../crds/fixtures/valid/tx-stats.yaml");
/// Records generated when no file is given.
const DEFAULT_RECORDS: usize = 500_000;
/// Timed runs per case; the fastest is reported (the others absorb warm-up and noise).
const RUNS: usize = 5;
/// Shortest timed run: a case is repeated within a run until it lasts this long.
const MIN_RUN: Duration = Duration::from_millis(200);

fn main() {
    let input = load_input();
    let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    println!(
        "decode bench: {} records, {:.1} bytes/record, best of {RUNS} runs",
        lines.len(),
        bytes as f64 / lines.len() as f64
    );

    let job = kappa_crds::load::load_manifest(REFERENCE_JOB).expect("reference job loads");
    let plan = JobPlan::compile(&job).expect("reference job compiles");
    let paths = record_paths(&plan);

    let mut table = Table { only: std::env::var("KAPPA_BENCH_ONLY").ok(), rows: Vec::new() };

    table.row("serde_json::Value", lines.len(), || {
        lines.iter().filter(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok()).count()
    });
    table.row("sonic_rs::Value", lines.len(), || {
        lines.iter().filter(|l| sonic_rs::from_slice::<sonic_rs::Value>(l).is_ok()).count()
    });
    let mut pointers = sonic_rs::PointerTree::new();
    for p in &paths {
        pointers.add_path(p.iter().map(String::as_str));
    }
    table.row("sonic_rs::get_many (*)", lines.len(), || {
        lines
            .iter()
            .filter(|l| matches!(sonic_rs::get_many(**l, &pointers), Ok(v) if v.iter().all(Option::is_some)))
            .count()
    });
    // The reference record as a typed struct: fields are only read by the parser.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Tx<'a> {
        #[serde(borrow)]
        event_time: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        logged_time: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        server: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        tx_type: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        status: std::borrow::Cow<'a, str>,
        amount: f64,
        latency_ms: i64,
        #[serde(borrow)]
        user_id: std::borrow::Cow<'a, str>,
    }
    table.row("sonic_rs typed struct", lines.len(), || {
        lines.iter().filter(|l| sonic_rs::from_slice::<Tx<'_>>(l).is_ok()).count()
    });
    table.row("serde_json typed struct", lines.len(), || {
        lines.iter().filter(|l| serde_json::from_slice::<Tx<'_>>(l).is_ok()).count()
    });
    let mut slots: Vec<Value<'_>> = Vec::new();
    table.row("kappa decode_into", lines.len(), || {
        lines
            .iter()
            .filter(|l| decode_into(&plan.paths, l, &mut slots, plan.slot_count()).is_ok())
            .count()
    });
    let mut slots: Vec<Value<'_>> = Vec::new();
    let mut decoder = RecordDecoder::new();
    table.row("kappa RecordDecoder (along the layout)", lines.len(), || {
        lines
            .iter()
            .filter(|l| decoder.decode_into(&plan.paths, l, &mut slots, plan.slot_count()).is_ok())
            .count()
    });

    // Timestamps: the event_time strings of the well-formed records, packed in one buffer (in
    // the engine the string was just decoded, so it is in cache; here it is streamed).
    let mut packed = String::new();
    let mut ends = Vec::new();
    for l in &lines {
        let Ok(raw) = sonic_rs::get_from_slice(l, &["event_time"]) else { continue };
        if let Some(t) = raw.as_raw_str().strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            packed.push_str(t);
            ends.push(packed.len());
        }
    }
    let times: Vec<&str> = ends
        .iter()
        .scan(0, |start, &end| Some(&packed[std::mem::replace(start, end)..end]))
        .collect();
    table.row("chrono parse_from_rfc3339", times.len(), || {
        times.iter().filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()).count()
    });
    table.row("kappa parse_rfc3339", times.len(), || {
        times.iter().filter(|t| parse_rfc3339(t.as_bytes()).is_ok()).count()
    });
    // In record order, as a worker reads them: consecutive event times mostly share a minute.
    let mut cache = MinuteCache::default();
    table.row("kappa parse_rfc3339_cached", times.len(), || {
        times.iter().filter(|t| parse_rfc3339_cached(t.as_bytes(), &mut cache).is_ok()).count()
    });

    table.print();
    println!(
        "(*) get_many stops reading once every path is found: it does not validate the rest of \
         the record (a record truncated after its last needed field passes), so it is a lower \
         bound, not an alternative."
    );
}

/// The file named by `KAPPA_BENCH_FILE`, or `KAPPA_BENCH_RECORDS` (default 500 000) records of
/// the reference workload generated in memory.
fn load_input() -> Vec<u8> {
    if let Ok(path) = std::env::var("KAPPA_BENCH_FILE") {
        return std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    }
    let records = std::env::var("KAPPA_BENCH_RECORDS")
        .ok()
        .map(|n| n.parse().expect("KAPPA_BENCH_RECORDS is a number"))
        .unwrap_or(DEFAULT_RECORDS);
    let cfg = GenConfig { records: records as u64, ..GenConfig::default() };
    let mut generator = LogGenerator::new(&cfg, 1).expect("default config is valid");
    let mut out = Vec::with_capacity(records * 200);
    while let Some(line) = generator.next_line() {
        out.extend_from_slice(line.bytes);
    }
    out
}

/// The record paths of the job, as segments (what `get_many` is given).
fn record_paths(plan: &JobPlan) -> Vec<Vec<String>> {
    plan.fields
        .slots()
        .iter()
        .filter_map(|s| match s {
            kappa_engine::fields::SlotSource::Path(p) => Some(p.clone()),
            kappa_engine::fields::SlotSource::Derived(_) => None,
        })
        .collect()
}

/// Rows of the result table.
struct Table {
    /// Run only the cases whose name contains this.
    only: Option<String>,
    rows: Vec<Row>,
}

struct Row {
    name: &'static str,
    items: usize,
    /// Passes over the items per timed run.
    repeat: usize,
    ok: usize,
    /// Fastest run, wall clock.
    wall: Duration,
    /// Fastest run, CPU time of this thread (when the platform tells), which other processes
    /// on a shared machine disturb less than the wall clock.
    cpu: Option<Duration>,
}

impl Table {
    /// Times `run` (which handles `items` items and returns how many succeeded) [`RUNS`] times,
    /// each run repeating it enough to last [`MIN_RUN`] (CPU clocks can be coarse).
    fn row(&mut self, name: &'static str, items: usize, mut run: impl FnMut() -> usize) {
        if self.only.as_deref().is_some_and(|only| !name.contains(only)) {
            return;
        }
        let warm_up = Instant::now();
        let ok = black_box(run());
        let repeat = (MIN_RUN.as_secs_f64() / warm_up.elapsed().as_secs_f64()).ceil().max(1.0);
        let repeat = repeat as usize;
        let mut row = Row { name, items, repeat, ok, wall: Duration::MAX, cpu: None };
        for _ in 0..RUNS {
            let (start, cpu_start) = (Instant::now(), thread_cpu_time());
            for _ in 0..repeat {
                black_box(run());
            }
            row.wall = row.wall.min(start.elapsed());
            if let (Some(a), Some(b)) = (cpu_start, thread_cpu_time()) {
                row.cpu = Some(row.cpu.map_or(b - a, |best| best.min(b - a)));
            }
        }
        self.rows.push(row);
    }

    fn print(&self) {
        println!(
            "{:<28} {:>10} {:>10} {:>12} {:>14}",
            "case", "ns/item", "M items/s", "cpu ns/item", "ok/total"
        );
        for row in &self.rows {
            let per_item = |d: Duration| d.as_nanos() as f64 / (row.items * row.repeat) as f64;
            let ns = per_item(row.wall);
            let cpu = row.cpu.map_or("-".to_string(), |d| format!("{:.1}", per_item(d)));
            let ok = format!("{}/{}", row.ok, row.items);
            println!("{:<28} {ns:>10.1} {:>10.2} {cpu:>12} {ok:>14}", row.name, 1e3 / ns);
        }
    }
}

/// CPU time this thread has run (Linux: the first field of `/proc/thread-self/schedstat`).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}
