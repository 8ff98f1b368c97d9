//! The manifests of `crds/fixtures` through the engine's validation (`plan::validate`), which
//! is what `kappa validate`, `kappa up` and the operator run: every invalid fixture is refused
//! at the path its `# expect:` line names, those marked `# engine-only:` included (their CEL
//! parses, and only the engine's compiler refuses it), and every valid fixture compiles.

use kappa_engine::plan::{self, JobPlan};

#[path = "../../crds/tests/common/fixtures.rs"]
mod common;
use common::{fixture_text, fixtures};

#[test]
fn every_invalid_fixture_is_refused_at_the_expected_path() {
    let mut engine_only = 0;
    for fixture in fixtures("invalid") {
        engine_only += usize::from(fixture.engine_only());
        match plan::load_manifest(&fixture.text) {
            Ok(_) => panic!(
                "{} was accepted; it should fail at {}",
                fixture.path.display(),
                fixture.expected_path()
            ),
            Err(e) => fixture.assert_refused(&e.field_errors()),
        }
    }
    assert!(engine_only >= 4, "only {engine_only} fixtures exercise the engine's CEL compiler");
}

#[test]
fn every_valid_fixture_passes_and_compiles() {
    for fixture in fixtures("valid") {
        let path = fixture.path.display();
        let job = plan::load_manifest(&fixture.text)
            .unwrap_or_else(|e| panic!("{path} should pass the engine's validation:\n{e}"));
        JobPlan::compile(&job).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn refusals_name_the_construct_and_what_is_supported_instead() {
    let refusal = |name: &str| {
        let text = fixture_text("invalid", name);
        plan::load_manifest(&text).expect_err("an invalid fixture").to_string()
    };
    let exists = refusal("cel-exists-macro.yaml");
    assert!(
        exists.starts_with("spec.pipeline.filter: macro `exists` is not supported"),
        "{exists}"
    );
    assert!(exists.contains("`x in ['a', 'b']`"), "{exists}");
    let unknown = refusal("cel-unknown-function.yaml");
    assert!(unknown.contains("unknown function `lower`"), "{unknown}");
    assert!(unknown.contains("size, startsWith, endsWith, contains, matches"), "{unknown}");
    let regex = refusal("cel-matches-invalid-regex.yaml");
    assert!(regex.contains("\"^(fail|error\" is not an RE2 regular expression"), "{regex}");
}

#[test]
fn every_refused_expression_is_reported_not_just_the_first() {
    let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
    let p = &mut job.spec.pipeline;
    p.filter = Some("tags.exists(t, t == 'x')".into());
    p.derived.insert("first".into(), "items[0]".into());
    // A derived field read by a where clause resolves, as in `JobPlan::compile`.
    p.derived.insert("big".into(), "amount > 1000.0".into());
    p.aggregates[0].where_ = Some("big && status.matches('^f')".into());
    p.aggregates[5].where_ = Some("size(status) > 'x' ||".into());
    p.aggregates[6].where_ = Some("timestamp(event_time) > 0".into());
    let errors = plan::validate(&job);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            // The parse error, from the manifest's rules, once.
            "spec.pipeline.aggregates[5].where",
            "spec.pipeline.filter",
            "spec.pipeline.derived.first",
            "spec.pipeline.aggregates[6].where",
        ],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("not a valid CEL expression"), "{}", errors[0]);
    let err = JobPlan::compile(&job).expect_err("the engine refuses the job");
    for path in paths {
        assert!(err.to_string().contains(path), "{path} missing from:\n{err}");
    }
}
