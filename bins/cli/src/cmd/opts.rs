//! Flags shared by many commands. Precedence, lowest first: built-in default < environment variable < flag.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use zg_chain::{Address, Client, ContractAddresses, PrivateKeySigner};

/// Global flags, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct GlobalOpts {
    /// Print the result as one JSON document on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More logs on stderr (-v info, -vv debug, -vvv trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// Which chain and contracts to talk to. Defaults match `zg devnet up` (and the official 0G CLI on chain 31337).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Chain")]
pub(crate) struct RpcOpts {
    /// JSON-RPC endpoint of the chain.
    #[arg(
        long = "rpc",
        env = "ZG_RPC_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8545"
    )]
    pub(crate) rpc: String,
    /// LedgerManager contract address.
    #[arg(long = "ledger-ca", env = "ZG_LEDGER_CA", value_name = "ADDRESS", default_value_t = ContractAddresses::DEVNET.ledger)]
    pub(crate) ledger_ca: Address,
    /// InferenceServing contract address.
    #[arg(long = "inference-ca", env = "ZG_INFERENCE_CA", value_name = "ADDRESS", default_value_t = ContractAddresses::DEVNET.inference)]
    pub(crate) inference_ca: Address,
    /// FineTuningServing contract address.
    #[arg(long = "fine-tuning-ca", env = "ZG_FINE_TUNING_CA", value_name = "ADDRESS", default_value_t = ContractAddresses::DEVNET.fine_tuning)]
    pub(crate) fine_tuning_ca: Address,
    /// Refuse to run unless the endpoint serves this chain id.
    #[arg(long = "chain-id", env = "ZG_CHAIN_ID", value_name = "ID")]
    pub(crate) chain_id: Option<u64>,
}

impl RpcOpts {
    fn addresses(&self) -> ContractAddresses {
        ContractAddresses {
            ledger: self.ledger_ca,
            inference: self.inference_ca,
            fine_tuning: self.fine_tuning_ca,
        }
    }

    /// Connects (checking endpoint, chain id and contract code), signing with `signer` if given.
    pub(crate) async fn connect(&self, signer: Option<PrivateKeySigner>) -> anyhow::Result<Client> {
        let client = match self.chain_id {
            Some(id) => Client::connect_checked(&self.rpc, id, self.addresses(), signer).await?,
            None => Client::connect(&self.rpc, self.addresses(), signer).await?,
        };
        Ok(client)
    }
}

/// Where the signing key comes from. It is never printed.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Wallet")]
pub(crate) struct WalletOpts {
    /// Encrypted keystore file (from `zg key new` / `zg key import`). Its password comes from
    /// ZG_KEYSTORE_PASSWORD or a prompt. Without a keystore, the hex key in ZG_PRIVATE_KEY is used.
    #[arg(long, env = "ZG_KEYSTORE", value_name = "FILE")]
    pub(crate) keystore: Option<PathBuf>,
}

impl WalletOpts {
    /// The signer, or an error that says how to provide one.
    pub(crate) fn signer(&self) -> anyhow::Result<PrivateKeySigner> {
        if let Some(path) = &self.keystore {
            if !path.is_file() {
                anyhow::bail!(
                    "keystore {} does not exist (create one with `zg key new`, or fix --keystore / ZG_KEYSTORE)",
                    path.display()
                );
            }
            let password = match std::env::var("ZG_KEYSTORE_PASSWORD") {
                Ok(p) => p,
                Err(_) => rpassword::prompt_password(format!("password for {}: ", path.display()))
                    .context("reading the keystore password (or set ZG_KEYSTORE_PASSWORD)")?,
            };
            return Ok(zg_chain::load_keystore(path, &password)?);
        }
        match std::env::var("ZG_PRIVATE_KEY") {
            Ok(key) => Ok(zg_chain::signer_from_hex(&key).context("ZG_PRIVATE_KEY")?),
            Err(_) => Err(zg_chain::Error::NoSigner.into()),
        }
    }
}
