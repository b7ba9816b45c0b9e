//! The simulated backend: a software "TEE" for development and tests. It emits structurally valid
//! TDX v4 quotes, but they are signed by a locally generated P-256 root that is clearly not Intel's:
//! the QE vendor id is `ZG-SIMULATED-TEE` and the certification data names the simulated root.
//! [`crate::Verifier`] rejects them unless the policy sets `dangerous_allow_simulated`, and then
//! labels the report "SIMULATED — NOT A REAL TEE".

use crate::eventlog::{EventLog, extend};
use crate::evidence::{Backend, Evidence, EvidenceProducer};
use crate::quote::Measurement;
use crate::{Error, Result};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest as _, Sha256, Sha384};
use std::sync::Mutex;

/// QE vendor id of simulated quotes (16 ASCII bytes).
pub const SIMULATED_QE_VENDOR_ID: [u8; 16] = *b"ZG-SIMULATED-TEE";
/// Prefix of the certification data of simulated quotes, followed by the root key in hex.
pub(crate) const SIMULATED_CERT_PREFIX: &[u8] = b"ZG SIMULATED ROOT - NOT INTEL - P256 ";

/// Measurements a simulated TD reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedMeasurements {
    /// MRTD.
    pub mrtd: Measurement,
    /// RTMR0..2 (RTMR3 comes from the runtime log).
    pub rtmr: [Measurement; 3],
}

impl Default for SimulatedMeasurements {
    /// Recognisable placeholder values: sha384("zg-simulated/<register>").
    fn default() -> Self {
        let m = |s: &str| -> Measurement { Sha384::digest(format!("zg-simulated/{s}").as_bytes()).into() };
        SimulatedMeasurements {
            mrtd: m("mrtd"),
            rtmr: [m("rtmr0"), m("rtmr1"), m("rtmr2")],
        }
    }
}

/// A software TEE. Keys are generated on construction and live only in memory.
pub struct SimulatedTee {
    rng: SystemRandom,
    root: EcdsaKeyPair,
    attestation_key: EcdsaKeyPair,
    measurements: SimulatedMeasurements,
    runtime: Mutex<(EventLog, Measurement)>,
}

impl std::fmt::Debug for SimulatedTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTee")
            .field("root", &hex::encode(self.root_public_key()))
            .finish_non_exhaustive()
    }
}

fn keypair(rng: &SystemRandom) -> Result<EcdsaKeyPair> {
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let fail = |reason: String| Error::Backend {
        backend: "simulated",
        reason,
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).map_err(|e| fail(format!("key generation: {e}")))?;
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).map_err(|e| fail(format!("key load: {e}")))
}

impl SimulatedTee {
    /// A simulated TD with placeholder measurements and fresh keys.
    pub fn new() -> Result<Self> {
        Self::with_measurements(SimulatedMeasurements::default())
    }

    /// A simulated TD reporting the given MRTD/RTMR0-2.
    pub fn with_measurements(measurements: SimulatedMeasurements) -> Result<Self> {
        let rng = SystemRandom::new();
        let root = keypair(&rng)?;
        let attestation_key = keypair(&rng)?;
        Ok(SimulatedTee {
            rng,
            root,
            attestation_key,
            measurements,
            runtime: Mutex::new((EventLog::default(), [0u8; 48])),
        })
    }

    /// The simulated root's public key (SEC1 uncompressed, 65 bytes): pin it in
    /// `AttestationPolicy::dangerous_simulated_roots` (hex).
    pub fn root_public_key(&self) -> Vec<u8> {
        self.root.public_key().as_ref().to_vec()
    }

    fn sign(&self, key: &EcdsaKeyPair, msg: &[u8]) -> Result<[u8; 64]> {
        let sig = key.sign(&self.rng, msg).map_err(|e| Error::Backend {
            backend: "simulated",
            reason: format!("signing: {e}"),
        })?;
        <[u8; 64]>::try_from(sig.as_ref()).map_err(|_| Error::Backend {
            backend: "simulated",
            reason: "unexpected signature length".into(),
        })
    }

