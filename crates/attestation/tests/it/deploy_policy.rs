//! The policies shipped in deploy/ stay true: the compose hashes are those of the files next to them, and the
//! simulated policy names the simulated backend's measurements (and a simulated TD passes it only with the
//! explicit opt-in).
use crate::common::t;
use sha2::{Digest as _, Sha256};
use zg_attestation::{AttestationPolicy, EvidenceProducer, KeyBinding, SimulatedTee, Verifier};

fn deploy(file: &str) -> std::path::PathBuf {
    zg_test_utils::testdata::dir().join("../deploy").join(file)
}

#[test]
fn production_policy_pins_the_deploy_files() {
    let p = AttestationPolicy::from_file(deploy("policy.toml")).unwrap();
    for f in ["app-compose.json", "docker-compose.yml"] {
        let h = hex::encode(Sha256::digest(std::fs::read(deploy(f)).unwrap()));
        assert!(
            p.allowed_compose_hashes.contains(&h),
            "deploy/policy.toml does not list {f} ({h})"
        );
    }
    let app: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deploy("app-compose.json")).unwrap()).unwrap();
    assert_eq!(
        app["docker_compose_file"].as_str().unwrap(),
        std::fs::read_to_string(deploy("docker-compose.yml")).unwrap(),
        "deploy/app-compose.json must wrap deploy/docker-compose.yml verbatim"
    );
    assert!(p.has_allowlist() && p.require_gpu && !p.dangerous_any_image && !p.dangerous_allow_simulated);
}

#[test]
fn simulated_policy_matches_the_simulated_backend() {
    let p = AttestationPolicy::from_file(deploy("policy.simulated.toml")).unwrap();
    let tee = SimulatedTee::new().unwrap();
    let ed = ed25519_dalek::SigningKey::from_bytes(&[1; 32])
        .verifying_key()
        .to_bytes();
    let now = t("2026-01-01T00:00:00Z");
    let binding = KeyBinding::new(alloy_primitives::Address::repeat_byte(7), ed, None, now).unwrap();
    let ev = tee.evidence_for(&binding, &[3; 32]).unwrap();
    let v = Verifier::new_prod();
    let r = v.verify(&ev, &p.clone().with_nonce([3; 32]), None, now);
    assert_eq!(crate::common::first_failure(&r).0, "simulated.allowed", "{r}");
    let allowed = AttestationPolicy {
        dangerous_allow_simulated: true,
        ..p
    }
    .with_nonce([3; 32]);
    let r = v.verify(&ev, &allowed, None, now);
    assert!(r.passed(), "{r}");
    assert_eq!(r.allowlist_matches, ["image zg-simulated-td"]);
}
