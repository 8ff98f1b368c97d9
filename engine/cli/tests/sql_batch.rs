//! What a user checks the engine with: the same job as a SQL batch query in DuckDB
//! (`tests/support/duckdb_batch.py`) over the same file. Counts, sums, min, max, avg and failures
//! must be equal, distinct users within 3% (HyperLogLog), and p95 SQL's
//! `percentile_disc(0.95)`: exact for windows of up to 32 latencies (the sketch keeps them as
//! they are), within 1% beyond.
//!
//! Two shapes: the reference workload (hundreds of records per window: binned sketches) and many
//! small windows (a few records per window, where p95 is the window's largest value and the old
//! `⌊q·(n−1)⌋` rank was wrong in most windows).
//!
//! DuckDB is a Python package: `tests/run.sh` installs the pinned version into its test venv.
//! `KAPPA_TEST_PYTHON` names another Python that has it. Without DuckDB the test fails, saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

const JOB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/fixtures/valid/tx-stats.yaml");
const BATCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/support/duckdb_batch.py");

/// The Python that has DuckDB: `KAPPA_TEST_PYTHON`, else the test venv of `tests/run.sh`.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KAPPA_TEST_PYTHON") {
        return p.into();
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/test-venv/bin/python");
    assert!(
        Path::new(venv).exists(),
        "no Python with DuckDB: run `bash tests/run.sh` (it installs the pinned duckdb into \
         target/test-venv), or set KAPPA_TEST_PYTHON"
    );
    venv.into()
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let out = Command::new(&program).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.as_ref().to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_json_lines(path: &Path) -> Vec<Json> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Window key as both sides name it: (window start in epoch ms, server, tx_type).
type Key = (i64, String, String);

fn key(start_ms: i64, doc: &Json) -> Key {
    let text = |f: &str| doc[f].as_str().unwrap().to_owned();
    (start_ms, text("server"), text("tx_type"))
}

/// Generates `gen_args`, runs the reference job over it with `kappa run` and as the DuckDB
/// query, and compares every window. Returns (windows, windows of at most 32 latencies).
fn compare(gen_args: &[&str]) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let kappa = env!("CARGO_BIN_EXE_kappa");
    let mut args = vec!["gen", "--out-dir", d, "--malformed", "0"];
    args.extend(gen_args);
    run(kappa, &args);
    let input = dir.path().join("part-0.ndjson");
    let (input, out, sql) = (
        input.to_str().unwrap(),
        dir.path().join("kappa.ndjson"),
        dir.path().join("duckdb.ndjson"),
    );
    run(kappa, &["run", "-f", JOB, "--input", input, "--output", out.to_str().unwrap()]);
    run(python(), &[BATCH, input, sql.to_str().unwrap()]);

    let ours: BTreeMap<Key, Json> = read_json_lines(&out)
        .into_iter()
        .map(|doc| {
            let start = doc["window_start"].as_str().unwrap();
            let ms = chrono::DateTime::parse_from_rfc3339(start).unwrap().timestamp_millis();
            (key(ms, &doc), doc)
        })
        .collect();
    let theirs: BTreeMap<Key, Json> = read_json_lines(&sql)
        .into_iter()
        .map(|row| (key(row["window_start"].as_i64().unwrap(), &row), row))
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "the same windows and keys"
    );

    let mut small = 0;
    for ((k, doc), row) in ours.iter().zip(theirs.values()) {
        let ctx = format!("{k:?}: kappa {doc} vs DuckDB {row}");
        for exact in ["tx_count", "latency_min", "latency_max", "failures"] {
            assert_eq!(doc[exact].as_i64(), row[exact].as_i64(), "{exact} of {ctx}");
        }
        // DuckDB sums doubles in floating point; ours is the exactly rounded sum.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        for float in ["amount_sum", "latency_avg"] {
            let (a, b) = (doc[float].as_f64().unwrap(), row[float].as_f64().unwrap());
            assert!(close(a, b), "{float} of {ctx}");
        }
        let users = row["users"].as_f64().unwrap();
        assert!((doc["users"].as_f64().unwrap() - users).abs() <= 0.03 * users, "users of {ctx}");
        let (p95, disc) =
            (doc["latency_p95"].as_f64().unwrap(), row["latency_p95"].as_f64().unwrap());
        if row["n"].as_u64().unwrap() <= 32 {
            small += 1;
            assert_eq!(p95, disc, "p95 is percentile_disc(0.95) exactly: {ctx}");
        } else {
            assert!((p95 - disc).abs() <= 0.01 * disc, "p95 within 1% of percentile_disc: {ctx}");
        }
    }
    (ours.len(), small)
}

#[test]
fn the_reference_job_equals_duckdb_with_percentile_disc() {
    let (windows, small) = compare(&["--records", "200000", "--seed", "11"]);
    eprintln!("reference workload: {windows} windows, {small} of at most 32 latencies");
    assert!(windows > 2_000 && small < windows, "most windows bin their latencies");
}

#[test]
fn many_small_windows_equal_duckdb_with_percentile_disc() {
    let (windows, small) =
        compare(&["--records", "60000", "--seed", "12", "--servers", "40", "--rate", "20"]);
    eprintln!("many small windows: {windows} windows, {small} of at most 32 latencies");
    assert!(small > windows / 2, "most windows are small: {small} of {windows}");
}
