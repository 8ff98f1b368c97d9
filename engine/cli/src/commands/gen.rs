//! `kappa gen`: write transaction logs shaped like the reference workload.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use kappa_engine::gen::{generate, GenConfig};

/// Arguments of `kappa gen`.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Number of lines (malformed ones included).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Seed: the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of partition files (`part-0.ndjson`, ...) written into --out-dir.
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// Directory for the partition files.
    #[arg(long = "out-dir", default_value = ".")]
    out_dir: PathBuf,
    /// Records per second of log time.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Number of servers (`srv-1` … `srv-N`). 3 keeps the reference weights (50/30/20 %);
    /// any other count draws them uniformly: with a low --rate, many group keys with a few
    /// records per window, most of them open at once under the 3-day lateness.
    #[arg(long, default_value_t = 3)]
    servers: u32,
    /// The many-small-windows workload of the memory bench: 4 servers and the records spread
    /// over 5 days of log time (overrides --servers and --rate). Under the reference job's 3-day
    /// lateness most windows are open at once: about 150k at the end of 10M records, with a few
    /// dozen records each.
    #[arg(long = "small-windows")]
    small_windows: bool,
    /// Share of malformed lines (0..1).
    #[arg(long = "malformed", default_value_t = 0.005)]
    malformed_ratio: f64,
    /// Share of records later than the reference job's 3-day lateness (0..1).
    #[arg(long = "too-late", default_value_t = 0.001)]
    too_late_ratio: f64,
}

/// Servers of `--small-windows`: with the 8 transaction types, 32 group keys per minute.
const SMALL_WINDOWS_SERVERS: u32 = 4;
/// Log time `--small-windows` spreads the records over: 5 days.
const SMALL_WINDOWS_SPAN_SECS: f64 = 5.0 * 86_400.0;

/// Writes the files and prints what was written.
pub fn run(args: &GenArgs) -> anyhow::Result<ExitCode> {
    let (servers, rate) = if args.small_windows {
        (SMALL_WINDOWS_SERVERS, args.records as f64 / SMALL_WINDOWS_SPAN_SECS)
    } else {
        (args.servers, args.rate)
    };
    let cfg = GenConfig {
        records: args.records,
        seed: args.seed,
        rate_per_sec: rate,
        servers,
        malformed_ratio: args.malformed_ratio,
        too_late_ratio: args.too_late_ratio,
        ..GenConfig::default()
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut paths = Vec::new();
    let mut outs = Vec::new();
    for p in 0..args.partitions.max(1) {
        let path = args.out_dir.join(format!("part-{p}.ndjson"));
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        outs.push(file); // generate() buffers each output itself
        paths.push(path);
    }
    let started = Instant::now();
    let summary = generate(&cfg, &mut outs).context("cannot generate")?;
    drop(outs);
    let secs = started.elapsed().as_secs_f64();
    for (path, n) in paths.iter().zip(&summary.per_partition) {
        println!("{}\t{n} lines", path.display());
    }
    eprintln!(
        "kappa gen: {} lines ({} malformed, {} beyond 3d lateness) in {:.2}s",
        summary.records(),
        summary.malformed,
        summary.too_late,
        secs
    );
    Ok(ExitCode::SUCCESS)
}
