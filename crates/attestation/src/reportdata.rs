//! REPORTDATA layouts: the native key binding, the 0G-compatible layout and the dstack/NEAR layout.
//!
//! # Native layout (64 bytes)
//! | bytes | content |
//! |---|---|
//! | 0 | `0x7a` (ASCII `z`): zg native layout tag |
//! | 1 | layout version, `0x01` |
//! | 2..32 | first 30 bytes of `SHA-256(KeyBinding::encode())`: commits to the keys |
//! | 32..64 | the verifier's 32-byte nonce (zeros when none was asked) |
//!
//! `KeyBinding::encode()` (the binding document the provider sends next to the quote) is:
//! `u8 len ‖ "zg-attestation/key-binding"` (domain), `u8 version = 1`, then fields as
//! `u8 tag ‖ u16 big-endian length ‖ bytes`, in tag order:
//! 1 = settlement signer address (20 bytes, secp256k1 / Ethereum),
//! 2 = ed25519 response-signing public key (32),
//! 3 = X25519 public key for encrypted requests (32, omitted when absent),
//! 4 = issued-at, u64 big-endian Unix seconds (8),
//! 5 = the provider (operator) address the TEE serves (20, omitted when absent; a binding without it
//! commits to exactly what it committed to before the field existed).
//!
//! # 0G layout
//! The signer address as ASCII `0x` + 40 hex digits (42 bytes), NUL-padded to 64 — what the
//! official 0G SDK reads from `GET /v1/quote`. It carries no nonce and no response key.
//!
//! # dstack / NEAR layout
//! The 20-byte signer address zero-padded to 32 bytes, then the 32-byte nonce.

use crate::{Error, Result, Timestamp};
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Tag byte of the native layout.
pub const NATIVE_TAG: u8 = 0x7a;
/// Current native layout version.
pub const NATIVE_VERSION: u8 = 1;
const DOMAIN: &[u8] = b"zg-attestation/key-binding";

/// Which REPORTDATA layout a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReportDataLayout {
    /// zg native: tag, version, key commitment, nonce.
    #[default]
    Native,
    /// 0G-compatible ASCII address.
    #[serde(rename = "0g", alias = "zerog")]
    ZeroG,
    /// dstack / NEAR AI: address ‖ nonce.
    Dstack,
    /// Not interpreted: no signer or nonce can be checked (quote-only verification).
    Raw,
}

/// The keys a TEE binds into its quote, sent alongside the quote (JSON) and committed to by the
/// native REPORTDATA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyBinding {
    /// Binding document version (1).
    pub version: u8,
    /// Settlement signer (secp256k1) address: must equal `teeSignerAddress` on chain.
    pub signer_address: Address,
    /// ed25519 response-signing public key (hex, 32 bytes).
    #[serde(with = "hex32")]
    pub response_key: [u8; 32],
    /// Optional X25519 public key for encrypted requests (hex, 32 bytes).
    #[serde(default, with = "opt_hex32", skip_serializing_if = "Option::is_none")]
    pub x25519_key: Option<[u8; 32]>,
    /// When the TEE produced this binding (Unix seconds): basis of the quote-age check.
    pub issued_at: Timestamp,
    /// The provider address (the on-chain service owner) this TEE serves, when the TEE names it. Lets a
    /// verifier refuse another provider that serves this TEE's attestation as its own (policy
    /// `expected_provider`): the signer alone does not say whose service it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Address>,
}

impl KeyBinding {
    /// A version-1 binding; checks that `response_key` is a valid ed25519 point.
    pub fn new(
        signer_address: Address,
        response_key: [u8; 32],
        x25519_key: Option<[u8; 32]>,
        issued_at: Timestamp,
    ) -> Result<Self> {
        let b = KeyBinding {
            version: 1,
            signer_address,
            response_key,
            x25519_key,
            issued_at,
            provider: None,
        };
        b.response_verifying_key()?;
        Ok(b)
    }

