//! Every manifest under `fixtures/valid` loads; every one under `fixtures/invalid` is refused
//! with an error at the field path its first line names (`# expect: <path>`).
//!
//! A fixture whose header has a line `# engine-only: <why>` holds valid CEL that only the
//! engine's compiler refuses, which this crate cannot call: here it must load (so the marker
//! cannot go stale); `engine/tests/fixtures.rs` runs every fixture through the engine's
//! validation, which refuses it.

use std::path::Path;

use kappa_crds::load_manifest;

#[path = "common/fixtures.rs"]
mod common;
use common::{fixture_text, fixtures, read};

/// Invalid fixtures the suite must hold at least: one per mistake users really make.
const MIN_INVALID_FIXTURES: usize = 20;

#[test]
fn reference_job_loads() {
    let job = load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kappa_crds::index_name(&job.spec), "tx-stats-v1");
    assert_eq!(job.spec.pipeline.aggregates.len(), 8);
}

#[test]
fn valid_fixtures_load_and_round_trip() {
    let files = fixtures("valid");
    assert!(files.len() >= 2, "expected the reference job and at least one more valid fixture");
    for fixture in files {
        let path = &fixture.path;
        let job = load_manifest(&fixture.text)
            .unwrap_or_else(|e| panic!("{} should load:\n{e}", path.display()));
        // What the operator writes back (and `kubectl get -o yaml` shows) reads as the same job.
        let yaml = serde_yaml::to_string(&job).expect("a job serializes");
        let again = load_manifest(&yaml)
            .unwrap_or_else(|e| panic!("{} does not round-trip:\n{e}\n{yaml}", path.display()));
        assert_eq!(
            again.spec,
            job.spec,
            "{} changes when serialized and read back",
            path.display()
        );
    }
}

#[test]
fn invalid_fixtures_are_refused_at_the_expected_path() {
    let files = fixtures("invalid");
    assert!(
        files.len() >= MIN_INVALID_FIXTURES,
        "only {} invalid fixtures; keep at least {MIN_INVALID_FIXTURES}",
        files.len()
    );
    for fixture in files {
        if fixture.engine_only() {
            if let Err(e) = load_manifest(&fixture.text) {
                panic!(
                    "{} is marked engine-only but this crate refuses it already; remove the \
                     marker:\n{e}",
                    fixture.path.display()
                );
            }
            continue;
        }
        match load_manifest(&fixture.text) {
            Ok(_) => panic!(
                "{} was accepted; it should fail at {}",
                fixture.path.display(),
                fixture.expected_path()
            ),
            Err(e) => fixture.assert_refused(&e.field_errors()),
        }
    }
}

#[test]
fn shape_errors_tell_the_fix() {
    let message = |name: &str| {
        load_manifest(&fixture_text("invalid", name)).expect_err("invalid fixture").to_string()
    };
    let typo = message("typo-field-name.yaml");
    assert!(typo.contains("unknown field `maxLatenes`, expected one of"), "{typo}");
    assert!(typo.contains("`maxLateness`"), "{typo}");

    let op = message("unknown-op.yaml");
    assert!(op.contains("unknown variant `count_distinct`"), "{op}");
    assert!(op.contains("`approx_distinct`"), "{op}");

    let start = message("start-from-oldest.yaml");
    assert!(start.contains("`earliest`, `latest` or `{timestamp:"), "{start}");

    let missing = message("missing-max-lateness.yaml");
    assert!(missing.contains("missing field `maxLateness`"), "{missing}");
}

#[test]
fn start_from_forms_keep_their_shape() {
    let with = |start: &str| {
        kappa_crds::REFERENCE_JOB_YAML
            .replace("startFrom: earliest", &format!("startFrom: {start}"))
    };
    let job = load_manifest(&with(r#"{timestamp: "2024-01-01T00:00:00Z"}"#)).unwrap();
    let json = serde_json::to_value(&job.spec.source.kafka).unwrap();
    assert_eq!(json["startFrom"], serde_json::json!({"timestamp": "2024-01-01T00:00:00Z"}));

    let job = load_manifest(&with("latest")).unwrap();
    let json = serde_json::to_value(&job.spec.source.kafka).unwrap();
    assert_eq!(json["startFrom"], "latest");

    let no_start = kappa_crds::REFERENCE_JOB_YAML.replace("startFrom: earliest", "");
    let job = load_manifest(&no_start).unwrap();
    assert!(job.spec.source.kafka.start_from.is_unset());
    let json = serde_json::to_value(&job.spec.source.kafka).unwrap();
    assert!(json.get("startFrom").is_none(), "an unset startFrom is left out: {json}");

    let err = load_manifest(&with("{timestamp: 1704067200000}")).unwrap_err();
    assert_eq!(err.field_errors()[0].path, "spec.source.kafka.startFrom.timestamp", "{err}");
}

#[test]
fn examples_are_the_valid_fixtures() {
    // examples/ is what users copy; the fixtures are what the tests pin. They must not drift.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in ["tx-stats.yaml", "page-views.yaml"] {
        let example = kappa_crds::load_manifest(&read(&examples.join(name)))
            .unwrap_or_else(|e| panic!("examples/{name}: {e}"));
        let fixture = kappa_crds::load_manifest(&fixture_text("valid", name)).unwrap();
        assert_eq!(
            (&example.metadata.name, &example.spec),
            (&fixture.metadata.name, &fixture.spec),
            "examples/{name} differs from crds/fixtures/valid/{name}"
        );
    }
}
