//! GPU evidence fixture.
use zg_attestation::GpuEvidence;

#[test]
fn h100_local_verifier_output() {
    let g = GpuEvidence::from_json(&zg_test_utils::testdata::read_string(
        "attestation/dstack/gpu_attestation_h100.json",
    ))
    .unwrap();
    assert_eq!(g.gpus.len(), 1);
    assert_eq!(g.gpus[0].hwmodel, "GH100 A01 GSP BROM");
    assert_eq!(g.gpus[0].driver_version.as_deref(), Some("580.159.03"));
    assert_eq!(g.gpus[0].vbios_version.as_deref(), Some("96.00.D9.00.01"));
    assert!(g.overall_result && g.submodule_digests_match);
    assert_eq!(
        (g.alg.as_str(), g.issuer.as_str(), g.result_code),
        ("none", "NVAT-LOCAL-VERIFIER", 0)
    );
    assert!(g.nonce_matches(&[0x11; 32]));
    assert!(!g.nonce_matches(&[0x12; 32]));
    assert_eq!(g.not_verified().len(), 2);
}

#[test]
fn tampered_submodule_token_is_detected() {
    let text = zg_test_utils::testdata::read_string("attestation/dstack/gpu_attestation_h100.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sub = v["detached_eat"][1]["GPU-0"].as_str().unwrap().to_owned();
    let tampered = text.replace(&sub, &format!("{sub}x"));
    let g = GpuEvidence::from_json(&tampered).unwrap();
    assert!(!g.submodule_digests_match);
}
