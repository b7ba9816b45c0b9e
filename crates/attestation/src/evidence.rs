//! Evidence (what a provider sends) and the provider-side producers behind one trait.

use crate::quote::decode_quote_bytes;
use crate::reportdata::KeyBinding;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Which TEE backend produced evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Bare TDX guest: configfs-tsm quotes, CCEL boot log.
    Tdx,
    /// dstack guest agent.
    Dstack,
    /// Software simulation — not a TEE.
    Simulated,
}

/// What a verifier needs from a provider: the quote, the event log that explains its RTMRs, the
/// optional GPU evidence and the key binding REPORTDATA commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The raw TDX quote (JSON: hex).
    #[serde(with = "crate::reportdata::hexvec")]
    pub quote: Vec<u8>,
    /// dstack-style JSON event log covering RTMR0-3 (or only RTMR3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<String>,
    /// NVIDIA GPU evidence JSON ([`crate::GpuEvidence`]: reports and certificate chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_evidence: Option<String>,
    /// The key-binding document (native REPORTDATA layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<KeyBinding>,
}

impl Evidence {
    /// Evidence with just a quote.
    pub fn from_quote(quote: Vec<u8>) -> Self {
        Evidence {
            quote,
            event_log: None,
            gpu_evidence: None,
            binding: None,
        }
    }

    /// Reads evidence in any of the shapes providers publish: raw binary quote, hex or base64 text,
    /// a dstack / 0G JSON document (`{"quote": hex, "event_log": ...}`), or our own JSON.
    pub fn from_document(bytes: &[u8]) -> Result<Self> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.first() == Some(&b'{') {
            let v: serde_json::Value = serde_json::from_slice(trimmed).map_err(|e| Error::Decode {
                what: "evidence JSON",
                reason: e.to_string(),
            })?;
            let quote_text = v
                .get("quote")
                .and_then(|q| q.as_str())
                .ok_or_else(|| Error::Decode {
                    what: "evidence JSON",
                    reason: "no string field \"quote\"".into(),
                })?;
            let quote = decode_quote_bytes(quote_text.as_bytes())?;
            let event_log = match v.get("event_log") {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(a @ serde_json::Value::Array(_)) => Some(a.to_string()),
                _ => None,
            };
            // `gpu_evidence` (ours) or `nvidia_payload` (0G's /v1/quote and attestation report).
            let gpu_evidence = match v.get("gpu_evidence").or_else(|| v.get("nvidia_payload")) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(o @ serde_json::Value::Object(_)) => Some(o.to_string()),
                _ => None,
            };
            let binding = match v.get("binding") {
                Some(b) if !b.is_null() => {
                    Some(serde_json::from_value(b.clone()).map_err(|e| Error::Decode {
                        what: "binding",
                        reason: e.to_string(),
                    })?)
                }
                _ => None,
            };
            return Ok(Evidence {
                quote,
                event_log,
                gpu_evidence,
                binding,
            });
        }
        Ok(Evidence::from_quote(decode_quote_bytes(bytes)?))
    }

    /// JSON form (what [`Evidence::from_document`] reads back).
    pub fn to_json(&self) -> String {
        // Plain strings and bytes: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 over every part (length-prefixed): identifies this exact evidence.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut part = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        part(&self.quote);
        part(self.event_log.as_deref().unwrap_or("").as_bytes());
        part(self.gpu_evidence.as_deref().unwrap_or("").as_bytes());
        part(&self.binding.as_ref().map(KeyBinding::encode).unwrap_or_default());
        h.finalize().into()
    }
}

/// A TEE backend that produces evidence (provider side).
pub trait EvidenceProducer: Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// A quote over `report_data` plus the current event log (and GPU evidence if any).
    fn quote(&self, report_data: &[u8; 64]) -> Result<Evidence>;

    /// Measures a runtime event into RTMR3 and appends it to the runtime log.
    fn extend_runtime(&self, event: &str, payload: &[u8]) -> Result<()>;

    /// Evidence that binds `binding` and the verifier's `nonce` (native REPORTDATA layout).
    fn evidence_for(&self, binding: &KeyBinding, nonce: &[u8; 32]) -> Result<Evidence> {
        let mut ev = self.quote(&binding.report_data(nonce))?;
        ev.binding = Some(binding.clone());
        Ok(ev)
    }
}
