//! Integration tests for zg-storage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod local;
mod proofs;
mod vectors;
/// ZgsStore against a conformance fake 0G Storage node.
#[cfg(feature = "zgs")]
mod zgs;
