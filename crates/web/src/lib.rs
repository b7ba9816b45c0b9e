#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod account;
mod assets;
mod chat;
mod error;
mod guard;
mod metrics;
mod providers;
mod server;

pub use crate::assets::ASSET_BYTES;
pub use crate::error::{Error, Result};
pub use crate::guard::{GuardRules, Refusal, TOKEN_HEADER};
pub use crate::server::{Dashboard, MAX_BODY, WebConfig};

#[cfg(test)]
use tempfile as _;
