//! Response receipts: the 0G-compatible EIP-191 text signature and the native ed25519 receipt.

use alloy_primitives::{Address, B256, U256};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::meter::Usage;
use crate::native::body_hash;
use crate::sig::{EthSigner, parse_signature_hex, signature_hex};

/// The 0G signature endpoint's answer (`GET /v1/proxy/signature/{key}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZgReceipt {
    /// `hex(sha256(request body)) ":" hex(sha256(response bytes as sent))`.
    pub text: String,
    /// `0x`-hex EIP-191 signature of `text`.
    pub signature: String,
    /// The TEE signer's address.
    pub signing_address: Address,
    /// Always `"ecdsa"`.
    pub signing_algo: String,
}

/// The text a 0G receipt signs for these exact request and response bytes.
pub fn zg_receipt_text(request: &[u8], response: &[u8]) -> String {
    format!(
        "{}:{}",
        hex::encode(Sha256::digest(request)),
        hex::encode(Sha256::digest(response))
    )
}

impl ZgReceipt {
    /// Signs the receipt text with the TEE's secp256k1 key (EIP-191 `signMessage(text)`).
    pub fn sign(signer: &EthSigner, request: &[u8], response: &[u8]) -> Result<Self> {
        let text = zg_receipt_text(request, response);
        let sig = signer.sign_message(text.as_bytes())?;
        Ok(Self {
            text,
            signature: signature_hex(&sig),
            signing_address: signer.address(),
            signing_algo: "ecdsa".to_owned(),
        })
    }

    /// Fail-closed check for clients: recomputes both hashes from the bytes held, and checks the
    /// signature recovers to `expected_signer` (the on-chain `teeSignerAddress`).
    pub fn verify(&self, request: &[u8], response: &[u8], expected_signer: Address) -> Result<()> {
        let actual = zg_receipt_text(request, response);
        if actual != self.text {
            return Err(Error::ReceiptMismatch {
                signed: self.text.clone(),
                actual,
            });
        }
        if self.signing_algo != "ecdsa" {
            return Err(Error::SignatureFormat(format!(
                "signing_algo {:?} is not ecdsa",
                self.signing_algo
            )));
        }
        let sig = parse_signature_hex(&self.signature)?;
        let recovered =
            sig.recover_address_from_msg(self.text.as_bytes())
                .map_err(|_| Error::BadSignature {
                    claimed: expected_signer,
                    recovered: None,
                })?;
        if recovered != expected_signer {
            return Err(Error::BadSignature {
                claimed: expected_signer,
                recovered: Some(recovered),
            });
        }
        Ok(())
    }
}

/// Domain tag that starts every encoded native receipt, so a receipt signature can never be
/// confused with any other ed25519 message of the TEE key.
pub const RECEIPT_TAG: &[u8] = b"zg-compute/receipt/v1\0";

/// The native receipt: what the TEE attests about one served request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// sha256 of the request body.
    pub request_hash: B256,
    /// sha256 of the response bytes as sent.
    pub response_hash: B256,
    /// The model that served it.
    pub model: String,
    /// Metered usage.
    pub usage: Usage,
    /// Fee charged, in neuron.
    pub fee: U256,
    /// The request's nonce.
    pub nonce: U256,
}

impl Receipt {
    /// Canonical bytes: tag, the two hashes, `u32` length + model bytes, `u64` token counts,
    /// 32-byte fee and nonce, all big-endian — unambiguous by construction.
    pub fn encode(&self) -> Vec<u8> {
        let model = self.model.as_bytes();
        let mut out = Vec::with_capacity(RECEIPT_TAG.len().saturating_add(model.len()).saturating_add(150));
        out.extend_from_slice(RECEIPT_TAG);
        out.extend_from_slice(self.request_hash.as_slice());
        out.extend_from_slice(self.response_hash.as_slice());
        // Models are short names; a model longer than u32::MAX bytes cannot exist in memory here.
        out.extend_from_slice(&u32::try_from(model.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(model);
        out.extend_from_slice(&self.usage.prompt_tokens.to_be_bytes());
        out.extend_from_slice(&self.usage.completion_tokens.to_be_bytes());
        out.extend_from_slice(&self.fee.to_be_bytes::<32>());
        out.extend_from_slice(&self.nonce.to_be_bytes::<32>());
        out
    }
}

/// The TEE's ed25519 response key. `Debug` prints the public key only.
#[derive(Clone)]
pub struct ReceiptSigner(SigningKey);

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReceiptSigner")
            .field(&hex::encode(self.0.verifying_key().as_bytes()))
            .finish()
    }
}

impl ReceiptSigner {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// A fresh random key (OS randomness).
    pub fn random() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The public key clients verify with.
    pub fn verifying_key(&self) -> ReceiptVerifier {
        ReceiptVerifier(self.0.verifying_key())
    }

    /// Signs a receipt.
    pub fn sign(&self, receipt: Receipt) -> SignedReceipt {
        let signature = self.0.sign(&receipt.encode()).to_bytes();
        SignedReceipt { receipt, signature }
    }
}

/// A receipt with the TEE's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// 64-byte ed25519 signature over [`Receipt::encode`].
    pub signature: [u8; 64],
}

