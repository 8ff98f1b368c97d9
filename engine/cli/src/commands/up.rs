//! `kappa up -f job.yaml`: the operator's blue/green lifecycle on this machine (see
//! [`kappa_operator::local::up`]). Engines are child processes of this `kappa` binary; Kafka
//! and Elasticsearch are the ones the job file names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kappa_operator::local::up::{up, UpOptions};

/// Arguments of `kappa up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The StreamJob manifest. It is re-read every second: a new spec.version starts a
    /// blue/green replay.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Where the local API, the kubeconfig and the engines' logs and checkpoints live.
    #[arg(long, default_value = ".kappa", env = "KAPPA_STATE_DIR")]
    state_dir: PathBuf,
    /// Address of the local Kubernetes API (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    api_addr: SocketAddr,
    /// Checkpoint interval of the engines.
    #[arg(long, default_value = "5s")]
    checkpoint_interval: String,
}

/// Runs until Ctrl-C or SIGTERM, then stops the engines with a final checkpoint.
pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    kappa_crds::parse_duration(&args.checkpoint_interval)
        .map_err(|e| anyhow::anyhow!("--checkpoint-interval: {e}"))?;
    let engine_program =
        std::env::current_exe().context("cannot find the kappa binary to run engines with")?;
    let options = UpOptions {
        job_file: args.file.clone(),
        state_dir: args.state_dir.clone(),
        engine_program,
        api_addr: args.api_addr,
        checkpoint_interval: args.checkpoint_interval.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(up(options, stopped()))?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
