//! Command dispatch: one module per command family, each an `XxxArgs` with `async fn run`.
//! This file only parses and matches (foundry's shape).

mod account;
mod attest;
mod devnet;
mod inference;
mod key;
mod opts;
mod owner;
mod sealing;
mod serve;
mod storage;
mod web;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub(crate) use opts::GlobalOpts;

/// zg — customer and operator CLI for the zg-compute network (0G Compute compatible).
///
/// Amounts accept 0G (`1.5`, `1.5 0G`) or neuron (`1500000000000000000 neuron`); 1 0G = 10^18 neuron.
/// The signing key comes from `--keystore` (+ password) or `ZG_PRIVATE_KEY`, and is never printed.
#[derive(Debug, Parser)]
#[command(name = "zg", version, propagate_version = true, max_term_width = 110)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Local development chain: start anvil, deploy and wire the contracts.
    #[command(subcommand)]
    Devnet(devnet::DevnetCommand),
    /// Manage the encrypted keystore that holds your signing key.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Show your ledger: total and available balance, and sub-accounts per provider.
    GetAccount(account::GetAccountArgs),
    /// Create your ledger with a first deposit (at least the ledger's minimum, 3 0G by default).
    AddAccount(account::AddAccountArgs),
    /// Add funds to your existing ledger.
    Deposit(account::DepositArgs),
    /// Withdraw available (not transferred) funds from your ledger back to your wallet.
    Refund(account::RefundArgs),
    /// Move funds from your ledger into a provider's sub-account so it can serve you.
    TransferFund(account::TransferFundArgs),
    /// Ask providers' sub-accounts to return funds to your ledger (after the lock time).
    RetrieveFund(account::RetrieveFundArgs),
    /// Show one provider sub-account: balance, pending refunds, nonce, acknowledgement.
    GetSubAccount(account::GetSubAccountArgs),
    /// Verify TDX attestation evidence and replay event logs.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// 0G Storage utilities (Merkle roots).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// Upload a file to storage and print its root.
    Upload(storage::UploadArgs),
    /// Download a file by root, verifying every segment.
    Download(storage::DownloadArgs),
    /// Decrypt a sealed fine-tuned model delivered by a provider.
    DecryptModel(sealing::DecryptModelArgs),
    /// Inference as a customer: list and verify providers, chat with verified receipts, session secrets.
    #[command(subcommand)]
    Inference(inference::InferenceCommand),
    /// Run a local OpenAI-compatible endpoint for one provider that signs, pays, verifies and forwards.
    ///
    /// Point any OpenAI client at it (`OPENAI_BASE_URL=http://127.0.0.1:3001/v1`) with the API key it prints
    /// once at start, or yours from ZG_SERVE_API_KEY (`OPENAI_API_KEY=…`); receipts come back in `ZG-Receipt`
    /// headers. Only its own address as Host, no foreign Origin, JSON POSTs and the key are accepted.
    /// Example: `zg serve --provider 0x… --allow-simulated --port 3001`.
    Serve(serve::ServeArgs),
    /// Contract owner: acknowledge (or revoke) a provider's TEE signer, as in 0G's provider onboarding.
    #[command(subcommand)]
    Owner(owner::OwnerCommand),
    /// Open the local web dashboard (account, providers, verified chat, fine-tuning, provider metrics).
    ///
    /// Serves on 127.0.0.1 only and prints the URL to open, which carries a per-session token. Example:
    /// `zg web --port 4000 --allow-simulated --policy deploy/policy.simulated.toml`.
    Web(web::WebArgs),
}

impl Cli {
    /// Runs the chosen command; the exit code is non-zero when a check the command performs failed.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let g = &self.global;
        match self.command {
            Command::Devnet(c) => c.run(g).await,
            Command::Key(c) => c.run(g).await,
            Command::GetAccount(a) => a.run(g).await,
            Command::AddAccount(a) => a.run(g).await,
            Command::Deposit(a) => a.run(g).await,
            Command::Refund(a) => a.run(g).await,
            Command::TransferFund(a) => a.run(g).await,
            Command::RetrieveFund(a) => a.run(g).await,
            Command::GetSubAccount(a) => a.run(g).await,
            Command::Attest(c) => c.run(g).await,
            Command::Storage(c) => c.run(g).await,
            Command::Upload(a) => a.run(g).await,
            Command::Download(a) => a.run(g).await,
            Command::DecryptModel(a) => a.run(g).await,
            Command::Inference(c) => c.run(g).await,
            Command::Serve(a) => a.run(g).await,
            Command::Owner(c) => c.run(g).await,
            Command::Web(a) => a.run(g).await,
        }
    }
}