    /// Builds a quote v4 with a TD 1.0 body.
    fn build_quote(&self, report_data: &[u8; 64], rtmr3: &Measurement) -> Result<Vec<u8>> {
        let mut q = Vec::with_capacity(1400);
        // Header (48).
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes()); // ECDSA-256 with P-256
        q.extend_from_slice(&0x81u32.to_le_bytes()); // TDX
        q.extend_from_slice(&0u16.to_le_bytes());
        q.extend_from_slice(&0u16.to_le_bytes());
        q.extend_from_slice(&SIMULATED_QE_VENDOR_ID);
        q.extend_from_slice(&[0u8; 20]);
        // TD 1.0 body (584).
        q.extend_from_slice(&[0u8; 16]); // TEE_TCB_SVN
        q.extend_from_slice(&[0u8; 48]); // MRSEAM
        q.extend_from_slice(&[0u8; 48]); // MRSIGNERSEAM
        q.extend_from_slice(&[0u8; 8]); // SEAMATTRIBUTES
        q.extend_from_slice(&[0, 0, 0, 0x10, 0, 0, 0, 0]); // TD_ATTRIBUTES: SEPT_VE_DISABLE only
        q.extend_from_slice(&[0xe7, 0x02, 0x06, 0, 0, 0, 0, 0]); // XFAM
        q.extend_from_slice(&self.measurements.mrtd);
        q.extend_from_slice(&[0u8; 48 * 3]); // MRCONFIGID, MROWNER, MROWNERCONFIG
        for r in &self.measurements.rtmr {
            q.extend_from_slice(r);
        }
        q.extend_from_slice(rtmr3);
        q.extend_from_slice(report_data);
        let isv_sig = self.sign(&self.attestation_key, &q)?;
        let att_key = self
            .attestation_key
            .public_key()
            .as_ref()
            .get(1..)
            .unwrap_or_default()
            .to_vec();
        // QE report (384) whose report data binds the attestation key.
        let qe_auth = [0x5au8; 32];
        let mut qe_report = vec![0u8; 384];
        let mut h = Sha256::new();
        h.update(&att_key);
        h.update(qe_auth);
        let binding: [u8; 32] = h.finalize().into();
        if let Some(slot) = qe_report.get_mut(320..352) {
            slot.copy_from_slice(&binding);
        }
        let qe_sig = self.sign(&self.root, &qe_report)?;
        let mut inner = SIMULATED_CERT_PREFIX.to_vec();
        inner.extend_from_slice(hex::encode(self.root_public_key()).as_bytes());
        let mut cert6 = Vec::new();
        cert6.extend_from_slice(&qe_report);
        cert6.extend_from_slice(&qe_sig);
        cert6.extend_from_slice(&(qe_auth.len() as u16).to_le_bytes());
        cert6.extend_from_slice(&qe_auth);
        cert6.extend_from_slice(&5u16.to_le_bytes());
        cert6.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        cert6.extend_from_slice(&inner);
        let mut auth = Vec::new();
        auth.extend_from_slice(&isv_sig);
        auth.extend_from_slice(&att_key);
        auth.extend_from_slice(&6u16.to_le_bytes());
        auth.extend_from_slice(&(cert6.len() as u32).to_le_bytes());
        auth.extend_from_slice(&cert6);
        q.extend_from_slice(&(auth.len() as u32).to_le_bytes());
        q.extend_from_slice(&auth);
        Ok(q)
    }

    /// The runtime log and RTMR3 so far. RTMR0-2 are reported as configured: a simulated TD has
    /// no boot log to replay.
    fn runtime_snapshot(&self) -> (EventLog, Measurement) {
        let guard = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.clone()
    }
}

impl EvidenceProducer for SimulatedTee {
    fn backend(&self) -> Backend {
        Backend::Simulated
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let (log, rtmr3) = self.runtime_snapshot();
        let quote = self.build_quote(report_data, &rtmr3)?;
        Ok(Evidence {
            quote,
            event_log: Some(log.to_dstack_json()),
            gpu_evidence: None,
            binding: None,
        })
    }

    fn extend_runtime(&self, event: &str, payload: &[u8]) -> Result<()> {
        let mut guard = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let digest = guard.0.push_runtime(event, payload);
        guard.1 = extend(&guard.1, &digest);
        Ok(())
    }
}

/// Result of checking a simulated quote's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimulatedCheck {
    pub(crate) root: Vec<u8>,
    pub(crate) qe_report_signature: bool,
    pub(crate) qe_report_data: bool,
    pub(crate) quote_signature: bool,
}

/// Verifies a simulated quote's chain: root signs the QE report, the QE report binds the
/// attestation key, the attestation key signs header+body.
pub(crate) fn check_simulated(raw: &[u8]) -> Result<SimulatedCheck> {
    let q = dcap_qvl::quote::Quote::parse(raw).map_err(|e| Error::MalformedQuote {
        field: "structure",
        reason: e.to_string(),
    })?;
    let signed_len = q.signed_length();
    let cert = q.inner_cert_data().to_vec();
    let auth = q.auth_data.into_v3();
    let root_hex = cert
        .strip_prefix(SIMULATED_CERT_PREFIX)
        .ok_or_else(|| Error::MalformedQuote {
            field: "certification data",
            reason: "simulated vendor id but no simulated root".into(),
        })?;
    let root = hex::decode(root_hex).map_err(|e| Error::MalformedQuote {
        field: "certification data",
        reason: format!("simulated root: {e}"),
    })?;
    let verify = |pk: &[u8], msg: &[u8], sig: &[u8]| {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, pk)
            .verify(msg, sig)
            .is_ok()
    };
    let qe_report_signature = verify(&root, &auth.qe_report, &auth.qe_report_signature);
    let mut h = Sha256::new();
    h.update(auth.ecdsa_attestation_key);
    h.update(&auth.qe_auth_data.data);
    let want: [u8; 32] = h.finalize().into();
    let qe_report_data = auth.qe_report.get(320..352) == Some(want.as_slice());
    let mut pk = vec![0x04u8];
    pk.extend_from_slice(&auth.ecdsa_attestation_key);
    let quote_signature = raw
        .get(..signed_len)
        .is_some_and(|m| verify(&pk, m, &auth.ecdsa_signature));
    Ok(SimulatedCheck {
        root,
        qe_report_signature,
        qe_report_data,
        quote_signature,
    })
}
