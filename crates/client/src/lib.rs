#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod client;
mod clock;
mod config;
mod dec;
mod error;
mod funding;
#[cfg(feature = "gateway")]
mod gateway;
mod grpc;
#[cfg(feature = "gateway")]
mod guard;
mod http;
mod receipt;
mod store;
mod stream;
mod verify;

pub use crate::client::{ChatResponse, Client, Route, with_model};
pub use crate::config::{ClientConfig, TopUpPolicy, Transport};
pub use crate::error::{Error, Refusal, Result};
pub use crate::funding::Balance;
#[cfg(feature = "gateway")]
pub use crate::gateway::gateway_router;
#[cfg(feature = "gateway")]
pub use crate::guard::{ApiKey, LocalGuard};
pub use crate::receipt::{
    RECEIPT_EVENT, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, ReceiptJson, UsageJson, VerifiedReceipt,
    expected_model, parse_receipt_header, verify_receipt,
};
pub use crate::store::{ProviderState, VerifiedKeys};
pub use crate::stream::{ChatStream, StreamEvent};
pub use crate::verify::ProviderVerification;
