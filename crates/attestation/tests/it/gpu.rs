//! NVIDIA GPU evidence against the real NVIDIA-signed vectors in testdata/gpu (README §2 for the
//! sets, §9 for the negative vectors: each must fail exactly the check it names).
use crate::common::t;
use zg_attestation::{
    AttestationPolicy, Evidence, EvidenceProducer, GpuCollateral, GpuEvidence, GpuProducer, GpuRoots,
    ImagePolicy, KeyBinding, SimulatedGpu, SimulatedMeasurements, SimulatedTee, SpdmReport,
    VerificationReport, Verifier,
};
use zg_test_utils::testdata;

const NONCE_A: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const NONCE_B: &str = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e";
const DRIVER_A: &str = "NV_GPU_DRIVER_GH100_550.90.07";
const VBIOS_A: &str = "NV_GPU_VBIOS_1010_0200_882_96009F0001";
const DRIVER_B: &str = "NV_GPU_DRIVER_GH100_545.00";
const VBIOS_B: &str = "NV_GPU_VBIOS_1010_0200_882_96005E0001";
const T0: &str = "2025-01-01T00:00:00Z";

fn nonce(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn report_a() -> Vec<u8> {
    hex::decode(testdata::read("gpu/hopperAttestationReport.txt")).unwrap()
}

fn report_b() -> Vec<u8> {
    hex::decode(testdata::read("gpu/attestationReport.txt")).unwrap()
}

fn evidence(report: &[u8], chain: &str) -> GpuEvidence {
    GpuEvidence::from_report_and_chain(report, &testdata::read_string(&format!("gpu/{chain}"))).unwrap()
}

fn rims(list: &[(&str, &str)]) -> GpuCollateral {
    let mut c = GpuCollateral::new();
    for (id, file) in list {
        c.add_rim(id, &testdata::read(&format!("gpu/{file}"))).unwrap();
    }
    c
}

fn collateral_a() -> GpuCollateral {
    rims(&[
        (DRIVER_A, "NV_GPU_DRIVER_GH100_550.90.07.xml"),
        (VBIOS_A, "NV_GPU_VBIOS_1010_0200_882_96009F0001.xml"),
    ])
}

fn collateral_b(vbios: &str) -> GpuCollateral {
    rims(&[(DRIVER_B, "Driver_RIM_test_no_gpu.swidtag"), (VBIOS_B, vbios)])
}

fn policy(n: [u8; 32]) -> AttestationPolicy {
    AttestationPolicy::default().with_nonce(n)
}

#[track_caller]
fn verify_with(
    ev: &GpuEvidence,
    c: &GpuCollateral,
    n: [u8; 32],
    at: &str,
    roots: GpuRoots,
) -> VerificationReport {
    Verifier::new_prod()
        .with_gpu_roots(roots)
        .verify_gpu(&ev.to_json(None), &policy(n), Some(c), t(at))
}

#[track_caller]
fn verify(ev: &GpuEvidence, c: &GpuCollateral, n: [u8; 32], at: &str) -> VerificationReport {
    verify_with(ev, c, n, at, GpuRoots::nvidia())
}

/// Names of the failed required checks, in order.
fn failing(r: &VerificationReport) -> Vec<&str> {
    r.failures().map(|c| c.name.as_str()).collect()
}

#[track_caller]
fn found<'a>(r: &'a VerificationReport, name: &str) -> &'a str {
    &r.check(name)
        .unwrap_or_else(|| panic!("no check {name}:\n{r}"))
        .found
}

/// Set A with one mutation of the report bytes, verified at T0 with set A's RIMs.
fn mutated_a(f: impl FnOnce(&mut Vec<u8>)) -> VerificationReport {
    let mut rep = report_a();
    f(&mut rep);
    verify(
        &evidence(&rep, "hopperCertChain.txt"),
        &collateral_a(),
        nonce(NONCE_A),
        T0,
    )
}

const ALL: [&str; 8] = [
    "gpu.parse",
    "gpu.nonce",
    "gpu.cert_chain",
    "gpu.signature",
    "gpu.rim.driver",
    "gpu.rim.vbios",
    "gpu.measurements",
    "gpu.devices",
];

#[test]
fn set_a_verifies_with_every_check() {
    let r = verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &collateral_a(),
        nonce(NONCE_A),
        T0,
    );
    assert!(r.passed(), "{r}");
    for name in ALL {
        assert!(r.check(name).unwrap().ok, "{name}: {r}");
    }
    assert_eq!(found(&r, "gpu.measurements"), "33 active measurements match");
    assert!(
        found(&r, "gpu.cert_chain").contains("FWID f5c384aebb579217"),
        "{r}"
    );
    assert!(found(&r, "gpu.rim.driver").starts_with("NV_GPU_DRIVER_GH100_550.90.07: version 550.90.07"));
    assert!(found(&r, "gpu.rim.vbios").contains("version 96.00.9F.00.01"));
    let g = &r.gpus[0];
    assert_eq!(g.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(g.vbios_version.as_deref(), Some("96.00.9f.00.01"));
    assert!(g.device.contains("GH100 A01 GSP FMC LF"), "{}", g.device);
    assert!(!g.simulated && !r.simulated);
    // No OCSP responses: reported as not verified, never silently passed.
    let ocsp = r.check("gpu.ocsp").unwrap();
    assert!(!ocsp.ok && !ocsp.required, "{ocsp:?}");
    assert!(r.not_verified.iter().any(|n| n.contains("OCSP")), "{r}");
}

