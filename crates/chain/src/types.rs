//! Domain types returned by the typed clients: plain data, serialisable, independent of alloy's generated structs.

use crate::Amount;
use alloy::primitives::{Address, B256, Bytes, U256};
use serde::Serialize;
use std::fmt;

/// Where the three contracts live on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContractAddresses {
    /// LedgerManager.
    pub ledger: Address,
    /// InferenceServing.
    pub inference: Address,
    /// FineTuningServing.
    pub fine_tuning: Address,
}

impl ContractAddresses {
    /// The addresses the official 0G CLI assumes on chain 31337: anvil account 0's CREATE addresses at nonces
    /// 2, 6 and 12, where the devnet deploys them.
    pub const DEVNET: Self = Self {
        ledger: alloy::primitives::address!("0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"),
        inference: alloy::primitives::address!("0x0165878A594ca255338adfa4d48449f69242Eb8F"),
        fine_tuning: alloy::primitives::address!("0xA51c1fc2f0D1a1b8494Ed1FE312d7C3a78Ed91C0"),
    };
}

/// The two serving contracts a ledger can fund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// InferenceServing, registered as `inference-v1.0`.
    Inference,
    /// FineTuningServing, registered as `fine-tuning-v1.0`.
    FineTuning,
}

impl ServiceKind {
    /// The name the ledger knows the service by (`getServiceInfo(addr).fullName`).
    pub const fn full_name(self) -> &'static str {
        match self {
            Self::Inference => "inference-v1.0",
            Self::FineTuning => "fine-tuning-v1.0",
        }
    }

    /// The contract address for this kind.
    pub const fn address(self, addrs: &ContractAddresses) -> Address {
        match self {
            Self::Inference => addrs.inference,
            Self::FineTuning => addrs.fine_tuning,
        }
    }

    /// The `--service` value the `zg` CLI takes for this kind (`inference` / `fine-tuning`).
    pub const fn cli_name(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::FineTuning => "fine-tuning",
        }
    }

    /// The `zg` flag that sets this kind's contract address (`--inference-ca` / `--fine-tuning-ca`).
    pub const fn contract_flag(self) -> &'static str {
        match self {
            Self::Inference => "--inference-ca",
            Self::FineTuning => "--fine-tuning-ca",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full_name())
    }
}

/// A customer's ledger on LedgerManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerInfo {
    /// The customer.
    pub user: Address,
    /// Not yet transferred to any provider.
    pub available: Amount,
    /// Available plus what sits in sub-accounts.
    pub total: Amount,
    /// Free-form text the customer attached.
    pub additional_info: String,
}

/// A serving contract registered with the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    /// The serving contract.
    pub address: Address,
    /// `inference` or `fine-tuning`.
    pub service_type: String,
    /// e.g. `v1.0`.
    pub version: String,
    /// `<type>-<version>`, the name `transferFund` takes.
    pub full_name: String,
    /// Human description.
    pub description: String,
    /// Whether this is the recommended version of its type.
    pub recommended: bool,
}

/// A provider's inference service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InferenceService {
    /// Provider address.
    pub provider: Address,
    /// e.g. `chatbot`.
    pub service_type: String,
    /// Base URL of the provider's API.
    pub url: String,
    /// Neuron per prompt token.
    pub input_price: U256,
    /// Neuron per completion token.
    pub output_price: U256,
    /// Unix seconds.
    pub updated_at: u64,
    /// Model id.
    pub model: String,
    /// `TeeML` for TEE-verified services.
    pub verifiability: String,
    /// Provider-published JSON.
    pub additional_info: String,
    /// The TEE's settlement signer.
    pub tee_signer: Address,
    /// Whether the contract owner acknowledged that signer.
    pub tee_signer_acknowledged: bool,
}

impl InferenceService {
    /// The `grpc` URL the service advertises in its `additionalInfo` JSON: `http://` or `https://`, at most 2 KiB,
    /// from a document of at most 64 KiB; `None` otherwise. A provider writes what it likes there: it is only a
    /// hint where to connect, as the registered URL is; trust comes from the attestation.
    pub fn advertised_grpc_url(&self) -> Option<String> {
        if self.additional_info.len() > 64 * 1024 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&self.additional_info).ok()?;
        let url = v.get("grpc")?.as_str()?;
        (url.len() <= 2048 && (url.starts_with("http://") || url.starts_with("https://")))
            .then(|| url.to_owned())
    }
}

