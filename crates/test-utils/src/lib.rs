//! Test helpers shared by zg-compute's crates (dev-only): testdata loaders, the anvil devnet guard, loopback
//! servers (a fake OpenAI-compatible upstream), free ports, well-known devnet keys, and the runner for the pinned
//! JavaScript tools (the official 0G CLI/SDK, eciesjs).
//!
//! # Example
//! ```
//! let quote = zg_test_utils::testdata::read("attestation/dcap-qvl/tdx_quote.bin");
//! assert_eq!(quote.len(), 5006);
//! assert_eq!(zg_test_utils::keys::hex_key(&[0; 32]).len(), 66);
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod fake_upstream;
pub mod keys;
pub mod net;
pub mod node;
pub mod testdata;
pub mod tools;