#[test]
fn set_b_verifies_with_every_check() {
    let r = verify(
        &evidence(&report_b(), "gpuAkCertChain.txt"),
        &collateral_b("1010_0200_882_96005E0001_test_no_gpu.swidtag"),
        nonce(NONCE_B),
        T0,
    );
    assert!(r.passed(), "{r}");
    assert_eq!(found(&r, "gpu.measurements"), "33 active measurements match");
    assert!(found(&r, "gpu.cert_chain").contains("FWID absent"), "{r}");
}

#[test]
fn todays_date_fails_on_expired_rims_not_a_panic() {
    let r = verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &collateral_a(),
        nonce(NONCE_A),
        "2026-12-01T00:00:00Z",
    );
    assert_eq!(failing(&r), ["gpu.rim.driver", "gpu.rim.vbios"], "{r}");
    assert!(
        found(&r, "gpu.rim.driver").contains("expired at 2026-06-01T02:08:29Z"),
        "{r}"
    );
    assert!(
        found(&r, "gpu.rim.vbios").contains("expired at 2026-02-22T23:17:58Z"),
        "{r}"
    );
}

#[test]
fn n1_signature_bit_flips() {
    for off in [4116, 4021] {
        let r = mutated_a(|b| b[off] ^= if off == 4021 { 0x80 } else { 1 });
        assert_eq!(failing(&r), ["gpu.signature"], "offset {off}: {r}");
    }
}

#[test]
fn n2_other_nonce_fails_only_the_nonce() {
    let r = verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &collateral_a(),
        [0; 32],
        T0,
    );
    assert_eq!(failing(&r), ["gpu.nonce"], "{r}");
    assert!(found(&r, "gpu.nonce").starts_with(NONCE_A));
}

#[test]
fn n2a_request_nonce_byte_breaks_nonce_and_signature() {
    let r = mutated_a(|b| b[4] ^= 1);
    assert_eq!(failing(&r), ["gpu.nonce", "gpu.signature"], "{r}");
}

#[test]
fn n2b_responder_nonce_byte_breaks_only_the_signature() {
    let r = mutated_a(|b| b[3565] ^= 1);
    assert_eq!(failing(&r), ["gpu.signature"], "{r}");
}

#[test]
fn n3_wrong_device_root() {
    let rim_root = testdata::read_string("gpu/verifier_RIM_root.pem");
    let roots = GpuRoots::from_pem(&rim_root, &rim_root).unwrap();
    let r = verify_with(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &collateral_a(),
        nonce(NONCE_A),
        T0,
        roots,
    );
    assert_eq!(failing(&r), ["gpu.cert_chain"], "{r}");
    let f = found(&r, "gpu.cert_chain");
    assert!(
        f.starts_with("cert #3 'NVIDIA GH100 Identity' is issued by"),
        "{f}"
    );
    assert!(f.contains("NVIDIA CoRIM signing Root CA"), "{f}");
}

#[test]
fn n4_device_chain_not_yet_valid() {
    let r = verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &collateral_a(),
        nonce(NONCE_A),
        "2022-01-01T00:00:00Z",
    );
    // The RIM chains (2023+) are not valid in 2022 either; the device chain fails at cert #2.
    assert_eq!(
        failing(&r),
        ["gpu.cert_chain", "gpu.rim.driver", "gpu.rim.vbios"],
        "{r}"
    );
    let f = found(&r, "gpu.cert_chain");
    assert!(
        f.starts_with("cert #2 'NVIDIA GH100 Provisioner ICA 1' is not yet valid")
            && f.contains("2022-03-01T00:00:00Z"),
        "{f}"
    );
}

#[test]
fn n4b_rim_chains_expire_to_the_second() {
    let ev = evidence(&report_a(), "hopperCertChain.txt");
    let at = |s: &str| verify(&ev, &collateral_a(), nonce(NONCE_A), s);
    for (name, last_ok, first_bad) in [
        ("gpu.rim.driver", "2026-06-01T02:08:29Z", "2026-06-01T02:08:30Z"),
        ("gpu.rim.vbios", "2026-02-22T23:17:58Z", "2026-02-22T23:17:59Z"),
    ] {
        assert!(at(last_ok).check(name).unwrap().ok, "{name} at {last_ok}");
        let r = at(first_bad);
        let c = r.check(name).unwrap();
        assert!(!c.ok && c.found.contains("'HCC RIM L4 Signer' expired"), "{c:?}");
    }
}