    /// The same binding naming the provider address this TEE serves (tag 5).
    pub fn with_provider(mut self, provider: Address) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The settlement address of a secp256k1 public key (SEC1, compressed or uncompressed).
    pub fn address_of_secp256k1(sec1: &[u8]) -> Result<Address> {
        let pk = k256::PublicKey::from_sec1_bytes(sec1).map_err(|e| Error::InvalidKey {
            kind: "secp256k1",
            reason: e.to_string(),
        })?;
        let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, false);
        let raw = point.as_bytes().get(1..).unwrap_or_default();
        Ok(Address::from_raw_public_key(raw))
    }

    /// The response key as an ed25519 verifying key.
    pub fn response_verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.response_key).map_err(|e| Error::InvalidKey {
            kind: "ed25519",
            reason: e.to_string(),
        })
    }

    /// The canonical byte encoding (see the module docs) that REPORTDATA commits to.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.push(DOMAIN.len() as u8);
        out.extend_from_slice(DOMAIN);
        out.push(self.version);
        let mut field = |tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(1, self.signer_address.as_slice());
        field(2, &self.response_key);
        if let Some(x) = &self.x25519_key {
            field(3, x);
        }
        field(4, &self.issued_at.as_secs().to_be_bytes());
        if let Some(p) = &self.provider {
            field(5, p.as_slice());
        }
        out
    }

    /// The 30-byte commitment stored at REPORTDATA[2..32].
    pub fn commitment(&self) -> [u8; 30] {
        let h: [u8; 32] = Sha256::digest(self.encode()).into();
        let mut c = [0u8; 30];
        c.copy_from_slice(h.get(..30).unwrap_or(&[0u8; 30]));
        c
    }

    /// Native REPORTDATA for this binding and nonce.
    pub fn report_data(&self, nonce: &[u8; 32]) -> [u8; 64] {
        let mut rd = [0u8; 64];
        rd[0] = NATIVE_TAG;
        rd[1] = NATIVE_VERSION;
        rd[2..32].copy_from_slice(&self.commitment());
        rd[32..].copy_from_slice(nonce);
        rd
    }
}

/// REPORTDATA decoded according to a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum ReportData {
    /// Native: commitment to a [`KeyBinding`] plus nonce.
    Native {
        /// Layout version byte.
        version: u8,
        /// `SHA-256(binding)[..30]`, hex.
        #[serde(with = "hexvec")]
        commitment: Vec<u8>,
        /// The verifier's nonce.
        #[serde(with = "hex32")]
        nonce: [u8; 32],
    },
    /// 0G: ASCII signer address.
    #[serde(rename = "0g")]
    ZeroG {
        /// The signer address.
        address: Address,
    },
    /// dstack/NEAR: address ‖ nonce.
    Dstack {
        /// The signer address.
        address: Address,
        /// The nonce.
        #[serde(with = "hex32")]
        nonce: [u8; 32],
    },
    /// Uninterpreted bytes.
    Raw {
        /// The 64 bytes, hex.
        #[serde(with = "hexvec")]
        bytes: Vec<u8>,
    },
}

impl ReportData {
    /// Parses `rd` as `layout`, naming the problem when it does not fit.
    pub fn parse(layout: ReportDataLayout, rd: &[u8; 64]) -> Result<Self> {
        let (head, tail) = rd.split_at(32);
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(tail);
        match layout {
            ReportDataLayout::Native => {
                let (tag, version) = (rd[0], rd[1]);
                if tag != NATIVE_TAG {
                    return Err(bad(
                        "native",
                        format!("tag byte is {tag:#04x}, expected {NATIVE_TAG:#04x} ('z')"),
                    ));
                }
                if version != NATIVE_VERSION {
                    return Err(bad(
                        "native",
                        format!("layout version {version} is not supported (1)"),
                    ));
                }
                Ok(ReportData::Native {
                    version,
                    commitment: head.get(2..).unwrap_or_default().to_vec(),
                    nonce,
                })
            }
            ReportDataLayout::ZeroG => {
                let text = head
                    .iter()
                    .chain(tail)
                    .take_while(|b| **b != 0)
                    .copied()
                    .collect::<Vec<u8>>();
                if rd
                    .get(text.len()..)
                    .is_some_and(|pad| pad.iter().any(|b| *b != 0))
                {
                    return Err(bad("0g", "bytes after the address are not all NUL".into()));
                }
                let s = std::str::from_utf8(&text).map_err(|_| bad("0g", "address is not ASCII".into()))?;
                if s.len() != 42 || !s.starts_with("0x") {
                    return Err(bad("0g", format!("expected \"0x\" + 40 hex digits, found {s:?}")));
                }
                let address = s.parse::<Address>().map_err(|e| bad("0g", e.to_string()))?;
                Ok(ReportData::ZeroG { address })
            }
            ReportDataLayout::Raw => Ok(ReportData::Raw { bytes: rd.to_vec() }),
            ReportDataLayout::Dstack => {
                if head.get(20..).is_some_and(|pad| pad.iter().any(|b| *b != 0)) {
                    return Err(bad(
                        "dstack",
                        "bytes 20..32 (address padding) are not zero".into(),
                    ));
                }
                Ok(ReportData::Dstack {
                    address: Address::from_slice(head.get(..20).unwrap_or(&[0u8; 20])),
                    nonce,
                })
            }
        }
    }

