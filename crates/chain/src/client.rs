//! The connection to one chain: an RPC provider with an optional signer, checked on connect.

use crate::{
    Amount, ContractAddresses, Error, FineTuning, Inference, Ledger, Result, TxOutcome, revert::Revert,
};
use alloy::{
    contract::{CallBuilder, CallDecoder},
    network::EthereumWallet,
    primitives::{Address, B256},
    providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder},
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
};
use std::time::Duration;

/// How long a transaction may take to be mined before [`Error::ReceiptTimeout`].
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// A checked connection to a chain holding zg-compute's contracts.
///
/// Cheap to clone; the typed clients ([`Client::ledger`], [`Client::inference`], [`Client::fine_tuning`])
/// borrow it.
#[derive(Debug, Clone)]
pub struct Client {
    provider: DynProvider,
    url: String,
    chain_id: u64,
    addresses: ContractAddresses,
    signer: Option<Address>,
}

impl Client {
    /// Connects to `url`, checks that it answers, and that every contract address holds code.
    ///
    /// With a signer, transactions are signed locally and sent from its address.
    pub async fn connect(
        url: &str,
        addresses: ContractAddresses,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self> {
        let parsed: url::Url = url.parse().map_err(|e| Error::Unreachable {
            url: url.to_owned(),
            reason: format!("bad URL: {e}"),
        })?;
        let signer_addr = signer.as_ref().map(|s| s.address());
        let provider = http_provider(parsed, signer);
        let chain_id = provider.get_chain_id().await.map_err(|e| Error::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let client = Self {
            provider,
            url: url.to_owned(),
            chain_id,
            addresses,
            signer: signer_addr,
        };
        for (contract, address, flag, env) in [
            ("LedgerManager", addresses.ledger, "--ledger-ca", "ZG_LEDGER_CA"),
            (
                "InferenceServing",
                addresses.inference,
                "--inference-ca",
                "ZG_INFERENCE_CA",
            ),
            (
                "FineTuningServing",
                addresses.fine_tuning,
                "--fine-tuning-ca",
                "ZG_FINE_TUNING_CA",
            ),
        ] {
            let code = client
                .provider
                .get_code_at(address)
                .await
                .map_err(|e| client.rpc("eth_getCode", e))?;
            if code.is_empty() {
                return Err(Error::NoCode {
                    contract,
                    address,
                    flag,
                    env,
                });
            }
        }
        Ok(client)
    }

    /// Like [`Client::connect`], and also checks the chain id.
    pub async fn connect_checked(
        url: &str,
        expected_chain_id: u64,
        addresses: ContractAddresses,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self> {
        let client = Self::connect(url, addresses, signer).await?;
        if client.chain_id != expected_chain_id {
            return Err(Error::WrongChain {
                url: url.to_owned(),
                expected: expected_chain_id,
                found: client.chain_id,
            });
        }
        Ok(client)
    }

    /// The RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The chain id the endpoint reported.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The contract addresses in use.
    pub fn addresses(&self) -> &ContractAddresses {
        &self.addresses
    }

    /// The exact `zg` command the contract owner runs to acknowledge `provider`'s current TEE signer on the
    /// `kind` serving contract of this chain (after checking the provider's attestation), for logs and hints.
    pub fn owner_acknowledge_command(&self, kind: crate::ServiceKind, provider: Address) -> String {
        format!(
            "zg owner acknowledge-tee-signer --provider {provider} --service {} --rpc {} {} {} --keystore <owner keystore>",
            kind.cli_name(),
            self.url,
            kind.contract_flag(),
            kind.address(&self.addresses),
        )
    }

    /// The address transactions are sent from, or [`Error::NoSigner`].
    pub fn signer_address(&self) -> Result<Address> {
        self.signer.ok_or(Error::NoSigner)
    }

    /// The underlying alloy provider, for calls this crate does not wrap.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// LedgerManager.
    pub fn ledger(&self) -> Ledger<'_> {
        Ledger::new(self)
    }

    /// InferenceServing.
    pub fn inference(&self) -> Inference<'_> {
        Inference::new(self)
    }

    /// FineTuningServing.
    pub fn fine_tuning(&self) -> FineTuning<'_> {
        FineTuning::new(self)
    }

    /// Native balance of an address.
    pub async fn balance(&self, who: Address) -> Result<Amount> {
        self.provider
            .get_balance(who)
            .await
            .map(Amount)
            .map_err(|e| self.rpc("eth_getBalance", e))
    }

    /// Waits for a transaction sent earlier (e.g. before a crash) and returns its outcome.
    pub async fn wait_for(&self, tx: B256, call: &str) -> Result<TransactionReceipt> {
        let pending = PendingTransactionBuilder::new(self.provider.root().clone(), tx);
        self.finish(pending, call).await
    }

