//! NVIDIA confidential-computing GPU evidence (Hopper H100/H200), verified offline to NVIDIA's
//! roots: the SPDM attestation report, the device certificate chain, the signed reference
//! integrity manifests (RIMs) with the golden measurements, and optional OCSP responses.
//!
//! Checks (each a named entry in the [`crate::VerificationReport`]):
//! - `gpu.nonce`: the report's request nonce equals the verifier's nonce (the one REPORTDATA binds);
//! - `gpu.cert_chain`: the device chain verifies to NVIDIA's device root at `now`, and the leaf's
//!   FWID equals the report's;
//! - `gpu.signature`: ECDSA P-384/SHA-384 over the report minus its last 96 bytes, leaf key;
//! - `gpu.rim.driver`, `gpu.rim.vbios`: each RIM's digest, signature and chain to NVIDIA's RIM root
//!   at `now`, and its version equals the report's;
//! - `gpu.measurements`: every active golden measurement matches (golden index k = SPDM block k+1);
//! - `gpu.devices`: distinct GPUs, as many as the policy expects;
//! - `gpu.ocsp`: revocation status from OCSP responses (policy decides whether required).
//!
//! Byte layouts and the facts behind them: `testdata/gpu/README.md`.

mod asn1;
mod c14n;
pub(crate) mod collateral;
#[cfg(feature = "nvml")]
pub(crate) mod nvml;
mod ocsp;
pub(crate) mod rim;
pub(crate) mod simulated;
pub(crate) mod spdm;
pub(crate) mod x509;

pub use collateral::{CachedGpuCollateral, DirectoryGpuCollateral, GpuCollateral, GpuCollateralSource};
#[cfg(feature = "nvidia-rim")]
pub use collateral::{NVIDIA_RIM_SERVICE_URL, NvidiaRimService};
pub use rim::{Rim, RimMeasurement};
pub use simulated::{SIMULATED_GPU_ROOT_CN, SIMULATED_RIM_ROOT_CN, SimulatedGpu};
pub use spdm::{MeasurementBlock, SpdmReport};

use crate::report::VerificationReport;
use crate::{AttestationPolicy, Error, Result, Timestamp};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use x509::Cert;

/// NVIDIA's device identity root ("NVIDIA Device Identity CA"), from nvtrust
/// `verifier_device_root.pem` (SHA-256 of the PEM file `6e6e91e8…1bfc`).
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("nvidia_device_root.pem");
/// NVIDIA's RIM signing root ("NVIDIA CoRIM signing Root CA"), from nvtrust `verifier_RIM_root.pem`
/// (SHA-256 of the PEM file `afe8d01a…99d1`).
pub const NVIDIA_RIM_ROOT_PEM: &str = include_str!("nvidia_rim_root.pem");
/// Most GPUs accepted in one evidence document.
pub const MAX_GPUS: usize = 16;
/// Largest GPU evidence document accepted (bytes of JSON).
pub const MAX_GPU_EVIDENCE_BYTES: usize = 1 << 20;
/// Most stapled RIMs accepted (a driver and a VBIOS RIM per GPU).
pub const MAX_STAPLED_RIMS: usize = 2 * MAX_GPUS;
/// Most stapled OCSP responses accepted (NVIDIA's are 3 per device chain and 4 per RIM pair). Each one
/// that names a certificate of the evidence costs an ECDSA verification: without a bound, a provider's
/// 1 MiB of copies costs its verifying client seconds of CPU.
pub const MAX_STAPLED_OCSP: usize = 8 * MAX_GPUS;

/// The trust anchors GPU evidence is verified to: never taken from the evidence.
#[derive(Debug, Clone)]
pub struct GpuRoots {
    device: Cert,
    rim: Cert,
}

impl Default for GpuRoots {
    fn default() -> Self {
        Self::nvidia()
    }
}