    /// Builds 0G-layout REPORTDATA (EIP-55 checksummed ASCII address, NUL-padded).
    pub fn zerog(address: &Address) -> [u8; 64] {
        let mut rd = [0u8; 64];
        let s = address.to_checksum(None);
        rd[..42].copy_from_slice(s.as_bytes());
        rd
    }

    /// Builds dstack/NEAR-layout REPORTDATA.
    pub fn dstack(address: &Address, nonce: &[u8; 32]) -> [u8; 64] {
        let mut rd = [0u8; 64];
        rd[..20].copy_from_slice(address.as_slice());
        rd[32..].copy_from_slice(nonce);
        rd
    }

    /// The bound signer address, if the layout carries one directly.
    pub fn address(&self) -> Option<Address> {
        match self {
            ReportData::Native { .. } | ReportData::Raw { .. } => None,
            ReportData::ZeroG { address } | ReportData::Dstack { address, .. } => Some(*address),
        }
    }

    /// The nonce, if the layout carries one.
    pub fn nonce(&self) -> Option<[u8; 32]> {
        match self {
            ReportData::Native { nonce, .. } | ReportData::Dstack { nonce, .. } => Some(*nonce),
            ReportData::ZeroG { .. } | ReportData::Raw { .. } => None,
        }
    }
}

fn bad(layout: &'static str, reason: String) -> Error {
    Error::MalformedReportData { layout, reason }
}

pub(crate) mod hex32 {
    use serde::{Deserialize as _, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))
    }
}

pub(crate) mod opt_hex32 {
    use serde::{Deserialize as _, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let v = hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))
    }
}

pub(crate) mod hexvec {
    use serde::{Deserialize as _, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?.trim_start_matches("0x")).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn binding() -> KeyBinding {
        let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes();
        KeyBinding::new(
            Address::repeat_byte(0x11),
            ed,
            Some([3u8; 32]),
            Timestamp(1_750_000_000),
        )
        .unwrap()
    }

    #[test]
    fn native_layout_bytes() {
        let b = binding();
        let rd = b.report_data(&[0xaa; 32]);
        assert_eq!(rd[0], 0x7a);
        assert_eq!(rd[1], 1);
        assert_eq!(&rd[2..32], &b.commitment());
        assert_eq!(&rd[32..], &[0xaa; 32]);
        let enc = b.encode();
        assert_eq!(enc[0] as usize, DOMAIN.len());
        // domain, version, 4 fields of 3-byte headers: 20 + 32 + 32 + 8 bytes
        assert_eq!(enc.len(), 1 + DOMAIN.len() + 1 + 4 * 3 + 20 + 32 + 32 + 8);
        match ReportData::parse(ReportDataLayout::Native, &rd).unwrap() {
            ReportData::Native {
                commitment, nonce, ..
            } => {
                assert_eq!(commitment, b.commitment().to_vec());
                assert_eq!(nonce, [0xaa; 32]);
            }
            other => panic!("{other:?}"),
        }
        let mut changed = b.clone();
        changed.x25519_key = None;
        assert_ne!(changed.commitment(), b.commitment());
    }

    #[test]
    fn zerog_and_dstack_round_trip() {
        let a: Address = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0".parse().unwrap();
        let rd = ReportData::zerog(&a);
        assert_eq!(&rd[..42], b"0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0");
        assert!(rd[42..].iter().all(|b| *b == 0));
        assert_eq!(
            ReportData::parse(ReportDataLayout::ZeroG, &rd).unwrap().address(),
            Some(a)
        );
        let rd = ReportData::dstack(&a, &[5u8; 32]);
        let p = ReportData::parse(ReportDataLayout::Dstack, &rd).unwrap();
        assert_eq!((p.address(), p.nonce()), (Some(a), Some([5u8; 32])));
        assert!(ReportData::parse(ReportDataLayout::Native, &rd).is_err());
        assert!(ReportData::parse(ReportDataLayout::ZeroG, &[0x41; 64]).is_err());
    }

    #[test]
    fn secp256k1_address() {
        // Anvil account 0.
        let sk = k256::ecdsa::SigningKey::from_slice(
            &hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap(),
        )
        .unwrap();
        let pk = sk.verifying_key().to_encoded_point(true);
        let addr = KeyBinding::address_of_secp256k1(pk.as_bytes()).unwrap();
        assert_eq!(
            addr,
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse::<Address>()
                .unwrap()
        );
    }
}
