//! zg-client end to end: a real anvil devnet, the real provider (in process, over loopback HTTP), and a
//! tampering proxy between them where a test needs one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub
)]

// Devnet + provider + funded customer; the tampering proxy.
mod common;
// Verify, chat plain and streaming, settle: exact balances.
mod e2e;
// Tampered, truncated and receipt-less answers are rejected; simulated evidence needs the flag.
mod rejections;
// Funding: top-up, insufficient funds; nonces and vouchers survive restarts; replay refused.
mod money;
// zg serve's router over loopback: routes, receipts in headers, and the guard's refusals.
mod gateway;
// The provider changes its on-chain TEE signer mid-session: refused, nothing topped up.
mod signer;
// Endless and dripping provider bodies end in named errors.
mod limits;
// The durable state never blocks the async runtime.
mod runtime;
// The native path over gRPC: real provider billed exactly; a hostile gRPC provider's attacks refused.
mod grpc;
// Module dependencies point one way.
mod layers;
