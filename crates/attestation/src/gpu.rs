//! NVIDIA H100/H200 confidential-computing evidence (first step): the local verifier's (`nvattest`)
//! JSON output — per-GPU claims plus a detached EAT of JWTs.
//!
//! What is checked: the document parses, every GPU's `eat_nonce` equals the verifier's nonce,
//! measurements matched (`measres = success`), debug is off, secure boot is on, the overall EAT says
//! the attestation passed, and each submodule JWT hashes to the digest listed in the overall token.
//! What is NOT verified (reported as such): the JWTs are `alg: none` (unsigned, local verifier), so
//! NVIDIA's certificate chains, OCSP and RIM signatures are only *claimed* by the producer.

use crate::{Error, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// One GPU's claims from the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuClaims {
    /// Hardware model (e.g. `GH100 A01 GSP BROM`).
    pub hwmodel: String,
    /// Measurement result (`success` when all measurements matched the RIMs).
    pub measres: String,
    /// Debug status (`disabled` expected).
    pub dbgstat: String,
    /// Secure boot.
    pub secboot: bool,
    /// The nonce the GPU report carries (hex).
    pub eat_nonce: String,
    /// Driver version.
    pub driver_version: Option<String>,
    /// VBIOS version.
    pub vbios_version: Option<String>,
}

/// Parsed GPU evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuEvidence {
    /// Per-GPU claims.
    pub gpus: Vec<GpuClaims>,
    /// `x-nvidia-overall-att-result` from the overall EAT.
    pub overall_result: bool,
    /// Issuer of the overall EAT (`NVAT-LOCAL-VERIFIER` for the local verifier).
    pub issuer: String,
    /// JWT algorithm of the overall token (`none` = unsigned).
    pub alg: String,
    /// Whether every submodule JWT hashes to the digest the overall token lists for it.
    pub submodule_digests_match: bool,
    /// The tool's result code (0 = success).
    pub result_code: i64,
}

fn bad(field: &'static str, reason: impl Into<String>) -> Error {
    Error::MalformedGpuEvidence {
        field,
        reason: reason.into(),
    }
}

fn jwt_parts(jwt: &str) -> Result<(serde_json::Value, serde_json::Value)> {
    let mut it = jwt.split('.');
    let (Some(h), Some(p)) = (it.next(), it.next()) else {
        return Err(bad("detached_eat", "JWT without header and payload"));
    };
    let dec = |s: &str| -> Result<serde_json::Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| bad("detached_eat", format!("JWT part is not base64url: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| bad("detached_eat", format!("JWT part is not JSON: {e}")))
    };
    Ok((dec(h)?, dec(p)?))
}

impl GpuEvidence {
    /// Parses nvattest output (`{claims, detached_eat, result_code}`).
    pub fn from_json(json: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad("document", e.to_string()))?;
        let claims = v
            .get("claims")
            .and_then(|c| c.as_array())
            .ok_or_else(|| bad("claims", "missing array"))?;
        let s = |c: &serde_json::Value, k: &str| c.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let gpus = claims
            .iter()
            .map(|c| {
                Ok(GpuClaims {
                    hwmodel: s(c, "hwmodel").ok_or_else(|| bad("claims.hwmodel", "missing"))?,
                    measres: s(c, "measres").ok_or_else(|| bad("claims.measres", "missing"))?,
                    dbgstat: s(c, "dbgstat").ok_or_else(|| bad("claims.dbgstat", "missing"))?,
                    secboot: c.get("secboot").and_then(|x| x.as_bool()).unwrap_or(false),
                    eat_nonce: s(c, "eat_nonce").ok_or_else(|| bad("claims.eat_nonce", "missing"))?,
                    driver_version: s(c, "x-nvidia-gpu-driver-version"),
                    vbios_version: s(c, "x-nvidia-gpu-vbios-version"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if gpus.is_empty() {
            return Err(bad("claims", "no GPU claims"));
        }
        let eat = v
            .get("detached_eat")
            .and_then(|e| e.as_array())
            .ok_or_else(|| bad("detached_eat", "missing array"))?;
        let overall_jwt = eat
            .first()
            .and_then(|o| o.as_array())
            .and_then(|o| o.get(1))
            .and_then(|j| j.as_str())
            .ok_or_else(|| bad("detached_eat", "no overall [\"JWT\", token] entry"))?;
        let (header, payload) = jwt_parts(overall_jwt)?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .unwrap_or("")
            .to_owned();
        let issuer = payload
            .get("iss")
            .and_then(|a| a.as_str())
            .unwrap_or("")
            .to_owned();
        let overall_result = payload
            .get("x-nvidia-overall-att-result")
            .and_then(|a| a.as_bool())
            .unwrap_or(false);
        let submods = payload.get("submods").and_then(|s| s.as_object());
        let subjwts = eat.get(1).and_then(|s| s.as_object());
        let submodule_digests_match = match (submods, subjwts) {
            (Some(listed), Some(jwts)) if !listed.is_empty() => listed.iter().all(|(name, entry)| {
                let want = entry.get(1).and_then(|d| d.get(1)).and_then(|d| d.as_str());
                let got = jwts
                    .get(name)
                    .and_then(|j| j.as_str())
                    .map(|j| hex::encode(Sha256::digest(j.as_bytes())));
                matches!((want, got), (Some(w), Some(g)) if w.eq_ignore_ascii_case(&g))
            }),
            _ => false,
        };
        let result_code = v.get("result_code").and_then(|r| r.as_i64()).unwrap_or(-1);
        Ok(GpuEvidence {
            gpus,
            overall_result,
            issuer,
            alg,
            submodule_digests_match,
            result_code,
        })
    }

    /// Whether every GPU reports exactly `nonce`.
    pub fn nonce_matches(&self, nonce: &[u8; 32]) -> bool {
        let want = hex::encode(nonce);
        self.gpus.iter().all(|g| g.eat_nonce.eq_ignore_ascii_case(&want))
    }

    /// What this evidence leaves unverified.
    pub fn not_verified(&self) -> Vec<String> {
        let mut v = vec!["NVIDIA certificate chains, OCSP status and RIM signatures are claimed by the producer, not verified here".to_owned()];
        if self.alg.eq_ignore_ascii_case("none") {
            v.push(format!(
                "GPU EAT is unsigned (alg none, issuer {}): it is not an NRAS token",
                self.issuer
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert!(GpuEvidence::from_json("{}").is_err());
        assert!(GpuEvidence::from_json("[1]").is_err());
        assert!(GpuEvidence::from_json("{\"claims\": []}").is_err());
    }
}
