//! The simulated backend end to end: evidence, binding, nonce, policy opt-in.
use crate::common::t;
use alloy_primitives::Address;
use zg_attestation::{
    AttestationPolicy, Evidence, EvidenceProducer, KeyBinding, SIMULATED_BANNER, SimulatedTee, Verifier,
};

fn setup() -> (SimulatedTee, KeyBinding, [u8; 32]) {
    let tee = SimulatedTee::new().unwrap();
    tee.extend_runtime("compose-hash", &[0xab; 32]).unwrap();
    tee.extend_runtime("app-id", &[0x01; 20]).unwrap();
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
        .verifying_key()
        .to_bytes();
    let binding = KeyBinding::new(Address::repeat_byte(0x42), ed, None, t("2026-01-01T00:00:00Z")).unwrap();
    (tee, binding, [0x99; 32])
}

fn allow(tee: &SimulatedTee) -> AttestationPolicy {
    AttestationPolicy {
        dangerous_allow_simulated: true,
        dangerous_simulated_roots: vec![hex::encode(tee.root_public_key())],
        expected_signer: Some(Address::repeat_byte(0x42)),
        nonce: Some([0x99; 32]),
        max_quote_age_secs: Some(600),
        allowed_compose_hashes: vec!["ab".repeat(32)],
        ..AttestationPolicy::default()
    }
}

#[test]
fn simulated_rejected_by_default_and_labelled() {
    let (tee, binding, nonce) = setup();
    let ev = tee.evidence_for(&binding, &nonce).unwrap();
    let r = Verifier::new_prod().verify(
        &ev,
        &AttestationPolicy::default(),
        None,
        t("2026-01-01T00:01:00Z"),
    );
    assert!(!r.passed());
    assert!(r.simulated);
    assert_eq!(r.notice.as_deref(), Some(SIMULATED_BANNER));
    assert_eq!(crate::common::first_failure(&r).0, "simulated.allowed");
    assert!(r.to_string().starts_with("!!! SIMULATED — NOT A REAL TEE !!!"));
}

#[test]
fn simulated_passes_with_opt_in_and_binds_everything() {
    let (tee, binding, nonce) = setup();
    let ev = tee.evidence_for(&binding, &nonce).unwrap();
    // Through the wire format and back.
    let ev = Evidence::from_document(ev.to_json().as_bytes()).unwrap();
    let p = allow(&tee);
    let r = Verifier::new_prod().verify(&ev, &p, None, t("2026-01-01T00:01:00Z"));
    assert!(r.passed(), "{r}");
    assert_eq!(
        r.signer_address.as_deref(),
        Some("0x4242424242424242424242424242424242424242")
    );
    assert_eq!(
        r.app.as_ref().unwrap().compose_hash.as_deref(),
        Some(&*"ab".repeat(32))
    );
    assert!(r.check("event_log.rtmr3").unwrap().ok);
    assert!(r.binding.is_some());
    // JSON report has the required keys.
    let json = serde_json::to_value(&*r).unwrap();
    for k in [
        "verdict",
        "tcb_status",
        "advisory_ids",
        "mrtd",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "report_data",
        "checks",
    ] {
        assert!(json.get(k).is_some(), "{k}");
    }
    assert_eq!(json["verdict"], "pass");
}

#[test]
fn simulated_negative_checks() {
    let (tee, binding, nonce) = setup();
    let ev = tee.evidence_for(&binding, &nonce).unwrap();
    let v = Verifier::new_prod();
    let at = t("2026-01-01T00:01:00Z");
    let fail =
        |p: &AttestationPolicy, ev: &Evidence, at| crate::common::first_failure(&v.verify(ev, p, None, at)).0;
    // Wrong nonce.
    assert_eq!(fail(&allow(&tee).with_nonce([1; 32]), &ev, at), "binding.nonce");
    // Wrong expected signer.
    let mut p = allow(&tee);
    p.expected_signer = Some(Address::repeat_byte(0x43));
    assert_eq!(fail(&p, &ev, at), "binding.signer");
    // Too old.
    assert_eq!(
        fail(&allow(&tee), &ev, t("2026-01-01T01:00:00Z")),
        "binding.freshness"
    );
    // Another simulated root.
    let mut p = allow(&tee);
    p.dangerous_simulated_roots = vec!["04".repeat(65)];
    assert_eq!(fail(&p, &ev, at), "simulated.root");
    // A swapped binding document (different signer) no longer matches the commitment.
    let mut swapped = ev.clone();
    let mut b = binding.clone();
    b.signer_address = Address::repeat_byte(0x43);
    swapped.binding = Some(b);
    assert_eq!(fail(&allow(&tee), &swapped, at), "binding.commitment");
    // Event log tampering: drop the last event, RTMR3 no longer replays.
    let mut log = zg_attestation::EventLog::from_dstack_json(ev.event_log.as_deref().unwrap()).unwrap();
    log.events.pop();
    log.digest_checks.pop();
    let mut short = ev.clone();
    short.event_log = Some(log.to_dstack_json());
    assert_eq!(fail(&allow(&tee), &short, at), "event_log.rtmr3");
    // A flipped REPORTDATA byte breaks the simulated quote signature.
    let mut q = ev.clone();
    q.quote[600] ^= 1;
    assert_eq!(fail(&allow(&tee), &q, at), "quote.signature");
    // Missing event log when required.
    let mut none = ev.clone();
    none.event_log = None;
    assert_eq!(fail(&allow(&tee), &none, at), "event_log.present");
}

