//! secp256k1 signing (our wrapper over alloy's local signer) and verification with cached public keys.

use std::collections::HashMap;
use std::sync::RwLock;

use alloy_primitives::{Address, B256, Signature};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use k256::ecdsa::VerifyingKey;
use k256::ecdsa::signature::hazmat::PrehashVerifier;

use crate::error::{Error, Result};

/// A secp256k1 key that signs Ethereum-style (customer keys, the TEE settlement key).
///
/// Wraps alloy's `PrivateKeySigner` so that no alloy-signer type appears in this crate's API.
/// `Debug` prints the address only.
#[derive(Clone)]
pub struct EthSigner(PrivateKeySigner);

impl std::fmt::Debug for EthSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EthSigner").field(&self.0.address()).finish()
    }
}

impl EthSigner {
    /// A signer from a 32-byte secret key.
    pub fn from_bytes(secret: &B256) -> Result<Self> {
        PrivateKeySigner::from_bytes(secret)
            .map(Self)
            .map_err(|e| Error::Signing(format!("invalid secp256k1 secret key: {e}")))
    }

    /// A signer from a `0x`-prefixed (or bare) 64-hex-digit secret key.
    pub fn from_hex(secret: &str) -> Result<Self> {
        let bytes: B256 = secret
            .parse()
            .map_err(|_| Error::Signing("secret key is not 32 bytes of hex".to_owned()))?;
        Self::from_bytes(&bytes)
    }

    /// A fresh random key (OS randomness).
    pub fn random() -> Self {
        Self(PrivateKeySigner::random())
    }

    /// The key's Ethereum address.
    pub fn address(&self) -> Address {
        self.0.address()
    }

    /// The 32-byte secret, for sealing it to disk. Handle with care.
    pub fn to_bytes(&self) -> B256 {
        self.0.to_bytes()
    }

    /// Signs a 32-byte digest as is (EIP-712 signing hashes).
    pub fn sign_hash(&self, digest: &B256) -> Result<Signature> {
        self.0
            .sign_hash_sync(digest)
            .map_err(|e| Error::Signing(e.to_string()))
    }

    /// Signs `message` with the EIP-191 `personal_sign` prefix.
    pub fn sign_message(&self, message: &[u8]) -> Result<Signature> {
        self.0
            .sign_message_sync(message)
            .map_err(|e| Error::Signing(e.to_string()))
    }
}

/// Parses a `0x`-hex (or bare hex) 65-byte `r‖s‖v` signature.
pub(crate) fn parse_signature_hex(s: &str) -> Result<Signature> {
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(hex_part).map_err(|e| Error::SignatureFormat(format!("not hex: {e}")))?;
    parse_signature_bytes(&bytes)
}

/// Parses a 65-byte `r‖s‖v` signature (v = 0, 1, 27 or 28).
pub(crate) fn parse_signature_bytes(bytes: &[u8]) -> Result<Signature> {
    if bytes.len() != 65 {
        return Err(Error::SignatureFormat(format!(
            "expected 65 bytes, got {}",
            bytes.len()
        )));
    }
    Signature::from_raw(bytes).map_err(|e| Error::SignatureFormat(e.to_string()))
}

/// `0x`-hex of the 65-byte signature with `v` = 27/28, as ethers' `signMessage` prints it.
pub(crate) fn signature_hex(sig: &Signature) -> String {
    format!("0x{}", hex::encode(sig.as_bytes()))
}

/// Verifies secp256k1 signatures by signer address, caching each signer's public key.
///
/// The first signature of an address is checked by public-key recovery (about 250 µs); the recovered
/// key is cached and later signatures are checked with a plain ECDSA verify (about 90 µs). A cached
/// key never falls back to recovery: a signature that does not verify under it is rejected.
#[derive(Debug)]
pub struct KeyCache {
    keys: RwLock<HashMap<Address, VerifyingKey>>,
    capacity: usize,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl KeyCache {
    /// A cache that holds at most `capacity` keys (it is cleared when full, then refills).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            keys: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    /// `true` when no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that `sig` over `digest` (a prehash, e.g. an EIP-712 signing hash) was made by `claimed`.
    pub fn verify(&self, claimed: Address, digest: &B256, sig: &Signature) -> Result<()> {
        // Recovery normalises s, so the fast path does too: both paths accept the same signatures.
        let normalized = sig.normalized_s();
        let cached = self.keys.read().ok().and_then(|k| k.get(&claimed).copied());
        if let Some(key) = cached {
            let k256_sig = normalized
                .to_k256()
                .map_err(|e| Error::SignatureFormat(e.to_string()))?;
            return key
                .verify_prehash(digest.as_slice(), &k256_sig)
                .map_err(|_| Error::BadSignature {
                    claimed,
                    recovered: None,
                });
        }
        let key = sig
            .recover_from_prehash(digest)
            .map_err(|_| Error::BadSignature {
                claimed,
                recovered: None,
            })?;
        let recovered = Address::from_public_key(&key);
        if recovered != claimed {
            return Err(Error::BadSignature {
                claimed,
                recovered: Some(recovered),
            });
        }
        if let Ok(mut keys) = self.keys.write() {
            if keys.len() >= self.capacity {
                keys.clear();
            }
            keys.insert(claimed, key);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    #[test]
    fn cached_and_uncached_paths_agree() {
        let signer = EthSigner::random();
        let other = EthSigner::random();
        let cache = KeyCache::default();
        let digest = keccak256(b"hello");
        let sig = signer.sign_hash(&digest).unwrap();
        cache.verify(signer.address(), &digest, &sig).unwrap();
        assert_eq!(cache.len(), 1);
        // Cached path: accepts the same, rejects a different digest and a foreign signature.
        cache.verify(signer.address(), &digest, &sig).unwrap();
        let wrong = keccak256(b"other");
        assert!(matches!(
            cache.verify(signer.address(), &wrong, &sig),
            Err(Error::BadSignature { recovered: None, .. })
        ));
        let foreign = other.sign_hash(&digest).unwrap();
        assert!(cache.verify(signer.address(), &digest, &foreign).is_err());
        // Uncached: reports the address it recovered.
        let fresh = KeyCache::default();
        match fresh.verify(signer.address(), &digest, &foreign) {
            Err(Error::BadSignature {
                recovered: Some(a), ..
            }) => assert_eq!(a, other.address()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(fresh.is_empty());
    }

    #[test]
    fn signature_hex_round_trip_and_format_errors() {
        let signer = EthSigner::random();
        let sig = signer.sign_message(b"x").unwrap();
        let hex = signature_hex(&sig);
        assert_eq!(hex.len(), 132);
        assert_eq!(parse_signature_hex(&hex).unwrap(), sig);
        assert!(matches!(
            parse_signature_hex("0x1234"),
            Err(Error::SignatureFormat(_))
        ));
        assert!(matches!(
            parse_signature_hex("zz"),
            Err(Error::SignatureFormat(_))
        ));
        let mut bad_v = sig.as_bytes();
        bad_v[64] = 7;
        assert!(matches!(
            parse_signature_bytes(&bad_v),
            Err(Error::SignatureFormat(_))
        ));
    }
}
