//! `zg-provider`: the TEE-resident provider server. Logic lives in the library (`zg_provider`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// zg-compute provider: OpenAI-compatible inference from a TEE, billed and settled on chain.
#[derive(Debug, Parser)]
#[command(name = "zg-provider", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a commented TOML config file.
    Init {
        /// Where to write it.
        #[arg(default_value = "zg-provider.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Start the provider (HTTP + gRPC, chain registration, settlement loop).
    Run(Box<zg_provider::RunArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZG_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().cmd {
        Cmd::Init { path, force } => zg_provider::init(&path, force).map(|()| {
            tracing::info!(path = %path.display(), "wrote config; edit it, then `zg-provider run -c {}`", path.display());
        }),
        Cmd::Run(args) => match zg_provider::Settings::resolve(*args) {
            Ok(s) => zg_provider::run(s).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
