//! README.md's StreamJob reference is the one `kappa_crds::reference_markdown()` generates from
//! the types, so a changed field, default or doc comment cannot leave the README behind.

use std::path::PathBuf;

/// Set to `1` to rewrite the README section from the types instead of failing on drift.
const BLESS_ENV: &str = "KAPPA_BLESS";
const BEGIN: &str = "<!-- streamjob-reference:begin -->";
const END: &str = "<!-- streamjob-reference:end -->";

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

/// The byte range of the generated text: after the begin marker's line, up to the end marker.
fn generated_range(readme: &str) -> std::ops::Range<usize> {
    let begin = readme.find(BEGIN).unwrap_or_else(|| panic!("README.md has no {BEGIN} marker"));
    let start = begin + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("README.md has no {END} marker after {BEGIN}"));
    start..end
}

#[test]
fn readme_reference_matches_the_types() {
    let generated = format!("\n\n{}", kappa_crds::reference_markdown());
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("README.md exists");
    let range = generated_range(&readme);
    if std::env::var(BLESS_ENV).is_ok_and(|v| v == "1") {
        let mut updated = readme.clone();
        updated.replace_range(range, &generated);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    assert!(
        readme[range] == generated,
        "README.md's StreamJob reference is out of date with the types in crds/src; \
         regenerate it with\n  {BLESS_ENV}=1 cargo test -p kappa-crds --test reference\nand \
         commit the result"
    );
}

#[test]
fn reference_covers_every_object_of_the_spec() {
    let md = kappa_crds::reference_markdown();
    for table in [
        "spec",
        "spec.source.kafka",
        "spec.source.kafka.sasl",
        "spec.pipeline.aggregates[]",
        "spec.pipeline.window.hopping",
        "spec.sink.elasticsearch",
        "spec.promotion.verify",
        "spec.retention",
        "status.versions[]",
    ] {
        assert!(md.contains(&format!("### `{table}`\n")), "no table for {table}");
    }
    // Defaults, constraints and descriptions come through from the types.
    assert!(md.contains(
        "| `spec.deletionPolicy` | string | default `Retain` | one of `Delete`, `Retain` |"
    ));
    assert!(md.contains("| `spec.retention.keepVersions` | integer | default `1` | 0 to 20 |"));
    assert!(md.contains("aggregate names must be unique"));
    assert!(md.contains("on update: spec.pipeline is part of the job's logic"));
}
