//! Replay throughput of the reference job (`crds/fixtures/valid/tx-stats.yaml`) over generated
//! transaction logs, at 1 and 2 worker threads: records/s end to end (read, parse, filter,
//! aggregate, build documents). Output is discarded; `engine/benches/run-bench.sh` adds the CLI
//! run with peak RSS and DuckDB on the same file.
//!
//! `KAPPA_BENCH_FILE` names an NDJSON file to use; otherwise `KAPPA_BENCH_RECORDS` (default
//! 2,000,000) records are generated into the target directory once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kappa_engine::gen::{generate, GenConfig};
use kappa_engine::replay::{replay_files, ReplayOptions};
use kappa_engine::JobPlan;

fn input() -> PathBuf {
    if let Ok(p) = std::env::var("KAPPA_BENCH_FILE") {
        return PathBuf::from(p);
    }
    let records: u64 =
        std::env::var("KAPPA_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tx-{records}.ndjson"));
    if !path.exists() {
        let cfg = GenConfig { records, ..GenConfig::default() };
        let file = std::fs::File::create(&path).expect("bench file");
        generate(&cfg, &mut [file]).expect("generate");
    }
    path
}

fn main() {
    let path = input();
    let bytes = std::fs::metadata(&path).expect("input").len();
    let yaml = include_str!("../../crds/fixtures/valid/tx-stats.yaml");
    let job = kappa_crds::load_manifest(yaml).expect("reference job");
    let plan = Arc::new(JobPlan::compile(&job).expect("plan"));
    println!("input: {} ({:.0} MB)", path.display(), bytes as f64 / 1e6);
    println!(
        "{:>8} {:>10} {:>14} {:>18}",
        "threads", "median s", "M records/s", "M records/s/core"
    );
    for threads in [1, 2] {
        let mut times = Vec::new();
        let mut records = 0;
        for _ in 0..3 {
            let options = ReplayOptions { threads, ..ReplayOptions::default() };
            let started = Instant::now();
            let report = replay_files(
                Arc::clone(&plan),
                std::slice::from_ref(&path),
                &options,
                |_| Ok(()),
                |_| {},
            )
            .expect("replay");
            times.push(started.elapsed().as_secs_f64());
            records = report.counters.records_in;
        }
        times.sort_by(f64::total_cmp);
        let median = times[1];
        let rate = records as f64 / median / 1e6;
        println!("{threads:>8} {median:>10.2} {rate:>14.2} {:>18.2}", rate / threads as f64);
    }
}
