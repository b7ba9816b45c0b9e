//! zg-chain against a real anvil devnet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is a test failure"
)]

mod abi;
mod devnet;
mod fine_tuning;
mod gas;
mod money_flow;
mod reveal;
mod tee_signer_trust;

use zg_chain::{Devnet, DevnetConfig};

/// A fresh devnet using the repo's pinned anvil.
pub(crate) async fn devnet() -> Devnet {
    Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .expect("devnet starts (run `just setup` first)")
}
