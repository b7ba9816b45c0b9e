//! Every CONFIRMED DCAP value in testdata/attestation/README.md.
use crate::common::*;
use zg_attestation::{TdBodyKind, TdQuote};

#[test]
fn tdx_quote_v4_up_to_date() {
    let q = quote("dcap-qvl/tdx_quote.bin");
    let c = collateral("tdx_quote_collateral.json");
    assert_eq!(c.fmspc(), "B0C06F000000");
    assert_eq!(c.tcb_evaluation_data_number(), 17);
    let r = run(&q, &c, "2025-06-20T00:00:00Z", &quote_only_policy());
    assert_eq!(r.tcb_status.as_deref(), Some("UpToDate"), "{r}");
    assert!(r.advisory_ids.is_empty());
    // Quote-only DCAP checks all pass; only the binding layout differs (REPORTDATA is not dstack).
    for name in [
        "quote.signature",
        "quote.pck_chain",
        "quote.qe_report_signature",
        "collateral.tcb_info",
        "tcb.status",
        "td.debug",
    ] {
        assert!(r.check(name).unwrap().ok, "{name}: {r}");
    }
    assert_eq!(
        r.check("tcb.level").unwrap().found,
        "platform UpToDate, QE UpToDate"
    );
    assert_eq!(r.fmspc.as_deref(), Some("B0C06F000000"));
    let (from, until) = r.collateral_window.unwrap();
    assert_eq!(
        (from.to_string(), until.to_string()),
        ("2025-06-19T10:32:27Z".into(), "2025-07-19T10:00:35Z".into())
    );
    assert_eq!(
        r.mrtd.as_deref(),
        Some(
            "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
        )
    );
    assert_eq!(
        r.rtmr0.as_deref(),
        Some(
            "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
        )
    );
    assert_eq!(
        r.rtmr1.as_deref(),
        Some(
            "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378"
        )
    );
    assert_eq!(
        r.rtmr2.as_deref(),
        Some(
            "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
        )
    );
    assert_eq!(r.rtmr3.as_deref(), Some(&*"0".repeat(96)));
    assert_eq!(
        r.report_data.as_deref(),
        Some(
            "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
        )
    );
    let parsed = TdQuote::parse(&q).unwrap();
    assert_eq!((parsed.version, parsed.body), (4, TdBodyKind::Td10));
    assert_eq!(hex::encode(parsed.td_attributes), "0000001000000000");
    assert_eq!(hex::encode(parsed.xfam), "e702060000000000");
    assert_eq!(
        hex::encode(parsed.tee_tcb_svn),
        "06010300000000000000000000000000"
    );
    assert_eq!(parsed.pck_ca().unwrap(), "platform");
}

#[test]
fn tdx_quote_collateral_time_bounds() {
    let q = quote("dcap-qvl/tdx_quote.bin");
    let c = collateral("tdx_quote_collateral.json");
    let r = run(&q, &c, "2025-06-19T10:00:00Z", &quote_only_policy());
    assert_eq!(
        first_failure(&r),
        (
            "collateral.tcb_info".into(),
            "TCBInfo issue date is in the future".into()
        )
    );
    let r = run(&q, &c, "2025-07-20T00:00:00Z", &quote_only_policy());
    assert_eq!(
        first_failure(&r),
        ("collateral.tcb_info".into(), "TCBInfo expired".into())
    );
    assert!(r.tcb_status.is_none());
    assert_eq!(
        r.check("tcb.status").unwrap().found,
        "unknown: DCAP verification did not complete"
    );
}

