//! `kappa`: the command line of the Kappa toolkit.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kappa_cli::Cli::parse();
    match kappa_cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