/// What a provider registers with `addOrUpdateService`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceParams {
    /// e.g. `chatbot`.
    pub service_type: String,
    /// Base URL of the provider's API.
    pub url: String,
    /// Model id.
    pub model: String,
    /// `TeeML` for TEE-verified services.
    pub verifiability: String,
    /// Neuron per prompt token.
    pub input_price: U256,
    /// Neuron per completion token.
    pub output_price: U256,
    /// Provider-published JSON (must be non-empty JSON for the official SDK).
    pub additional_info: String,
    /// The TEE's settlement signer.
    pub tee_signer: Address,
}

/// A refund request on a sub-account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    /// Index in the account's refund list.
    pub index: U256,
    /// Amount requested.
    pub amount: Amount,
    /// Unix seconds when requested; it unlocks at `created_at + lockTime`.
    pub created_at: u64,
    /// Whether it was paid out.
    pub processed: bool,
}

/// A customer's sub-account with one inference provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InferenceAccount {
    /// Customer.
    pub user: Address,
    /// Provider.
    pub provider: Address,
    /// Last settlement nonce accepted on chain.
    pub nonce: U256,
    /// Balance.
    pub balance: Amount,
    /// Sum of unprocessed refunds.
    pub pending_refund: Amount,
    /// Refund requests.
    pub refunds: Vec<Refund>,
    /// Free-form text.
    pub additional_info: String,
    /// Whether the customer acknowledged the provider's current TEE signer (false again after the provider
    /// registers another signer; [`crate::Inference::tee_signer_acknowledgements`] has the recorded address).
    pub acknowledged: bool,
    /// Session-token generation (bumped by `revokeAllTokens`).
    pub generation: U256,
    /// Revoked token ids (bit i = token id i).
    pub revoked_bitmap: U256,
}

/// One item of a `settleFeesWithTEE` batch, signed by the TEE (EIP-712 `TEESettlement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeeSettlement {
    /// Customer.
    pub user: Address,
    /// Provider (must be the sender).
    pub provider: Address,
    /// Fee to collect, neuron.
    pub total_fee: U256,
    /// Commitment to the settled requests.
    pub requests_hash: B256,
    /// Must exceed the account's on-chain nonce.
    pub nonce: U256,
    /// 65-byte TEE signature.
    pub signature: Bytes,
}

/// One item of a `settleVouchers` batch, signed by the customer (EIP-712 `Voucher`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedVoucher {
    /// Customer (the signer).
    pub user: Address,
    /// Provider (must be the sender).
    pub provider: Address,
    /// Everything the customer owes this provider so far, neuron.
    pub cumulative_amount: U256,
    /// Strictly increasing per (user, provider).
    pub nonce: U256,
    /// 65-byte customer signature.
    pub signature: Bytes,
}

/// Per-item result of a settlement, as the contracts report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    /// Paid in full.
    Success,
    /// Paid what the balance allowed; the rest stays owed.
    Partial,
    /// The item names another provider than the sender.
    ProviderMismatch,
    /// The provider has no TEE signer registered.
    NoTeeSigner,
    /// Nonce not above the last accepted one (replay).
    InvalidNonce,
    /// Signature does not recover to the expected signer.
    InvalidSignature,
    /// Vouchers: the cumulative amount is below what was already paid.
    AmountBelowPaid,
    /// TEE batches: the contract owner does not acknowledge the provider's current TEE signer (never did,
    /// revoked it, or the provider registered another signer since).
    SignerNotAcknowledgedByOwner,
    /// TEE batches: the customer did not acknowledge the provider's current TEE signer (never did, withdrew
    /// it, or acknowledged the signer the provider had before).
    SignerNotAcknowledgedByUser,
    /// A status code this client does not know.
    Unknown(u8),
}

impl SettlementStatus {
    /// From the contracts' `uint8` code.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Success,
            1 => Self::Partial,
            2 => Self::ProviderMismatch,
            3 => Self::NoTeeSigner,
            4 => Self::InvalidNonce,
            5 => Self::InvalidSignature,
            6 => Self::AmountBelowPaid,
            7 => Self::SignerNotAcknowledgedByOwner,
            8 => Self::SignerNotAcknowledgedByUser,
            other => Self::Unknown(other),
        }
    }

    /// The contracts' `uint8` code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Partial => 1,
            Self::ProviderMismatch => 2,
            Self::NoTeeSigner => 3,
            Self::InvalidNonce => 4,
            Self::InvalidSignature => 5,
            Self::AmountBelowPaid => 6,
            Self::SignerNotAcknowledgedByOwner => 7,
            Self::SignerNotAcknowledgedByUser => 8,
            Self::Unknown(c) => c,
        }
    }

    /// Why an item was (or was not) paid, in a few words, for logs and reports.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Success => "paid in full",
            Self::Partial => "partly paid: the sub-account could not cover the rest",
            Self::ProviderMismatch => "the item names another provider than the sender",
            Self::NoTeeSigner => "the provider has no service or no TEE signer",
            Self::InvalidNonce => "nonce not above the last accepted one",
            Self::InvalidSignature => "the signature is not the expected signer's",
            Self::AmountBelowPaid => "the voucher's cumulative amount is below what was already paid",
            Self::SignerNotAcknowledgedByOwner => {
                "the contract owner has not acknowledged the provider's current TEE signer"
            }
            Self::SignerNotAcknowledgedByUser => {
                "the customer has not acknowledged the provider's current TEE signer"
            }
            Self::Unknown(_) => "unknown status code",
        }
    }

    /// Whether something was paid.
    pub const fn paid(self) -> bool {
        matches!(self, Self::Success | Self::Partial)
    }
}

