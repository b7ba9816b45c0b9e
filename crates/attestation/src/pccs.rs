//! Intel PCS / PCCS collateral over HTTP (feature `pccs`). Network calls happen only when
//! [`PccsCollateral::fetch`] (or the [`CollateralSource`] impl) is called; put a
//! [`crate::CachedCollateral`] in front so many quotes from one platform fetch once.
//!
//! Endpoints (Intel PCS API v4, also served by PCCS):
//! `GET {base}/tdx/certification/v4/tcb?fmspc=..` (header `TCB-Info-Issuer-Chain`),
//! `GET {base}/tdx/certification/v4/qe/identity` (header `SGX-Enclave-Identity-Issuer-Chain`),
//! `GET {base}/sgx/certification/v4/pckcrl?ca=..&encoding=der` (header `SGX-PCK-CRL-Issuer-Chain`),
//! root CA CRL from `{base}/sgx/certification/v4/rootcacrl` (PCCS) or Intel's certificate site (PCS).

use crate::collateral::{Collateral, CollateralKey, CollateralSource};
use crate::{Error, Result, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Largest PCCS / Intel PCS response read (a collateral server is not trusted to be small).
const MAX_PCCS_RESPONSE: usize = 4 << 20;

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
const INTEL_ROOT_CA_CRL_URL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Collateral from Intel PCS or a PCCS.
#[derive(Debug, Clone)]
pub struct PccsCollateral {
    base_url: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTcbInfo<'a> {
    #[serde(borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedIdentity<'a> {
    #[serde(borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i.saturating_add(1)..i.saturating_add(3))
            .and_then(|h| std::str::from_utf8(h).ok());
        match (c, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i = i.saturating_add(3);
            }
            _ => {
                out.push(c);
                i = i.saturating_add(1);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// DER from a body that may be DER, hex text or PEM.
fn der_body(body: &[u8]) -> Option<Vec<u8>> {
    if body.first() == Some(&0x30) {
        return Some(body.to_vec());
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if let Ok(v) = hex::decode(text) {
        return Some(v);
    }
    let inner: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(inner).ok()
}

impl PccsCollateral {
    /// A client for `base_url` (e.g. [`INTEL_PCS_URL`] or `https://pccs.example:8081`).
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Fetch {
                url: base_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(PccsCollateral { base_url, client })
    }

    async fn get(&self, url: &str) -> Result<(reqwest::header::HeaderMap, Vec<u8>)> {
        let fail = |reason: String| Error::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        // Bounded read: Intel's largest answers (TCB info, CRLs) are tens of kilobytes.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_PCCS_RESPONSE {
                return Err(fail(format!("response larger than {MAX_PCCS_RESPONSE} bytes")));
            }
        }
        if !status.is_success() {
            let shown = body.get(..200).unwrap_or(&body);
            return Err(fail(format!("HTTP {status}: {}", String::from_utf8_lossy(shown))));
        }
        Ok((headers, body))
    }

    fn header(url: &str, h: &reqwest::header::HeaderMap, names: &[&str]) -> Result<String> {
        names
            .iter()
            .find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
            .map(percent_decode)
            .ok_or_else(|| Error::Fetch {
                url: url.to_owned(),
                reason: format!("missing header {}", names.join(" / ")),
            })
    }

    /// Fetches the collateral for `key` (four or five HTTP requests).
    pub async fn fetch(&self, key: &CollateralKey) -> Result<Collateral> {
        let base = &self.base_url;
        let url = format!("{base}/tdx/certification/v4/tcb?fmspc={}", key.fmspc);
        let (h, body) = self.get(&url).await?;
        let tcb_info_issuer_chain =
            Self::header(&url, &h, &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"])?;
        let signed: SignedTcbInfo<'_> =
            serde_json::from_slice(&body).map_err(|e| Error::MalformedCollateral {
                field: "tcb_info",
                reason: e.to_string(),
            })?;
        let tcb_info = signed.tcb_info.get().to_owned();
        let tcb_info_signature = hex::decode(&signed.signature).map_err(|e| Error::MalformedCollateral {
            field: "tcb_info_signature",
            reason: e.to_string(),
        })?;

        let url = format!("{base}/tdx/certification/v4/qe/identity");
        let (h, body) = self.get(&url).await?;
        let qe_identity_issuer_chain = Self::header(&url, &h, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let signed: SignedIdentity<'_> =
            serde_json::from_slice(&body).map_err(|e| Error::MalformedCollateral {
                field: "qe_identity",
                reason: e.to_string(),
            })?;
        let qe_identity = signed.enclave_identity.get().to_owned();
        let qe_identity_signature =
            hex::decode(&signed.signature).map_err(|e| Error::MalformedCollateral {
                field: "qe_identity_signature",
                reason: e.to_string(),
            })?;

        let url = format!(
            "{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            key.pck_ca
        );
        let (h, body) = self.get(&url).await?;
        let pck_crl_issuer_chain = Self::header(&url, &h, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let pck_crl = der_body(&body).ok_or_else(|| Error::MalformedCollateral {
            field: "pck_crl",
            reason: "neither DER, hex nor PEM".into(),
        })?;

        let url = if base.starts_with(INTEL_PCS_URL) {
            INTEL_ROOT_CA_CRL_URL.to_owned()
        } else {
            format!("{base}/sgx/certification/v4/rootcacrl")
        };
        let (_, body) = self.get(&url).await?;
        let root_ca_crl = der_body(&body).ok_or_else(|| Error::MalformedCollateral {
            field: "root_ca_crl",
            reason: "neither DER, hex nor PEM".into(),
        })?;

        Collateral::from_inner(dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }
}

impl CollateralSource for PccsCollateral {
    async fn collateral(&self, key: &CollateralKey, _now: Timestamp) -> Result<Arc<Collateral>> {
        self.fetch(key).await.map(Arc::new)
    }
}
