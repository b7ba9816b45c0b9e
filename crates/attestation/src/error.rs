//! The crate's one error type.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while parsing, fetching or producing attestation evidence.
///
/// Verification *failures* (a bad signature, a wrong measurement) are not errors: they are failed
/// checks inside a [`crate::VerificationReport`]. Errors are for input that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A quote could not be parsed; `field` names the structure that was malformed.
    #[error("malformed TDX quote ({field}): {reason}")]
    MalformedQuote {
        /// Which part of the quote (header, body, auth data, ...).
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The quote parsed but is not a TDX quote this crate verifies.
    #[error("unsupported quote: {0}")]
    UnsupportedQuote(String),
    /// Text that should have been hex, base64 or a JSON quote document was not.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// Collateral JSON was malformed or incomplete.
    #[error("malformed collateral ({field}): {reason}")]
    MalformedCollateral {
        /// The collateral field at fault.
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// No collateral is available for this platform from the configured source.
    #[error(
        "no collateral for FMSPC {fmspc} in {source_name}; fetch it (feature `pccs`) or add `{fmspc}.json` to the cache directory"
    )]
    CollateralNotFound {
        /// The platform's FMSPC (hex, upper case).
        fmspc: String,
        /// Which source was asked.
        source_name: String,
    },
    /// An event log could not be parsed; `index` is the offending event (if known).
    #[error("malformed event log at event {index:?}: {reason}")]
    MalformedEventLog {
        /// Index of the event, or `None` when the container itself is malformed.
        index: Option<usize>,
        /// What was wrong.
        reason: String,
    },
    /// REPORTDATA or the key-binding document was malformed.
    #[error("malformed report data ({layout}): {reason}")]
    MalformedReportData {
        /// Layout being parsed (native, 0g, dstack).
        layout: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A key (secp256k1, ed25519, x25519) was invalid.
    #[error("invalid {kind} key: {reason}")]
    InvalidKey {
        /// Key kind.
        kind: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A policy document could not be loaded; the message names the field to fix.
    #[error("invalid attestation policy: {0}")]
    InvalidPolicy(String),
    /// GPU evidence could not be parsed.
    #[error("malformed GPU evidence ({field}): {reason}")]
    MalformedGpuEvidence {
        /// Field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A timestamp could not be parsed (RFC 3339 expected, e.g. `2025-06-20T00:00:00Z`).
    #[error("invalid time {input:?}: expected RFC 3339 such as 2025-06-20T00:00:00Z ({reason})")]
    InvalidTime {
        /// The rejected input.
        input: String,
        /// Why.
        reason: String,
    },
    /// File I/O failed; carries the path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (read, write, list).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A TEE backend (configfs-tsm, dstack agent) failed to produce evidence.
    #[error("TEE backend {backend}: {reason}")]
    Backend {
        /// Backend name (tdx, dstack, simulated).
        backend: &'static str,
        /// What failed, including the device or socket path.
        reason: String,
    },
    /// Network collateral fetch failed (feature `pccs`).
    #[error("collateral fetch from {url}: {reason}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// Why it failed (HTTP status or transport error).
        reason: String,
    },
}

impl Error {
    /// Whether retrying later might succeed (network or backend hiccups), as opposed to bad input.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Fetch { .. } | Error::Backend { .. } | Error::Io { .. }
        )
    }

    /// Whether the error is the fault of the input the caller supplied (quote, log, policy).
    pub fn is_bad_input(&self) -> bool {
        !self.is_retryable() && !matches!(self, Error::CollateralNotFound { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
