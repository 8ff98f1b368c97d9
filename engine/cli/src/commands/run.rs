//! `kappa run -f job.yaml`: the engine service of one job version (Kafka → Elasticsearch, the
//! process in each version's pod), or with `--input FILE...` a bounded replay of NDJSON files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kappa_engine::replay::{stream_files, ReplayOptions};
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
    /// Worker threads for --input replays (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    service: ServiceArgs,
}

/// Settings of the engine service (`kappa run` without `--input`).
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// Address of the /status, /metrics, /healthz and /readyz endpoints (port 0: any).
    #[arg(long, env = "KAPPA_STATUS_ADDR", default_value = "0.0.0.0:8080")]
    status_addr: std::net::SocketAddr,
    /// Keep checkpoints in this directory instead of the Kafka topic `<group>.checkpoints`.
    #[arg(long, env = "KAPPA_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Checkpoint topic (default `<group>.checkpoints`).
    #[arg(long, env = "KAPPA_CHECKPOINT_TOPIC", conflicts_with = "checkpoint_dir")]
    checkpoint_topic: Option<String>,
    /// Time between checkpoints (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// Time between sink flushes once live (e.g. 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    flush_interval: std::time::Duration,
    /// Dead-letter topic (default `<group>.dead-letters`).
    #[arg(long, env = "KAPPA_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
    /// Discard documents instead of writing them (measures the engine without the sink).
    #[arg(long)]
    null_sink: bool,
    /// On SIGTERM, after the final checkpoint, go on writing the documents still to write for
    /// at most this long (e.g. 30s; what is left is written by the next run).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_drain: std::time::Duration,
    /// Exit 0 once every record up to the head is read and its documents are acknowledged by
    /// the index, after a final checkpoint (bounded replays and backfills).
    #[arg(long)]
    until_caught_up: bool,
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    kappa_crds::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs the replay and prints a summary on standard error.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let Some(job) = super::load_job(&args.file)? else { return Ok(ExitCode::FAILURE) };
    if args.input.is_empty() {
        return run_service(job, &args.service);
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
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let started = Instant::now();
    // Documents are written as they become known (final windows during the replay, the rest
    // at the end), in order of window start and key, so none are held in memory.
    let report = stream_files(
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
        |doc| writeln!(out, "{}", doc.body),
    )?;
    bar.finish_and_clear();
    if let Some(mut w) = dead_out {
        w.flush().context("cannot write dead letters")?;
    }
    out.flush().context("cannot write output")?;

    let elapsed = started.elapsed().as_secs_f64();
    let c = report.counters;
    let m = report.peak_memory;
    eprintln!(
        "kappa run: {} records in, {} folded, {} filtered, {} late-dropped, {} dead-lettered, \
         {} windows out in {:.2}s ({:.2} M records/s, {} threads); at most {} open windows \
         held, {} bytes each (states {} + index {}, every worker's partial states counted)",
        c.records_in,
        c.folded,
        c.filtered,
        c.late,
        c.dead,
        report.documents,
        elapsed,
        c.records_in as f64 / elapsed.max(1e-9) / 1e6,
        options.threads,
        m.open_windows,
        m.bytes_per_window(),
        m.per_window(m.state_bytes),
        m.per_window(m.index_bytes),
    );
    Ok(ExitCode::SUCCESS)
}

/// The engine service: runs until SIGTERM (or until caught up with `--until-caught-up`).
fn run_service(job: kappa_crds::StreamJob, args: &ServiceArgs) -> anyhow::Result<ExitCode> {
    use kappa_service::{CheckpointLocation, EngineConfig, SinkChoice};
    let mut config = EngineConfig::new(job);
    config.status_addr = args.status_addr;
    config.checkpoint = match &args.checkpoint_dir {
        Some(dir) => CheckpointLocation::Directory(dir.clone()),
        None => CheckpointLocation::Kafka { topic: args.checkpoint_topic.clone() },
    };
    config.checkpoint_interval = args.checkpoint_interval;
    config.flush_interval = args.flush_interval;
    config.dead_letter_topic = args.dead_letter_topic.clone();
    config.sink = if args.null_sink { SinkChoice::Null } else { SinkChoice::Elasticsearch };
    config.shutdown_drain = args.shutdown_drain;
    config.until_caught_up = args.until_caught_up;
    let s = kappa_service::serve(config)?;
    let why = match s.end {
        kappa_service::RunEnd::Shutdown => "stopped after a final checkpoint",
        kappa_service::RunEnd::CaughtUp => "caught up",
    };
    eprintln!(
        "kappa run: {why}: {} records processed by this process, {} documents written, {} \
         checkpoints, lag {}",
        s.records_processed, s.documents_written, s.checkpoints, s.lag
    );
    Ok(ExitCode::SUCCESS)
}
