//! Test helpers shared by zg-compute's crates (dev-only): testdata loaders, the anvil devnet guard and
//! loopback servers, and the runner for the pinned JavaScript tools (the official 0G CLI/SDK, eciesjs).
//!
//! # Example
//! ```
//! let quote = zg_test_utils::testdata::read("attestation/dcap-qvl/tdx_quote.bin");
//! assert_eq!(quote.len(), 5006);
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod node;
pub mod testdata;
pub mod tools;