#[test]
fn gpu_evidence_nonce_binding() {
    let (tee, binding, _) = setup();
    let gpu = zg_attestation::SimulatedGpu::new(1).unwrap();
    let mut ev = tee.evidence_for(&binding, &[0x11; 32]).unwrap();
    ev.gpu_evidence = Some(
        zg_attestation::GpuProducer::evidence(&gpu, &[0x11; 32])
            .unwrap()
            .to_json(None),
    );
    let v = Verifier::new_prod();
    let p = allow(&tee).with_nonce([0x11; 32]);
    let r = v.verify(&ev, &p, None, t("2026-01-01T00:01:00Z"));
    assert!(r.passed(), "{r}");
    assert!(r.check("gpu.nonce").unwrap().ok);
    assert!(r.check("gpu.simulated.allowed").unwrap().ok);
    let r = v.verify(
        &ev,
        &allow(&tee).with_nonce([0x99; 32]),
        None,
        t("2026-01-01T00:01:00Z"),
    );
    assert_eq!(crate::common::first_failure(&r).0, "binding.nonce");
    assert!(!r.check("gpu.nonce").unwrap().ok);
    // An NVIDIA local verifier's unsigned claims (what this crate used to accept) are not evidence.
    ev.gpu_evidence = Some(zg_test_utils::testdata::read_string(
        "attestation/dstack/gpu_attestation_h100.json",
    ));
    let r = v.verify(&ev, &p, None, t("2026-01-01T00:01:00Z"));
    assert_eq!(crate::common::first_failure(&r).0, "gpu.parse");
}

#[test]
fn app_emitted_identity_event_cannot_override_the_boot_one() {
    // Attack: the operator boots compose hash 0xcd.. (not allowed), then a container that can reach the
    // guest agent emits a second `compose-hash` runtime event naming the allowed 0xab... The log replays
    // (RTMR3 covers both events), so only a rule about repeated identity events stops it.
    let tee = SimulatedTee::new().unwrap();
    tee.extend_runtime("compose-hash", &[0xcd; 32]).unwrap();
    tee.extend_runtime("app-id", &[0x01; 20]).unwrap();
    tee.extend_runtime("system-ready", b"").unwrap();
    tee.extend_runtime("compose-hash", &[0xab; 32]).unwrap();
    let (_, binding, nonce) = setup();
    let ev = tee.evidence_for(&binding, &nonce).unwrap();
    let r = Verifier::new_prod().verify(&ev, &allow(&tee), None, t("2026-01-01T00:01:00Z"));
    assert!(!r.passed(), "a second compose-hash event must not pass: {r}");
    assert!(
        r.check("event_log.rtmr3").unwrap().ok,
        "the log itself replays: {r}"
    );
    let (name, found) = crate::common::first_failure(&r);
    assert_eq!(name, "event_log.identity", "{r}");
    assert!(found.contains("compose-hash") && found.contains("2"), "{found}");
    // The same attack on app-id (emitted before the real one cannot happen: the boot one comes first).
    let tee = SimulatedTee::new().unwrap();
    tee.extend_runtime("compose-hash", &[0xab; 32]).unwrap();
    tee.extend_runtime("app-id", &[0x02; 20]).unwrap();
    tee.extend_runtime("app-id", &[0x01; 20]).unwrap();
    let ev = tee.evidence_for(&binding, &nonce).unwrap();
    let mut p = allow(&tee);
    p.allowed_app_ids = vec!["01".repeat(20)];
    let r = Verifier::new_prod().verify(&ev, &p, None, t("2026-01-01T00:01:00Z"));
    assert_eq!(crate::common::first_failure(&r).0, "event_log.identity", "{r}");
    // One of each still passes (the normal dstack log).
    let (tee, binding, nonce) = setup();
    let ev = tee.evidence_for(&binding, &nonce).unwrap();
    let r = Verifier::new_prod().verify(&ev, &allow(&tee), None, t("2026-01-01T00:01:00Z"));
    assert!(r.passed(), "{r}");
    assert!(r.check("event_log.identity").unwrap().ok, "{r}");
}

#[test]
fn another_provider_cannot_present_this_tee_as_its_own() {
    // Attack: provider B registers provider A's TEE signer and serves A's attestation (its URL proxies A).
    // The signer binding alone cannot tell them apart; a binding that names the provider can.
    let a = Address::repeat_byte(0xaa);
    let b = Address::repeat_byte(0xbb);
    let (tee, binding, nonce) = setup();
    let bound = binding.clone().with_provider(a);
    // Naming the provider changes the commitment; leaving it out keeps today's bindings valid.
    assert_ne!(bound.commitment(), binding.commitment());
    let ev = tee.evidence_for(&bound, &nonce).unwrap();
    let v = Verifier::new_prod();
    let at = t("2026-01-01T00:01:00Z");
    let mut p = allow(&tee);
    p.expected_provider = Some(a);
    let r = v.verify(&ev, &p, None, at);
    assert!(r.passed(), "{r}");
    assert_eq!(r.binding.as_ref().unwrap().provider, Some(a));
    // Verified on behalf of B: refused by name.
    p.expected_provider = Some(b);
    let (name, found) = crate::common::first_failure(&v.verify(&ev, &p, None, at));
    assert_eq!(name, "binding.provider");
    assert!(found.contains(&a.to_checksum(None)), "{found}");
    // A binding that names no provider cannot satisfy a policy that expects one.
    let plain = tee.evidence_for(&binding, &nonce).unwrap();
    assert_eq!(
        crate::common::first_failure(&v.verify(&plain, &p, None, at)).0,
        "binding.provider"
    );
    // Swapping the provider in the binding document breaks the commitment.
    let mut swapped = ev.clone();
    swapped.binding = Some(binding.clone().with_provider(b));
    assert_eq!(
        crate::common::first_failure(&v.verify(&swapped, &p, None, at)).0,
        "binding.commitment"
    );
}
