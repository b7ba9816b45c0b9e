//! Integration tests for zg-sealing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

mod corruption;
mod ecies;
mod format;
mod official;

use k256::ecdsa::SigningKey;

pub(crate) fn tee_key() -> SigningKey {
    SigningKey::from_slice(&[0x42; 32]).unwrap()
}

pub(crate) fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}
mod regen;
