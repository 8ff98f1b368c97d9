//! `kappa validate -f FILE`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Loads `file`, prints every problem as `path: message`, exits 1 when there is any.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match kappa_engine::plan::load_manifest(&text) {
        Ok(job) => {
            println!(
                "{}: valid StreamJob {} (version {}, index {})",
                file.display(),
                job.metadata.name.as_deref().unwrap_or("<unnamed>"),
                job.spec.version,
                kappa_crds::index_name(&job.spec)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let errors = e.field_errors();
            eprintln!("{}: {} problem(s):", file.display(), errors.len());
            for err in errors {
                eprintln!("  {err}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
