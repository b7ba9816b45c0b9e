#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod ecies;
mod error;
mod file;
mod key;

pub use alloy_primitives::Address;
pub use ecies::{ecies_decrypt, ecies_encrypt};
pub use error::{Error, Result};
pub use file::{
    CHUNK_SIZE, HEADER_LEN, IV_LEN, SIG_LEN, SealSummary, Sealer, TAG_LEN, UnsealSummary, Unsealer,
    increment_iv, recover_tag_signer, signer_address,
};
/// The secp256k1 types the API takes (re-exported so callers need no direct `k256` dependency).
pub use k256;
pub use key::{EncryptedSecret, SealingKey};
