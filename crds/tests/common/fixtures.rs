//! The manifests of `crds/fixtures`, for the fixture tests of `kappa-crds` and of the engine
//! (both include this file, whose paths hold from either crate's directory).
//!
//! An invalid fixture's first line is `# expect: <path>`, the field path of the error it must
//! get; a header line `# engine-only: <why>` marks valid CEL that only the engine's compiler
//! refuses.

use std::fs;
use std::path::{Path, PathBuf};

use kappa_crds::FieldError;

/// One fixture file.
pub struct Fixture {
    pub path: PathBuf,
    pub text: String,
}

impl Fixture {
    /// The field path the first line's `# expect:` names.
    pub fn expected_path(&self) -> &str {
        self.text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{} must start with `# expect: <path>`", self.path.display()))
    }

    /// Whether its header marks it `# engine-only:`.
    pub fn engine_only(&self) -> bool {
        self.text
            .lines()
            .take_while(|line| line.starts_with('#'))
            .any(|line| line.starts_with("# engine-only: "))
    }

    /// Asserts that `errors` (from loading it) include one at its expected path.
    pub fn assert_refused(&self, errors: &[FieldError]) {
        let expected = self.expected_path();
        assert!(
            errors.iter().any(|e| e.path == expected && !e.message.is_empty()),
            "{}: no error at {expected}; got:\n{}",
            self.path.display(),
            errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
        );
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/fixtures")
}

/// The fixtures of `kind` (`valid` or `invalid`), sorted by file name.
pub fn fixtures(kind: &str) -> Vec<Fixture> {
    let dir = fixtures_dir().join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths.into_iter().map(|path| Fixture { text: read(&path), path }).collect()
}

/// The text of fixture `name` of `kind`.
pub fn fixture_text(kind: &str, name: &str) -> String {
    read(&fixtures_dir().join(kind).join(name))
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
