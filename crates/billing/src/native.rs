//! Native signed requests and cumulative vouchers (EIP-712), and the TEE settlement message.

use alloy_primitives::{Address, B256, Bytes, Signature, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::sig::{EthSigner, KeyCache, parse_signature_hex, signature_hex};

mod types {
    #![allow(missing_docs, unreachable_pub)]
    use super::sol;

    sol! {
        /// A customer's signed request: binds the body (sha256), a per-account nonce and a fee cap.
        #[derive(Debug, PartialEq, Eq)]
        struct Request {
            address user;
            address provider;
            string service;
            uint256 nonce;
            bytes32 bodyHash;
            uint256 feeCap;
        }

        /// A cumulative voucher: the customer owes `cumulativeAmount` neuron to `provider` in total.
        /// Byte-identical to the InferenceServing contract's `Voucher` type.
        #[derive(Debug, PartialEq, Eq)]
        struct Voucher {
            address user;
            address provider;
            uint256 cumulativeAmount;
            uint256 nonce;
        }

        /// The TEE signer's settlement message (0G's `TEESettlement`).
        #[derive(Debug, PartialEq, Eq)]
        struct TEESettlement {
            bytes32 requestsHash;
            uint256 nonce;
            address provider;
            address user;
            uint256 totalFee;
        }
    }
}

pub use types::{Request, TEESettlement, Voucher};

/// EIP-712 domain name of the TEE settlement message (0G's InferenceServing).
pub const TEE_SETTLEMENT_DOMAIN_NAME: &str = "0G Inference Serving";
/// EIP-712 domain name of vouchers (our InferenceServing).
pub const VOUCHER_DOMAIN_NAME: &str = "zg-compute Vouchers";
/// EIP-712 domain name of native requests (checked by the provider only).
pub const REQUEST_DOMAIN_NAME: &str = "zg-compute Requests";

/// The three EIP-712 domains of one deployment (chain id + InferenceServing address), with their
/// separators computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domains {
    chain_id: u64,
    serving: Address,
    request_sep: B256,
    voucher_sep: B256,
    settlement_sep: B256,
}

fn domain(name: &'static str, chain_id: u64, serving: Address) -> Eip712Domain {
    eip712_domain! { name: name, version: "1", chain_id: chain_id, verifying_contract: serving, }
}

fn signing_hash(separator: &B256, struct_hash: &B256) -> B256 {
    let mut buf = [0u8; 66];
    let (prefix, rest) = buf.split_at_mut(2);
    prefix.copy_from_slice(&[0x19, 0x01]);
    let (sep, hash) = rest.split_at_mut(32);
    sep.copy_from_slice(separator.as_slice());
    hash.copy_from_slice(struct_hash.as_slice());
    keccak256(buf)
}

impl Domains {
    /// Domains for the InferenceServing contract at `serving` on `chain_id`.
    pub fn new(chain_id: u64, serving: Address) -> Self {
        Self {
            chain_id,
            serving,
            request_sep: domain(REQUEST_DOMAIN_NAME, chain_id, serving).separator(),
            voucher_sep: domain(VOUCHER_DOMAIN_NAME, chain_id, serving).separator(),
            settlement_sep: domain(TEE_SETTLEMENT_DOMAIN_NAME, chain_id, serving).separator(),
        }
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The InferenceServing contract address.
    pub fn serving(&self) -> Address {
        self.serving
    }

    /// EIP-712 signing hash of a native request.
    pub fn request_hash(&self, r: &Request) -> B256 {
        signing_hash(&self.request_sep, &r.eip712_hash_struct())
    }

    /// EIP-712 signing hash of a voucher (what the contract's `_hashTypedDataV4` computes).
    pub fn voucher_hash(&self, v: &Voucher) -> B256 {
        signing_hash(&self.voucher_sep, &v.eip712_hash_struct())
    }

    /// EIP-712 signing hash of a TEE settlement message.
    pub fn settlement_hash(&self, s: &TEESettlement) -> B256 {
        signing_hash(&self.settlement_sep, &s.eip712_hash_struct())
    }

    /// Signs a request as its customer.
    pub fn sign_request(&self, signer: &EthSigner, request: Request) -> Result<SignedRequest> {
        let signature = signer.sign_hash(&self.request_hash(&request))?;
        Ok(SignedRequest {
            request,
            signature,
            voucher: None,
        })
    }

    /// Signs a voucher as its customer.
    pub fn sign_voucher(&self, signer: &EthSigner, voucher: Voucher) -> Result<SignedVoucher> {
        let signature = signer.sign_hash(&self.voucher_hash(&voucher))?;
        Ok(SignedVoucher { voucher, signature })
    }

    /// Checks a request's signature (with the key cache).
    pub fn verify_request(&self, keys: &KeyCache, r: &SignedRequest) -> Result<()> {
        keys.verify(r.request.user, &self.request_hash(&r.request), &r.signature)
    }

    /// Checks a voucher's signature (with the key cache).
    pub fn verify_voucher(&self, keys: &KeyCache, v: &SignedVoucher) -> Result<()> {
        keys.verify(v.voucher.user, &self.voucher_hash(&v.voucher), &v.signature)
    }
}

/// sha256 of a request body, the `bodyHash` of a [`Request`].
pub fn body_hash(body: &[u8]) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(body)))
}