#[test]
fn n5_measurement_byte_flip_names_golden_index_9() {
    let r = mutated_a(|b| b[547] ^= 1);
    assert_eq!(failing(&r), ["gpu.signature", "gpu.measurements"], "{r}");
    assert_eq!(
        found(&r, "gpu.measurements"),
        "mismatch at golden index 9 (VBIOS) of 33 compared"
    );
}

#[test]
fn n5b_set_b_with_the_prod_vbios_rim() {
    let r = verify(
        &evidence(&report_b(), "gpuAkCertChain.txt"),
        &collateral_b("1010_0200_882_96005E0001_PROD.swidtag"),
        nonce(NONCE_B),
        "2024-06-01T00:00:00Z",
    );
    assert_eq!(failing(&r), ["gpu.measurements"], "{r}");
    assert_eq!(
        found(&r, "gpu.measurements"),
        "mismatch at golden index 1 (VBIOS), 2 (VBIOS), 3 (VBIOS), 9 (VBIOS) of 33 compared"
    );
}

/// Set A with the driver RIM's text edited.
fn edited_driver_rim(f: impl FnOnce(String) -> String) -> VerificationReport {
    let xml = f(testdata::read_string("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml"));
    let mut c = collateral_a();
    c.add_rim(DRIVER_A, xml.as_bytes()).unwrap();
    verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &c,
        nonce(NONCE_A),
        T0,
    )
}

#[test]
fn n6_edited_golden_value_breaks_the_reference_digest() {
    // Index 23 matches through its Hash1 (zeros), so only the RIM check can catch this edit.
    let r = edited_driver_rim(|x| {
        let start = x.find("index=\"23\"").unwrap();
        let h0 = start + x[start..].find("ns2:Hash0=\"").unwrap() + 11;
        let mut b = x.into_bytes();
        b[h0] = if b[h0] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    });
    assert_eq!(failing(&r), ["gpu.rim.driver"], "{r}");
    assert!(
        found(&r, "gpu.rim.driver").contains("reference digest mismatch"),
        "{r}"
    );
}

#[test]
fn n7_flipped_signature_value() {
    let r = edited_driver_rim(|x| {
        let at = x.find("<ds:SignatureValue>").unwrap() + 19 + 10;
        let mut b = x.into_bytes();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    });
    assert_eq!(failing(&r), ["gpu.rim.driver"], "{r}");
    assert!(
        found(&r, "gpu.rim.driver").contains("SignatureValue does not verify"),
        "{r}"
    );
}

#[test]
fn n8_unknown_or_wrong_driver_version() {
    // 550.90.07 -> 550.90.08 in the opaque data: no RIM for it (and the signature breaks).
    let r = mutated_a(|b| b[3677] = 0x38);
    assert_eq!(
        failing(&r),
        ["gpu.signature", "gpu.rim.driver", "gpu.measurements"],
        "{r}"
    );
    assert_eq!(
        found(&r, "gpu.rim.driver"),
        "no driver RIM NV_GPU_DRIVER_GH100_550.90.08 in the collateral"
    );
    assert_eq!(found(&r, "gpu.measurements"), "not evaluated: a RIM is missing");
    // The 545.00 RIM offered for set A's 550.90.07.
    let mut c = collateral_a();
    c.add_rim(DRIVER_A, &testdata::read("gpu/Driver_RIM_test_no_gpu.swidtag"))
        .unwrap();
    let r = verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &c,
        nonce(NONCE_A),
        T0,
    );
    let f = found(&r, "gpu.rim.driver");
    assert!(
        f.contains("the RIM is for version 545.00, the report says 550.90.07"),
        "{f}"
    );
    for ok in ["gpu.nonce", "gpu.cert_chain", "gpu.signature", "gpu.rim.vbios"] {
        assert!(r.check(ok).unwrap().ok, "{ok}: {r}");
    }
}

#[test]
fn n9_set_a_report_with_set_b_chain() {
    let r = verify(
        &evidence(&report_a(), "gpuAkCertChain.txt"),
        &collateral_a(),
        nonce(NONCE_A),
        T0,
    );
    assert_eq!(failing(&r), ["gpu.cert_chain", "gpu.signature"], "{r}");
    assert!(
        found(&r, "gpu.cert_chain").contains("differs from the report's f5c384ae"),
        "{r}"
    );
}