    /// Looks up a transaction's receipt without waiting: `None` while it is not mined (or unknown).
    pub async fn receipt(&self, tx: B256) -> Result<Option<TransactionReceipt>> {
        self.provider
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| self.rpc("eth_getTransactionReceipt", e))
    }

    pub(crate) fn rpc(&self, call: &str, e: impl std::fmt::Display) -> Error {
        Error::Rpc {
            call: format!("{call} at {}", self.url),
            reason: e.to_string(),
        }
    }

    /// Maps an alloy contract error: a revert becomes [`Error::Reverted`] with the decoded reason.
    pub(crate) fn contract_error(&self, call: &str, e: alloy::contract::Error) -> Error {
        if let Some(data) = e.as_revert_data() {
            return Error::Reverted {
                call: call.to_owned(),
                revert: Box::new(Revert::decode(&data)),
            };
        }
        if let alloy::contract::Error::TransportError(t) = &e
            && t.is_transport_error()
        {
            return Error::Unreachable {
                url: self.url.clone(),
                reason: t.to_string(),
            };
        }
        Error::Rpc {
            call: call.to_owned(),
            reason: e.to_string(),
        }
    }

    /// Maps a view call's result, turning the revert that means "there is none" (`is_absent(error name)`) into
    /// `Ok(None)` and any other failure into an [`Error`].
    pub(crate) fn none_if_absent<T>(
        &self,
        call: &str,
        result: std::result::Result<T, alloy::contract::Error>,
        is_absent: impl Fn(&str) -> bool,
    ) -> Result<Option<T>> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let err = self.contract_error(call, e);
                match err.revert() {
                    Some(r) if is_absent(&r.name) => Ok(None),
                    _ => Err(err),
                }
            }
        }
    }

    /// Sends a transaction without waiting for it to be mined; returns its hash.
    pub(crate) async fn submit<D: CallDecoder>(
        &self,
        call: CallBuilder<&DynProvider, D>,
        what: &str,
    ) -> Result<B256> {
        let call = self.with_gas_headroom(call, what).await?;
        let pending = call.send().await.map_err(|e| self.contract_error(what, e))?;
        Ok(*pending.tx_hash())
    }

    /// Sets the gas limit to the estimate plus headroom ([`GAS_HEADROOM_DIVISOR`]). An estimate is exact only
    /// for the block it ran against: a write whose cost depends on the block that mines it (a no-op SSTORE of
    /// `updatedAt = block.timestamp` in the estimate's second, a real one in the next) or on a transaction mined
    /// in between would run out of gas and revert with the exact estimate. Unused gas is not charged.
    async fn with_gas_headroom<'a, D: CallDecoder>(
        &self,
        call: CallBuilder<&'a DynProvider, D>,
        what: &str,
    ) -> Result<CallBuilder<&'a DynProvider, D>> {
        let from = self.signer_address()?;
        // Against the pending block (the next one, with its timestamp), as alloy's gas filler does.
        let call = call.from(from).block(alloy::eips::BlockId::pending());
        let estimate = call
            .estimate_gas()
            .await
            .map_err(|e| self.contract_error(what, e))?;
        let headroom = (estimate / GAS_HEADROOM_DIVISOR).max(MIN_GAS_HEADROOM);
        Ok(call.gas(estimate.saturating_add(headroom)))
    }

    /// Sends a transaction and waits for a successful receipt.
    pub(crate) async fn send<D: CallDecoder>(
        &self,
        call: CallBuilder<&DynProvider, D>,
        what: &str,
    ) -> Result<TransactionReceipt> {
        let call = self.with_gas_headroom(call, what).await?;
        let pending = call.send().await.map_err(|e| self.contract_error(what, e))?;
        self.finish(pending, what).await
    }

    /// [`Client::send`], summarised as a [`TxOutcome`] (hash, block, gas used).
    pub(crate) async fn send_outcome<D: CallDecoder>(
        &self,
        call: CallBuilder<&DynProvider, D>,
        what: &str,
    ) -> Result<TxOutcome> {
        self.send(call, what).await.map(|r| outcome(&r))
    }

    async fn finish(
        &self,
        pending: PendingTransactionBuilder<alloy::network::Ethereum>,
        what: &str,
    ) -> Result<TransactionReceipt> {
        let tx = *pending.tx_hash();
        tracing::debug!(%tx, call = what, "waiting for receipt");
        let receipt = pending
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await
            .map_err(|e| match e {
                alloy::providers::PendingTransactionError::TxWatcher(_) => Error::ReceiptTimeout {
                    tx,
                    seconds: RECEIPT_TIMEOUT.as_secs(),
                },
                other => self.rpc(what, other),
            })?;
        if !receipt.status() {
            return Err(Error::TransactionFailed {
                tx,
                call: what.to_owned(),
            });
        }
        Ok(receipt)
    }
}

/// Gas limits are the estimate plus a quarter of it ...
const GAS_HEADROOM_DIVISOR: u64 = 4;
/// ... and at least this much more (a cold storage write).
const MIN_GAS_HEADROOM: u64 = 25_000;

/// An HTTP provider that signs with `signer` (if any).
///
/// The nonce is read from the node's pending count for every transaction (alloy's simple nonce manager):
/// alloy's default cached manager hands out a nonce even when gas estimation then fails on a revert, which
/// leaves a gap that stalls every later transaction of that account.
pub(crate) fn http_provider(url: url::Url, signer: Option<PrivateKeySigner>) -> DynProvider {
    let base = ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id();
    match signer {
        Some(s) => base.wallet(EthereumWallet::from(s)).connect_http(url).erased(),
        None => base.connect_http(url).erased(),
    }
}

/// Summary of a mined receipt.
pub(crate) fn outcome(r: &TransactionReceipt) -> TxOutcome {
    TxOutcome {
        tx: r.transaction_hash,
        block: r.block_number.unwrap_or_default(),
        gas_used: r.gas_used,
    }
}
