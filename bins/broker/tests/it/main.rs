//! Integration tests of zg-broker: the binary on an anvil devnet.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub
)]

mod adapters;
mod common;
mod crash;
mod e2e;
mod lora;
mod official_cli;
