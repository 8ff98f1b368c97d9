//! `kappa run -f job.yaml --input FILE...`: bounded replay of NDJSON files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use kappa_engine::replay::{replay_files, ReplayOptions};
use kappa_engine::JobPlan;

/// Arguments of `kappa run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The StreamJob manifest.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// NDJSON files replayed as the retained log: one file per partition.
    #[arg(long = "input", num_args = 1..)]
    input: Vec<PathBuf>,
    /// Where to write the window documents (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Where to write dead letters (default: count them only).
    #[arg(long = "dead-letter")]
    dead_letter: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs the replay and prints a summary on standard error.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let job = match kappa_crds::load_manifest(&text) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("{}: the job is invalid:", args.file.display());
            for err in e.field_errors() {
                eprintln!("  {err}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.input.is_empty() {
        bail!(
            "kappa run without --input reads Kafka ({}); the Kafka source is not part of this \
             build yet. Replay files with --input FILE...",
            job.spec.source.kafka.topic
        );
    }
    let plan = Arc::new(JobPlan::compile(&job)?);
    let mut options = ReplayOptions::default();
    if let Some(t) = args.threads {
        options.threads = t.max(1);
    }

    let mut dead_out = match &args.dead_letter {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} (eta {eta})",
        )
        .expect("static template"),
    );
    let started = Instant::now();
    let report = replay_files(
        Arc::clone(&plan),
        &args.input,
        &options,
        |d| match dead_out.as_mut() {
            Some(w) => writeln!(w, "{}", d.to_json_line()),
            None => Ok(()),
        },
        |p| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.2} M records/s", p.records as f64 / secs / 1e6));
        },
    )?;
    bar.finish_and_clear();
    if let Some(mut w) = dead_out {
        w.flush().context("cannot write dead letters")?;
    }

    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    for doc in &report.documents {
        writeln!(out, "{}", doc.body).context("cannot write output")?;
    }
    out.flush().context("cannot write output")?;

    let elapsed = started.elapsed().as_secs_f64();
    let c = report.counters;
    eprintln!(
        "kappa run: {} records in, {} folded, {} filtered, {} late-dropped, {} dead-lettered, \
         {} windows out in {:.2}s ({:.2} M records/s, {} threads)",
        c.records_in,
        c.folded,
        c.filtered,
        c.late,
        c.dead,
        report.documents.len(),
        elapsed,
        c.records_in as f64 / elapsed.max(1e-9) / 1e6,
        options.threads,
    );
    Ok(ExitCode::SUCCESS)
}
