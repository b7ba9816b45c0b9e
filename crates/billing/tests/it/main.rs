//! zg-billing integration tests: one binary, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![allow(missing_docs, unreachable_pub)]

/// Shared fixtures and the in-memory `SettlementChain` double with fault injection.
mod common;
/// Hundreds of concurrent admissions of one customer; durability across reopen.
mod ledger_concurrency;
/// Both settlement modes against the in-memory chain, with a crash injected at each step.
mod settlement_crash;