#[test]
fn n10_vbios_rim_as_both_rims() {
    let c = rims(&[
        (DRIVER_A, "NV_GPU_VBIOS_1010_0200_882_96009F0001.xml"),
        (VBIOS_A, "NV_GPU_VBIOS_1010_0200_882_96009F0001.xml"),
    ]);
    let r = verify(
        &evidence(&report_a(), "hopperCertChain.txt"),
        &c,
        nonce(NONCE_A),
        T0,
    );
    assert_eq!(failing(&r), ["gpu.rim.driver", "gpu.measurements"], "{r}");
    assert!(
        found(&r, "gpu.measurements").starts_with("index conflict: 12 active indices appear in both RIMs"),
        "{r}"
    );
}

#[test]
fn n12_truncated_and_overrunning_reports_are_parse_errors() {
    let r = mutated_a(|b| {
        b.pop();
    });
    assert_eq!(failing(&r), ["gpu.parse"], "{r}");
    assert!(
        found(&r, "gpu.parse").contains("95 bytes after the opaque data, expected exactly 96"),
        "{r}"
    );
    // Opaque length (u16 LE at 3597) pointing past the end.
    let r = mutated_a(|b| {
        b[3597] = 0xff;
        b[3598] = 0x0f;
    });
    assert_eq!(failing(&r), ["gpu.parse"], "{r}");
    assert!(found(&r, "gpu.parse").contains("response.opaque_data"), "{r}");
    // Every prefix and every single-byte corruption of the length fields: an error, never a panic.
    let full = report_a();
    for n in 0..full.len() {
        assert!(SpdmReport::parse(&full[..n]).is_err(), "prefix {n} parsed");
    }
    for off in [41, 42, 43, 44, 45, 47, 48, 3597, 3598, 3599, 3601] {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = full.clone();
            b[off] = v;
            let _ = SpdmReport::parse(&b);
        }
    }
}

#[test]
fn report_fields_follow_the_readme() {
    let r = SpdmReport::parse(&report_a()).unwrap();
    assert_eq!(hex::encode(r.request_nonce), NONCE_A);
    assert_eq!(r.blocks.len(), 64);
    assert_eq!(r.signed_len, 4021);
    assert_eq!(r.driver_version().as_deref(), Some("550.90.07"));
    assert_eq!(r.vbios_version().as_deref(), Some("96.00.9f.00.01"));
    assert_eq!(r.driver_rim_id().as_deref(), Some(DRIVER_A));
    assert_eq!(r.vbios_rim_id().as_deref(), Some(VBIOS_A));
    assert_eq!(&hex::encode(r.measurement(10).unwrap())[..16], "059b32e712a153f4");
    let b = SpdmReport::parse(&report_b()).unwrap();
    assert_eq!(b.driver_version().as_deref(), Some("545.00"));
    assert_eq!(b.fwid(), None);
    assert_eq!(b.signed_len, 3953);
}

#[test]
fn stored_ocsp_responses_are_checked_at_their_own_time() {
    let mut c = collateral_a();
    for f in [
        "test_gpu_certificate_l2",
        "test_gpu_certificate_l3",
        "test_gpu_certificate_l4",
        "test_gpu_driver_rim_l3",
        "test_gpu_driver_rim_l4",
        "test_gpu_rim_l2",
        "test_gpu_vbios_l4",
    ] {
        c.add_ocsp(&testdata::read(&format!(
            "gpu/ocsp/{f}_base64encoded_ocsp_response.dat"
        )))
        .unwrap();
    }
    let ev = evidence(&report_a(), "hopperCertChain.txt");
    // Inside the device responses' window: 3 good, the RIM responses are not valid yet.
    let r = verify(&ev, &c, nonce(NONCE_A), "2025-08-21T12:00:00Z");
    assert!(r.passed(), "{r}");
    let o = r.check("gpu.ocsp").unwrap();
    assert!(!o.required && o.found.contains("good: 3"), "{o:?}");
    assert!(o.found.contains("OCSP response not yet valid"), "{o:?}");
    // Inside the RIM responses' window: those 6 are good, the device ones expired.
    let r = verify(&ev, &c, nonce(NONCE_A), "2025-10-24T12:00:00Z");
    assert!(r.passed(), "{r}");
    let o = r.check("gpu.ocsp").unwrap();
    assert!(
        o.found.contains("good: 6") && o.found.contains("OCSP response expired"),
        "{o:?}"
    );
    // A policy that requires OCSP fails when any response is missing or stale.
    let strict = AttestationPolicy {
        require_gpu_ocsp: true,
        ..policy(nonce(NONCE_A))
    };
    let r = Verifier::new_prod().verify_gpu(&ev.to_json(None), &strict, Some(&c), t("2025-10-24T12:00:00Z"));
    assert_eq!(failing(&r), ["gpu.ocsp"], "{r}");
}

