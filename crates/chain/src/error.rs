//! The crate's error type, and the decoding of contract reverts into something a person can act on.

use crate::{Amount, revert::Revert};
use alloy::primitives::{Address, B256};
use std::path::PathBuf;

/// Everything that can go wrong talking to the chain or the contracts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The RPC endpoint did not answer.
    #[error("cannot reach the RPC endpoint {url}: {reason} (is the node running? set --rpc or ZG_RPC_URL)")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The endpoint serves another chain than the one asked for.
    #[error("{url} is chain {found}, but chain {expected} was expected (check --rpc / ZG_RPC_URL)")]
    WrongChain {
        /// The endpoint.
        url: String,
        /// Chain id asked for.
        expected: u64,
        /// Chain id the endpoint reported.
        found: u64,
    },
    /// A configured contract address holds no code on this chain.
    #[error(
        "no contract code at {address}, the configured {contract} address (check {flag} / {env}, or the --rpc chain)"
    )]
    NoCode {
        /// Which contract.
        contract: &'static str,
        /// The configured address.
        address: Address,
        /// CLI flag that sets it.
        flag: &'static str,
        /// Environment variable that sets it.
        env: &'static str,
    },
    /// A call or transaction reverted with a decoded reason.
    #[error("{call} reverted: {revert}")]
    Reverted {
        /// `Contract.function`.
        call: String,
        /// The decoded revert (boxed to keep `Result<_, Error>` small on the happy path).
        revert: Box<Revert>,
    },
    /// A mined transaction has status 0 and no decodable reason.
    #[error("transaction {tx} reverted on chain ({call})")]
    TransactionFailed {
        /// The transaction hash.
        tx: B256,
        /// `Contract.function`.
        call: String,
    },
    /// The transaction's receipt did not arrive in time.
    #[error(
        "no receipt for transaction {tx} after {seconds} s (it may still be mined; check it before retrying)"
    )]
    ReceiptTimeout {
        /// The transaction hash.
        tx: B256,
        /// How long we waited.
        seconds: u64,
    },
    /// Any other RPC or transport failure.
    #[error("{call}: {reason}")]
    Rpc {
        /// What we were doing.
        call: String,
        /// What the node or transport said.
        reason: String,
    },
    /// A command needs a signing key and none was given.
    #[error(
        "this sends a transaction, so it needs a key: pass --keystore FILE (or ZG_KEYSTORE) or set ZG_PRIVATE_KEY"
    )]
    NoSigner,
    /// A private key string is malformed (the key itself is never echoed).
    #[error("invalid private key: expected 32 bytes of hex (64 hex digits, optional 0x)")]
    InvalidPrivateKey,
    /// A keystore file could not be opened with the given password.
    #[error("keystore {}: wrong password (try again, or set ZG_KEYSTORE_PASSWORD)", path.display())]
    WrongPassword {
        /// The keystore file.
        path: PathBuf,
    },
    /// A keystore file could not be read or written.
    #[error("keystore {}: {reason}", path.display())]
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A user-typed amount could not be parsed.
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount {
        /// What was typed.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The ledger balance is too low for what was asked.
    #[error("ledger balance {available} is below the {needed} needed: deposit at least {} more (zg deposit --amount ...)", shortfall(*.needed, *.available))]
    InsufficientLedgerBalance {
        /// Available in the ledger.
        available: Amount,
        /// Needed.
        needed: Amount,
    },
    /// `settle_fees` refused to broadcast a key reveal: the refund freeze that the customer's acknowledgement
    /// started ends too soon. Once broadcast, the key is public even if the transaction reverts, and after the
    /// freeze a matured refund processed first would make it revert (`InsufficientBalance`): the customer would
    /// have the model without paying.
    #[error(
        "not revealing {user}'s key: the refund freeze from its acknowledgement ends at {until} (chain time {now},          margin {margin} s), so a refund processed first could leave the reveal unpaid; ask the customer to          acknowledge the deliverable again (that restarts the freeze), or settle it at the penalty without the key"
    )]
    RevealWindowClosed {
        /// The customer.
        user: Address,
        /// The provider (the sender).
        provider: Address,
        /// End of the freeze, Unix seconds (0: no acknowledged deliverable is pending).
        until: u64,
        /// Latest block's timestamp.
        now: u64,
        /// Seconds kept in hand for the transaction to be included.
        margin: u64,
    },
    /// The local devnet could not be started or set up.
    #[error("devnet: {0}")]
    Devnet(String),
}

fn shortfall(needed: Amount, available: Amount) -> Amount {
    Amount(needed.0.saturating_sub(available.0))
}

impl Error {
    /// Whether retrying the same call later may succeed (transport trouble, not a revert or bad input).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::ReceiptTimeout { .. } | Self::Rpc { .. }
        )
    }

    /// The decoded revert, if the failure was one.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Reverted { revert, .. } => Some(revert.as_ref()),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
