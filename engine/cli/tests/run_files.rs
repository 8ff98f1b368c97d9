//! `kappa run` on a generated 1M-record workload (3 partition files) equals a batch reference
//! computed here from the raw lines, and every refused line is in the dead-letter file with
//! its reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value as Json;

const JOB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/fixtures/valid/tx-stats.yaml");
const LATENESS_MS: i64 = 3 * 86_400_000;
const WINDOW_MS: i64 = 60_000;

fn kappa(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().expect("kappa runs");
    assert!(
        out.status.success(),
        "kappa {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[derive(Default)]
struct Expected {
    count: u64,
    amount_fixed: i128,
    lat_min: i64,
    lat_max: i64,
    lat_sum: i64,
    failures: u64,
    users: BTreeSet<String>,
    latencies: Vec<i64>,
}

/// Why the batch query refuses a line, mirroring the documented order of checks: JSON, log time,
/// event time, lateness, filter, group key, aggregate inputs.
enum Verdict {
    Dead(&'static str),
    Late,
    Filtered,
    Folded(i64, String, String, Json),
}

fn millis(v: Option<&Json>) -> Result<i64, &'static str> {
    match v {
        None | Some(Json::Null) => Err("missing_field"),
        Some(Json::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| "bad_timestamp"),
        Some(_) => Err("wrong_type"),
    }
}

fn judge(line: &str) -> Verdict {
    let Ok(v) = serde_json::from_str::<Json>(line) else { return Verdict::Dead("malformed_json") };
    if !v.is_object() {
        return Verdict::Dead("not_an_object");
    }
    let log = match millis(v.get("logged_time")) {
        Ok(t) => t,
        Err(r) => return Verdict::Dead(r),
    };
    let event = match millis(v.get("event_time")) {
        Ok(t) => t,
        Err(r) => return Verdict::Dead(r),
    };
    if log - event > LATENESS_MS {
        return Verdict::Late;
    }
    match v.get("status") {
        Some(Json::String(s)) if s == "test" => return Verdict::Filtered,
        Some(Json::String(_)) => {}
        _ => return Verdict::Dead("expression_error"),
    }
    let key = |f: &str| match v.get(f) {
        Some(Json::String(s)) => Ok(s.clone()),
        _ => Err("wrong_type"),
    };
    let (server, tx_type) = match (key("server"), key("tx_type")) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Verdict::Dead("wrong_type"),
    };
    // Aggregates skip absent values (SQL NULL semantics) and refuse present ones of a wrong type.
    let not_number = |f: &str| v.get(f).is_some_and(|x| !x.is_null() && !x.is_number());
    let not_scalar = |f: &str| v.get(f).is_some_and(|x| x.is_array() || x.is_object());
    if not_number("amount") || not_number("latency_ms") || not_scalar("user_id") {
        return Verdict::Dead("wrong_type");
    }
    Verdict::Folded(event, server, tx_type, v)
}

fn fixed(x: f64) -> i128 {
    (x * 2f64.powi(80)) as i128
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn kappa_run_on_a_generated_million_records_equals_the_batch_reference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    kappa(&["gen", "--records", "1000000", "--partitions", "3", "--seed", "7", "--out-dir", d]);
    let inputs: Vec<PathBuf> =
        (0..3).map(|p| dir.path().join(format!("part-{p}.ndjson"))).collect();
    let out = dir.path().join("out.ndjson");
    let dead = dir.path().join("dead.ndjson");
    let mut args = vec!["run", "-f", JOB, "--threads", "2", "--output"];
    args.push(out.to_str().unwrap());
    args.extend(["--dead-letter", dead.to_str().unwrap(), "--input"]);
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let run = kappa(&args);
    let summary = String::from_utf8_lossy(&run.stderr);
    assert!(summary.contains("1000000 records in"), "summary: {summary}");

    // The batch reference.
    let mut expected: BTreeMap<(i64, String, String), Expected> = BTreeMap::new();
    let mut expected_dead: HashMap<(u64, u64), &'static str> = HashMap::new();
    let (mut late, mut filtered) = (0, 0);
    let mut max_log = i64::MIN;
    for (p, path) in inputs.iter().enumerate() {
        for (offset, line) in read_lines(path).iter().enumerate() {
            if let Ok(v) = serde_json::from_str::<Json>(line) {
                if let Ok(t) = millis(v.get("logged_time")) {
                    max_log = max_log.max(t);
                }
            }
            match judge(line) {
                Verdict::Dead(reason) => {
                    expected_dead.insert((p as u64, offset as u64), reason);
                }
                Verdict::Late => late += 1,
                Verdict::Filtered => filtered += 1,
                Verdict::Folded(event, server, tx_type, v) => {
                    let start = event.div_euclid(WINDOW_MS) * WINDOW_MS;
                    let e = expected.entry((start, server, tx_type)).or_insert_with(|| Expected {
                        lat_min: i64::MAX,
                        lat_max: i64::MIN,
                        ..Expected::default()
                    });
                    let latency = v["latency_ms"].as_i64().unwrap();
                    e.count += 1;
                    e.amount_fixed += fixed(v["amount"].as_f64().unwrap());
                    e.lat_min = e.lat_min.min(latency);
                    e.lat_max = e.lat_max.max(latency);
                    e.lat_sum += latency;
                    e.failures += u64::from(v["status"] == "fail");
                    e.users.insert(v["user_id"].as_str().unwrap().to_string());
                    e.latencies.push(latency);
                }
            }
        }
    }
    assert!(
        late > 0 && filtered > 0 && expected_dead.len() > 1_000,
        "the workload exercises every path"
    );
    assert!(summary.contains(&format!("{late} late-dropped")), "summary: {summary}");
    assert!(summary.contains(&format!("{filtered} filtered")), "summary: {summary}");

    // Every refused line is a dead letter with its reason, and nothing else is.
    let dead_lines = read_lines(&dead);
    assert_eq!(dead_lines.len(), expected_dead.len());
    for l in &dead_lines {
        let d: Json = serde_json::from_str(l).unwrap();
        let at = (d["partition"].as_u64().unwrap(), d["offset"].as_u64().unwrap());
        let want = expected_dead.get(&at).unwrap_or_else(|| panic!("unexpected dead letter {l}"));
        assert_eq!(d["reason"], *want, "{l}");
        assert!(!d["message"].as_str().unwrap().is_empty());
        let original = &read_lines(&inputs[at.0 as usize])[at.1 as usize];
        assert_eq!(d["record"].as_str().unwrap(), original, "dead letter keeps the record");
    }

    // Every window document equals the reference, in sorted order.
    let docs: Vec<Json> =
        read_lines(&out).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(docs.len(), expected.len());
    let mut worst_users: f64 = 0.0;
    for (doc, ((start, server, tx_type), e)) in docs.iter().zip(&expected) {
        let ctx = format!("{doc}");
        assert_eq!(
            doc["window_start"],
            Json::from(rfc3339(*start)),
            "sorted by window, keys: {ctx}"
        );
        assert_eq!(doc["window_end"], Json::from(rfc3339(start + WINDOW_MS)), "{ctx}");
        assert_eq!(doc["server"], Json::from(server.as_str()), "{ctx}");
        assert_eq!(doc["tx_type"], Json::from(tx_type.as_str()), "{ctx}");
        assert_eq!(doc["tx_count"].as_u64(), Some(e.count), "{ctx}");
        let sum = (e.amount_fixed as f64) * 2f64.powi(-80);
        assert_eq!(doc["amount_sum"].as_f64(), Some(sum), "{ctx}");
        assert_eq!(doc["latency_min"].as_i64(), Some(e.lat_min), "{ctx}");
        assert_eq!(doc["latency_max"].as_i64(), Some(e.lat_max), "{ctx}");
        assert_eq!(doc["latency_avg"].as_f64(), Some(e.lat_sum as f64 / e.count as f64), "{ctx}");
        assert_eq!(doc["failures"].as_u64(), Some(e.failures), "{ctx}");
        let n = e.users.len() as f64;
        let err = (doc["users"].as_f64().unwrap() - n).abs() / n;
        worst_users = worst_users.max(err);
        assert!(err <= 0.03, "distinct users within 3% (HLL, standard error 0.8%): {ctx} vs {n}");
        let mut lat = e.latencies.clone();
        lat.sort_unstable();
        let exact = lat[(0.95 * (lat.len() - 1) as f64).floor() as usize] as f64;
        let p95 = doc["latency_p95"].as_f64().unwrap();
        assert!((p95 - exact).abs() <= 0.01 * exact + 1e-9, "p95 within 1% of {exact}: {ctx}");
        let fin = max_log >= start + WINDOW_MS + LATENESS_MS;
        assert_eq!(doc["final"], Json::Bool(fin), "{ctx}");
    }
    eprintln!("worst distinct-count error: {:.3}%", worst_users * 100.0);
}

#[test]
fn a_bad_job_file_is_refused_with_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    let text = std::fs::read_to_string(JOB).unwrap().replace("percentile: 0.95", "percentile: 95");
    std::fs::write(&job, text).unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["run", "-f", job.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spec.pipeline.aggregates[7].percentile"), "{stderr}");
}

#[test]
fn validate_accepts_the_reference_job_and_reports_every_problem() {
    let ok =
        Command::new(env!("CARGO_BIN_EXE_kappa")).args(["validate", "-f", JOB]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    let text = std::fs::read_to_string(JOB)
        .unwrap()
        .replace("version: v1", "version: V1")
        .replace("maxLateness: 3d", "maxLateness: 3 days");
    std::fs::write(&job, text).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["validate", "-f", job.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("spec.version"), "{stderr}");
    assert!(stderr.contains("spec.pipeline.maxLateness"), "several errors at once: {stderr}");
}

#[test]
fn crd_prints_the_committed_crd() {
    let out = kappa(&["crd"]);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/streamjob.yaml"))
            .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}