impl GpuRoots {
    /// NVIDIA's production roots (embedded).
    pub fn nvidia() -> Self {
        // The embedded PEMs are constants checked by the `nvidia_roots_parse` test.
        #[allow(clippy::expect_used, reason = "embedded constant, parsed by a unit test")]
        Self::from_pem(NVIDIA_DEVICE_ROOT_PEM, NVIDIA_RIM_ROOT_PEM).expect("embedded NVIDIA roots parse")
    }

    /// Other roots (tests, a future NVIDIA root).
    pub fn from_pem(device_root_pem: &str, rim_root_pem: &str) -> Result<Self> {
        let one = |pem: &str, what: &'static str| -> Result<Cert> {
            let ders =
                x509::pem_certs(pem).map_err(|reason| Error::MalformedGpuEvidence { field: what, reason })?;
            let der = ders.first().ok_or_else(|| Error::MalformedGpuEvidence {
                field: what,
                reason: "no certificate".into(),
            })?;
            Cert::from_der(der).map_err(|reason| Error::MalformedGpuEvidence { field: what, reason })
        };
        Ok(GpuRoots {
            device: one(device_root_pem, "device root")?,
            rim: one(rim_root_pem, "RIM root")?,
        })
    }

    /// SHA-256 of both roots (part of the verifier's identity).
    pub(crate) fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(&self.device.der);
        h.update(&self.rim.der);
        h.finalize().into()
    }
}

/// A source of GPU evidence on the provider (NVML on real hardware, or the simulated GPU).
pub trait GpuProducer: Send + Sync {
    /// Short name for logs and the evidence document (`nvml`, `simulated`).
    fn name(&self) -> &'static str;

    /// Fresh evidence from every confidential GPU, each report bound to `nonce`.
    fn evidence(&self, nonce: &[u8; 32]) -> Result<GpuEvidence>;
}

/// One GPU's evidence: the SPDM report and its device certificate chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDeviceEvidence {
    /// The attestation report (binary).
    pub report: Vec<u8>,
    /// The device certificate chain as DER, leaf first (NVIDIA sends 5, root included).
    pub cert_chain: Vec<Vec<u8>>,
}

/// GPU evidence for one machine: one report per GPU, all for the same nonce, plus optionally
/// stapled collateral (RIMs by identifier, OCSP responses) that is verified like any other.
///
/// JSON form (the NRAS / nvtrust "evidence list" shape, so it can be forwarded as is):
/// `{"arch":"HOPPER","nonce":"<hex>","evidence_list":[{"evidence":"<base64 report>",
/// "certificate":"<base64 of the PEM chain>"}], "rims":{"<RIM id>":"<base64 XML>"}, "ocsp":["<base64 DER>"]}`.
/// `nvattest collect-evidence` output (`{"evidences":[…]}`) is read too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuEvidence {
    /// Architecture (`HOPPER`).
    pub arch: String,
    /// Per-GPU evidence.
    pub devices: Vec<GpuDeviceEvidence>,
    /// Stapled RIMs `(RIM id, XML bytes)`.
    pub rims: Vec<(String, Vec<u8>)>,
    /// Stapled OCSP responses (DER).
    pub ocsp: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct EvidenceItem {
    evidence: String,
    certificate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct EvidenceDoc {
    #[serde(default)]
    arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evidence_list: Option<Vec<EvidenceItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evidences: Option<Vec<EvidenceItem>>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    rims: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ocsp: Vec<String>,
}

fn bad(field: &'static str, reason: impl Into<String>) -> Error {
    Error::MalformedGpuEvidence {
        field,
        reason: reason.into(),
    }
}

fn b64(s: &str, field: &'static str) -> Result<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| bad(field, format!("not base64: {e}")))
}

/// Decodes a report given as hex text (NVIDIA's sample files) or binary.
pub fn decode_report(bytes: &[u8]) -> Result<Vec<u8>> {
    let t = bytes.trim_ascii();
    if !t.is_empty() && t.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(t).map_err(|e| bad("report", format!("bad hex: {e}")));
    }
    Ok(bytes.to_vec())
}

