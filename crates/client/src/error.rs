//! The crate's one error type.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while verifying a provider, paying for a request or checking its answer.
///
/// Verification failures ([`Error::is_verification_failure`]) mean the provider's answer or evidence
/// cannot be trusted: the client never hands such a response to its caller (fail closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A chain call failed (RPC unreachable, revert, ...).
    #[error("chain call {op} failed: {source}")]
    Chain {
        /// The call.
        op: &'static str,
        /// The chain error (boxed: it is large and this enum is returned on hot paths).
        #[source]
        source: Box<zg_chain::Error>,
    },
    /// The provider has no inference service registered on chain.
    #[error(
        "{provider} has no inference service on chain (check the address, or list them with `zg inference list-providers`)"
    )]
    UnknownProvider {
        /// The address asked for.
        provider: Address,
    },
    /// The customer has no sub-account with this provider and automatic top-up is off.
    #[error(
        "no sub-account with provider {provider}: fund one with `zg transfer-fund --provider {provider} --amount 1`"
    )]
    NoSubAccount {
        /// The provider.
        provider: Address,
    },
    /// The customer's ledger cannot cover the top-up the next request needs.
    #[error(
        "the sub-account with {provider} needs {needed} neuron more but the ledger has only {available} available: \
         add funds with `zg deposit --amount <0G>`"
    )]
    InsufficientFunds {
        /// The provider.
        provider: Address,
        /// What the top-up needs, neuron.
        needed: U256,
        /// Available in the customer's ledger, neuron.
        available: U256,
    },
    /// The chain client signs as another account than the request-signing key.
    #[error(
        "the chain client signs as {chain:?} but the request key is {key}; connect zg-chain with the same key"
    )]
    SignerMismatch {
        /// The chain client's signer (None: it has none).
        chain: Option<Address>,
        /// The request-signing key's address.
        key: Address,
    },
    /// HTTP transport failure talking to the provider.
    #[error("HTTP {op} {url} failed: {reason}")]
    Http {
        /// What was attempted.
        op: &'static str,
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The provider refused the request (its status and error body).
    #[error("provider answered {status} ({kind}): {message}")]
    Provider {
        /// HTTP status.
        status: u16,
        /// The provider's error type (`insufficient_balance`, `nonce_replayed`, `unauthenticated`, ...).
        kind: String,
        /// The provider's message.
        message: String,
    },
    /// The provider's attestation did not pass the policy; the report says which check failed.
    #[error("attestation of {provider} failed: {check}")]
    AttestationFailed {
        /// The provider.
        provider: Address,
        /// The first failed check (`name: expected …, found …`).
        check: String,
        /// The whole report.
        report: Box<zg_attestation::VerificationReport>,
    },
    /// The evidence came from the simulated backend and simulated TEEs were not explicitly allowed.
    #[error(
        "provider {provider} runs a SIMULATED TEE (no hardware protection); refusing it. \
         Pass --allow-simulated (ZG_ALLOW_SIMULATED=1) only for local development"
    )]
    SimulatedRefused {
        /// The provider.
        provider: Address,
    },
    /// The evidence could not be parsed.
    #[error("attestation evidence of {provider} is malformed: {reason}")]
    Evidence {
        /// The provider.
        provider: Address,
        /// Why.
        reason: String,
    },
    /// The provider has not been verified in this data dir (or its keys changed since).
    #[error("provider {provider} is not verified: run `zg inference verify --provider {provider}` first")]
    NotVerified {
        /// The provider.
        provider: Address,
    },
    /// A successful response came without a receipt.
    #[error("the provider's response carries no receipt (fail closed: the response is discarded)")]
    MissingReceipt,
    /// A receipt is malformed, signed by the wrong key, or does not cover the bytes received.
    #[error("receipt verification failed: {0}")]
    ReceiptInvalid(String),
    /// The receipt's fee is not what the on-chain prices give for its usage, or exceeds the signed cap.
    #[error(
        "receipt charges {charged} neuron, but {usage_prompt}+{usage_completion} tokens at the on-chain prices cost {expected}"
    )]
    FeeMismatch {
        /// Fee in the receipt.
        charged: U256,
        /// What the prices give.
        expected: U256,
        /// Prompt tokens in the receipt.
        usage_prompt: u64,
        /// Completion tokens in the receipt.
        usage_completion: u64,
    },
    /// The stream ended or broke before its receipt arrived.
    #[error("the response stream ended without a receipt: {0}")]
    StreamIncomplete(String),
    /// Local state (the per-provider ledger of vouchers and nonces) could not be read or written.
    #[error("client state {op} {path}: {reason}")]
    Store {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Signing failed (request, voucher or session token).
    #[error("signing failed: {0}")]
    Signing(#[from] zg_billing::Error),
    /// Bad input from the caller (body not JSON, bad argument).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl Error {
    /// Whether the provider's evidence or answer failed verification (never retry blindly; report it).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::AttestationFailed { .. }
                | Error::SimulatedRefused { .. }
                | Error::Evidence { .. }
                | Error::MissingReceipt
                | Error::ReceiptInvalid(_)
                | Error::FeeMismatch { .. }
        )
    }

    /// Whether the provider said the account lacks funds (top up and retry).
    pub fn is_insufficient_balance(&self) -> bool {
        matches!(self, Error::InsufficientFunds { .. } | Error::NoSubAccount { .. })
            || matches!(self, Error::Provider { kind, .. } if kind == "insufficient_balance")
    }

    /// Whether retrying the same call later may succeed (transport errors, saturation).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Http { .. })
            || matches!(self, Error::Provider { status, .. } if *status == 429 || *status == 503)
    }

    pub(crate) fn chain(op: &'static str) -> impl FnOnce(zg_chain::Error) -> Error {
        move |source| Error::Chain {
            op,
            source: Box::new(source),
        }
    }

    pub(crate) fn store(op: &'static str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
        Error::Store {
            op,
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }
}
