//! `kubectl-tpp`: kubectl runs it for `kubectl tpp ...` (any directory on PATH). See the
//! library's documentation for the subcommands.

use std::process::ExitCode;

use clap::Parser;
use kubectl_tpp::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match kubectl_tpp::run(cli, &mut out).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
