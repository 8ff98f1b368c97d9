//! The `kappa` command line: argument definitions and dispatch. Each subcommand lives in its
//! own module under `commands/`; `main.rs` only parses and calls [`run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod commands;

pub use commands::cluster;

/// Kappa: event-time stream jobs with blue/green replay into Elasticsearch.
#[derive(Debug, Parser)]
#[command(name = "kappa", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a StreamJob manifest; prints every problem with its field path.
    Validate {
        /// The manifest (YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Print the StreamJob CustomResourceDefinition (YAML).
    Crd,
    /// Run a job. With --input, replay NDJSON files as a retained log (one file per partition,
    /// line number = offset) and write the final value of every window.
    Run(commands::run::RunArgs),
    /// Generate transaction logs shaped like the reference workload (NDJSON).
    Gen(commands::gen::GenArgs),
    /// Load NDJSON files into the job's Kafka topic, file i into partition i (one record per
    /// line, bytes verbatim), so a broker holds what `kappa gen` wrote.
    Produce(commands::produce::ProduceArgs),
    /// Show a StreamJob's versions, conditions and live version from its status; a replaying
    /// version gets a progress bar with rate and ETA.
    Status(commands::cluster::StatusArgs),
    /// Move the alias to a version: approve spec.version (the default, removing a pin) or pin
    /// another complete version with spec.activeVersion.
    Promote(commands::cluster::PromoteArgs),
    /// Pin the alias to a previous version (default: the most recently retired one).
    Rollback(commands::cluster::RollbackArgs),
    /// Run a job's blue/green lifecycle on this machine: the operator's state machine, engines
    /// as child processes, against the Kafka and Elasticsearch the job names. Talk to it with
    /// `kappa status/promote/rollback --local`.
    Up(commands::up::UpArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { file } => commands::validate::run(&file),
        Command::Crd => {
            print!("{}", kappa_crds::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => commands::run::run(&args),
        Command::Gen(args) => commands::gen::run(&args),
        Command::Produce(args) => commands::produce::run(&args),
        Command::Status(args) => block_on(commands::cluster::run_status(&args)),
        Command::Promote(args) => block_on(commands::cluster::run_promote(&args)),
        Command::Rollback(args) => block_on(commands::cluster::run_rollback(&args)),
        Command::Up(args) => commands::up::run(&args),
    }
}

/// Runs one cluster command to completion on a fresh runtime (the other commands need none).
fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(command)
}
