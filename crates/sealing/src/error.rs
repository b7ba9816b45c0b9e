//! The crate's one error type.

use alloy_primitives::Address;
use std::path::PathBuf;

/// Result alias with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong sealing, unsealing or (un)wrapping keys. No variant ever carries key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error, with the file it happened on.
    #[error("i/o error on {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The sealed data is shorter than its 77-byte header (65-byte signature + 12-byte IV).
    #[error("sealed data truncated: {len} bytes, the header alone is 77")]
    TruncatedHeader {
        /// Bytes present.
        len: u64,
    },
    /// The last chunk is too short to hold its 16-byte GCM tag (the file was cut).
    #[error("sealed data truncated: last chunk has {len} bytes, less than its 16-byte tag")]
    TruncatedChunk {
        /// Bytes in the last chunk.
        len: u64,
    },
    /// The tag signature is not a valid secp256k1 signature (bad r, s or recovery id).
    #[error("malformed tag signature: {0}")]
    MalformedSignature(&'static str),
    /// The tags were signed by someone other than the expected TEE signer.
    #[error("tag signature is by {recovered}, expected the provider's TEE signer {expected}")]
    WrongSigner {
        /// The signer the caller trusts.
        expected: Address,
        /// Who actually signed.
        recovered: Address,
    },
    /// A chunk failed AES-GCM authentication: wrong key, or a modified chunk.
    #[error("chunk {index} failed authentication (wrong key or corrupted data)")]
    ChunkAuth {
        /// 0-based chunk index.
        index: u64,
    },
    /// The file changed between the signature check and decryption.
    #[error("sealed file changed while it was being decrypted")]
    Changed,
    /// Chunk size out of range.
    #[error("chunk size {size} out of range (1 ..= 2^32 bytes; 0G uses 64 MiB)")]
    ChunkSize {
        /// Requested size.
        size: usize,
    },
    /// A public key that is not a valid secp256k1 point.
    #[error("invalid secp256k1 public key")]
    InvalidPublicKey,
    /// A private key that is not a valid secp256k1 scalar.
    #[error("invalid secp256k1 private key")]
    InvalidPrivateKey,
    /// An ECIES payload too short to hold ephemeral key, nonce and tag.
    #[error("ECIES payload of {len} bytes is too short (at least 97)")]
    EciesTooShort {
        /// Payload length.
        len: usize,
    },
    /// ECIES decryption failed: the payload was not made for this key, or was modified.
    #[error("ECIES decryption failed (not encrypted to this key, or corrupted)")]
    EciesDecrypt,
    /// The unwrapped secret is not a 32-byte AES-256 key.
    #[error("secret has {len} bytes, an AES-256 key has 32")]
    SecretLength {
        /// Bytes found.
        len: usize,
    },
    /// A key or secret given as hex is not hex.
    #[error("{what} is not valid hex (expected {expected} hex digits, optional 0x)")]
    Hex {
        /// Which input.
        what: &'static str,
        /// Expected hex digits.
        expected: usize,
    },
    /// The system random generator failed.
    #[error("random generator failed: {0}")]
    Rng(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the sealed data itself is bad (truncated, corrupted, wrongly signed), as opposed to I/O
    /// or caller errors.
    pub fn is_corrupt_input(&self) -> bool {
        matches!(
            self,
            Self::TruncatedHeader { .. }
                | Self::TruncatedChunk { .. }
                | Self::MalformedSignature(_)
                | Self::WrongSigner { .. }
                | Self::ChunkAuth { .. }
                | Self::Changed
        )
    }
}