/// A voucher with the customer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The voucher.
    pub voucher: Voucher,
    /// The customer's EIP-712 signature.
    pub signature: Signature,
}

impl SignedVoucher {
    /// The 65-byte `r‖s‖v` signature the contract expects.
    pub fn signature_bytes(&self) -> Bytes {
        Bytes::from(self.signature.as_bytes().to_vec())
    }
}

/// A request with the customer's signature and, usually, the latest voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The request.
    pub request: Request,
    /// The customer's EIP-712 signature over it.
    pub signature: Signature,
    /// The customer's newest voucher to this provider, if any.
    pub voucher: Option<SignedVoucher>,
}

impl SignedRequest {
    /// Attaches a voucher.
    pub fn with_voucher(mut self, voucher: SignedVoucher) -> Self {
        self.voucher = Some(voucher);
        self
    }

    /// Checks that `body` is the body the customer signed.
    pub fn check_body(&self, body: &[u8]) -> Result<()> {
        let actual = body_hash(body);
        if actual != self.request.bodyHash {
            return Err(Error::BodyMismatch {
                signed: self.request.bodyHash,
                actual,
            });
        }
        Ok(())
    }

    /// Encodes the envelope for the `ZG-Request` header: base64url (no padding) of a JSON document
    /// with decimal amounts and `0x`-hex signatures.
    pub fn to_header(&self) -> String {
        let env = Envelope {
            user: self.request.user,
            provider: self.request.provider,
            service: self.request.service.clone(),
            nonce: self.request.nonce.to_string(),
            body_hash: self.request.bodyHash,
            fee_cap: self.request.feeCap.to_string(),
            signature: signature_hex(&self.signature),
            voucher: self.voucher.as_ref().map(|v| EnvelopeVoucher {
                cumulative_amount: v.voucher.cumulativeAmount.to_string(),
                nonce: v.voucher.nonce.to_string(),
                signature: signature_hex(&v.signature),
            }),
        };
        // Serialising plain strings and fixed-size hex cannot fail.
        let json = serde_json::to_vec(&env).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a `ZG-Request` header value. Does not verify signatures.
    pub fn from_header(value: &str) -> Result<Self> {
        if value.len() > 16 * 1024 {
            return Err(Error::Envelope(format!(
                "{} bytes is larger than 16 KiB",
                value.len()
            )));
        }
        let json = URL_SAFE_NO_PAD
            .decode(value.trim())
            .map_err(|e| Error::Envelope(format!("base64: {e}")))?;
        let env: Envelope =
            serde_json::from_slice(&json).map_err(|e| Error::Envelope(format!("json: {e}")))?;
        let dec = |field: &'static str, s: &str| -> Result<U256> {
            if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Envelope(format!(
                    "{field} must be a decimal integer, got {s:?}"
                )));
            }
            U256::from_str_radix(s, 10).map_err(|e| Error::Envelope(format!("{field}: {e}")))
        };
        let request = Request {
            user: env.user,
            provider: env.provider,
            service: env.service,
            nonce: dec("nonce", &env.nonce)?,
            bodyHash: env.body_hash,
            feeCap: dec("feeCap", &env.fee_cap)?,
        };
        let signature = parse_signature_hex(&env.signature)?;
        let voucher = match env.voucher {
            None => None,
            Some(v) => Some(SignedVoucher {
                voucher: Voucher {
                    user: request.user,
                    provider: request.provider,
                    cumulativeAmount: dec("voucher.cumulativeAmount", &v.cumulative_amount)?,
                    nonce: dec("voucher.nonce", &v.nonce)?,
                },
                signature: parse_signature_hex(&v.signature)?,
            }),
        };
        Ok(Self {
            request,
            signature,
            voucher,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope {
    user: Address,
    provider: Address,
    service: String,
    nonce: String,
    body_hash: B256,
    fee_cap: String,
    signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    voucher: Option<EnvelopeVoucher>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvelopeVoucher {
    cumulative_amount: String,
    nonce: String,
    signature: String,
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256};

    pub(crate) const SERVING: Address = address!("0x0165878A594ca255338adfa4d48449f69242Eb8F");

    #[test]
    fn type_strings_match_the_contract() {
        assert_eq!(
            Voucher::eip712_encode_type(),
            "Voucher(address user,address provider,uint256 cumulativeAmount,uint256 nonce)"
        );
        assert_eq!(
            TEESettlement::eip712_encode_type(),
            "TEESettlement(bytes32 requestsHash,uint256 nonce,address provider,address user,uint256 totalFee)"
        );
        assert_eq!(
            Request::eip712_encode_type(),
            "Request(address user,address provider,string service,uint256 nonce,bytes32 bodyHash,uint256 feeCap)"
        );
    }

    /// Fixed digests, computed independently with ethers 6.16 `TypedDataEncoder.hash` (differential vector).
    #[test]
    fn fixed_digests() {
        let d = Domains::new(31337, SERVING);
        let v = Voucher {
            user: address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            provider: address!("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
            cumulativeAmount: U256::from(1_000_000_000_000_000_000u64),
            nonce: U256::from(7),
        };
        assert_eq!(d.voucher_hash(&v), VOUCHER_DIGEST);
        let s = TEESettlement {
            requestsHash: b256!("0x1111111111111111111111111111111111111111111111111111111111111111"),
            nonce: U256::from(3),
            provider: v.provider,
            user: v.user,
            totalFee: U256::from(12345),
        };
        assert_eq!(d.settlement_hash(&s), SETTLEMENT_DIGEST);
    }

    const VOUCHER_DIGEST: B256 = b256!("0x084d82069e31f678d562373975a2ff60d1a5867a9501e5a53793acc7eb93642c");
    const SETTLEMENT_DIGEST: B256 =
        b256!("0x0cd9408271e28524de01064c1bd87e99af20d0e111ec3a409aa915a68b119bce");

    #[test]
    fn envelope_round_trip_and_rejections() {
        let d = Domains::new(31337, SERVING);
        let user = EthSigner::random();
        let provider = address!("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
        let body = br#"{"model":"m","messages":[]}"#;
        let req = Request {
            user: user.address(),
            provider,
            service: "chat".into(),
            nonce: U256::from(42),
            bodyHash: body_hash(body),
            feeCap: U256::from(10u64.pow(15)),
        };
        let v = Voucher {
            user: user.address(),
            provider,
            cumulativeAmount: U256::from(5),
            nonce: U256::from(41),
        };
        let signed = d
            .sign_request(&user, req)
            .unwrap()
            .with_voucher(d.sign_voucher(&user, v).unwrap());
        let header = signed.to_header();
        let back = SignedRequest::from_header(&header).unwrap();
        assert_eq!(back, signed);
        back.check_body(body).unwrap();
        assert!(matches!(back.check_body(b"{}"), Err(Error::BodyMismatch { .. })));
        let keys = KeyCache::default();
        d.verify_request(&keys, &back).unwrap();
        d.verify_voucher(&keys, back.voucher.as_ref().unwrap()).unwrap();
        // Same request under another chain id does not verify.
        let other = Domains::new(1, SERVING);
        assert!(other.verify_request(&KeyCache::default(), &back).is_err());

        assert!(matches!(
            SignedRequest::from_header("***"),
            Err(Error::Envelope(_))
        ));
        assert!(matches!(
            SignedRequest::from_header(&URL_SAFE_NO_PAD.encode("{}")),
            Err(Error::Envelope(_))
        ));
        let tweaked = String::from_utf8(URL_SAFE_NO_PAD.decode(&header).unwrap())
            .unwrap()
            .replace("\"nonce\":\"42\"", "\"nonce\":\"-42\"");
        assert!(matches!(
            SignedRequest::from_header(&URL_SAFE_NO_PAD.encode(tweaked)),
            Err(Error::Envelope(_))
        ));
    }
}
