//! EIP-191 `personal_sign` over a 32-byte keccak digest, strict: 65 bytes r‖s‖v, v ∈ {27, 28, 0, 1}, and a
//! high-s signature is refused (a malleated copy of a signature is not a second signature).

use alloy_primitives::{Address, B256, keccak256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

use crate::error::{Error, Result};

/// A 65-byte r‖s‖v signature.
pub type Sig65 = [u8; 65];

/// keccak256("\x19Ethereum Signed Message:\n32" ‖ digest).
pub fn personal_hash(digest: &B256) -> B256 {
    let mut buf = Vec::with_capacity(60);
    buf.extend_from_slice(b"\x19Ethereum Signed Message:\n32");
    buf.extend_from_slice(digest.as_slice());
    keccak256(&buf)
}

/// The address of a secp256k1 key.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    Address::from_raw_public_key(point.as_bytes().get(1..).unwrap_or_default())
}

/// Signs `digest` (EIP-191), deterministic (RFC 6979), low-s, v = 27/28.
pub fn sign(key: &SigningKey, digest: &B256) -> Result<Sig65> {
    let (sig, rec) = key
        .sign_prehash_recoverable(personal_hash(digest).as_slice())
        .map_err(|e| Error::BadSignature {
            what: "local",
            reason: e.to_string(),
        })?;
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + rec.to_byte();
    Ok(out)
}

/// Parses a signature from bytes of any length (65 expected).
pub fn sig65(what: &'static str, bytes: &[u8]) -> Result<Sig65> {
    Sig65::try_from(bytes).map_err(|_| Error::BadSignature {
        what,
        reason: format!("{} bytes, expected 65 (r‖s‖v)", bytes.len()),
    })
}

/// Recovers the signer's key of an EIP-191 signature over `digest`. Refuses high-s and unknown `v`.
pub fn recover(what: &'static str, digest: &B256, sig: &Sig65) -> Result<VerifyingKey> {
    let bad = |reason: String| Error::BadSignature { what, reason };
    let v = match sig[64] {
        27 | 28 => sig[64] - 27,
        0 | 1 => sig[64],
        other => return Err(bad(format!("recovery byte v = {other}, expected 27/28 or 0/1"))),
    };
    let signature = Signature::from_slice(&sig[..64]).map_err(|e| bad(e.to_string()))?;
    if signature.normalize_s().is_some() {
        return Err(bad("high-s signature (malleated); sign with low s".into()));
    }
    let rec = RecoveryId::from_byte(v).ok_or_else(|| bad("recovery id".into()))?;
    VerifyingKey::recover_from_prehash(personal_hash(digest).as_slice(), &signature, rec)
        .map_err(|e| bad(format!("does not recover: {e}")))
}

/// Recovers and checks that `expected` signed.
pub fn verify(what: &'static str, digest: &B256, sig: &Sig65, expected: Address) -> Result<VerifyingKey> {
    let key = recover(what, digest, sig)?;
    let recovered = address_of(&key);
    if recovered != expected {
        return Err(Error::WrongSigner {
            what,
            expected,
            recovered,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::scalar::IsHigh as _;

    #[test]
    fn a_signature_recovers_and_its_high_s_twin_is_refused() {
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let digest = keccak256(b"deploy");
        let sig = sign(&key, &digest).unwrap();
        let who = address_of(key.verifying_key());
        verify("t", &digest, &sig, who).unwrap();
        // The same signature with s' = n - s and the other parity: valid ECDSA, refused here.
        let s = Signature::from_slice(&sig[..64]).unwrap();
        let (r, s_low) = s.split_scalars();
        let high = Signature::from_scalars(r, -*s_low).unwrap();
        assert!(bool::from(high.s().is_high()));
        let mut twin = [0u8; 65];
        twin[..64].copy_from_slice(&high.to_bytes());
        twin[64] = if sig[64] == 27 { 28 } else { 27 };
        let e = verify("t", &digest, &twin, who).unwrap_err();
        assert!(e.to_string().contains("high-s"), "{e}");
        // Another signer, another digest, a bad v: all refused with a named reason.
        let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
        let e = verify("t", &digest, &sign(&other, &digest).unwrap(), who).unwrap_err();
        assert!(matches!(e, Error::WrongSigner { .. }), "{e}");
        let mut bad_v = sig;
        bad_v[64] = 29;
        assert!(verify("t", &digest, &bad_v, who).is_err());
        assert!(sig65("t", &sig[..64]).is_err());
    }
}