#[test]
fn multi_gpu_sets_count_distinct_devices() {
    // The same GPU's report twice is one GPU claiming to be two.
    let one = evidence(&report_a(), "hopperCertChain.txt");
    let twice = GpuEvidence {
        devices: vec![one.devices[0].clone(), one.devices[0].clone()],
        ..one.clone()
    };
    let r = verify(&twice, &collateral_a(), nonce(NONCE_A), T0);
    assert_eq!(failing(&r), ["gpu.devices"], "{r}");
    assert!(found(&r, "gpu.devices").contains("a device is counted twice"));
    // The expected count is enforced.
    let p = AttestationPolicy {
        gpu_count: Some(2),
        ..policy(nonce(NONCE_A))
    };
    let r = Verifier::new_prod().verify_gpu(&one.to_json(None), &p, Some(&collateral_a()), t(T0));
    assert_eq!(failing(&r), ["gpu.devices"], "{r}");
}

#[test]
fn version_allow_lists() {
    let ev = evidence(&report_a(), "hopperCertChain.txt");
    let p = AttestationPolicy {
        allowed_gpu_driver_versions: vec!["550.90.07".into()],
        allowed_gpu_vbios_versions: vec!["96.00.9F.00.01".into()],
        ..policy(nonce(NONCE_A))
    };
    let r = Verifier::new_prod().verify_gpu(&ev.to_json(None), &p, Some(&collateral_a()), t(T0));
    assert!(r.passed(), "{r}");
    let p = AttestationPolicy {
        allowed_gpu_driver_versions: vec!["560.35.03".into()],
        ..p
    };
    let r = Verifier::new_prod().verify_gpu(&ev.to_json(None), &p, Some(&collateral_a()), t(T0));
    assert_eq!(failing(&r), ["gpu.driver_version"], "{r}");
}

