//! `zg`: the zg-compute command line. Parses flags, sets up logging, and hands over to [`cmd`].
//!
//! stdout carries the result only (one JSON document under `--json`); logs and progress go to stderr.

mod cmd;
mod output;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    init_tracing(cli.global.verbose);
    match cli.run().await {
        Ok(code) => code,
        Err(err) => {
            if output::is_broken_pipe(&err) {
                // The reader went away (`zg ... | head`): not an error (ripgrep does the same).
                return ExitCode::SUCCESS;
            }
            output::print_error(&err);
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level picked by `-v`.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,zg=info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
