//! The crate's one error type.

use std::path::PathBuf;

use alloy_primitives::{Address, B256, U256};

/// A boxed error from a lower layer (SQLite, a chain adapter), kept as the `source` of an [`Error`]
/// so that foreign error types never appear in this crate's public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while authenticating, metering, recording or settling a request.
///
/// Variants a client caused answer `true` to [`Error::is_client_fault`]; the provider maps them to
/// `Unauthenticated` / `InvalidArgument` / `FailedPrecondition`. Every rejection of a token, request or
/// voucher is decided before the ledger is touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- 0G session tokens ----
    /// The `Authorization` header is not `Bearer app-sk-<base64>`.
    #[error("authorization header is not `Bearer app-sk-<base64>`")]
    TokenPrefix,
    /// The token's base64 body does not decode.
    #[error("session token is not valid base64: {0}")]
    TokenBase64(String),
    /// The decoded token has no `|` between the JSON and the signature.
    #[error("session token has no `|` separator between its JSON and its signature")]
    TokenNoSeparator,
    /// The token JSON does not parse into the 0G claim set.
    #[error("session token JSON is malformed: {0}")]
    TokenJson(String),
    /// The token was issued for a different provider.
    #[error("session token is for provider {token_provider:?}, this provider is {expected}")]
    TokenWrongProvider {
        /// The `provider` string inside the token.
        token_provider: String,
        /// This provider's address.
        expected: Address,
    },
    /// The token's `expiresAt` has passed.
    #[error("session token expired at {expires_at_ms} ms (now {now_ms} ms)")]
    TokenExpired {
        /// `expiresAt` from the token.
        expires_at_ms: u64,
        /// The time the check used.
        now_ms: u64,
    },
    /// The token's `timestamp` lies further in the future than the allowed clock skew.
    #[error(
        "session token is dated {timestamp_ms} ms, ahead of now ({now_ms} ms) by more than the allowed skew"
    )]
    TokenFutureDated {
        /// `timestamp` from the token.
        timestamp_ms: u64,
        /// The time the check used.
        now_ms: u64,
    },
    /// An ephemeral token (id 255) without an expiry or living longer than 24 h.
    #[error(
        "ephemeral session token (id 255) must expire within 24 h of issue; lifetime is {lifetime_ms:?} ms"
    )]
    TokenLifetime {
        /// `expiresAt - timestamp`, `None` when the token never expires.
        lifetime_ms: Option<u64>,
    },
    /// A never-expiring token (`expiresAt = 0`, an API key) issued longer ago than the provider's policy allows.
    /// 0G tokens carry no chain id, so an old unexpiring token is the one most likely replayed from another
    /// deployment of the same provider address: issue a fresh one (or one with an expiry).
    #[error(
        "never-expiring session token issued at {timestamp_ms} ms is older than the {max_age_ms} ms this provider \
         accepts (now {now_ms} ms); issue a new token"
    )]
    TokenTooOld {
        /// `timestamp` from the token.
        timestamp_ms: u64,
        /// The policy.
        max_age_ms: u64,
        /// The time the check used.
        now_ms: u64,
    },
    /// The token's generation differs from the account's on-chain generation (`revokeAllTokens`).
    #[error("session token generation {token} does not match the on-chain generation {chain}")]
    TokenWrongGeneration {
        /// `generation` from the token.
        token: u64,
        /// The account's generation on chain.
        chain: U256,
    },
    /// The token id is set in the account's on-chain revocation bitmap.
    #[error("session token id {token_id} is revoked on chain")]
    TokenRevoked {
        /// The revoked token id.
        token_id: u8,
    },

    // ---- signatures (tokens, native requests, vouchers, receipts) ----
    /// Signature bytes are not a 65-byte `0x`-hex secp256k1 signature (or 64-byte ed25519).
    #[error("malformed signature: {0}")]
    SignatureFormat(String),
    /// A signature does not verify for the claimed signer.
    #[error("bad signature: claimed signer {claimed}, recovered {recovered:?}")]
    BadSignature {
        /// The address the message says signed it.
        claimed: Address,
        /// The address the signature recovers to, when recovery succeeded.
        recovered: Option<Address>,
    },
    /// Signing failed inside the key backend.
    #[error("signing failed: {0}")]
    Signing(String),

    // ---- native requests and vouchers ----
    /// The native request envelope does not parse.
    #[error("malformed request envelope: {0}")]
    Envelope(String),
    /// A signed request or voucher names a different provider.
    #[error("signed for provider {got}, this provider is {expected}")]
    WrongProvider {
        /// This provider.
        expected: Address,
        /// The provider in the message.
        got: Address,
    },
    /// The body does not hash to the signed `bodyHash`.
    #[error("request body hashes to {actual}, the signature covers {signed}")]
    BodyMismatch {
        /// `bodyHash` in the signed request.
        signed: B256,
        /// sha256 of the body received.
        actual: B256,
    },
    /// The nonce was already used by this account.
    #[error("nonce {nonce} of {user} was already used")]
    NonceReplayed {
        /// The account.
        user: Address,
        /// The replayed nonce.
        nonce: U256,
    },
    /// The nonce is below the reordering window; it may have been used, so it is rejected forever.
    #[error("nonce {nonce} of {user} is below the replay window (lowest acceptable {lowest})")]
    NonceTooOld {
        /// The account.
        user: Address,
        /// The offered nonce.
        nonce: U256,
        /// The smallest nonce still accepted.
        lowest: U256,
    },
    /// A newer voucher owes less than an older one.
    #[error("voucher of {user} regresses from {previous} to {offered} neuron")]
    VoucherRegressed {
        /// The account.
        user: Address,
        /// Cumulative amount of the latest accepted voucher.
        previous: U256,
        /// Cumulative amount of the offered voucher.
        offered: U256,
    },
    /// The account owes more unvouchered fees than the provider extends as credit.
    #[error("{user} owes {owed} neuron but vouched only {vouched}; send a voucher covering earlier receipts")]
    VoucherBehind {
        /// The account.
        user: Address,
        /// Metered fees so far.
        owed: U256,
        /// The latest voucher's cumulative amount.
        vouched: U256,
    },
    /// A voucher nonce above `2^128 - 1`: the contract's `settleVouchers` refuses it, so it could never be paid
    /// (and, as the newest voucher, it would shadow every later one).
    #[error(
        "voucher nonce {nonce} of {user} is not below 2^128, which the contract refuses; use a smaller nonce"
    )]
    VoucherNonceTooLarge {
        /// The account.
        user: Address,
        /// The offered nonce.
        nonce: U256,
    },
    /// The native request's signed fee cap is below the provider's worst-case fee for its body: nothing above the
    /// cap can be billed, so serving it could be free.
    #[error(
        "fee cap {fee_cap} neuron of {user} is below this request's worst-case fee {bound} neuron \
         (prompt bytes × inputPrice + max_tokens × choices × outputPrice); sign a fee cap of at least {bound}"
    )]
    FeeCapBelowBound {
        /// The account.
        user: Address,
        /// The signed fee cap.
        fee_cap: U256,
        /// The worst-case fee ([`crate::worst_case_fee`]).
        bound: U256,
    },
    /// The native request was signed for another service (route) than the one it was sent to.
    #[error("request is signed for service {signed:?} but was sent to {route:?}")]
    WrongService {
        /// `service` in the signed request.
        signed: String,
        /// The route's service name.
        route: &'static str,
    },
    /// The voucher's user differs from the request's user.
    #[error("voucher is signed for {voucher_user}, the request for {request_user}")]
    VoucherUserMismatch {
        /// User in the request.
        request_user: Address,
        /// User in the voucher.
        voucher_user: Address,
    },

    // ---- metering and admission ----
    /// The provider knows nothing of this account's on-chain state (no sub-account, or not synced yet).
    #[error("no on-chain account known for {user}; the customer must fund a sub-account for this provider")]
    UnknownAccount {
        /// The account.
        user: Address,
    },
    /// A 0G session-token request from a customer who has not acknowledged the provider's current TEE signer:
    /// the contract would refuse to settle it (`settleFeesWithTEE` status 8), so serving it would be free.
    #[error(
        "{user} has not acknowledged this provider's current TEE signer on chain, so session-token requests \
         cannot be paid; acknowledge it first (`zg inference acknowledge-provider --provider ADDR`, or the official \
         `0g-compute-cli inference acknowledge-provider`)"
    )]
    TeeSignerNotAcknowledged {
        /// The account.
        user: Address,
    },
    /// Available balance does not cover the request's fee cap.
    #[error("{user} needs {needed} neuron but only {available} is available")]
    InsufficientBalance {
        /// The account.
        user: Address,
        /// The fee cap to reserve.
        needed: U256,
        /// balance − pending refunds − unsettled − in-flight reservations.
        available: U256,
    },
    /// Fee arithmetic overflowed 256 bits (absurd prices or token counts).
    #[error("fee overflows 256 bits: {prompt_tokens} × {input_price} + {completion_tokens} × {output_price}")]
    FeeOverflow {
        /// Prompt tokens.
        prompt_tokens: u64,
        /// Completion tokens.
        completion_tokens: u64,
        /// Price per prompt token.
        input_price: U256,
        /// Price per completion token.
        output_price: U256,
    },
    /// The upstream's response body is not JSON (or its `usage` is malformed).
    #[error("upstream response is not valid JSON: {0}")]
    UpstreamJson(String),
    /// A field of the request body has a value the provider will not forward (it would be read differently
    /// by the upstream, or it makes the fee unbounded).
    #[error("request field `{field}` {reason}")]
    RequestField {
        /// The JSON field.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The request body to forward upstream is not a JSON object.
    #[error("request body is not a JSON object: {0}")]
    RequestJson(String),
    /// No reservation with this id is open (already completed or released).
    #[error("reservation {0} is not open")]
    ReservationUnknown(u64),

    // ---- receipts ----
    /// A receipt's text or hashes do not match the bytes the client holds.
    #[error("receipt covers {signed}, the exchanged bytes hash to {actual}")]
    ReceiptMismatch {
        /// What the receipt signs.
        signed: String,
        /// What the client computed.
        actual: String,
    },

    // ---- durable ledger ----
    /// The embedded database failed.
    #[error("ledger database {path} failed during {op}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What the ledger was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// A previous commit failed; the ledger refuses all writes until it is reopened.
    #[error("ledger {path} is poisoned by an earlier failed commit; restart the provider to reload it")]
    LedgerPoisoned {
        /// The database file.
        path: PathBuf,
    },
    /// A configuration value is unusable.
    #[error("invalid billing config `{field}` = {value}: {fix}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// How to fix it.
        fix: &'static str,
    },

    // ---- settlement ----
    /// The chain adapter failed.
    #[error("chain call {op} failed")]
    Chain {
        /// The call.
        op: &'static str,
        /// The adapter's error.
        #[source]
        source: BoxError,
    },
    /// A settlement transaction reverted.
    #[error("settlement transaction {tx_hash} reverted")]
    TxReverted {
        /// The transaction.
        tx_hash: B256,
    },
    /// The customer's on-chain nonce passed a TEE settlement's nonce, but the chain adapter found no applied
    /// `TEESettlementResult` for it, so how much it paid is unknown. The settlement stays open (never
    /// guessed as fully paid, never re-sent): make `find_tee_result` see the events (an RPC that keeps logs
    /// back to the settlement's block) and reconcile again.
    #[error(
        "TEE settlement nonce {nonce} of {user} was applied on chain but its result event was not found; \
         point the chain adapter at an RPC node that serves logs back to that block and reconcile again"
    )]
    SettlementUnresolved {
        /// The customer.
        user: Address,
        /// The settlement's nonce.
        nonce: U256,
    },
}

