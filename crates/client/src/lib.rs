#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod client;
mod error;
#[cfg(feature = "gateway")]
mod gateway;
#[cfg(feature = "gateway")]
mod guard;
mod receipt;
mod store;
mod stream;

pub use crate::client::{
    Balance, ChatResponse, Client, ClientConfig, ProviderVerification, Route, TopUpPolicy,
};
pub use crate::error::{Error, Refusal, Result};
#[cfg(feature = "gateway")]
pub use crate::gateway::gateway_router;
#[cfg(feature = "gateway")]
pub use crate::guard::{ApiKey, LocalGuard};
pub use crate::receipt::{
    RECEIPT_EVENT, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, ReceiptJson, UsageJson, VerifiedReceipt,
    parse_receipt_header, verify_receipt,
};
pub use crate::store::{ProviderState, VerifiedKeys};
pub use crate::stream::{ChatStream, StreamEvent};
