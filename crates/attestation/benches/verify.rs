//! Performance targets (issue 3): full verification with cached collateral ≤ 3 ms median,
//! verifier cache hit ≤ 20 µs, replay of a 1,000-event runtime log < 2 ms.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use zg_attestation::{
    AttestationPolicy, Collateral, EventLog, Evidence, ReportDataLayout, Timestamp, Verifier,
};

fn fixture(p: &str) -> Vec<u8> {
    zg_test_utils::testdata::read(&format!("attestation/{p}"))
}

fn policy() -> AttestationPolicy {
    AttestationPolicy {
        report_data_layout: ReportDataLayout::Dstack,
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
