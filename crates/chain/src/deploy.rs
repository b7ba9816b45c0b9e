//! Deploying and wiring the three contracts on any chain.

use crate::{
    Amount, ContractAddresses, Error, Result,
    bindings::{FineTuningServing, InferenceServing, LedgerManager},
};
use alloy::{
    network::TransactionBuilder,
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
};
use serde::Serialize;

/// Deployment parameters: the minimums and limits the contracts take in their constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployConfig {
    /// Smallest ledger a customer can open (the official 0G client assumes 3 0G).
    pub min_account_balance: Amount,
    /// Smallest `transferFund`.
    pub min_transfer_amount: Amount,
    /// Most providers one customer may fund per service.
    pub max_providers_per_user_per_service: u64,
    /// Seconds a refund stays locked (60 s .. 30 days).
    pub lock_time: u64,
    /// Stake a provider must put up to register a service.
    pub min_provider_stake: Amount,
    /// Fine-tuning: percentage of the fee charged for an unacknowledged deliverable.
    pub penalty_percentage: u64,
    /// Fine-tuning: unsettled deliverables one account may hold with one provider.
    pub max_deliverables_per_account: u64,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            min_account_balance: Amount::from_zg(3),
            min_transfer_amount: Amount(U256::from(1_000_000_000_000u64)), // 0.000001 0G
            max_providers_per_user_per_service: 64,
            lock_time: 120,
            min_provider_stake: Amount::from_zg(1),
            penalty_percentage: 30,
            max_deliverables_per_account: 8,
        }
    }
}

/// The CREATE nonces at which the official 0G deployment (and so its CLI's chain-31337 defaults) puts
/// LedgerManager, InferenceServing and FineTuningServing.
const CANONICAL_NONCES: [u64; 3] = [2, 6, 12];

/// Deploys LedgerManager, InferenceServing and FineTuningServing from the provider's wallet (`deployer`) and
/// registers both serving contracts with the ledger.
///
/// When the deployer's nonce is still 0, filler transactions put the contracts at nonces 2, 6 and 12, so on
/// anvil (account 0) they land at [`ContractAddresses::DEVNET`].
pub async fn deploy_all(
    provider: &DynProvider,
    deployer: Address,
    cfg: &DeployConfig,
) -> Result<ContractAddresses> {
    let rpc = |call: &str, e: &dyn std::fmt::Display| Error::Rpc {
        call: call.to_owned(),
        reason: e.to_string(),
    };
    let start = provider
        .get_transaction_count(deployer)
        .await
        .map_err(|e| rpc("eth_getTransactionCount", &e))?;
    let canonical = start == 0;
    let burn_to = |target: u64| async move {
        if !canonical {
            return Ok(());
        }
        loop {
            let nonce = provider
                .get_transaction_count(deployer)
                .await
                .map_err(|e| rpc("eth_getTransactionCount", &e))?;
            if nonce >= target {
                return Ok::<(), Error>(());
            }
            let tx = TransactionRequest::default()
                .with_from(deployer)
                .with_to(deployer)
                .with_value(U256::ZERO);
            provider
                .send_transaction(tx)
                .await
                .map_err(|e| rpc("filler transaction", &e))?
                .get_receipt()
                .await
                .map_err(|e| rpc("filler transaction receipt", &e))?;
        }
    };

    burn_to(CANONICAL_NONCES[0]).await?;
    let ledger = LedgerManager::deploy(
        provider,
        deployer,
        cfg.min_account_balance.0,
        cfg.min_transfer_amount.0,
        U256::from(cfg.max_providers_per_user_per_service),
    )
    .await
    .map_err(|e| rpc("deploy LedgerManager", &e))?;
    let ledger_addr = *ledger.address();

    burn_to(CANONICAL_NONCES[1]).await?;
    let inference = InferenceServing::deploy(
        provider,
        U256::from(cfg.lock_time),
        ledger_addr,
        deployer,
        cfg.min_provider_stake.0,
    )
    .await
    .map_err(|e| rpc("deploy InferenceServing", &e))?;

    burn_to(CANONICAL_NONCES[2]).await?;
    let fine_tuning = FineTuningServing::deploy(
        provider,
        U256::from(cfg.lock_time),
        ledger_addr,
        deployer,
        U256::from(cfg.penalty_percentage),
        cfg.min_provider_stake.0,
        U256::from(cfg.max_deliverables_per_account),
    )
    .await
    .map_err(|e| rpc("deploy FineTuningServing", &e))?;

    for (kind, addr, desc) in [
        (
            "inference",
            *inference.address(),
            "zg-compute inference serving (0G compatible)",
        ),
        (
            "fine-tuning",
            *fine_tuning.address(),
            "zg-compute fine-tuning serving (0G compatible)",
        ),
    ] {
        ledger
            .registerService(kind.to_owned(), "v1.0".to_owned(), addr, desc.to_owned())
            .send()
            .await
            .map_err(|e| rpc("LedgerManager.registerService", &e))?
            .get_receipt()
            .await
            .map_err(|e| rpc("LedgerManager.registerService receipt", &e))?;
    }
    Ok(ContractAddresses {
        ledger: ledger_addr,
        inference: *inference.address(),
        fine_tuning: *fine_tuning.address(),
    })
}