/// The TEE's ed25519 public key, as bound in its attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptVerifier(VerifyingKey);

impl ReceiptVerifier {
    /// Parses a 32-byte public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| Error::SignatureFormat(format!("ed25519 public key: {e}")))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies one receipt's signature (strict: rejects small-order keys and malleable signatures).
    pub fn verify(&self, r: &SignedReceipt) -> Result<()> {
        let sig = ed25519_dalek::Signature::from_bytes(&r.signature);
        self.0
            .verify_strict(&r.receipt.encode(), &sig)
            .map_err(|_| Error::BadSignature {
                claimed: Address::ZERO,
                recovered: None,
            })
    }

    /// Verifies a receipt and that it covers exactly `request` and `response` (fail closed).
    pub fn verify_exchange(&self, r: &SignedReceipt, request: &[u8], response: &[u8]) -> Result<()> {
        let (req, resp) = (body_hash(request), body_hash(response));
        if req != r.receipt.request_hash || resp != r.receipt.response_hash {
            return Err(Error::ReceiptMismatch {
                signed: format!("{}:{}", r.receipt.request_hash, r.receipt.response_hash),
                actual: format!("{req}:{resp}"),
            });
        }
        self.verify(r)
    }

    /// Verifies many receipts at once (ed25519 batch verification, several times faster than one
    /// by one). On failure, call [`ReceiptVerifier::verify`] per receipt to find the bad one.
    pub fn verify_batch(&self, receipts: &[SignedReceipt]) -> Result<()> {
        let encoded: Vec<Vec<u8>> = receipts.iter().map(|r| r.receipt.encode()).collect();
        let messages: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let sigs: Vec<ed25519_dalek::Signature> = receipts
            .iter()
            .map(|r| ed25519_dalek::Signature::from_bytes(&r.signature))
            .collect();
        let keys = vec![self.0; receipts.len()];
        ed25519_dalek::verify_batch(&messages, &sigs, &keys).map_err(|_| Error::BadSignature {
            claimed: Address::ZERO,
            recovered: None,
        })
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

    const TEE_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

    #[test]
    fn zg_receipt_text_vector_and_verify() {
        assert_eq!(
            zg_receipt_text(b"", b"abc"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let s = EthSigner::from_hex(TEE_KEY).unwrap();
        let r = ZgReceipt::sign(&s, b"req", b"resp").unwrap();
        r.verify(b"req", b"resp", s.address()).unwrap();
        assert!(matches!(
            r.verify(b"req", b"resp!", s.address()),
            Err(Error::ReceiptMismatch { .. })
        ));
        assert!(matches!(
            r.verify(b"req", b"resp", Address::ZERO),
            Err(Error::BadSignature {
                recovered: Some(_),
                ..
            })
        ));
        // Differential vector from ethers 6 `wallet.signMessage(text)` with the same key.
        assert_eq!(
            r.signature,
            "0x94edbce840d4f17f50b727c801705a0563a7332b4a9f48fe5c566ada9106373c403cffe6e82fa954229e4e7840e978e90f87f198af8267674ce52b488c8719fd1b"
        );
        assert_eq!(
            r.signing_address.to_string(),
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["signing_algo"], "ecdsa");
        assert_eq!(json["text"], zg_receipt_text(b"req", b"resp"));
    }

    fn receipt(i: u64) -> Receipt {
        Receipt {
            request_hash: body_hash(&i.to_be_bytes()),
            response_hash: body_hash(b"resp"),
            model: "demo".into(),
            usage: Usage {
                prompt_tokens: i,
                completion_tokens: 2 * i,
            },
            fee: U256::from(i * 1000),
            nonce: U256::from(i),
        }
    }

    #[test]
    fn native_receipts_sign_verify_and_batch() {
        let k = ReceiptSigner::from_seed(&[7; 32]);
        let v = ReceiptVerifier::from_bytes(&k.verifying_key().to_bytes()).unwrap();
        let mut many: Vec<_> = (1..=64).map(|i| k.sign(receipt(i))).collect();
        v.verify_batch(&many).unwrap();
        v.verify(&many[0]).unwrap();
        let one = k.sign(Receipt {
            request_hash: body_hash(b"q"),
            response_hash: body_hash(b"a"),
            ..receipt(1)
        });
        v.verify_exchange(&one, b"q", b"a").unwrap();
        assert!(matches!(
            v.verify_exchange(&one, b"q", b"b"),
            Err(Error::ReceiptMismatch { .. })
        ));
        many[10].receipt.fee = U256::from(1);
        assert!(v.verify_batch(&many).is_err());
        assert!(v.verify(&many[10]).is_err());
        let other = ReceiptSigner::from_seed(&[8; 32]).verifying_key();
        assert!(other.verify(&many[0]).is_err());
    }

    #[test]
    fn encoding_is_unambiguous_in_model_boundary() {
        let a = Receipt {
            model: "ab".into(),
            ..receipt(1)
        };
        let b = Receipt {
            model: "a".into(),
            ..receipt(1)
        };
        assert_ne!(a.encode(), b.encode());
        assert_eq!(a.encode().len(), RECEIPT_TAG.len() + 64 + 4 + 2 + 16 + 64);
    }
}