impl Error {
    /// `true` when the customer's input caused the error (bad token, signature, nonce, balance...).
    pub fn is_client_fault(&self) -> bool {
        !matches!(
            self,
            Self::Signing(_)
                | Self::UpstreamJson(_)
                | Self::ReservationUnknown(_)
                | Self::Storage { .. }
                | Self::LedgerPoisoned { .. }
                | Self::Config { .. }
                | Self::Chain { .. }
                | Self::TxReverted { .. }
                | Self::SettlementUnresolved { .. }
                | Self::FeeOverflow { .. }
        )
    }

    /// `true` when retrying the same operation later may succeed (chain hiccups, reverted txs).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Chain { .. }
                | Self::TxReverted { .. }
                | Self::UnknownAccount { .. }
                | Self::SettlementUnresolved { .. }
        )
    }

    pub(crate) fn chain(op: &'static str, source: BoxError) -> Self {
        Self::Chain { op, source }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `Result<Admission>` is on the hot admission path: keep the error small (reth `size_asserts`).
    #[test]
    fn error_size_is_pinned() {
        assert!(
            std::mem::size_of::<Error>() <= 96,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn unresolved_settlement_is_retryable_server_side_and_names_the_fix() {
        let e = Error::SettlementUnresolved {
            user: Address::repeat_byte(1),
            nonce: U256::from(7),
        };
        assert!(e.is_retryable());
        assert!(!e.is_client_fault());
        let msg = e.to_string();
        assert!(
            msg.contains("nonce 7") && msg.contains("reconcile again"),
            "{msg}"
        );
    }
}
