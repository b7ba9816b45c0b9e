//! Integration tests of zg-provider: real loopback HTTP and gRPC, real anvil for the chain tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub
)]

// Helpers: in-process provider with in-memory accounts, tokens.
mod common;
// The HTTP API: happy paths, receipts, rejections, back-pressure, concurrency.
mod api;
// Real anvil: registration, gRPC, settlement with exact balances, kill mid-stream and restart.
mod anvil;
// Issue 9, written as the attacks (free inference, over-charging, stalling the provider).
mod attacks;
// Issue 9: the log names the owner's command while the TEE signer waits for it.
mod owner_ack_log;
// Issue 11: the built-in SmolLM2 upstream (real model, exact usage, blocking threads, bounded slots).
mod smollm2;
// Issue 11 item 4: adapters deployed over attested gRPC, served to their owner only, kept across restarts.
mod adapters;
