//! Integration tests for zg-sealing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

/// Truncation, flipped bytes, wrong signer, wrong key: typed errors, no plaintext left behind.
mod corruption;
/// eciesjs compatibility vectors and key wrapping.
mod ecies;
/// Sealed-file round trips and the IV rule, checked chunk by chunk with plain AES-GCM.
mod format;

use k256::ecdsa::SigningKey;

pub(crate) fn tee_key() -> SigningKey {
    SigningKey::from_slice(&[0x42; 32]).unwrap()
}

pub(crate) fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}
/// Regenerates the fixtures that the official JS tools then check (run by hand, see testdata/README.md).
mod regen;
