//! README.md documents the CEL subset with the very text of `engine/src/cel/subset.md`, the
//! compiler's module documentation, and that text names every function the compiler offers
//! in its error messages: one list, the same in both places.

use std::path::Path;

const BEGIN: &str = "<!-- cel-subset:begin -->\n";
const END: &str = "<!-- cel-subset:end -->";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn readme_documents_the_subset_of_the_compiler_docs() {
    let readme = read("../README.md");
    let start =
        readme.find(BEGIN).expect("README.md has the cel-subset:begin marker") + BEGIN.len();
    let end = start + readme[start..].find(END).expect("README.md has the cel-subset:end marker");
    assert!(
        readme[start..end] == read("src/cel/subset.md"),
        "README.md's CEL subset differs from engine/src/cel/subset.md; copy the file between \
         the cel-subset markers"
    );
}

#[test]
fn the_documented_functions_are_the_ones_errors_list() {
    let subset = read("src/cel/subset.md");
    let error = kappa_engine::cel::compile("frobnicate(x)", &mut Default::default())
        .expect_err("an unknown function")
        .to_string();
    let listed = error.split_once("support ").expect("the error lists the functions").1;
    let listed = listed.replace(" and the macro ", ", ");
    let names: Vec<&str> = listed.split(", ").collect();
    assert!(names.len() >= 10, "{names:?} from {error}");
    for name in names {
        assert!(subset.contains(&format!("`{name}")), "subset.md does not document `{name}`");
    }
    for refused in ["exists", "all", "map", "filter", "[...]"] {
        assert!(
            subset.contains(&format!("`{refused}`")),
            "subset.md does not say `{refused}` is refused"
        );
    }
}
