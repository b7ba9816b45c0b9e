//! The per-task AES-256 sealing key and its ECIES-wrapped form (`encryptedSecret`).

use crate::ecies::{ecies_decrypt, ecies_encrypt};
use crate::error::{Error, Result};
use k256::{PublicKey, SecretKey};
use std::fmt;

/// A per-task AES-256 key. It never leaves this crate in the clear: it is created from fresh randomness
/// (inside the TEE) or recovered from an [`EncryptedSecret`] or the customer's own hex secret, and is
/// used only to seal/unseal files or to be wrapped for a customer. Its memory is zeroed on drop and its
/// `Debug` is redacted.
#[derive(Clone)]
pub struct SealingKey([u8; 32]);

impl SealingKey {
    /// A fresh random key from the OS generator.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; 32];
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut k)
            .map_err(|e| Error::Rng(e.to_string()))?;
        Ok(Self(k))
    }

    /// The key the customer already has in the clear (0G's `decrypt-model` secret), e.g. from
    /// `zg decrypt-model --secret`.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (optional `0x`).
    pub fn from_hex(s: &str) -> Result<Self> {
        let s = s.trim();
        let s = s.strip_prefix("0x").unwrap_or(s);
        let mut k = [0u8; 32];
        hex::decode_to_slice(s, &mut k).map_err(|_| Error::Hex {
            what: "secret",
            expected: 64,
        })?;
        Ok(Self(k))
    }

    /// Wraps the key for `customer` (ECIES, eciesjs format): the `encryptedSecret` the provider records
    /// on chain and reveals at settlement.
    pub fn wrap_for(&self, customer: &PublicKey) -> Result<EncryptedSecret> {
        ecies_encrypt(customer, &self.0, &mut rand::rngs::OsRng).map(EncryptedSecret)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SealingKey {
    fn drop(&mut self) {
        // Best-effort zeroing without a zeroize dependency; `black_box` keeps the store from being elided.
        self.0 = [0u8; 32];
        std::hint::black_box(&self.0);
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

/// A [`SealingKey`] encrypted to a customer's secp256k1 key: 129 bytes = ephemeral pk 65 ‖ nonce 16 ‖
/// tag 16 ‖ encrypted key 32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedSecret(Vec<u8>);

impl EncryptedSecret {
    /// Wraps raw bytes (e.g. the `encryptedSecret` field of a deliverable read from chain).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Opens the secret with the customer's private key.
    pub fn unwrap_with(&self, customer: &SecretKey) -> Result<SealingKey> {
        let plain = ecies_decrypt(customer, &self.0)?;
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::SecretLength { len: plain.len() })?;
        Ok(SealingKey(key))
    }
}