/// Who vouches for a provider's TEE signer, as one serving contract sees it for one customer
/// (`getTEESignerAcknowledgements`). TEE-signed settlements of the customer's sub-account pay only when
/// [`TeeSignerAcknowledgements::settleable`] is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TeeSignerAcknowledgements {
    /// The provider's current TEE signer (zero if it has no service or no signer).
    pub signer: Address,
    /// Whether the contract owner acknowledges that signer.
    pub owner_acknowledged: bool,
    /// The signer the customer acknowledged (zero if none); it may be an older signer of the provider.
    pub user_acknowledged_signer: Address,
    /// `signer` is set, the owner acknowledges it, and the customer acknowledged that same address.
    pub settleable: bool,
}

impl TeeSignerAcknowledgements {
    /// Whether the customer acknowledged the provider's current signer (what 0G's `Account.acknowledged`
    /// reports).
    pub fn user_acknowledged(&self) -> bool {
        !self.signer.is_zero() && self.user_acknowledged_signer == self.signer
    }
}

/// The preview of a settlement batch (`previewSettlementResults`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettlementPreview {
    /// Users whose item would fail, with the reason.
    pub failed: Vec<(Address, SettlementStatus)>,
    /// Users that could pay only part, with the amount that would stay unsettled.
    pub partial: Vec<(Address, U256)>,
}

/// A mined settlement transaction and what each item did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettlementOutcome {
    /// Transaction hash.
    pub tx: B256,
    /// Block it was mined in.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Per item, from the contract's events, in log order.
    pub results: Vec<SettledItem>,
}

/// What one item of a settlement batch did, from the contract's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SettledItem {
    /// The customer.
    pub user: Address,
    /// The contract's status for this item.
    pub status: SettlementStatus,
    /// TEE batches: the part of the fee that could not be collected (`TEESettlementResult.unsettledAmount`).
    pub unsettled: Option<U256>,
    /// Vouchers: what this voucher paid now (`VoucherSettled.paid`).
    pub paid: Option<U256>,
}

/// A fine-tuning deliverable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deliverable {
    /// Task id.
    pub id: String,
    /// Storage root of the sealed model.
    pub model_root_hash: Bytes,
    /// ECIES-wrapped key; empty until settlement revealed it.
    pub encrypted_secret: Bytes,
    /// Whether the customer acknowledged it.
    pub acknowledged: bool,
    /// Unix seconds when added.
    pub timestamp: u64,
    /// Whether it was settled.
    pub settled: bool,
}

/// A mined transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TxOutcome {
    /// Transaction hash.
    pub tx: B256,
    /// Block number.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
}

#[cfg(test)]
mod advertised_grpc_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_info(additional_info: &str) -> InferenceService {
        InferenceService {
            provider: Address::ZERO,
            service_type: "chatbot".into(),
            url: "http://127.0.0.1:1".into(),
            input_price: U256::ZERO,
            output_price: U256::ZERO,
            updated_at: 0,
            model: "m".into(),
            verifiability: "TeeML".into(),
            additional_info: additional_info.into(),
            tee_signer: Address::ZERO,
            tee_signer_acknowledged: false,
        }
    }

    #[test]
    fn the_advertised_grpc_url_is_bounded_and_http() {
        let url = |info: &str| with_info(info).advertised_grpc_url();
        assert_eq!(
            url(r#"{"grpc":"http://127.0.0.1:50051"}"#).as_deref(),
            Some("http://127.0.0.1:50051")
        );
        assert_eq!(url(r#"{"grpc":"file:///etc/passwd"}"#), None);
        assert_eq!(url("not json"), None);
        assert_eq!(
            url(&format!(r#"{{"grpc":"http://{}"}}"#, "a".repeat(70_000))),
            None
        );
    }
}
