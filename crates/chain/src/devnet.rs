//! A local development chain: a pinned anvil on a free loopback port with every contract deployed and wired.
//! Dropping the [`Devnet`] kills anvil.

use crate::{
    Amount, Client, ContractAddresses, DeployConfig, Error, Result, ServiceKind, deploy::deploy_all,
};
use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use serde::Serialize;
use std::path::PathBuf;

/// How to start a devnet.
#[derive(Debug, Clone, Default)]
pub struct DevnetConfig {
    /// The anvil binary. Default: `$ZG_ANVIL`, else `anvil` on `PATH`.
    pub anvil: Option<PathBuf>,
    /// Loopback port; default: a free one.
    pub port: Option<u16>,
    /// Funded accounts (default 10, 10,000 0G each).
    pub accounts: Option<u16>,
    /// Contract parameters.
    pub deploy: DeployConfig,
}

/// A running devnet. Anvil is killed when this is dropped.
#[derive(Debug)]
pub struct Devnet {
    anvil: AnvilInstance,
    addresses: ContractAddresses,
    keys: Vec<PrivateKeySigner>,
}

/// What a devnet offers, for printing: endpoint, contracts and funded dev accounts.
#[derive(Debug, Clone, Serialize)]
pub struct DevnetInfo {
    /// HTTP JSON-RPC endpoint.
    pub rpc_url: String,
    /// Chain id (31337).
    pub chain_id: u64,
    /// Contract addresses.
    pub contracts: ContractAddresses,
    /// Account 0 deployed the contracts and owns them.
    pub accounts: Vec<DevAccount>,
}

/// A funded development account. Its key is anvil's well-known test key: never use it for real funds.
#[derive(Debug, Clone, Serialize)]
pub struct DevAccount {
    /// Address.
    pub address: Address,
    /// Well-known anvil test key (public knowledge).
    pub private_key: String,
}

impl Devnet {
    /// Starts anvil with defaults and deploys the contracts at [`ContractAddresses::DEVNET`].
    pub async fn start() -> Result<Self> {
        Self::start_with(DevnetConfig::default()).await
    }

    /// Starts anvil as configured and deploys the contracts.
    pub async fn start_with(cfg: DevnetConfig) -> Result<Self> {
        let bin = cfg
            .anvil
            .clone()
            .or_else(|| std::env::var_os("ZG_ANVIL").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("anvil"));
        let mut anvil = Anvil::at(&bin).args(["--host", "127.0.0.1"]);
        if let Some(port) = cfg.port {
            anvil = anvil.port(port);
        }
        if let Some(n) = cfg.accounts {
            anvil = anvil.args(["--accounts", &n.to_string()]);
        }
        let anvil = anvil.try_spawn().map_err(|e| {
            Error::Devnet(format!(
                "cannot start anvil ({}): {e}. Run `just setup` and put node_modules/@foundry-rs/anvil-linux-amd64/bin \
                 on PATH, or set ZG_ANVIL to the anvil binary",
                bin.display()
            ))
        })?;
        let keys: Vec<PrivateKeySigner> = anvil
            .keys()
            .iter()
            .map(|k| PrivateKeySigner::from(k.clone()))
            .collect();
        let deployer = keys
            .first()
            .cloned()
            .ok_or_else(|| Error::Devnet("anvil reported no accounts".into()))?;
        let provider = crate::client::http_provider(anvil.endpoint_url(), Some(deployer.clone()));
        let addresses = deploy_all(&provider, deployer.address(), &cfg.deploy).await?;
        tracing::info!(rpc = %anvil.endpoint(), ledger = %addresses.ledger, "devnet up");
        Ok(Self {
            anvil,
            addresses,
            keys,
        })
    }

    /// The JSON-RPC endpoint.
    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// Deployed contract addresses.
    pub fn addresses(&self) -> ContractAddresses {
        self.addresses
    }

    /// Funded accounts; index 0 deployed and owns the contracts.
    pub fn keys(&self) -> &[PrivateKeySigner] {
        &self.keys
    }

    /// A client connected to this devnet that signs with `key`.
    pub async fn client(&self, key: Option<PrivateKeySigner>) -> Result<Client> {
        Client::connect(&self.rpc_url(), self.addresses, key).await
    }

    /// Endpoint, contracts and dev accounts, for printing.
    pub fn info(&self) -> DevnetInfo {
        DevnetInfo {
            rpc_url: self.rpc_url(),
            chain_id: self.chain_id(),
            contracts: self.addresses,
            accounts: self
                .keys
                .iter()
                .map(|k| DevAccount {
                    address: k.address(),
                    private_key: format!("0x{}", alloy::hex::encode(k.to_bytes())),
                })
                .collect(),
        }
    }

    /// Lets `provider`'s TEE signer settle on `kind`'s contract, as 0G's onboarding does: the contract owner
    /// (account 0) acknowledges the provider's current signer (after checking its attestation, in real life),
    /// then each of `customers` acknowledges that signer for its own sub-account (which must exist: transfer
    /// funds first). TEE batches and fine-tuning `settleFees` refuse customers without both.
    pub async fn acknowledge_tee_signer(
        &self,
        kind: ServiceKind,
        provider: Address,
        customers: &[PrivateKeySigner],
    ) -> Result<()> {
        let owner = self
            .keys
            .first()
            .cloned()
            .ok_or_else(|| Error::Devnet("anvil reported no accounts".into()))?;
        let owner = self.client(Some(owner)).await?;
        match kind {
            ServiceKind::Inference => {
                owner
                    .inference()
                    .acknowledge_tee_signer_by_owner(provider)
                    .await?
            }
            ServiceKind::FineTuning => {
                owner
                    .fine_tuning()
                    .acknowledge_tee_signer_by_owner(provider)
                    .await?
            }
        };
        for customer in customers {
            let c = self.client(Some(customer.clone())).await?;
            match kind {
                ServiceKind::Inference => c.inference().acknowledge_tee_signer(provider, true).await?,
                ServiceKind::FineTuning => c.fine_tuning().acknowledge_tee_signer(provider, true).await?,
            };
        }
        Ok(())
    }

    /// Moves the chain's clock forward and mines a block (e.g. to pass a refund lock time).
    pub async fn advance_time(&self, seconds: u64) -> Result<()> {
        let provider = ProviderBuilder::new().connect_http(self.anvil.endpoint_url());
        let rpc = |call: &str, e: &dyn std::fmt::Display| Error::Rpc {
            call: call.to_owned(),
            reason: e.to_string(),
        };
        let _: serde_json::Value = provider
            .raw_request("evm_increaseTime".into(), (seconds,))
            .await
            .map_err(|e| rpc("evm_increaseTime", &e))?;
        let _: serde_json::Value = provider
            .raw_request("evm_mine".into(), ())
            .await
            .map_err(|e| rpc("evm_mine", &e))?;
        Ok(())
    }

    /// Sets an address's native balance.
    pub async fn set_balance(&self, who: Address, amount: Amount) -> Result<()> {
        let provider = ProviderBuilder::new().connect_http(self.anvil.endpoint_url());
        let _: serde_json::Value = provider
            .raw_request("anvil_setBalance".into(), (who, U256::from(amount.0)))
            .await
            .map_err(|e| Error::Rpc {
                call: "anvil_setBalance".into(),
                reason: e.to_string(),
            })?;
        Ok(())
    }
}