#[test]
fn tdx_quote_with_td15ex_collateral_out_of_date() {
    let q = quote("dcap-qvl/tdx_quote.bin");
    let full = collateral("tdx_quote_td15ex_collateral.json");
    let c = full.without_pck_chain_override().unwrap();
    let r = run(&q, &c, "2026-10-09T00:00:00Z", &quote_only_policy());
    assert_eq!(r.tcb_status.as_deref(), Some("OutOfDate"), "{r}");
    assert_eq!(
        r.advisory_ids,
        [
            "INTEL-SA-01192",
            "INTEL-SA-01245",
            "INTEL-SA-01312",
            "INTEL-SA-01313"
        ]
    );
    assert_eq!(
        r.check("tcb.level").unwrap().found,
        "platform OutOfDate, QE UpToDate"
    );
    // Advisories the policy does not allow fail the report; allowing them passes that check.
    assert!(!r.check("tcb.advisories").unwrap().ok);
    let mut p = quote_only_policy();
    p.allowed_advisory_ids = r.advisory_ids.clone();
    let r2 = run(&q, &c, "2026-10-09T00:00:00Z", &p);
    assert!(r2.check("tcb.advisories").unwrap().ok);
    // A strict policy rejects OutOfDate.
    p.min_tcb_status = zg_attestation::TcbStatus::UpToDate;
    let r3 = run(&q, &c, "2026-10-09T00:00:00Z", &p);
    let c3 = r3.check("tcb.status").unwrap();
    assert!(!c3.ok && c3.found == "OutOfDate");
    // With the override chain left in, dcap-qvl uses it and the QE report signature fails.
    let r = run(&q, &full, "2026-10-09T00:00:00Z", &quote_only_policy());
    assert_eq!(
        first_failure(&r),
        (
            "quote.qe_report_signature".into(),
            "Signature is invalid for qe_report in quote".into()
        )
    );
}

#[test]
fn v5_td15_outdated_has_no_tcb_level() {
    let q = quote("dcap-qvl/tdx_quote_outdated.bin");
    let c = collateral("tdx_quote_outdated_collateral.json");
    let parsed = TdQuote::parse(&q).unwrap();
    assert_eq!(
        (parsed.version, parsed.body, parsed.signed_len),
        (5, TdBodyKind::Td15, 702)
    );
    assert_eq!(
        hex::encode(parsed.mrtd),
        "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1ae451d382d5a9b1b4c0ed0e5ae9a3dbd"
    );
    assert_eq!(parsed.fmspc().unwrap(), "90C06F000000");
    let r = run(&q, &c, "2026-02-19T00:00:00Z", &quote_only_policy());
    assert_eq!(
        first_failure(&r),
        ("tcb.level".into(), "No matching TCB level found".into())
    );
    let r = run(&q, &c, "2026-03-21T00:00:00Z", &quote_only_policy());
    assert_eq!(
        first_failure(&r),
        ("collateral.tcb_info".into(), "TCBInfo expired".into())
    );
}

#[test]
fn v5_td15ex_up_to_date() {
    let q = quote("dcap-qvl/tdx_quote_td15ex.bin");
    let c = collateral("tdx_quote_td15ex_collateral.json");
    let parsed = TdQuote::parse(&q).unwrap();
    assert_eq!(
        (parsed.version, parsed.body, parsed.signed_len),
        (5, TdBodyKind::Td15Ex, 939)
    );
    assert_eq!(
        hex::encode(parsed.rtmr[3]),
        "556d4986cae57e7e3756b6471e4951be6f5f1b4e70942c72325223d6af239da90f1484eeb627727e6d2c0755393b5fdf"
    );
    assert!(
        hex::encode(parsed.mr_config_id)
            .starts_with("0151ed70bddb5f12574176b37e3f53bbfc4ba15c33cbddc2d03d90b6de14596cc0")
    );
    let r = run(&q, &c, "2026-10-09T00:00:00Z", &quote_only_policy());
    assert_eq!(r.tcb_status.as_deref(), Some("UpToDate"), "{r}");
    assert!(r.advisory_ids.is_empty());
    assert!(r.check("quote.signature").unwrap().ok);
    // PCK leaf notBefore 2026-08-13: too early.
    let r = run(&q, &c, "2025-06-20T00:00:00Z", &quote_only_policy());
    let (name, found) = first_failure(&r);
    assert!(
        name.starts_with("collateral.") || name == "quote.pck_chain",
        "{name}: {found}"
    );
}

#[test]
fn tappd_quote_hex_old_tcb() {
    let ev = zg_attestation::Evidence::from_document(&quote("dcap-qvl/quote-from-tappd.hex")).unwrap();
    let parsed = TdQuote::parse(&ev.quote).unwrap();
    assert_eq!(
        hex::encode(parsed.mrtd),
        "c68518a0ebb42136c12b2275164f8c72f25fa9a34392228687ed6e9caeb9c0f1dbd895e9cf475121c029dc47e70e91fd"
    );
    assert_eq!(
        hex::encode(parsed.rtmr[3]),
        "a2d25bc888a93009af5b70eadb410e9071d18387e4db39aae20fe767f5c4279d95e6519c5d797938a90694599c5bea7a"
    );
    let r = run(
        &ev.quote,
        &collateral("tdx_quote_collateral.json"),
        "2025-06-20T00:00:00Z",
        &quote_only_policy(),
    );
    assert_eq!(
        first_failure(&r),
        ("tcb.level".into(), "No matching TCB level found".into())
    );
}

