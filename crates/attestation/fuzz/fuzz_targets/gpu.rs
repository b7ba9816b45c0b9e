//! Fuzz the NVIDIA GPU evidence parsers and verifier: SPDM reports (binary), the evidence JSON, RIM XML
//! (parse + canonicalisation) and OCSP responses. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zg_attestation::{AttestationPolicy, GpuCollateral, GpuEvidence, Rim, SpdmReport, Timestamp, Verifier};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SpdmReport::parse(data) {
        let _ = (r.driver_rim_id(), r.vbios_rim_id(), r.fwid());
    }
    let _ = Rim::parse(data);
    let mut c = GpuCollateral::new();
    let _ = c.add_ocsp(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = GpuEvidence::from_json(text);
        let policy = AttestationPolicy::default().with_nonce([0; 32]);
        let _ = Verifier::new_prod().verify_gpu(text, &policy, None, Timestamp(1_750_000_000));
    }
    // A report with an arbitrary (probably broken) chain through the whole verifier.
    let ev = GpuEvidence {
        arch: "HOPPER".into(),
        devices: vec![zg_attestation::GpuDeviceEvidence {
            report: data.to_vec(),
            cert_chain: vec![data.to_vec()],
        }],
        rims: Vec::new(),
        ocsp: Vec::new(),
    };
    let policy = AttestationPolicy::default().with_nonce([0; 32]);
    let _ = Verifier::new_prod().verify_gpu(&ev.to_json(None), &policy, Some(&c), Timestamp(1_750_000_000));
});
