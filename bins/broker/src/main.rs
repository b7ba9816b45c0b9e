//! `zg-broker`: the TEE-resident fine-tuning broker. Logic lives in the library (`zg_broker`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// zg-compute fine-tuning broker: trains customers' models in a TEE, delivers them sealed, settles on chain.
#[derive(Debug, Parser)]
#[command(name = "zg-broker", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a commented TOML config file.
    Init {
        /// Where to write it.
        #[arg(default_value = "zg-broker.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Start the broker (HTTP + gRPC, chain registration, task pipeline, settlement).
    Run(Box<zg_broker::RunArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZG_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().cmd {
        Cmd::Init { path, force } => zg_broker::init(&path, force).map(|()| {
            tracing::info!(path = %path.display(), "wrote config; edit it, then `zg-broker run -c {}`", path.display());
        }),
        Cmd::Run(args) => match zg_broker::Settings::resolve(*args) {
            Ok(s) => zg_broker::run(s).await,
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
