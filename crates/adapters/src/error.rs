//! The one error type of zg-adapters: each variant names what was wrong, so a provider or broker can answer
//! with a status the caller can act on.

use alloy_primitives::Address;

/// Why a deployment step was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signature does not parse or recover (wrong length, bad `v`, high `s`, not on the curve).
    #[error("{what}: bad signature: {reason}")]
    BadSignature {
        /// Which signature.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A signature recovers to someone else than who had to sign.
    #[error("{what}: signed by {recovered}, expected {expected}")]
    WrongSigner {
        /// Which signature.
        what: &'static str,
        /// Who had to sign.
        expected: Address,
        /// Who did.
        recovered: Address,
    },
    /// A signed statement is past its expiry, or too far in the future / past for the clock window.
    #[error("{what} is not fresh: {reason}")]
    Stale {
        /// Which statement.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A statement names another party, task or adapter than the one it is used for.
    #[error("{what} names {found}, expected {expected}")]
    Mismatch {
        /// Which field.
        what: &'static str,
        /// What was expected here.
        expected: String,
        /// What the statement says.
        found: String,
    },
    /// The peer's attestation did not pass (the first failing check), or proves nothing.
    #[error("attestation of {peer} refused: {check}")]
    Attestation {
        /// The peer (its on-chain service address).
        peer: Address,
        /// The first failing check, `name: expected …, found …`.
        check: String,
    },
    /// Evidence the peer sent does not parse.
    #[error("evidence of {peer} does not parse: {reason}")]
    Evidence {
        /// The peer.
        peer: Address,
        /// Why.
        reason: String,
    },
    /// The peer's evidence came from the simulated TEE and the policy does not allow it.
    #[error(
        "{peer} runs a SIMULATED TEE (no hardware attests it); refused unless the policy sets dangerous_allow_simulated = true"
    )]
    SimulatedRefused {
        /// The peer.
        peer: Address,
    },
    /// An adapter package is malformed or too large.
    #[error("adapter package: {0}")]
    Package(String),
    /// Sealing or unsealing failed (wrong key, tampered bytes, wrong tag signer).
    #[error("sealing: {0}")]
    Sealing(#[from] zg_sealing::Error),
    /// A name is not a valid adapter name.
    #[error("{name:?} is not an adapter name: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// File I/O on an adapter directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// Where.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the caller (not this side) is at fault: a bad or stale signature, a mismatch, a refused
    /// attestation, a malformed package. Servers answer these with a 4xx / `InvalidArgument`-class status.
    pub fn is_caller_fault(&self) -> bool {
        !matches!(self, Error::Io { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
