//! zg-billing integration tests: one binary, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![allow(missing_docs, unreachable_pub)]

/// Issue 9 at the ledger: vouchers the contract refuses, refunds noticed without traffic.
mod admission_attacks;
/// Shared fixtures and the in-memory `SettlementChain` double with fault injection.
mod common;
/// Hundreds of concurrent admissions of one customer; durability across reopen.
mod ledger_concurrency;
/// Property tests: parsers never panic on arbitrary input; headers and tokens round-trip; requests_hash separates.
mod parser_props;
/// Both settlement modes on a real anvil devnet through zg-chain, with the same crash injection.
mod settlement_anvil;
/// Both settlement modes against the in-memory chain, with a crash injected at each step.
mod settlement_crash;
