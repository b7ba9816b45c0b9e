//! RTMR replay vectors.
use zg_attestation::{CcelTable, EventLog, Evidence, TdQuote};

#[test]
fn ccel_replays_rtmr0_to_2_of_cos_quote() {
    let table = zg_test_utils::testdata::read("attestation/go-tdx-guest/ccel/ccel_table.dat");
    let data = zg_test_utils::testdata::read("attestation/go-tdx-guest/ccel/ccel_data.dat");
    let t = CcelTable::parse(&table).unwrap();
    assert_eq!((t.cc_type, t.laml, t.lasa), (2, 0x40000, 0xbedbf000));
    let log = EventLog::from_ccel(&table, &data).unwrap();
    assert_eq!(log.counts(), [16, 7, 20, 0]);
    let q = TdQuote::parse(&zg_test_utils::testdata::read(
        "attestation/go-tdx-guest/ccel/cos-113-tdx-quote.dat",
    ))
    .unwrap();
    let replayed = log.replay();
    assert_eq!(replayed[..3], q.rtmr[..3], "RTMR0-2");
    assert_eq!(
        hex::encode(replayed[0]),
        "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6"
    );
    // Round trip through the dstack JSON form keeps the replay.
    let again = EventLog::from_dstack_json(&log.to_dstack_json()).unwrap();
    assert_eq!(again.replay(), replayed);
}

fn dstack(name: &str) -> (EventLog, TdQuote) {
    let ev = Evidence::from_document(&zg_test_utils::testdata::read(&format!(
        "attestation/dstack/{name}"
    )))
    .unwrap();
    let log = EventLog::from_dstack_json(ev.event_log.as_deref().unwrap()).unwrap();
    (log, TdQuote::parse(&ev.quote).unwrap())
}

#[test]
fn dstack_quote_report_replays_all_four() {
    let (log, q) = dstack("quote-report.json");
    assert_eq!(log.events.len(), 28);
    assert_eq!(log.counts(), [13, 5, 2, 8]);
    assert_eq!(log.replay(), q.rtmr);
    assert_eq!(
        hex::encode(q.rtmr[3]),
        "0f787c3877f3e95095d5a4d13dd0fe0233803b30120d8469866719dc28f519ce021fe1e53459121e7a5a4443147185a8"
    );
    let checks = log
        .digest_checks
        .iter()
        .filter(|c| **c == zg_attestation::DigestCheck::Matches)
        .count();
    assert_eq!(checks, 8);
    let app = log.app_info();
    assert_eq!(
        app.app_id.as_deref(),
        Some("3763bc34552cf3a27ff71ad5f7a90471562a1a2d")
    );
    assert_eq!(
        app.compose_hash.as_deref(),
        Some("3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7")
    );
    assert_eq!(
        app.instance_id.as_deref(),
        Some("c3714eb66990eace777b4e664c16e09375dec4c9")
    );
    assert_eq!(app.key_provider.as_ref().unwrap()["name"], "local-sgx");
    assert_eq!(app.markers, ["system-preparing", "boot-mr-done", "system-ready"]);
    assert_eq!(app.other.len(), 1);
    assert_eq!(app.other[0].name, "LIUM_MINER_HOTKEY");
    assert_eq!(
        app.other[0].payload,
        "5D33PtgfkGYQsMLCMrKBjVEMTESqRYDFffT6r9jBdaH3eLt4"
    );
}

#[test]
fn dstack_tdx_lite_recomputes_empty_digests() {
    let (log, q) = dstack("tdx-lite-getquote.json");
    assert_eq!(log.events.len(), 29);
    assert_eq!(log.replay(), q.rtmr);
    let recomputed = log
        .digest_checks
        .iter()
        .filter(|c| **c == zg_attestation::DigestCheck::Recomputed)
        .count();
    assert_eq!(recomputed, 9);
    let app = log.app_info();
    assert_eq!(
        app.compose_hash.as_deref(),
        Some("86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9")
    );
    assert_eq!(
        app.instance_id.as_deref(),
        Some("050bf89570575fe8fab4cb8f0a62a9e64efe8ead")
    );
    assert_eq!(app.storage_fs.as_deref(), Some("zfs"));
    assert_eq!(app.key_provider.as_ref().unwrap()["name"], "kms");
    assert!(app.os_image_hash.as_deref().unwrap().starts_with("07a2388c"));
}

#[test]
fn tampered_runtime_payload_names_the_event() {
    let ev = Evidence::from_document(&zg_test_utils::testdata::read(
        "attestation/dstack/quote-report.json",
    ))
    .unwrap();
    let log = ev.event_log.unwrap().replace(
        "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552",
        "4763bc34552cf3a27ff71ad5f7a90471562a1a2df552",
    );
    let err = EventLog::from_dstack_json(&log).unwrap_err();
    assert!(
        matches!(
            err,
            zg_attestation::Error::MalformedEventLog { index: Some(22), .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("compose-hash"));
}

#[test]
fn full_dstack_evidence_passes_policy_with_replay() {
    let ev = Evidence::from_document(&zg_test_utils::testdata::read(
        "attestation/dstack/quote-report.json",
    ))
    .unwrap();
    let c = crate::common::collateral("tdx_quote_outdated_collateral.json");
    let mut p = crate::common::quote_only_policy();
    p.require_event_log = true;
    p.min_tcb_status = zg_attestation::TcbStatus::UpToDate;
    p.allowed_compose_hashes =
        vec!["3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7".into()];
    p.images = vec![zg_attestation::ImagePolicy {
        name: "dstack-gpu".into(),
        mrtd: Some("b24d3b24e9e3c16012376b52362ca09856c4adecb709d5fac33addf1c47e193da075b125b6c364115771390a5461e217".into()),
        rtmr0: Some("2e3843265f8ecdd4e2282694747f6f2f111605c33f2a8882f5734ee6f3a6ce63d8f34aeef06093dcda76fa5f9d33d8d6".into()),
        ..Default::default()
    }];
    // REPORTDATA is 0x1234 + zeros: as a dstack layout, address 0x1234000.. and a zero nonce.
    let v = zg_attestation::Verifier::new_prod();
    let r = v.verify(&ev, &p, Some(&c), crate::common::t("2026-02-19T00:00:00Z"));
    assert!(r.passed(), "{r}");
    for i in 0..4 {
        assert!(r.check(&format!("event_log.rtmr{i}")).unwrap().ok);
    }
    assert_eq!(v.cache_len(), 1);
    let again = v.verify(&ev, &p, Some(&c), crate::common::t("2026-02-20T00:00:00Z"));
    assert!(again.passed());
    assert_eq!(again.verified_at.to_string(), "2026-02-20T00:00:00Z");
    // Outside the collateral window the cache is bypassed and the verdict changes.
    let late = v.verify(&ev, &p, Some(&c), crate::common::t("2026-03-21T00:00:00Z"));
    assert!(!late.passed());
    // A compose hash the policy does not allow fails that check.
    p.allowed_compose_hashes = vec!["00".repeat(32)];
    let r = v.verify(&ev, &p, Some(&c), crate::common::t("2026-02-19T00:00:00Z"));
    assert_eq!(crate::common::first_failure(&r).0, "app.compose_hash");
}
