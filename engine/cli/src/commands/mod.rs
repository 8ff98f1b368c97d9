//! One module per subcommand.

pub mod cluster;
pub mod gen;
pub mod produce;
pub mod run;
pub mod up;
pub mod validate;

/// Reads and validates a job file. An invalid job is reported on standard error, every problem
/// with its field path, and gives `None` (the command then exits 1).
pub(crate) fn load_job(file: &std::path::Path) -> anyhow::Result<Option<kappa_crds::StreamJob>> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match kappa_engine::plan::load_manifest(&text) {
        Ok(job) => Ok(Some(job)),
        Err(e) => {
            eprintln!("{}: the job is invalid:", file.display());
            for err in e.field_errors() {
                eprintln!("  {err}");
            }
            Ok(None)
        }
    }
}
