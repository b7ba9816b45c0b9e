//! The crate's one error type.

use alloy_primitives::B256;
use std::path::PathBuf;

/// Result alias with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a proof did not validate (mirrors the checks of 0G's `core/merkle/proof.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// `lemma.len()` must be `path.len() + 2` (or 1 for a single-leaf tree).
    #[error("malformed proof: lemma has {lemma} hashes for a path of {path}")]
    WrongFormat {
        /// Hashes in the lemma.
        lemma: usize,
        /// Flags in the path.
        path: usize,
    },
    /// The first lemma hash is not the hash of the proved content.
    #[error("proof is for other content")]
    ContentMismatch,
    /// The last lemma hash is not the expected root.
    #[error("proof is for another root")]
    RootMismatch,
    /// The path describes another leaf position.
    #[error("proof is for leaf {actual}, expected {expected}")]
    PositionMismatch {
        /// The position the caller expected.
        expected: u64,
        /// The position the path encodes.
        actual: u64,
    },
    /// Hashing up the path does not reach the root.
    #[error("proof path does not hash to its root")]
    Invalid,
}

/// Everything that can go wrong computing roots, proving segments or moving blobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 0G Storage rejects empty files (`core/file.go` `ErrFileEmpty`); so do we.
    #[error("empty data: 0G Storage has no root for zero bytes{}", path_suffix(.path.as_ref()))]
    Empty {
        /// The file, when the data came from one.
        path: Option<PathBuf>,
    },
    /// An I/O error, with the file it happened on.
    #[error("i/o error on {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The data ended before the size announced up front (the file shrank while being read).
    #[error("data ended after {read} of {expected} bytes (was the file modified while reading?)")]
    Truncated {
        /// Bytes announced.
        expected: u64,
        /// Bytes actually read.
        read: u64,
    },
    /// A root given as text is not `0x` + 64 hex digits.
    #[error("invalid root {input:?}: {reason} (expected 0x followed by 64 hex digits)")]
    InvalidRoot {
        /// What was given (truncated to 80 characters).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Data did not hash to the root it was stored or requested under.
    #[error("root mismatch: expected {expected}, computed {actual}")]
    RootMismatch {
        /// The root asked for.
        expected: B256,
        /// The root of the bytes at hand.
        actual: B256,
    },
    /// No blob with this root in the store.
    #[error("no blob with root {root}")]
    NotFound {
        /// The root looked up.
        root: B256,
    },
    /// A segment index past the end of the file.
    #[error("segment {index} out of range: the file has {segments} segments")]
    SegmentOutOfRange {
        /// The index asked for.
        index: u64,
        /// Segments in the (flow-padded) file.
        segments: u64,
    },
    /// A segment or its proof failed verification.
    #[error("segment {index} failed verification: {reason}")]
    BadSegment {
        /// Segment index.
        index: u64,
        /// What failed.
        #[source]
        reason: ProofError,
    },
    /// A segment had the wrong length for its position in the file.
    #[error("segment {index} has {actual} bytes, expected {expected}")]
    SegmentLength {
        /// Segment index.
        index: u64,
        /// Expected byte count.
        expected: usize,
        /// Received byte count.
        actual: usize,
    },
    /// A file too large for 0G Storage's 64-bit chunk arithmetic.
    #[error("data of {size} bytes is too large")]
    TooLarge {
        /// The size.
        size: u64,
    },
    /// A storage node answered with a JSON-RPC error or an unexpected payload.
    #[error("storage node {url} {method}: {message}")]
    Rpc {
        /// Node URL.
        url: String,
        /// JSON-RPC method.
        method: &'static str,
        /// Error text from the node or the decoder.
        message: String,
        /// Whether trying again may help (transport failures, 5xx, timeouts).
        retryable: bool,
    },
    /// The Flow contract submission failed.
    #[error("flow submission failed: {0}")]
    Flow(String),
    /// A wait (finality, file announcement) ran out of time.
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long we waited.
        secs: u64,
    },
    /// Configuration is unusable; the message names the flag or setting to change.
    #[error("configuration: {0}")]
    Config(String),
    /// File work handed to a worker thread did not complete: the thread could not start, or it panicked.
    #[error("{what} did not complete: {reason}")]
    Blocking {
        /// The operation (e.g. `put_file`).
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again (network hiccups, node overload).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Rpc { retryable: true, .. } | Self::Timeout { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

fn path_suffix(p: Option<&PathBuf>) -> String {
    p.map(|p| format!(" ({})", p.display())).unwrap_or_default()
}
