//! Decode bench: what one JSON record costs to parse, with the reference job's paths.
//!
//! Compares full-document parsers (serde_json, sonic-rs `Value`), sonic-rs `get_many` (which
//! stops once every path is found, so it validates less), and our [`decode_into`]; then
//! chrono's RFC 3339 parser against [`parse_rfc3339`] on the records' `event_time` strings.
//!
//! ```text
//! cargo bench -p kappa-engine --bench decode
//! KAPPA_BENCH_RECORDS=1000000 cargo bench -p kappa-engine --bench decode
//! KAPPA_BENCH_FILE=/tmp/dec/part-0.ndjson cargo bench -p kappa-engine --bench decode
//! ```
//!
//! `KAPPA_BENCH_ONLY=decode_into` runs only the cases whose name contains that text (for
//! `perf record`). It measures, it never asserts; every case is run a few times and the fastest
//! run is shown.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kappa_engine::decode::decode_into;
use kappa_engine::gen::{GenConfig, LogGenerator};
use kappa_engine::time::parse_rfc3339;
use kappa_engine::value::Value;
use kappa_engine::JobPlan;

/// The reference job (issue 2): its paths are what `decode_into` and `get_many` extract.
const REFERENCE_JOB: &str = include_str!("../../crds/fixtures/valid/tx-stats.yaml");
/// Records generated when no file is given.
const DEFAULT_RECORDS: usize = 500_000;
/// Timed runs per case; the fastest is reported (the others absorb warm-up and noise).
const RUNS: usize = 5;

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
    let mut slots: Vec<Value<'_>> = Vec::new();
    table.row("kappa decode_into", lines.len(), || {
        lines
            .iter()
            .filter(|l| decode_into(&plan.paths, l, &mut slots, plan.slot_count()).is_ok())
            .count()
    });

    // Timestamps: the event_time strings of the well-formed records.
    let times: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            sonic_rs::get_from_slice(l, &["event_time"]).ok().and_then(|v| {
                v.as_raw_str().strip_prefix('"')?.strip_suffix('"').map(str::to_string)
            })
        })
        .collect();
    table.row("chrono parse_from_rfc3339", times.len(), || {
        times.iter().filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()).count()
    });
    table.row("kappa parse_rfc3339", times.len(), || {
        times.iter().filter(|t| parse_rfc3339(t.as_bytes()).is_ok()).count()
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
    rows: Vec<(&'static str, usize, usize, Duration)>,
}

impl Table {
    /// Times `run` (which handles `items` items and returns how many succeeded) [`RUNS`] times.
    fn row(&mut self, name: &'static str, items: usize, mut run: impl FnMut() -> usize) {
        if self.only.as_deref().is_some_and(|only| !name.contains(only)) {
            return;
        }
        let mut best = Duration::MAX;
        let mut ok = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            ok = black_box(run());
            best = best.min(start.elapsed());
        }
        self.rows.push((name, items, ok, best));
    }

    fn print(&self) {
        println!("{:<28} {:>10} {:>10} {:>14}", "case", "ns/item", "M items/s", "ok/total");
        for &(name, items, ok, best) in &self.rows {
            let ns = best.as_nanos() as f64 / items as f64;
            println!("{name:<28} {ns:>10.1} {:>10.2} {:>14}", 1e3 / ns, format!("{ok}/{items}"));
        }
    }
}