#[test]
fn evidence_json_round_trips_and_reads_nvattest_collect_output() {
    let ev = evidence(&report_a(), "hopperCertChain.txt");
    let back = GpuEvidence::from_json(&ev.to_json(Some(&nonce(NONCE_A)))).unwrap();
    assert_eq!(back, ev);
    let v: serde_json::Value = serde_json::from_str(&ev.to_json(None)).unwrap();
    let collect = serde_json::json!({"evidences": v["evidence_list"], "result_code": 0});
    assert_eq!(
        GpuEvidence::from_json(&collect.to_string()).unwrap().devices,
        ev.devices
    );
    // A local verifier's result is claims, not evidence: refused with the reason.
    let claims = testdata::read_string("attestation/dstack/gpu_attestation_h100.json");
    let e = GpuEvidence::from_json(&claims).unwrap_err().to_string();
    assert!(e.contains("unsigned claims"), "{e}");
    // Garbage is a typed error.
    for bad in [
        "{}",
        "[1]",
        "{\"evidence_list\": []}",
        "{\"evidence_list\": [{\"evidence\": \"!\", \"certificate\": \"\"}]}",
    ] {
        assert!(GpuEvidence::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn simulated_gpu_is_refused_unless_allowed() {
    let sim = SimulatedGpu::new(2).unwrap();
    let n = [7u8; 32];
    let json = sim.evidence(&n).unwrap().to_json(Some(&n));
    let v = Verifier::new_prod();
    let r = v.verify_gpu(&json, &policy(n), None, t("2026-12-01T00:00:00Z"));
    assert_eq!(failing(&r), ["gpu.simulated.allowed"], "{r}");
    assert!(r.simulated && r.to_string().starts_with("!!! SIMULATED"), "{r}");
    let p = AttestationPolicy {
        dangerous_allow_simulated: true,
        gpu_count: Some(2),
        ..policy(n)
    };
    let r = v.verify_gpu(&json, &p, None, t("2026-12-01T00:00:00Z"));
    assert!(r.passed(), "{r}");
    assert!(r.gpus.iter().all(|g| g.simulated) && r.gpus.len() == 2);
    assert_eq!(
        found(&r, "gpu.measurements"),
        "GPU 0: 64 active measurements match; GPU 1: 64 active measurements match"
    );
    // Its nonce is bound like a real one.
    let r = v.verify_gpu(&json, &policy([8; 32]), None, t("2026-12-01T00:00:00Z"));
    assert!(failing(&r).contains(&"gpu.nonce"), "{r}");
}

fn simulated_tdx(n: &[u8; 32]) -> (Evidence, AttestationPolicy) {
    let tee = SimulatedTee::new().unwrap();
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
        .verifying_key()
        .to_bytes();
    let binding = KeyBinding::new(alloy_primitives::Address::repeat_byte(0x42), ed, None, t(T0)).unwrap();
    let m = SimulatedMeasurements::default();
    let p = AttestationPolicy {
        dangerous_allow_simulated: true,
        images: vec![ImagePolicy {
            name: "zg-simulated-td".into(),
            mrtd: Some(hex::encode(m.mrtd)),
            rtmr0: Some(hex::encode(m.rtmr[0])),
            rtmr1: Some(hex::encode(m.rtmr[1])),
            rtmr2: Some(hex::encode(m.rtmr[2])),
        }],
        ..AttestationPolicy::default()
    };
    (tee.evidence_for(&binding, n).unwrap(), p)
}

#[test]
fn tdx_and_real_gpu_evidence_share_one_nonce() {
    // A (simulated) TD whose REPORTDATA binds set A's nonce, with set A's NVIDIA-signed GPU report.
    let (mut ev, p) = simulated_tdx(&nonce(NONCE_A));
    ev.gpu_evidence = Some(evidence(&report_a(), "hopperCertChain.txt").to_json(None));
    let v = Verifier::new_prod();
    let require = AttestationPolicy {
        require_gpu: true,
        ..p.clone()
    };
    let r = v.verify_with_gpu(&ev, &require, None, Some(&collateral_a()), t(T0));
    assert!(r.passed(), "{r}");
    assert!(found(&r, "gpu.nonce").contains("from REPORTDATA"), "{r}");
    // With the verifier's nonce in the policy, both bindings are checked against it.
    let r = v.verify_with_gpu(
        &ev,
        &require.clone().with_nonce(nonce(NONCE_A)),
        None,
        Some(&collateral_a()),
        t(T0),
    );
    assert!(r.passed(), "{r}");
    // A quote for another nonce with that GPU report: the GPU nonce fails, the quote's passes.
    let (mut other, _) = simulated_tdx(&[5; 32]);
    other.gpu_evidence = ev.gpu_evidence.clone();
    let r = v.verify_with_gpu(
        &other,
        &require.clone().with_nonce([5; 32]),
        None,
        Some(&collateral_a()),
        t(T0),
    );
    assert_eq!(failing(&r), ["gpu.nonce"], "{r}");
    assert!(r.check("binding.nonce").unwrap().ok);
    // require_gpu without GPU evidence fails by name.
    let (bare, _) = simulated_tdx(&[5; 32]);
    let r = v.verify_with_gpu(&bare, &require, None, None, t(T0));
    assert_eq!(failing(&r), ["gpu.present"], "{r}");
}

#[test]
fn one_verifier_memoises_only_successes_and_never_time() {
    // The same verifier first passes set A (memoising its certificate and RIM signatures), then must
    // still fail every mutation and the expiry: the memo holds successful signature checks over exact
    // bytes only, and validity windows are checked on every call.
    let v = Verifier::new_prod();
    let ev = evidence(&report_a(), "hopperCertChain.txt");
    let run = |ev: &GpuEvidence, c: &GpuCollateral, at: &str| {
        v.verify_gpu(&ev.to_json(None), &policy(nonce(NONCE_A)), Some(c), t(at))
    };
    assert!(run(&ev, &collateral_a(), T0).passed());
    let mut bad = report_a();
    bad[4116] ^= 1;
    assert_eq!(
        failing(&run(&evidence(&bad, "hopperCertChain.txt"), &collateral_a(), T0)),
        ["gpu.signature"]
    );
    assert_eq!(
        failing(&run(
            &evidence(&report_a(), "gpuAkCertChain.txt"),
            &collateral_a(),
            T0
        )),
        ["gpu.cert_chain", "gpu.signature"]
    );
    assert_eq!(
        failing(&run(&ev, &collateral_a(), "2026-12-01T00:00:00Z")),
        ["gpu.rim.driver", "gpu.rim.vbios"]
    );
    let xml = testdata::read_string("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml");
    let at = xml.find("<ds:SignatureValue>").unwrap() + 29;
    let mut b = xml.into_bytes();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    let mut c = collateral_a();
    c.add_rim(DRIVER_A, &b).unwrap();
    assert_eq!(failing(&run(&ev, &c, T0)), ["gpu.rim.driver"]);
    assert!(run(&ev, &collateral_a(), T0).passed());
}

fn ocsp_der(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let text = testdata::read_string(&format!(
        "gpu/ocsp/test_gpu_{name}_base64encoded_ocsp_response.dat"
    ));
    base64::engine::general_purpose::STANDARD
        .decode(text.trim().replace(['\n', '\r'], ""))
        .unwrap()
}

/// `der` with its last occurrence of a GeneralizedTime value replaced (same length, so the DER stays well formed; the
/// signature no longer verifies).
fn with_time(der: &[u8], from: &str, to: &str) -> Vec<u8> {
    let at = der
        .windows(from.len())
        .rposition(|w| w == from.as_bytes())
        .unwrap();
    let mut out = der.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

#[test]
fn a_cached_pass_never_outlives_the_ocsp_response_it_relied_on() {
    // Attack: the host staples, before each genuine "good" response for the device certificates, a
    // copy whose nextUpdate says 2099 (its signature is broken, so it is never *used*). The verifier's
    // cache must still expire the pass when the genuine responses do (2025-08-22T06:47:07Z), not when
    // the decoys claim to.
    let mut stapled = Vec::new();
    for (name, next) in [
        ("certificate_l4", "20250822064707Z"),
        ("certificate_l3", "20250822064707Z"),
        ("certificate_l2", "20250822064708Z"),
    ] {
        let genuine = ocsp_der(name);
        stapled.push(with_time(&genuine, next, "20990822064707Z"));
        stapled.push(genuine);
    }
    let (mut ev, p) = simulated_tdx(&nonce(NONCE_A));
    let mut gpu = evidence(&report_a(), "hopperCertChain.txt");
    gpu.ocsp = stapled;
    ev.gpu_evidence = Some(gpu.to_json(None));
    let p = AttestationPolicy {
        require_gpu: true,
        ..p
    };
    let v = Verifier::new_prod();
    let r = v.verify_with_gpu(&ev, &p, None, Some(&collateral_a()), t("2025-08-21T12:00:00Z"));
    assert!(r.passed(), "{r}");
    assert!(found(&r, "gpu.ocsp").contains("good: 3"), "{r}");
    // Still inside the genuine window: the cached report may be reused.
    let r = v.verify_with_gpu(&ev, &p, None, Some(&collateral_a()), t("2025-08-22T06:00:00Z"));
    assert!(found(&r, "gpu.ocsp").contains("good: 3"), "{r}");
    // After it: the report must be what a fresh verifier says (the L4 response expired).
    let late = t("2025-08-23T00:00:00Z");
    let fresh = Verifier::new_prod().verify_with_gpu(&ev, &p, None, Some(&collateral_a()), late);
    let cached = v.verify_with_gpu(&ev, &p, None, Some(&collateral_a()), late);
    assert!(found(&fresh, "gpu.ocsp").contains("expired"), "{fresh}");
    assert_eq!(
        found(&cached, "gpu.ocsp"),
        found(&fresh, "gpu.ocsp"),
        "cached:\n{cached}"
    );
    // And with OCSP required, that is a failure, not a cached pass.
    let strict = AttestationPolicy {
        require_gpu_ocsp: true,
        ..p
    };
    let v = Verifier::new_prod();
    let at = t("2025-08-21T12:00:00Z");
    let r = v.verify_with_gpu(&ev, &strict, None, Some(&collateral_a()), at);
    // (The RIM chains' responses are not stapled, so strict fails at once; nothing is cached.)
    assert_eq!(failing(&r), ["gpu.ocsp"], "{r}");
    assert_eq!(v.cache_len(), 0);
}

#[test]
fn rim_ids_from_a_report_cannot_walk_out_of_the_collateral_directory() {
    // The RIM id is built from strings inside the (not yet verified) report: a hostile host can name
    // `NV_GPU_VBIOS_<project>...` with a project of `../..`. The directory source must only ever read
    // `<dir>/<id>.xml|.swidtag` for an id made of RIM-id characters.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("collateral");
    std::fs::create_dir_all(dir.join("NV_GPU_DRIVER_GH100_x")).unwrap();
    std::fs::write(
        tmp.path().join("outside.xml"),
        testdata::read("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml"),
    )
    .unwrap();
    let src = zg_attestation::DirectoryGpuCollateral::new(&dir);
    for id in [
        "NV_GPU_DRIVER_GH100_x/../../outside",
        "../outside",
        "/etc/passwd",
        "NV_GPU_DRIVER_GH100_\0",
        "",
    ] {
        let e = src.load_rim(id, None).unwrap_err().to_string();
        assert!(e.contains("not a RIM identifier"), "{id:?}: {e}");
    }
    // A real id still loads.
    std::fs::write(
        dir.join(format!("{DRIVER_A}.xml")),
        testdata::read("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml"),
    )
    .unwrap();
    assert_eq!(src.load_rim(DRIVER_A, None).unwrap().version, "550.90.07");
}

#[test]
fn xml_signature_wrapping_variants_of_the_driver_rim() {
    const R7: &str = r#"<ns0:Resource type="Measurement" index="7" active="True""#;
    let original =
        zg_attestation::Rim::parse(&testdata::read("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml")).unwrap();
    let check = |what: &str, f: &dyn Fn(String) -> String| -> (bool, Option<zg_attestation::Rim>) {
        let xml = f(testdata::read_string("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml"));
        assert_ne!(
            xml,
            testdata::read_string("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml"),
            "{what}: no edit"
        );
        let mut c = collateral_a();
        if c.add_rim(DRIVER_A, xml.as_bytes()).is_err() {
            return (false, None); // refused by the parser
        }
        let r = verify(
            &evidence(&report_a(), "hopperCertChain.txt"),
            &c,
            nonce(NONCE_A),
            T0,
        );
        (
            r.check("gpu.rim.driver").is_some_and(|c| c.ok),
            zg_attestation::Rim::parse(xml.as_bytes()).ok(),
        )
    };
    // Edits C14N removes (comments, whitespace inside tags, quoting, character references, CDATA) or the
    // enveloped-signature transform leaves out (a decoy Payload inside ds:Signature): the signature still
    // holds, and what the verifier reads is unchanged (values come from the document element's own Meta
    // and Payload only).
    let same: [(&str, &dyn Fn(String) -> String); 6] = [
        ("decoy Payload inside the Signature", &|x| {
            x.replacen(
                "<ds:KeyInfo>",
                "<ds:Object><ns0:Payload xmlns:ns0=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\"><ns0:Resource index=\"7\" active=\"False\" alternatives=\"1\" size=\"48\"/></ns0:Payload></ds:Object><ds:KeyInfo>",
                1,
            )
        }),
        ("comment", &|x| {
            x.replacen(R7, &format!("<!-- index=\"9\" -->{R7}"), 1)
        }),
        ("spaces in a tag", &|x| {
            x.replacen(R7, &R7.replace(" index", "   index"), 1)
        }),
        ("single quotes", &|x| {
            x.replacen(R7, &R7.replace("\"7\"", "'7'"), 1)
        }),
        ("character reference", &|x| {
            x.replacen(R7, &R7.replace("\"7\"", "\"&#55;\""), 1)
        }),
        ("CDATA digest", &|x| {
            x.replacen("<ds:DigestValue>gMJp", "<ds:DigestValue><![CDATA[gMJp", 1)
                .replacen("1+Kw</ds:DigestValue>", "1+Kw]]></ds:DigestValue>", 1)
        }),
    ];
    for (what, f) in same {
        let (ok, rim) = check(what, f);
        assert!(ok, "{what}: C14N-equivalent edit must still verify");
        let rim = rim.unwrap();
        assert_eq!(
            (&rim.version, &rim.measurements),
            (&original.version, &original.measurements),
            "{what}"
        );
    }
    // Edits that would change what is read: refused (by the digest, or by the parser's structure rules).
    let refused: [(&str, &dyn Fn(String) -> String); 8] = [
        ("golden value", &|x| {
            x.replacen("ns2:Hash0=\"8016", "ns2:Hash0=\"0016", 1)
        }),
        ("resource in another namespace", &|x| {
            x.replacen(R7, &format!("<x:Resource xmlns:x=\"urn:evil\" index=\"99\" active=\"True\" alternatives=\"1\" size=\"48\"/>{R7}"), 1)
        }),
        ("prefix rebound to another hash namespace", &|x| {
            x.replacen("<ns0:Payload ", "<ns0:Payload xmlns:ns2=\"urn:evil\" ", 1)
        }),
        ("second Payload", &|x| {
            x.replacen(
                "<ns0:Payload ",
                "<ns0:Payload xmlns:ns2=\"urn:x\"></ns0:Payload><ns0:Payload ",
                1,
            )
        }),
        ("second Signature", &|x| {
            x.replacen(
                "<ns0:Meta ",
                "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/><ns0:Meta ",
                1,
            )
        }),
        ("reference to a fragment", &|x| {
            x.replacen("URI=\"\"", "URI=\"#Payload\"", 1)
        }),
        ("extra transform", &|x| {
            x.replacen(
                "</ds:Transforms>",
                "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"/></ds:Transforms>",
                1,
            )
        }),
        ("entity expansion", &|x| {
            format!(
                "<!DOCTYPE a [<!ENTITY e \"7\">]>{}",
                x.replacen("index=\"7\"", "index=\"&e;\"", 1)
            )
        }),
    ];
    for (what, f) in refused {
        let (ok, rim) = check(what, f);
        assert!(!ok, "{what}: must not verify");
        // When it still parses, a verified copy can never carry the edit: it did not verify.
        let _ = rim;
    }
}

#[test]
fn stapled_collateral_is_bounded() {
    // A provider staples 129 copies of one OCSP response (each costs its verifier an ECDSA check).
    let mut ev = evidence(&report_a(), "hopperCertChain.txt");
    ev.ocsp = vec![ocsp_der("certificate_l4"); zg_attestation::MAX_STAPLED_OCSP + 1];
    let e = GpuEvidence::from_json(&ev.to_json(None)).unwrap_err().to_string();
    assert!(e.contains("stapled OCSP responses, more than"), "{e}");
    ev.ocsp.truncate(zg_attestation::MAX_STAPLED_OCSP);
    assert_eq!(
        GpuEvidence::from_json(&ev.to_json(None)).unwrap().ocsp.len(),
        zg_attestation::MAX_STAPLED_OCSP
    );
    let mut ev = evidence(&report_a(), "hopperCertChain.txt");
    ev.rims = (0..=zg_attestation::MAX_STAPLED_RIMS)
        .map(|i| (format!("NV_GPU_X_{i}"), b"<a/>".to_vec()))
        .collect();
    let e = GpuEvidence::from_json(&ev.to_json(None)).unwrap_err().to_string();
    assert!(e.contains("stapled RIMs, more than"), "{e}");
}
