//! The ledger's public data: its settings, what admission hands out and completion takes back, and the
//! settlement records the settler stores before it sends anything.

use std::path::PathBuf;

use alloy_primitives::{Address, B256, U256};

use crate::meter::Usage;
use crate::native::Domains;
use crate::token::TokenState;

/// Width of the native nonce reordering window: a nonce up to this far below the highest one seen
/// is still accepted once; anything older is rejected forever.
pub const NONCE_WINDOW: u32 = 1024;

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// SQLite database file (created if missing).
    pub path: PathBuf,
    /// This provider's address.
    pub provider: Address,
    /// EIP-712 domains of the deployment (native requests and vouchers).
    pub domains: Domains,
    /// Metered native fees a customer may owe beyond its latest voucher before requests are refused.
    pub max_unvouchered: U256,
    /// Most jobs folded into one commit.
    pub max_batch: usize,
}

impl LedgerConfig {
    /// Defaults: 1e16 neuron (0.01 0G) of unvouchered credit, batches of up to 1024 jobs.
    pub fn new(path: impl Into<PathBuf>, provider: Address, domains: Domains) -> Self {
        Self {
            path: path.into(),
            provider,
            domains,
            max_unvouchered: U256::from(10_000_000_000_000_000u64),
            max_batch: 1024,
        }
    }
}

/// A customer's on-chain account as last read from InferenceServing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainAccount {
    /// `Account.balance`.
    pub balance: U256,
    /// `Account.pendingRefund`.
    pub pending_refund: U256,
    /// `Account.nonce` (TEE settlement nonce).
    pub nonce: U256,
    /// Session-token generation and revocation bitmap.
    pub tokens: TokenState,
    /// `Account.acknowledged`: the customer acknowledged this provider's *current* TEE signer (the contract
    /// clears it when the signer changes). Without it `settleFeesWithTEE` refuses the customer (status 8), so a
    /// session-token request served now could never be paid: [`crate::Ledger::admit_session`] refuses it.
    pub tee_signer_acknowledged: bool,
}

/// Which protocol admitted a request, which decides how it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// 0G session token: settled by `settleFeesWithTEE`.
    Session,
    /// Native signed request: settled by the customer's cumulative voucher.
    Native,
}

impl RequestKind {
    pub(super) fn code(self) -> i64 {
        match self {
            Self::Session => 0,
            Self::Native => 1,
        }
    }
}

/// An open reservation of a request's fee cap. Finish it with [`crate::Ledger::complete`] or
/// [`crate::Ledger::release`]; an abandoned one is dropped when the ledger is next opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "complete or release the admission, or its reservation stays held"]
pub struct Admission {
    /// Reservation id.
    pub id: u64,
    /// The customer.
    pub user: Address,
    /// Amount reserved: the most this request can be billed (the native fee cap, or the session bound).
    pub fee_cap: U256,
    /// Protocol.
    pub kind: RequestKind,
    /// The native request's nonce.
    pub nonce: Option<U256>,
}

/// The receipts of one exchange, stored under its `ZG-Res-Key` in the same commit as the request it bills,
/// so a customer is never charged for an answer whose receipts were not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// The `ZG-Res-Key`.
    pub key: String,
    /// 0G text `hex(sha256(request)):hex(sha256(response))`; its EIP-191 signature is made on read
    /// (deterministic, RFC 6979), so it is not stored.
    pub text: String,
    /// The native receipt as JSON ([`crate::ReceiptJson`]).
    pub native: String,
}

/// What the provider learnt from serving an admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// sha256 of the request body as received.
    pub request_hash: B256,
    /// sha256 of the response bytes as sent.
    pub response_hash: B256,
    /// The model.
    pub model: String,
    /// Usage from the upstream; `None` = not billed.
    pub usage: Option<Usage>,
    /// Fee billed for `usage` ([`crate::billed_fee`]: never above the admission's cap).
    pub fee: U256,
    /// The receipt signature given to the customer.
    pub receipt_signature: Vec<u8>,
    /// The receipts to store in the same commit (`None`: nothing to serve later under a key).
    pub receipt: Option<ReceiptRecord>,
}

/// One billed request not yet settled, as the settler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// Ledger row id.
    pub id: u64,
    /// sha256 of the request.
    pub request_hash: B256,
    /// sha256 of the response.
    pub response_hash: B256,
    /// Usage billed.
    pub usage: Usage,
    /// Fee billed.
    pub fee: U256,
    /// When it was served.
    pub created_ms: u64,
}

/// Settlement mode of a [`SettlementRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementMode {
    /// `settleFeesWithTEE`.
    Tee,
    /// `settleVouchers`.
    Voucher,
}

/// Where a settlement stands; persisted before each chain step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    /// Signed and stored; maybe sent (a crash may have hidden the hash).
    Prepared,
    /// Sent in the recorded transaction.
    Sent,
    /// Applied on chain and committed locally.
    Done,
    /// Rejected on chain; its rows are free again.
    Failed,
}

impl SettlementState {
    pub(super) fn code(self) -> i64 {
        match self {
            Self::Prepared => 0,
            Self::Sent => 1,
            Self::Done => 2,
            Self::Failed => 3,
        }
    }
    pub(super) fn from_code(c: i64) -> Self {
        match c {
            0 => Self::Prepared,
            1 => Self::Sent,
            2 => Self::Done,
            _ => Self::Failed,
        }
    }
}

/// A settlement item as stored: exactly the signed payload, so it can be re-sent byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecord {
    /// Local id.
    pub id: u64,
    /// Mode.
    pub mode: SettlementMode,
    /// The customer.
    pub user: Address,
    /// TEE nonce, or the voucher's nonce.
    pub nonce: U256,
    /// `totalFee`, or the voucher's cumulative amount.
    pub amount: U256,
    /// `requestsHash` (TEE mode; zero for vouchers).
    pub requests_hash: B256,
    /// The 65-byte signature (TEE signer's or customer's).
    pub signature: Vec<u8>,
    /// State.
    pub state: SettlementState,
    /// Transaction that carried it, once known.
    pub tx_hash: Option<B256>,
    /// The chain's block number when the payload was prepared: it cannot have landed before, so a search of
    /// the chain's events for it (after a crash lost the transaction hash) starts here.
    pub from_block: u64,
}
