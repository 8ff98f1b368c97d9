//! The `kappa` command line: argument definitions and dispatch. Each subcommand lives in its
//! own module under `commands/`; `main.rs` only parses and calls [`run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

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
    }
}
