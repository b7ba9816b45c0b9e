//! Performance targets (issue 3): full verification with cached collateral ≤ 3 ms median,
//! verifier cache hit ≤ 20 µs, replay of a 1,000-event runtime log < 2 ms. Issue 12: full NVIDIA GPU
//! verification (report signature, device chain, both RIMs' digest/signature/chain, measurements) with
//! cached (already parsed) collateral ≤ 5 ms.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use zg_attestation::{
    AttestationPolicy, Collateral, EventLog, Evidence, GpuCollateral, GpuEvidence, ReportDataLayout,
    Timestamp, Verifier,
};

fn fixture(p: &str) -> Vec<u8> {
    zg_test_utils::testdata::read(&format!("attestation/{p}"))
}

fn policy() -> AttestationPolicy {
    AttestationPolicy {
        report_data_layout: ReportDataLayout::Dstack,
        // The fixture's compose hash: the allow-list must name something.
        allowed_compose_hashes: vec![
            "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7".into(),
        ],
        ..AttestationPolicy::default()
    }
}

fn bench(c: &mut Criterion) {
    // dstack GPU CVM evidence: quote v4 + 28-event log (RTMR0-3 replay) + policy checks.
    let ev = Evidence::from_document(&fixture("dstack/quote-report.json")).unwrap();
    let collateral = Collateral::from_json(
        &String::from_utf8(fixture("dcap-qvl/tdx_quote_outdated_collateral.json")).unwrap(),
    )
    .unwrap();
    let now = Timestamp::from_rfc3339("2026-02-19T00:00:00Z").unwrap();
    let p = policy();
    assert!(zg_attestation::verify(&ev, &p, Some(&collateral), now).passed());

    c.bench_function("verify/full_dstack_evidence_cached_collateral", |b| {
        b.iter(|| zg_attestation::verify(black_box(&ev), black_box(&p), Some(&collateral), now))
    });
    let bare = Evidence::from_quote(fixture("dcap-qvl/tdx_quote.bin"));
    let c2 =
        Collateral::from_json(&String::from_utf8(fixture("dcap-qvl/tdx_quote_collateral.json")).unwrap())
            .unwrap();
    let t2 = Timestamp::from_rfc3339("2025-06-20T00:00:00Z").unwrap();
    let p2 = AttestationPolicy {
        require_event_log: false,
        report_data_layout: ReportDataLayout::Raw,
        dangerous_any_image: true, // a bare quote: the signature chain and TCB are what is measured
        ..AttestationPolicy::default()
    };
    c.bench_function("verify/full_bare_quote_v4", |b| {
        b.iter(|| zg_attestation::verify(black_box(&bare), black_box(&p2), Some(&c2), t2))
    });

    let verifier = Verifier::new_prod();
    assert!(verifier.verify(&ev, &p, Some(&collateral), now).passed());
    assert_eq!(verifier.cache_len(), 1);
    c.bench_function("verify/cache_hit_dstack_evidence", |b| {
        b.iter(|| verifier.verify(black_box(&ev), black_box(&p), Some(&collateral), now))
    });
    assert!(verifier.verify(&bare, &p2, Some(&c2), t2).passed());
    c.bench_function("verify/cache_hit_bare_quote", |b| {
        b.iter(|| verifier.verify(black_box(&bare), black_box(&p2), Some(&c2), t2))
    });

    // NVIDIA GPU evidence, set A (testdata/gpu): collateral parsed once, as a cache holds it.
    let gpu = |p: &str| zg_test_utils::testdata::read(&format!("gpu/{p}"));
    let gpu_ev = GpuEvidence::from_report_and_chain(
        &gpu("hopperAttestationReport.txt"),
        &String::from_utf8(gpu("hopperCertChain.txt")).unwrap(),
    )
    .unwrap()
    .to_json(None);
    let mut rims = GpuCollateral::new();
    rims.add_rim(
        "NV_GPU_DRIVER_GH100_550.90.07",
        &gpu("NV_GPU_DRIVER_GH100_550.90.07.xml"),
    )
    .unwrap();
    rims.add_rim(
        "NV_GPU_VBIOS_1010_0200_882_96009F0001",
        &gpu("NV_GPU_VBIOS_1010_0200_882_96009F0001.xml"),
    )
    .unwrap();
    let nonce: [u8; 32] = hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
        .unwrap()
        .try_into()
        .unwrap();
    let gp = AttestationPolicy::default().with_nonce(nonce);
    let t0 = Timestamp::from_rfc3339("2025-01-01T00:00:00Z").unwrap();
    assert!(verifier.verify_gpu(&gpu_ev, &gp, Some(&rims), t0).passed());
    // Warm: every check runs; signatures over certificate and RIM bytes already checked by this verifier
    // are memoised (the report's own signature, chains' validity windows, FWID, versions and
    // measurements are checked every time).
    c.bench_function("verify/gpu_full_set_a_cached_rims", |b| {
        b.iter(|| verifier.verify_gpu(black_box(&gpu_ev), black_box(&gp), Some(&rims), t0))
    });
    // Cold: a fresh verifier each time, so all 13 ECDSA P-384 signatures are verified.
    c.bench_function("verify/gpu_full_set_a_cold_verifier", |b| {
        b.iter(|| Verifier::new_prod().verify_gpu(black_box(&gpu_ev), black_box(&gp), Some(&rims), t0))
    });
    c.bench_function("parse/gpu_rims_driver_and_vbios", |b| {
        b.iter(|| {
            let mut c = GpuCollateral::new();
            c.add_rim("d", black_box(&gpu("NV_GPU_DRIVER_GH100_550.90.07.xml")))
                .unwrap();
            c.add_rim("v", black_box(&gpu("NV_GPU_VBIOS_1010_0200_882_96009F0001.xml")))
                .unwrap();
            c
        })
    });

    let mut log = EventLog::default();
    for i in 0..1000u32 {
        log.push_runtime(
            &format!("event-{i}"),
            format!("payload number {i} with some bytes").as_bytes(),
        );
    }
    let json = log.to_dstack_json();
    let want = log.replay();
    c.bench_function("replay/runtime_log_1000_events_parse_check_replay", |b| {
        b.iter(|| {
            let l = EventLog::from_dstack_json(black_box(&json)).unwrap();
            let r = l.replay();
            assert_eq!(r, want);
            r
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
