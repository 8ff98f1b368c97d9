//! `kappa run` on a generated 1M-record workload (3 partition files) equals a batch reference
//! computed from the raw lines (kappa-testkit's independent reference), and every refused line is in the dead-letter file with
//! its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use kappa_testkit::reference::Reference;
use serde_json::Value as Json;

const JOB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/fixtures/valid/tx-stats.yaml");

fn kappa(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().expect("kappa runs");
    assert!(
        out.status.success(),
        "kappa {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    let lines: Vec<Vec<String>> = inputs.iter().map(|p| read_lines(p)).collect();
    let reference = Reference::compute(&lines);
    let (late, filtered, expected_dead) = (reference.late, reference.filtered, &reference.dead);
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
        let at = (d["partition"].as_u64().unwrap() as u32, d["offset"].as_i64().unwrap());
        let want = expected_dead.get(&at).unwrap_or_else(|| panic!("unexpected dead letter {l}"));
        assert_eq!(d["reason"], *want, "{l}");
        assert!(!d["message"].as_str().unwrap().is_empty());
        let original = &lines[at.0 as usize][at.1 as usize];
        assert_eq!(d["record"].as_str().unwrap(), original, "dead letter keeps the record");
    }

    // Every window document equals the reference, and the output is sorted by window, keys.
    let docs: Vec<Json> =
        read_lines(&out).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let starts: Vec<&str> = docs.iter().map(|d| d["window_start"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "sorted by window_start");
    let worst_users = reference.assert_documents(&docs);
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

/// `kappa validate` on the reference job with `filter` replaced by `filter`.
fn validate_with_filter(filter: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    let text = std::fs::read_to_string(JOB).unwrap();
    let text = text.replace("filter: \"status != 'test'\"", &format!("filter: {filter:?}"));
    assert!(text.contains(filter), "the reference job has the filter this test replaces");
    std::fs::write(&job, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["validate", "-f", job.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn validate_compiles_cel_with_the_engine_compiler() {
    // Valid CEL that the engine cannot evaluate: refused with the path and the alternatives,
    // not left to crash-loop the engine.
    let refused = validate_with_filter("!tags.exists(t, t == 'test')");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("spec.pipeline.filter: macro `exists` is not supported"), "{stderr}");
    assert!(stderr.contains("has(a.b)"), "what to write instead: {stderr}");

    let accepted = validate_with_filter(
        "status != 'test' && !server.matches('^canary-') \
         && timestamp(event_time) > timestamp('2024-01-01T00:00:00Z')",
    );
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
}

#[test]
fn crd_prints_the_committed_crd() {
    let out = kappa(&["crd"]);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/streamjob.yaml"))
            .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}
