//! `kappa-operator`: the StreamJob controller process.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colours only on a terminal (a pod's log is a file).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match kappa_operator::run(kappa_operator::OperatorArgs::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