impl GpuEvidence {
    /// One GPU from a report (binary or hex text) and its PEM certificate chain (leaf first).
    pub fn from_report_and_chain(report: &[u8], cert_chain_pem: &str) -> Result<Self> {
        Ok(GpuEvidence {
            arch: "HOPPER".into(),
            devices: vec![GpuDeviceEvidence {
                report: decode_report(report)?,
                cert_chain: x509::pem_certs(cert_chain_pem).map_err(|r| bad("certificate", r))?,
            }],
            rims: Vec::new(),
            ocsp: Vec::new(),
        })
    }

    /// Parses the JSON form (see the type's documentation).
    pub fn from_json(json: &str) -> Result<Self> {
        if json.len() > MAX_GPU_EVIDENCE_BYTES {
            return Err(bad(
                "document",
                format!("{} bytes, more than {MAX_GPU_EVIDENCE_BYTES}", json.len()),
            ));
        }
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad("document", e.to_string()))?;
        if v.get("claims").is_some() && v.get("detached_eat").is_some() {
            return Err(bad(
                "document",
                "this is an NVIDIA local verifier's result (unsigned claims), not evidence; send the raw \
                 reports and certificate chains (`nvattest collect-evidence`, or the NRAS evidence_list)",
            ));
        }
        let doc: EvidenceDoc = serde_json::from_value(v).map_err(|e| bad("document", e.to_string()))?;
        let items = doc
            .evidence_list
            .or(doc.evidences)
            .ok_or_else(|| bad("evidence_list", "missing"))?;
        if items.is_empty() {
            return Err(bad("evidence_list", "no GPU in the evidence list"));
        }
        if items.len() > MAX_GPUS {
            return Err(bad(
                "evidence_list",
                format!("{} GPUs, more than {MAX_GPUS}", items.len()),
            ));
        }
        let devices = items
            .iter()
            .map(|i| {
                let pem = String::from_utf8(b64(&i.certificate, "certificate")?)
                    .map_err(|_| bad("certificate", "the decoded chain is not PEM text"))?;
                Ok(GpuDeviceEvidence {
                    report: b64(&i.evidence, "evidence")?,
                    cert_chain: x509::pem_certs(&pem).map_err(|r| bad("certificate", r))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if doc.rims.len() > MAX_STAPLED_RIMS {
            return Err(bad(
                "rims",
                format!("{} stapled RIMs, more than {MAX_STAPLED_RIMS}", doc.rims.len()),
            ));
        }
        if doc.ocsp.len() > MAX_STAPLED_OCSP {
            return Err(bad(
                "ocsp",
                format!(
                    "{} stapled OCSP responses, more than {MAX_STAPLED_OCSP}",
                    doc.ocsp.len()
                ),
            ));
        }
        let rims = doc
            .rims
            .iter()
            .map(|(id, x)| Ok((id.clone(), b64(x, "rims")?)))
            .collect::<Result<Vec<_>>>()?;
        let ocsp = doc
            .ocsp
            .iter()
            .map(|o| b64(o, "ocsp"))
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuEvidence {
            arch: doc
                .arch
                .or_else(|| items.first().and_then(|i| i.arch.clone()))
                .unwrap_or_else(|| "HOPPER".into()),
            devices,
            rims,
            ocsp,
        })
    }

    /// The RIM identifiers the reports name (driver and VBIOS of each GPU, deduplicated); reports
    /// that do not parse are skipped.
    pub fn rim_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .devices
            .iter()
            .filter_map(|d| SpdmReport::parse(&d.report).ok())
            .flat_map(|r| [r.driver_rim_id(), r.vbios_rim_id()])
            .flatten()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The JSON form (what [`GpuEvidence::from_json`] reads back). `nonce` is informational (the
    /// verifier compares the nonce inside each signed report).
    pub fn to_json(&self, nonce: Option<&[u8; 32]>) -> String {
        let enc = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let doc = EvidenceDoc {
            arch: Some(self.arch.clone()),
            nonce: nonce.map(hex::encode),
            evidence_list: Some(
                self.devices
                    .iter()
                    .map(|d| EvidenceItem {
                        evidence: enc(&d.report),
                        certificate: enc(x509::to_pem(&d.cert_chain).as_bytes()),
                        arch: None,
                    })
                    .collect(),
            ),
            evidences: None,
            rims: self.rims.iter().map(|(id, x)| (id.clone(), enc(x))).collect(),
            ocsp: self.ocsp.iter().map(|o| enc(o)).collect(),
        };
        // Plain strings: serialisation cannot fail.
        serde_json::to_string(&doc).unwrap_or_default()
    }
}

/// What the report says about one verified GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuSummary {
    /// Position in the evidence list.
    pub index: usize,
    /// The leaf certificate's subject (device identity).
    pub device: String,
    /// Driver version from the report.
    pub driver_version: Option<String>,
    /// VBIOS version from the report.
    pub vbios_version: Option<String>,
    /// The driver RIM identifier the report asks for.
    pub driver_rim: Option<String>,
    /// The VBIOS RIM identifier the report asks for.
    pub vbios_rim: Option<String>,
    /// FWID (hex), when the report carries one.
    pub fwid: Option<String>,
    /// Whether this GPU is the simulated one (never real hardware).
    pub simulated: bool,
}

/// Per-GPU results, collected before they are folded into named checks.
#[derive(Default)]
struct Outcome {
    nonce: Vec<(bool, String)>,
    chain: Vec<(bool, String)>,
    signature: Vec<(bool, String)>,
    rim_driver: Vec<(bool, String)>,
    rim_vbios: Vec<(bool, String)>,
    measurements: Vec<(bool, String)>,
    ocsp_good: Vec<String>,
    ocsp_missing: Vec<String>,
    ocsp_bad: Vec<String>,
    ocsp_revoked: Vec<String>,
}

/// The nonce GPU evidence must carry, and where that expectation came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpectedNonce {
    pub(crate) nonce: Option<[u8; 32]>,
    pub(crate) source: &'static str,
}

fn fold(r: &mut VerificationReport, name: &str, expected: &str, items: &[(bool, String)]) {
    let ok = !items.is_empty() && items.iter().all(|(ok, _)| *ok);
    let found = items
        .iter()
        .enumerate()
        .map(|(i, (_, f))| {
            if items.len() == 1 {
                f.clone()
            } else {
                format!("GPU {i}: {f}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    r.push(name, expected, found, ok);
}

/// Verifies GPU evidence into `r`; returns the time window the result holds in.
#[allow(
    clippy::too_many_arguments,
    reason = "the verification inputs, passed through from the Verifier"
)]
pub(crate) fn verify_into(
    r: &mut VerificationReport,
    text: &str,
    collateral: Option<&GpuCollateral>,
    roots: &GpuRoots,
    sigs: &x509::SigCache,
    policy: &AttestationPolicy,
    expected: ExpectedNonce,
    now: Timestamp,
) -> (Timestamp, Timestamp) {
    let mut window = (Timestamp(0), Timestamp(u64::MAX));
    let ev = match GpuEvidence::from_json(text) {
        Ok(e) => e,
        Err(e) => {
            r.push(
                "gpu.parse",
                "NVIDIA GPU evidence (reports and certificate chains)",
                e.to_string(),
                false,
            );
            return window;
        }
    };
    let reports: Vec<Result<SpdmReport>> = ev.devices.iter().map(|d| SpdmReport::parse(&d.report)).collect();
    let parse_errors: Vec<String> = reports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().err().map(|e| format!("GPU {i}: {e}")))
        .collect();
    r.push(
        "gpu.parse",
        "an SPDM GET_MEASUREMENTS report per GPU",
        if parse_errors.is_empty() {
            format!("{} report(s)", reports.len())
        } else {
            parse_errors.join("; ")
        },
        parse_errors.is_empty(),
    );
    // Stapled collateral joins the verifier's own; both are verified to the roots the same way.
    let mut merged = collateral.cloned().unwrap_or_default();
    for (id, xml) in &ev.rims {
        if merged.rim(id).is_none()
            && let Err(e) = merged.add_rim(id, xml)
        {
            r.info(
                "gpu.stapled_rim",
                "parseable stapled RIMs",
                format!("{id}: {e}"),
                false,
            );
        }
    }
    for o in &ev.ocsp {
        let _ = merged.add_ocsp(o);
    }

    let mut out = Outcome::default();
    let mut summaries = Vec::new();
    let mut leaves = BTreeSet::new();
    let mut any_simulated = false;
    let mut all_simulated = true;
    for (i, (dev, rep)) in ev.devices.iter().zip(&reports).enumerate() {
        let Ok(rep) = rep else {
            continue;
        };
        // nonce
        match expected.nonce {
            Some(n) => out.nonce.push((
                rep.request_nonce == n,
                format!(
                    "{} (expected {} from {})",
                    hex::encode(rep.request_nonce),
                    hex::encode(n),
                    expected.source
                ),
            )),
            None => out.nonce.push((
                false,
                format!(
                    "{}: no nonce to compare with (set the policy nonce, e.g. --nonce)",
                    hex::encode(rep.request_nonce)
                ),
            )),
        }
        // chain
        let certs = match x509::parse_chain(&dev.cert_chain) {
            Ok(c) => c,
            Err(e) => {
                out.chain.push((false, format!("unparseable {e}")));
                out.signature
                    .push((false, "no leaf key (certificate chain unparseable)".into()));
                continue;
            }
        };
        let (path, dropped) = x509::split_root(&certs);
        let simulated_root = dropped.filter(|d| d.name() == SIMULATED_GPU_ROOT_CN);
        let simulated = simulated_root.is_some();
        any_simulated |= simulated;
        all_simulated &= simulated;
        let anchor = simulated_root.unwrap_or(&roots.device);
        let Some(leaf) = path.first() else {
            out.chain.push((false, "empty certificate chain".into()));
            out.signature.push((false, "no leaf key".into()));
            continue;
        };
        leaves.insert(leaf.der.clone());
        let fwid_ok = match (rep.fwid(), leaf.fwid()) {
            (Some(a), Some(b)) => a == b.as_slice(),
            (Some(_), None) => false,
            (None, _) => true, // older firmware: no FWID in the report (README §5)
        };
        match x509::verify_chain(path, anchor, now, sigs) {
            Ok(w) if fwid_ok => {
                window.0 = window.0.max(w.0);
                window.1 = window.1.min(w.1);
                out.chain.push((
                    true,
                    format!(
                        "{} certificates to '{}'; FWID {}",
                        path.len(),
                        anchor.name(),
                        rep.fwid().map_or("absent (older firmware)".into(), hex::encode)
                    ),
                ))
            }
            Ok(_) => out.chain.push((
                false,
                format!(
                    "chain verifies, but the leaf's FWID {} differs from the report's {}",
                    leaf.fwid().map_or("(none)".into(), hex::encode),
                    rep.fwid().map(hex::encode).unwrap_or_default()
                ),
            )),
            Err(e) => {
                let fw = if fwid_ok {
                    ""
                } else {
                    "; and the leaf's FWID differs from the report's"
                };
                out.chain.push((false, format!("{e}{fw}")))
            }
        }
        // signature
        let signed = dev.report.get(..rep.signed_len).unwrap_or_default();
        let sig_ok = leaf.verify_fixed(signed, &rep.signature);
        out.signature.push((
            sig_ok,
            if sig_ok {
                format!("valid (key of '{}')", leaf.name())
            } else {
                format!("INVALID with the key of '{}'", leaf.name())
            },
        ));
        // RIMs
        let driver_id = rep.driver_rim_id();
        let vbios_id = rep.vbios_rim_id();
        let rim_anchor = |rim: &Rim| -> Option<Cert> {
            let (_, d) = x509::split_root(rim.certs());
            match d {
                Some(d) if d.name() == SIMULATED_RIM_ROOT_CN && simulated => Some(d.clone()),
                _ => None,
            }
        };
        let mut rim_check =
            |id: &Option<String>, version: Option<String>, kind: &str| -> (bool, String, Option<Rim>) {
                let Some(id) = id else {
                    return (false, format!("the report names no {kind} version"), None);
                };
                let Some(rim) = merged.rim(id) else {
                    return (false, format!("no {kind} RIM {id} in the collateral"), None);
                };
                let anchor = rim_anchor(rim).unwrap_or_else(|| roots.rim.clone());
                let version = version.unwrap_or_default();
                let version_ok = rim.version.eq_ignore_ascii_case(&version);
                match rim.verify(&anchor, now, sigs) {
                    Ok(w) if version_ok => {
                        window.0 = window.0.max(w.0);
                        window.1 = window.1.min(w.1);
                        (
                            true,
                            format!(
                                "{id}: version {} signed by '{}', chain valid {} .. {}",
                                rim.version,
                                anchor.name(),
                                w.0,
                                w.1
                            ),
                            Some(rim.clone()),
                        )
                    }
                    Ok(_) => (
                        false,
                        format!(
                            "{id}: the RIM is for version {}, the report says {version}",
                            rim.version
                        ),
                        Some(rim.clone()),
                    ),
                    Err(e) => {
                        let v = if version_ok {
                            String::new()
                        } else {
                            format!("; and its version {} is not the report's {version}", rim.version)
                        };
                        (false, format!("{id}: {e}{v}"), Some(rim.clone()))
                    }
                }
            };
        let (dok, dmsg, drim) = rim_check(&driver_id, rep.driver_version(), "driver");
        let (vok, vmsg, vrim) = rim_check(&vbios_id, rep.vbios_version(), "VBIOS");
        out.rim_driver.push((dok, dmsg));
        out.rim_vbios.push((vok, vmsg));
        out.measurements
            .push(compare_measurements(rep, drim.as_ref(), vrim.as_ref()));
        // OCSP: device certificates below the leaf, and each RIM's signer chain.
        let mut needs: Vec<(String, &Cert, &Cert)> = Vec::new();
        let device_path: Vec<&Cert> = path.iter().chain(std::iter::once(anchor)).collect();
        for w in device_path.windows(2).skip(1) {
            if let [c, iss] = w {
                needs.push((format!("GPU {i} device '{}'", c.name()), c, iss));
            }
        }
        let rim_paths: Vec<(String, Vec<Cert>)> = [drim.as_ref(), vrim.as_ref()]
            .into_iter()
            .flatten()
            .map(|rim| {
                let (p, _) = x509::split_root(rim.certs());
                let anchor = rim_anchor(rim).unwrap_or_else(|| roots.rim.clone());
                (
                    rim.version.clone(),
                    p.iter().cloned().chain(std::iter::once(anchor)).collect(),
                )
            })
            .collect();
        for (v, p) in &rim_paths {
            for w in p.windows(2) {
                if let [c, iss] = w {
                    needs.push((format!("RIM {v} '{}'", c.name()), c, iss));
                }
            }
        }
        for (label, c, iss) in needs {
            let responses: Vec<_> = merged.ocsp_for(c, iss).collect();
            if responses.is_empty() {
                out.ocsp_missing.push(label);
                continue;
            }
            let results: Vec<_> = responses.iter().map(|o| o.check(c, iss, now)).collect();
            // The verdict (and a cache entry made from it) holds only while the responses it rests on
            // say the same: never past the moment a response that is not valid yet starts to count
            // (it may say "revoked"), and never past the good response actually relied on. A response
            // that failed its checks (a stapled decoy with a far nextUpdate) bounds nothing.
            for o in &responses {
                if now < o.this_update {
                    window.1 = window.1.min(Timestamp(o.this_update.as_secs().saturating_sub(1)));
                }
            }
            let relied_on = responses
                .iter()
                .zip(&results)
                .filter(|(_, x)| matches!(x, Ok(ocsp::CertStatus::Good)))
                .filter_map(|(o, _)| o.next_update.map(|until| (until, o.this_update)))
                .max();
            if results.iter().any(|x| matches!(x, Ok(ocsp::CertStatus::Revoked))) {
                out.ocsp_revoked.push(label);
            } else if let Some((until, from)) = relied_on {
                window.0 = window.0.max(from);
                window.1 = window.1.min(until);
                out.ocsp_good.push(label);
            } else {
                let why: Vec<String> = results
                    .into_iter()
                    .map(|x| match x {
                        Err(e) => e,
                        Ok(s) => format!("status {s:?}"),
                    })
                    .collect();
                out.ocsp_bad.push(format!("{label}: {}", why.join(", ")));
            }
        }
        summaries.push(GpuSummary {
            index: i,
            device: leaf.subject(),
            driver_version: rep.driver_version(),
            vbios_version: rep.vbios_version(),
            driver_rim: driver_id,
            vbios_rim: vbios_id,
            fwid: rep.fwid().map(hex::encode),
            simulated,
        });
    }
    if parse_errors.is_empty() {
        if any_simulated {
            r.simulated = true;
            r.notice = Some(crate::SIMULATED_BANNER.to_owned());
            r.not_verified.push(format!(
                "{}: the GPU evidence is signed by a software root, not by NVIDIA",
                crate::SIMULATED_BANNER
            ));
            r.push(
                "gpu.simulated.allowed",
                "NVIDIA GPU evidence (or policy dangerous_allow_simulated = true)",
                if all_simulated {
                    "simulated GPU evidence"
                } else {
                    "a mix of simulated and real GPU evidence"
                },
                policy.dangerous_allow_simulated && all_simulated,
            );
        }
        fold(r, "gpu.nonce", "the verifier's nonce in every report", &out.nonce);
        fold(
            r,
            "gpu.cert_chain",
            "device chain to NVIDIA's device root at the verification time; leaf FWID = report FWID",
            &out.chain,
        );
        fold(
            r,
            "gpu.signature",
            "ECDSA P-384 report signature by the leaf key",
            &out.signature,
        );
        fold(
            r,
            "gpu.rim.driver",
            "driver RIM signed to NVIDIA's RIM root, valid now, version = the report's",
            &out.rim_driver,
        );
        fold(
            r,
            "gpu.rim.vbios",
            "VBIOS RIM signed to NVIDIA's RIM root, valid now, version = the report's",
            &out.rim_vbios,
        );
        fold(
            r,
            "gpu.measurements",
            "every active golden measurement matches",
            &out.measurements,
        );
        devices_check(r, policy, leaves.len(), summaries.len());
        version_policy(r, policy, &summaries);
        ocsp_check(r, policy, &out);
    }
    r.gpus = summaries;
    window
}

fn devices_check(r: &mut VerificationReport, policy: &AttestationPolicy, distinct: usize, total: usize) {
    let expected = match policy.gpu_count {
        Some(n) => format!("{n} distinct GPU(s)"),
        None => "distinct GPUs (any number)".to_owned(),
    };
    let ok = distinct == total
        && policy
            .gpu_count
            .is_none_or(|n| usize::try_from(n).is_ok_and(|n| n == total));
    let found = if distinct == total {
        format!("{total} distinct GPU(s)")
    } else {
        format!("{total} reports from only {distinct} distinct GPU(s): a device is counted twice")
    };
    r.push("gpu.devices", expected, found, ok);
}

fn version_policy(r: &mut VerificationReport, policy: &AttestationPolicy, gpus: &[GpuSummary]) {
    for (name, allowed, get) in [
        (
            "gpu.driver_version",
            &policy.allowed_gpu_driver_versions,
            (|g: &GpuSummary| g.driver_version.clone()) as fn(&GpuSummary) -> Option<String>,
        ),
        (
            "gpu.vbios_version",
            &policy.allowed_gpu_vbios_versions,
            |g: &GpuSummary| g.vbios_version.clone(),
        ),
    ] {
        if allowed.is_empty() {
            continue; // any RIM-verified version
        }
        let found: Vec<String> = gpus.iter().map(|g| get(g).unwrap_or_default()).collect();
        let ok = !found.is_empty()
            && found
                .iter()
                .all(|f| allowed.iter().any(|a| a.eq_ignore_ascii_case(f)));
        r.push(
            name,
            format!("one of: {}", allowed.join(", ")),
            found.join(", "),
            ok,
        );
    }
}

fn ocsp_check(r: &mut VerificationReport, policy: &AttestationPolicy, out: &Outcome) {
    let expected = if policy.require_gpu_ocsp {
        "a valid OCSP response saying good for every NVIDIA certificate (required by policy)"
    } else {
        "no certificate revoked (OCSP optional: absent responses are reported, not passed)"
    };
    let mut parts = Vec::new();
    if !out.ocsp_revoked.is_empty() {
        parts.push(format!("REVOKED: {}", out.ocsp_revoked.join(", ")));
    }
    if !out.ocsp_bad.is_empty() {
        parts.push(format!("unusable: {}", out.ocsp_bad.join("; ")));
    }
    if !out.ocsp_good.is_empty() {
        parts.push(format!("good: {}", out.ocsp_good.len()));
    }
    if !out.ocsp_missing.is_empty() {
        parts.push(format!("no response: {}", out.ocsp_missing.len()));
    }
    let complete = out.ocsp_bad.is_empty() && out.ocsp_missing.is_empty();
    if !out.ocsp_revoked.is_empty() {
        r.push("gpu.ocsp", expected, parts.join("; "), false);
    } else if complete && !out.ocsp_good.is_empty() {
        r.push("gpu.ocsp", expected, parts.join("; "), true);
    } else {
        let n = out.ocsp_missing.len().saturating_add(out.ocsp_bad.len());
        r.not_verified.push(format!(
            "revocation (OCSP) of {n} NVIDIA certificate(s) not checked: no valid response supplied"
        ));
        if policy.require_gpu_ocsp {
            r.push("gpu.ocsp", expected, parts.join("; "), false);
        } else {
            r.info(
                "gpu.ocsp",
                expected,
                format!("not_verified: {}", parts.join("; ")),
                false,
            );
        }
    }
}

/// Golden index k is compared with SPDM block k+1 (README §7); an entry matches when any
/// alternative equals the runtime value and its size is 48; active indices of the two RIMs must
/// not overlap.
fn compare_measurements(rep: &SpdmReport, driver: Option<&Rim>, vbios: Option<&Rim>) -> (bool, String) {
    let (Some(driver), Some(vbios)) = (driver, vbios) else {
        return (false, "not evaluated: a RIM is missing".into());
    };
    let active = |rim: &Rim| -> BTreeSet<u16> {
        rim.measurements
            .iter()
            .filter(|m| m.active)
            .map(|m| m.index)
            .collect()
    };
    let (da, va) = (active(driver), active(vbios));
    let overlap: Vec<String> = da.intersection(&va).map(u16::to_string).collect();
    if !overlap.is_empty() {
        return (
            false,
            format!(
                "index conflict: {} active indices appear in both RIMs ({})",
                overlap.len(),
                overlap.join(", ")
            ),
        );
    }
    let mut mismatched = Vec::new();
    let mut compared = 0usize;
    for (kind, rim) in [("driver", driver), ("VBIOS", vbios)] {
        for m in rim.measurements.iter().filter(|m| m.active) {
            compared = compared.saturating_add(1);
            let runtime = u8::try_from(m.index)
                .ok()
                .and_then(|k| k.checked_add(1))
                .and_then(|k| rep.measurement(k));
            let ok =
                m.size == 48 && runtime.is_some_and(|v| m.alternatives.iter().any(|h| h.as_slice() == v));
            if !ok {
                mismatched.push(format!("{} ({kind})", m.index));
            }
        }
    }
    if mismatched.is_empty() {
        (true, format!("{compared} active measurements match"))
    } else {
        (
            false,
            format!(
                "mismatch at golden index {} of {compared} compared",
                mismatched.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_roots_parse() {
        let r = GpuRoots::nvidia();
        assert_eq!(r.device.name(), "NVIDIA Device Identity CA");
        assert_eq!(r.rim.name(), "NVIDIA CoRIM signing Root CA");
    }
}