#[test]
fn dstack_quote_report_and_go_v5_up_to_date() {
    let c = collateral("tdx_quote_outdated_collateral.json");
    let doc = zg_attestation::Evidence::from_document(&quote("dstack/quote-report.json")).unwrap();
    let r = run(&doc.quote, &c, "2026-02-19T00:00:00Z", &quote_only_policy());
    assert_eq!(r.tcb_status.as_deref(), Some("UpToDate"), "{r}");
    assert!(r.advisory_ids.is_empty());
    let v5 = quote("go-tdx-guest/quote_v5_sample.dat");
    let r = run(&v5, &c, "2026-02-19T00:00:00Z", &quote_only_policy());
    assert_eq!(r.tcb_status.as_deref(), Some("UpToDate"), "{r}");
    assert_eq!(
        r.mrtd.as_deref(),
        Some(
            "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"
        )
    );
}

#[test]
fn wrong_fmspc_and_missing_collateral() {
    let spr = quote("go-tdx-guest/tdx_prod_quote_SPR_E4.dat");
    let parsed = TdQuote::parse(&spr).unwrap();
    assert_eq!(parsed.fmspc().unwrap(), "50806F000000");
    assert_eq!(hex::encode(parsed.td_attributes), "0000004000000000");
    let r = run(
        &spr,
        &collateral("tdx_quote_collateral.json"),
        "2025-06-20T00:00:00Z",
        &quote_only_policy(),
    );
    assert_eq!(first_failure(&r), ("tcb.level".into(), "Fmspc mismatch".into()));
    let v = zg_attestation::Verifier::new_prod();
    let r = v.verify(
        &zg_attestation::Evidence::from_quote(spr),
        &quote_only_policy(),
        None,
        t("2025-06-20T00:00:00Z"),
    );
    assert_eq!(first_failure(&r).0, "collateral.present");
}

#[test]
fn tdx_lite_parses_and_has_no_valid_collateral() {
    let doc = zg_attestation::Evidence::from_document(&quote("dstack/tdx-lite-getquote.json")).unwrap();
    let parsed = TdQuote::parse(&doc.quote).unwrap();
    assert_eq!(
        &parsed.report_data[..],
        b"dip1::secp256k1c-pk:A55pWmteJIJOj8_pI7-pzeDxy1G2q18GDv88HNRdBXkQ"
    );
    assert!(
        hex::encode(parsed.mr_config_id)
            .starts_with("0186b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9")
    );
    let r = run(
        &doc.quote,
        &collateral("tdx_quote_outdated_collateral.json"),
        "2026-02-19T00:00:00Z",
        &quote_only_policy(),
    );
    let (name, found) = first_failure(&r);
    assert_eq!(name, "quote.pck_chain");
    assert!(found.contains("CertNotValidYet"), "{found}");
}

#[test]
fn cos_quote_with_trailing_padding_parses() {
    let q = quote("go-tdx-guest/ccel/cos-113-tdx-quote.dat");
    assert_eq!(q.len(), 8000);
    let parsed = TdQuote::parse(&q).unwrap();
    assert_eq!(parsed.report_data, [0u8; 64]);
    assert_eq!(parsed.fmspc().unwrap(), "00806F050000");
}

#[test]
fn cache_hit_returns_same_verdict_and_respects_window() {
    let q = quote("dcap-qvl/tdx_quote.bin");
    let c = collateral("tdx_quote_collateral.json");
    let v = zg_attestation::Verifier::new_prod();
    let mut p = quote_only_policy();
    p.report_data_layout = zg_attestation::ReportDataLayout::Native;
    p.report_data_layout = zg_attestation::ReportDataLayout::Dstack;
    let ev = zg_attestation::Evidence::from_quote(q);
    // tdx_quote.bin's REPORTDATA does not fit the dstack layout: the report fails and is not cached.
    let r1 = v.verify(&ev, &p, Some(&c), t("2025-06-20T00:00:00Z"));
    assert!(!r1.passed());
    assert_eq!(first_failure(&r1).0, "report_data.layout");
    assert_eq!(v.cache_len(), 0);
}
