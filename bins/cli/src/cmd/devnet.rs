//! `zg devnet up`: a local chain with every contract deployed, for development and the demo.

use super::GlobalOpts;
use crate::output;
use clap::{Args, Subcommand};
use std::{path::PathBuf, process::ExitCode};
use zg_chain::{Devnet, DevnetConfig};

/// Local development chain.
#[derive(Debug, Subcommand)]
pub(crate) enum DevnetCommand {
    /// Start anvil, deploy and wire the contracts, print the endpoint, contracts and funded dev keys, and keep
    /// running until Ctrl-C.
    ///
    /// The contracts land where the official 0G CLI expects them on chain 31337, so both `zg` and the 0G CLI
    /// work against it with no address flags.
    ///
    /// Example: `zg devnet up --port 8545`, then in another shell
    /// `ZG_PRIVATE_KEY=<a printed key> zg add-account --amount 5`.
    Up(UpArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Loopback port for JSON-RPC (the default matches `--rpc`'s default; 0 picks a free one).
    #[arg(long, env = "ZG_DEVNET_PORT", default_value_t = 8545)]
    port: u16,
    /// The anvil binary (default: $ZG_ANVIL, else `anvil` on PATH; `just setup` installs a pinned one).
    #[arg(long, value_name = "PATH")]
    anvil: Option<PathBuf>,
    /// Refund lock time in seconds for the serving contracts.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    lock_time: u64,
}

impl DevnetCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let Self::Up(args) = self;
        let mut cfg = DevnetConfig {
            anvil: args.anvil,
            port: (args.port != 0).then_some(args.port),
            ..Default::default()
        };
        cfg.deploy.lock_time = args.lock_time;
        let port = args.port;
        let devnet = Devnet::start_with(cfg).await.map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(if port {port} is taken, pick another with --port and pass --rpc to other commands)"
            )
        })?;
        let info = devnet.info();
        if g.json {
            output::json(&info)?;
        } else {
            output::text(format!("devnet up: {} (chain {})", info.rpc_url, info.chain_id))?;
            output::text(format!(
                "contracts\n  LedgerManager      {}\n  InferenceServing   {}\n  FineTuningServing  {}",
                info.contracts.ledger, info.contracts.inference, info.contracts.fine_tuning
            ))?;
            output::text(
                "funded dev accounts (anvil's well-known test keys: never use them for real funds)",
            )?;
            for (i, a) in info.accounts.iter().enumerate() {
                let role = if i == 0 {
                    "  (deployer, contract owner)"
                } else {
                    ""
                };
                output::text(format!("  {i}  {}  {}{role}", a.address, a.private_key))?;
            }
        }
        tracing::warn!("devnet running; press Ctrl-C to stop");
        wait_for_shutdown_signal().await?;
        // Dropping the devnet kills anvil; a SIGTERM'd process would skip that, so both signals land here.
        drop(devnet);
        Ok(ExitCode::SUCCESS)
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
