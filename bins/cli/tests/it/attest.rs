//! `zg attest verify` on NVIDIA GPU evidence (testdata/gpu, set A), alone and with a quote.
use crate::{stderr, stdout, zg};
use zg_test_utils::testdata;

const NONCE_A: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn gpu_args<'a>(report: &'a str, nonce: &'a str, at: &'a str) -> Vec<String> {
    [
        "attest",
        "verify",
        "--gpu-evidence",
        report,
        "--gpu-cert-chain",
        &testdata::path("gpu/hopperCertChain.txt").display().to_string(),
        "--gpu-rim-dir",
        &testdata::path("gpu").display().to_string(),
        "--nonce",
        nonce,
        "--at",
        at,
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> (bool, serde_json::Value, String) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = zg(&refs, &[]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o.status.success(), doc, stderr(&o))
}

fn failing(doc: &serde_json::Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["required"] == true && c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn gpu_evidence_alone_passes_and_fails_by_check() {
    let report = testdata::path("gpu/hopperAttestationReport.txt")
        .display()
        .to_string();
    let (ok, doc, err) = run(&gpu_args(&report, NONCE_A, "2025-01-01T00:00:00Z"));
    assert!(ok, "{doc}\n{err}");
    assert_eq!(doc["verdict"], "pass");
    for name in [
        "gpu.nonce",
        "gpu.cert_chain",
        "gpu.signature",
        "gpu.rim.driver",
        "gpu.rim.vbios",
        "gpu.measurements",
    ] {
        let c = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        assert_eq!(c["ok"], true, "{name}: {c}");
        assert!(c["expected"].is_string() && c["found"].is_string(), "{c}");
    }
    // Today the RIMs' signing chains have expired: a failure of gpu.rim.*, exit 1, not a panic.
    let (ok, doc, _) = run(&gpu_args(&report, NONCE_A, "2026-12-01T00:00:00Z"));
    assert!(!ok);
    assert_eq!(doc["verdict"], "fail");
    assert_eq!(failing(&doc), ["gpu.rim.driver", "gpu.rim.vbios"]);
    // Another nonce.
    let (ok, doc, _) = run(&gpu_args(&report, &"00".repeat(32), "2025-01-01T00:00:00Z"));
    assert!(!ok);
    assert_eq!(failing(&doc), ["gpu.nonce"]);
    // A flipped signature byte in the file.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = hex::decode(testdata::read("gpu/hopperAttestationReport.txt")).unwrap();
    bytes[4116] ^= 1;
    let bad = dir.path().join("report.hex");
    std::fs::write(&bad, hex::encode(bytes)).unwrap();
    let (ok, doc, _) = run(&gpu_args(
        &bad.display().to_string(),
        NONCE_A,
        "2025-01-01T00:00:00Z",
    ));
    assert!(!ok);
    assert_eq!(failing(&doc), ["gpu.signature"]);
}

#[test]
fn a_quote_without_an_allow_list_needs_the_dangerous_flag() {
    let td = |p: &str| {
        testdata::path(&format!("attestation/dcap-qvl/{p}"))
            .display()
            .to_string()
    };
    let base = [
        "attest",
        "verify",
        "--quote",
        &td("tdx_quote.bin"),
        "--collateral",
        &td("tdx_quote_collateral.json"),
        "--at",
        "2025-06-20T00:00:00Z",
        "--json",
    ];
    let args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    let (ok, doc, _) = run(&args);
    assert!(!ok);
    assert_eq!(failing(&doc), ["measurements.allowlist"]);
    let mut any = args.clone();
    any.push("--dangerous-any-image".into());
    let (ok, doc, _) = run(&any);
    assert!(ok, "{doc}");
    assert_eq!(doc["allowlist_matches"][0], "any image (dangerous_any_image)");
}
