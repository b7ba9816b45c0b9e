//! Flip one byte in each structural part of tdx_quote.bin (v4) and check the exact failing check.
use crate::common::*;

const AT: &str = "2025-06-20T00:00:00Z";

#[track_caller]
fn flip(offset: usize) -> (String, String) {
    let mut q = quote("dcap-qvl/tdx_quote.bin");
    q[offset] ^= 0x01;
    let r = run(
        &q,
        &collateral("tdx_quote_collateral.json"),
        AT,
        &quote_only_policy(),
    );
    assert!(!r.passed());
    first_failure(&r)
}

#[test]
fn header_version_byte() {
    let (name, found) = flip(0);
    assert_eq!(name, "quote.parse", "{found}");
}

#[test]
fn header_qe_vendor_id() {
    assert_eq!(flip(12), ("quote.header".into(), "Unknown QE vendor ID".into()));
}

#[test]
fn header_user_data_is_signed() {
    assert_eq!(
        flip(40),
        (
            "quote.signature".into(),
            "ISV enclave report signature is invalid".into()
        )
    );
}

#[test]
fn body_mrtd_is_signed() {
    assert_eq!(
        flip(48 + 136),
        (
            "quote.signature".into(),
            "ISV enclave report signature is invalid".into()
        )
    );
}

#[test]
fn report_data_first_byte() {
    assert_eq!(
        flip(568),
        (
            "quote.signature".into(),
            "ISV enclave report signature is invalid".into()
        )
    );
}

#[test]
fn ecdsa_signature() {
    assert_eq!(
        flip(636 + 10),
        (
            "quote.signature".into(),
            "ISV enclave report signature is invalid".into()
        )
    );
}

#[test]
fn attestation_key_breaks_qe_binding() {
    assert_eq!(
        flip(700 + 5),
        ("quote.qe_report_data".into(), "QE report hash mismatch".into())
    );
}

#[test]
fn qe_report() {
    assert_eq!(
        flip(48 + 584 + 4 + 128 + 6 + 10),
        (
            "quote.qe_report_signature".into(),
            "Signature is invalid for qe_report in quote".into()
        )
    );
}

#[test]
fn qe_report_signature() {
    assert_eq!(
        flip(1154 + 3),
        (
            "quote.qe_report_signature".into(),
            "Signature is invalid for qe_report in quote".into()
        )
    );
}

#[test]
fn certification_data_pem() {
    // Inside the base64 body of the PCK leaf certificate (past the PEM header at 1258).
    let (name, found) = flip(1258 + 200);
    assert_eq!(name, "quote.pck_chain", "{found}");
}

#[test]
fn truncated_quotes_are_typed_errors() {
    let q = quote("dcap-qvl/tdx_quote.bin");
    // The auth data declares 4300 bytes: the quote ends at 636 + 4300 = 4936; the file has 70 bytes of padding.
    for len in [0, 10, 47, 48, 631, 632, 700, 1000, 1257, 3000, 4935] {
        let r = run(
            &q[..len],
            &collateral("tdx_quote_collateral.json"),
            AT,
            &quote_only_policy(),
        );
        assert_eq!(first_failure(&r).0, "quote.parse", "len {len}");
    }
}

#[test]
fn debug_bit_is_reported_even_though_the_signature_fails_first() {
    let mut q = quote("dcap-qvl/tdx_quote.bin");
    q[48 + 120] |= 0x01; // TD_ATTRIBUTES.DEBUG
    let r = run(
        &q,
        &collateral("tdx_quote_collateral.json"),
        AT,
        &quote_only_policy(),
    );
    assert_eq!(first_failure(&r).0, "quote.signature");
    let c = r.check("td.debug").unwrap();
    assert_eq!((c.ok, c.found.as_str()), (false, "DEBUG TD"));
}

#[test]
fn image_allowlist_mismatch() {
    let mut p = quote_only_policy();
    p.images = vec![zg_attestation::ImagePolicy {
        name: "other".into(),
        mrtd: Some("00".repeat(48)),
        ..Default::default()
    }];
    let r = run(
        &quote("dcap-qvl/tdx_quote.bin"),
        &collateral("tdx_quote_collateral.json"),
        AT,
        &p,
    );
    assert_eq!(first_failure(&r).0, "measurements.image");
    assert!(r.check("quote.signature").unwrap().ok);
}
