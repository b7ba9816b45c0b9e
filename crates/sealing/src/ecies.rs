//! ECIES over secp256k1, byte-compatible with `eciesjs` 0.4 defaults (what 0G's SDK uses to open
//! `encryptedSecret`): ephemeral uncompressed public key (65) ‖ nonce (16) ‖ GCM tag (16) ‖ ciphertext;
//! key = HKDF-SHA256(ikm = ephemeral pk uncompressed ‖ shared point uncompressed, no salt, no info, 32 B);
//! AES-256-GCM with a 16-byte nonce, no AAD. (eciesjs `src/config.ts`, `utils/hash.ts`,
//! `utils/symmetric.ts`, `keys/PrivateKey.ts` `encapsulate`.)

use crate::error::{Error, Result};
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce, Tag};
use hkdf::Hkdf;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{PublicKey, SecretKey};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;

/// AES-256-GCM with eciesjs' 16-byte nonce.
type Aes256Gcm16 = AesGcm<Aes256, U16>;

const PK_LEN: usize = 65;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Overhead of a payload over its plaintext.
pub(crate) const ECIES_OVERHEAD: usize = PK_LEN + NONCE_LEN + TAG_LEN;

fn derive_key(ephemeral_pk: &[u8], shared_point: &[u8]) -> Result<[u8; 32]> {
    let mut ikm = Vec::with_capacity(PK_LEN * 2);
    ikm.extend_from_slice(ephemeral_pk);
    ikm.extend_from_slice(shared_point);
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(None, &ikm)
        .expand(&[], &mut okm)
        .map_err(|_| Error::EciesDecrypt)?;
    Ok(okm)
}

#[allow(
    clippy::arithmetic_side_effects,
    reason = "elliptic-curve scalar multiplication, not integer arithmetic"
)]
fn shared_point(secret: &SecretKey, public: &PublicKey) -> Vec<u8> {
    let p = (public.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    p.to_encoded_point(false).as_bytes().to_vec()
}

/// Encrypts `plaintext` to `receiver` (what eciesjs `encrypt(receiverPk, data)` produces).
pub fn ecies_encrypt<R: RngCore + CryptoRng>(
    receiver: &PublicKey,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let ephemeral = SecretKey::random(rng);
    let eph_pk = ephemeral.public_key().to_encoded_point(false);
    let key = derive_key(eph_pk.as_bytes(), &shared_point(&ephemeral, receiver))?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.try_fill_bytes(&mut nonce)
        .map_err(|e| Error::Rng(e.to_string()))?;
    let mut buf = plaintext.to_vec();
    let tag = Aes256Gcm16::new(&key.into())
        .encrypt_in_place_detached(Nonce::<U16>::from_slice(&nonce), &[], &mut buf)
        .map_err(|_| Error::EciesDecrypt)?;
    let mut out = Vec::with_capacity(ECIES_OVERHEAD.saturating_add(buf.len()));
    out.extend_from_slice(eph_pk.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Decrypts an eciesjs payload with the receiver's secret key.
pub fn ecies_decrypt(receiver: &SecretKey, payload: &[u8]) -> Result<Vec<u8>> {
    let too_short = Error::EciesTooShort { len: payload.len() };
    let (eph, rest) = payload.split_at_checked(PK_LEN).ok_or(too_short)?;
    let (nonce, rest) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(Error::EciesTooShort { len: payload.len() })?;
    let (tag, ct) = rest
        .split_at_checked(TAG_LEN)
        .ok_or(Error::EciesTooShort { len: payload.len() })?;
    let eph_pk = PublicKey::from_sec1_bytes(eph).map_err(|_| Error::InvalidPublicKey)?;
    let key = derive_key(eph, &shared_point(receiver, &eph_pk))?;
    let mut buf = ct.to_vec();
    Aes256Gcm16::new(&key.into())
        .decrypt_in_place_detached(
            Nonce::<U16>::from_slice(nonce),
            &[],
            &mut buf,
            Tag::from_slice(tag),
        )
        .map_err(|_| Error::EciesDecrypt)?;
    Ok(buf)
}
