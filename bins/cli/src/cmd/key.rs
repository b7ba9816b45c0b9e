//! `zg key`: the encrypted keystore (Web3 Secret Storage, scrypt + AES-128-CTR) that holds the signing key.

use super::{GlobalOpts, opts::WalletOpts};
use crate::output;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::{io::IsTerminal, path::PathBuf, process::ExitCode};
use zg_chain::PrivateKeySigner;

/// Manage the keystore.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate a new key and save it encrypted. Prints its address and file, never the key.
    New(SaveArgs),
    /// Encrypt an existing hex private key (read from ZG_PRIVATE_KEY, or a hidden prompt) into a keystore.
    Import(SaveArgs),
    /// Print the address of the configured key (--keystore / ZG_KEYSTORE, or ZG_PRIVATE_KEY).
    Address(AddressArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Directory for keystore files.
    #[arg(long, env = "ZG_KEYSTORE_DIR", value_name = "DIR", default_value_os_t = default_dir())]
    dir: PathBuf,
    /// File name (default: the key's address).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AddressArgs {
    #[command(flatten)]
    wallet: WalletOpts,
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".zg")
        .join("keystore")
}

/// A new password: ZG_KEYSTORE_PASSWORD, or typed twice at a prompt.
fn new_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("ZG_KEYSTORE_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no terminal to ask for a password: set ZG_KEYSTORE_PASSWORD");
    }
    let first = rpassword::prompt_password("new keystore password: ")?;
    let again = rpassword::prompt_password("repeat password: ")?;
    if first != again {
        anyhow::bail!("the passwords differ: nothing was written");
    }
    if first.is_empty() {
        anyhow::bail!("an empty password would leave the key unprotected: choose one");
    }
    Ok(first)
}

impl KeyCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let (signer, args) = match self {
            Self::New(args) => (PrivateKeySigner::random(), args),
            Self::Import(args) => {
                let hex = match std::env::var("ZG_PRIVATE_KEY") {
                    Ok(k) => k,
                    Err(_) => rpassword::prompt_password("private key (hex, hidden): ")
                        .context("reading the key (or set ZG_PRIVATE_KEY)")?,
                };
                (zg_chain::signer_from_hex(&hex)?, args)
            }
            Self::Address(a) => {
                let address = a.wallet.signer()?.address();
                if g.json {
                    output::json(&serde_json::json!({ "address": address }))?;
                } else {
                    output::text(address)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        let password = new_password()?;
        let name = args.name.unwrap_or_else(|| format!("{}.json", signer.address()));
        let path = zg_chain::save_keystore(&signer, &args.dir, &name, &password)?;
        if g.json {
            output::json(&serde_json::json!({ "address": signer.address(), "keystore": path }))?;
        } else {
            output::text(format!(
                "address  {}\nkeystore {}",
                signer.address(),
                path.display()
            ))?;
            tracing::warn!("use it with --keystore {} (or ZG_KEYSTORE)", path.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}
