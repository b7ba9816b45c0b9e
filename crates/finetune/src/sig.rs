//! The signatures of 0G's fine-tuning protocol (official SDK 0.9.0, `common/utils/encrypt.js`), and ours.
//!
//! All are EIP-191 `personal_sign` over a 32-byte keccak digest. One quirk is kept on purpose: the SDK signs
//! `ethers.toBeArray(hash)`, which drops the digest's leading zero bytes, so a digest that starts with `00`
//! is signed as a 31-byte message (prefix `"\x19Ethereum Signed Message:\n31"`). [`personal_hash`] does the same.

use alloy_primitives::{Address, B256, U256, keccak256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

use crate::error::{Error, Result};
use crate::state::TaskId;

/// A customer's public key, recovered from a signature: the ECIES recipient of the model key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The signer's address.
    pub address: Address,
    /// The signer's public key, uncompressed SEC1 (65 bytes).
    pub public_key: Vec<u8>,
}

/// keccak256 of the EIP-191 message for `digest`, with `toBeArray`'s leading-zero stripping.
pub fn personal_hash(digest: &B256) -> B256 {
    let first = digest.iter().position(|b| *b != 0).unwrap_or(digest.len());
    let msg = digest.get(first..).unwrap_or_default();
    let mut buf = Vec::with_capacity(msg.len() + 32);
    buf.extend_from_slice(b"\x19Ethereum Signed Message:\n");
    buf.extend_from_slice(msg.len().to_string().as_bytes());
    buf.extend_from_slice(msg);
    keccak256(&buf)
}

/// Signs `digest` as the official SDK does (`signer.signMessage(toBeArray(digest))`): 65 bytes r‖s‖v,
/// v = 27/28, deterministic (RFC 6979).
pub fn sign_personal(key: &SigningKey, digest: &B256) -> Result<[u8; 65]> {
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

/// Parses a 0x-hex 65-byte signature.
pub fn parse_signature(what: &'static str, hex_sig: &str) -> Result<[u8; 65]> {
    let raw = hex::decode(hex_sig.trim().trim_start_matches("0x")).map_err(|e| Error::BadSignature {
        what,
        reason: format!("not hex: {e}"),
    })?;
    <[u8; 65]>::try_from(raw.as_slice()).map_err(|_| Error::BadSignature {
        what,
        reason: format!("{} bytes, expected 65 (r‖s‖v)", raw.len()),
    })
}

/// Recovers the signer of a `personal_sign` signature over `digest` (v = 27/28 or 0/1; high-s accepted and
/// normalised, as ethers does).
pub fn recover_personal(what: &'static str, digest: &B256, sig: &[u8; 65]) -> Result<Recovered> {
    let bad = |reason: String| Error::BadSignature { what, reason };
    let v = match sig[64] {
        27 | 28 => sig[64] - 27,
        0 | 1 => sig[64],
        other => return Err(bad(format!("recovery byte v = {other}, expected 27/28 or 0/1"))),
    };
    let mut signature = Signature::from_slice(&sig[..64]).map_err(|e| bad(e.to_string()))?;
    let mut rec = RecoveryId::from_byte(v).ok_or_else(|| bad("recovery id".into()))?;
    if let Some(low) = signature.normalize_s() {
        signature = low;
        rec = RecoveryId::new(!rec.is_y_odd(), rec.is_x_reduced());
    }
    let key = VerifyingKey::recover_from_prehash(personal_hash(digest).as_slice(), &signature, rec)
        .map_err(|e| bad(format!("does not recover: {e}")))?;
    let point = key.to_encoded_point(false);
    Ok(Recovered {
        address: Address::from_raw_public_key(point.as_bytes().get(1..).unwrap_or_default()),
        public_key: point.as_bytes().to_vec(),
    })
}

/// Recovers and checks that the signer is `expected`.
pub fn verify_personal(
    what: &'static str,
    digest: &B256,
    sig: &[u8; 65],
    expected: Address,
) -> Result<Recovered> {
    let r = recover_personal(what, digest, sig)?;
    if r.address != expected {
        return Err(Error::WrongSigner {
            what,
            expected,
            recovered: r.address,
        });
    }
    Ok(r)
}

/// create-task (`signRequest`): keccak256(address ‖ uint256 nonce ‖ UTF-8 of `datasetHash`), solidity-packed.
pub fn create_digest(user: Address, nonce: U256, dataset_hash: &str) -> B256 {
    let mut buf = Vec::with_capacity(52 + dataset_hash.len());
    buf.extend_from_slice(user.as_slice());
    buf.extend_from_slice(&nonce.to_be_bytes::<32>());
    buf.extend_from_slice(dataset_hash.as_bytes());
    keccak256(&buf)
}

/// cancel-task (`signTaskID`): keccak256 of the id's 16 bytes (hex without dashes).
pub fn cancel_digest(id: &TaskId) -> B256 {
    let raw = hex::decode(id.dashless()).unwrap_or_default(); // a TaskId is always 32 hex digits
    keccak256(&raw)
}

/// TEE dataset upload (`signDatasetUpload`): keccak256(UTF-8 of the EIP-55 address followed by the decimal
/// timestamp in seconds).
pub fn dataset_digest(user: Address, timestamp: i64) -> B256 {
    keccak256(format!("{}{timestamp}", user.to_checksum(None)).as_bytes())
}

/// TEE model download (`downloadLoRAFromTEE`): keccak256(UTF-8 of the dashless id followed by the decimal
/// timestamp in seconds).
pub fn lora_digest(id: &TaskId, timestamp: i64) -> B256 {
    keccak256(format!("{}{timestamp}", id.dashless()).as_bytes())
}

/// Ours: an authenticated task read (native gRPC reads, and HTTP reads under `require_read_auth`):
/// keccak256(UTF-8 of `"zg-finetune read " ‖ EIP-55 address ‖ " " ‖ timestamp`). Domain-separated from the
/// 0G digests, so a read signature can never be replayed as an upload or a download.
pub fn read_digest(user: Address, timestamp: i64) -> B256 {
    keccak256(format!("zg-finetune read {} {timestamp}", user.to_checksum(None)).as_bytes())
}

/// Ours: a native (gRPC) create-task binds everything the 0G signature leaves out — the provider, the model,
/// the training parameters and the most the customer agrees to pay:
/// keccak256("zg-finetune create v1" ‖ provider ‖ user ‖ uint256 nonce ‖ keccak(datasetHash) ‖ keccak(model)
/// ‖ keccak(trainingParams) ‖ uint256 maxFee).
pub fn native_create_digest(
    provider: Address,
    user: Address,
    nonce: U256,
    dataset_hash: &str,
    model: &str,
    training_params: &str,
    max_fee: U256,
) -> B256 {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"zg-finetune create v1");
    buf.extend_from_slice(provider.as_slice());
    buf.extend_from_slice(user.as_slice());
    buf.extend_from_slice(&nonce.to_be_bytes::<32>());
    buf.extend_from_slice(keccak256(dataset_hash.as_bytes()).as_slice());
    buf.extend_from_slice(keccak256(model.as_bytes()).as_slice());
    buf.extend_from_slice(keccak256(training_params.as_bytes()).as_slice());
    buf.extend_from_slice(&max_fee.to_be_bytes::<32>());
    keccak256(&buf)
}

