//! Integration tests for zg-storage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

/// LocalStore: round trips, corruption, crash leftovers.
mod local;
/// Segment proofs and Flow submission nodes.
mod proofs;
/// Known roots from the official client, and a naive reference port compared on many sizes.
mod vectors;
/// ZgsStore against a conformance fake 0G Storage node.
#[cfg(feature = "zgs")]
mod zgs;
