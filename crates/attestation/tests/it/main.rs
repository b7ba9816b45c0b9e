//! Integration tests for zg-attestation, against the real fixtures in testdata/attestation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

/// Collateral sources without network.
mod collateral;
mod common;
/// README vectors: DCAP status, advisories, errors and measurements at the stated times.
mod dcap_vectors;
/// The policies shipped in deploy/.
mod deploy_policy;
/// CCEL and dstack event-log replay.
mod eventlog;
/// NVIDIA GPU evidence: sets A and B, every negative vector, OCSP, multi-GPU, simulated GPU.
mod gpu;
/// PCCS client against a loopback server (feature `pccs`).
#[cfg(feature = "pccs")]
mod pccs;
/// The tdx and dstack backends on recorded inputs.
mod producers;
/// NVIDIA's RIM service client against a loopback server (feature `nvidia-rim`).
#[cfg(feature = "nvidia-rim")]
mod rim_service;
/// Simulated backend end to end, binding, nonce and policy checks.
mod simulated;
/// Byte flips in each structural part of a real quote, and the exact check that fails.
mod tamper;