/// Checks a signed timestamp against `now` (seconds), both ways.
pub fn check_fresh(timestamp: i64, now: i64, window_secs: u64) -> Result<()> {
    if timestamp.abs_diff(now) > window_secs {
        return Err(Error::StaleTimestamp {
            timestamp,
            now,
            window_secs,
        });
    }
    Ok(())
}

/// The address of a signing key.
pub fn address_of(key: &SigningKey) -> Address {
    let p = key.verifying_key().to_encoded_point(false);
    Address::from_raw_public_key(p.as_bytes().get(1..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::b256;

    fn anvil0() -> SigningKey {
        SigningKey::from_slice(
            &hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap(),
        )
        .unwrap()
    }

    /// FINE_TUNING.md §2 vectors (confirmed against the official SDK 0.9.0).
    #[test]
    fn zero_g_digests_match_the_official_client() {
        let user = address_of(&anvil0());
        assert_eq!(
            user.to_checksum(None),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        let task = TaskId::parse("3f1c2b7a-9d4e-4a61-8c2f-0123456789ab").unwrap();
        let ds = format!("0x{}", "ab".repeat(32));
        let nonce = U256::from(17961644597290040u64);
        assert_eq!(
            create_digest(user, nonce, &ds),
            b256!("0xb25a570353e1cc001acaca9f5231191fb457ed1a7bfc38854ffd3bf703064b0b")
        );
        assert_eq!(
            cancel_digest(&task),
            b256!("0x520c230c6e095b3ca58706766dbd7ab0fbd7f5ba60b54d23ff532b91134e783c")
        );
        assert_eq!(
            dataset_digest(user, 1796164459),
            b256!("0x20730249ffd68ee3eb65aea42844f1aba78fc7a3d1f89805598dde5eb39437e3")
        );
        assert_eq!(
            lora_digest(&task, 1796164459),
            b256!("0x3489bf4d0c9e44ededa8b452fead33375ee49a3bff560d6e312ff2ee7cedfc30")
        );
        let sig = sign_personal(&anvil0(), &create_digest(user, nonce, &ds)).unwrap();
        let h = hex::encode(sig);
        assert!(h.starts_with("76a31ebd") && h.ends_with("b44b7b1e1b"), "{h}");
        let r = verify_personal("create", &create_digest(user, nonce, &ds), &sig, user).unwrap();
        assert_eq!(r.public_key.len(), 65);
    }

    #[test]
    fn wrong_signer_and_garbage_are_refused() {
        let user = address_of(&anvil0());
        let d = dataset_digest(user, 5);
        let mut sig = sign_personal(&anvil0(), &d).unwrap();
        let other = dataset_digest(user, 6);
        assert!(matches!(
            verify_personal("dataset", &other, &sig, user),
            Err(Error::WrongSigner { .. }) | Err(Error::BadSignature { .. })
        ));
        sig[64] = 29;
        assert!(matches!(
            recover_personal("dataset", &d, &sig),
            Err(Error::BadSignature { .. })
        ));
        assert!(parse_signature("x", "0x1234").is_err());
        assert!(parse_signature("x", "zz").is_err());
        assert!(check_fresh(100, 500, 300).is_err());
        assert!(check_fresh(300, 500, 300).is_ok());
    }

    #[test]
    fn a_digest_with_a_leading_zero_is_signed_short_as_ethers_does() {
        let d = b256!("0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
        let mut expect = b"\x19Ethereum Signed Message:\n31".to_vec();
        expect.extend_from_slice(&d[1..]);
        assert_eq!(personal_hash(&d), keccak256(&expect));
    }
}
