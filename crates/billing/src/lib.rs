#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod error;
mod fee;
mod ledger;
mod memchain;
mod meter;
mod native;
mod receipt;
mod settle;
mod sig;
mod token;
mod wire;

pub use crate::error::{BoxError, Error, Result};
pub use crate::fee::{
    Endpoint, RequestBound, UpstreamBody, billed_fee, request_bound, upstream_body, worst_case_fee,
};
pub use crate::ledger::{
    Admission, ChainAccount, Completion, Ledger, LedgerConfig, NONCE_WINDOW, PendingRequest, ReceiptRecord,
    RequestKind, SettlementMode, SettlementRecord, SettlementState, VerifiedRequest,
};
pub use crate::memchain::MemoryChain;
pub use crate::meter::{Meter, Prices, StreamUsage, Usage, usage_from_json};
pub use crate::native::{
    Domains, REQUEST_DOMAIN_NAME, Request, SignedRequest, SignedVoucher, TEE_SETTLEMENT_DOMAIN_NAME,
    TEESettlement, VOUCHER_DOMAIN_NAME, Voucher, body_hash,
};
pub use crate::receipt::{
    RECEIPT_TAG, Receipt, ReceiptSigner, ReceiptVerifier, SignedReceipt, ZgReceipt, zg_receipt_text,
};
pub use crate::settle::{
    MAX_USERS_PER_TX, REQUESTS_HASH_TAG, SettleReport, SettledItem, SettlementChain, Settler, SettlerConfig,
    TeeBatchItem, TeeItem, TeeItemResult, TxResult, VoucherState, build_tee_item, requests_hash,
};
pub use crate::sig::{EthSigner, KeyCache};
pub use crate::token::{
    DEFAULT_MAX_UNEXPIRING_AGE_MS, EPHEMERAL_TOKEN_ID, MAX_EPHEMERAL_LIFETIME_MS, SESSION_TOKEN_PREFIX,
    SessionClaims, SessionToken, SessionVerifier, TokenState,
};
pub use crate::wire::{
    RECEIPT_EVENT, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, ReceiptJson, UsageJson,
};
