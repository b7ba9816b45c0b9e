//! Shared helpers.
use zg_attestation::{AttestationPolicy, Collateral, Evidence, Timestamp, VerificationReport, Verifier};

pub(crate) fn t(s: &str) -> Timestamp {
    Timestamp::from_rfc3339(s).unwrap()
}

pub(crate) fn collateral(name: &str) -> Collateral {
    Collateral::from_json(&zg_test_utils::testdata::read_string(&format!(
        "attestation/dcap-qvl/{name}"
    )))
    .unwrap()
}

pub(crate) fn quote(name: &str) -> Vec<u8> {
    zg_test_utils::testdata::read(&format!("attestation/{name}"))
}

/// A policy that checks only the quote (no event log or binding requirements).
pub(crate) fn quote_only_policy() -> AttestationPolicy {
    AttestationPolicy {
        require_event_log: false,
        min_tcb_status: zg_attestation::TcbStatus::OutOfDateConfigurationNeeded,
        report_data_layout: zg_attestation::ReportDataLayout::Dstack,
        // These tests are about the quote's signature chain and TCB, not about which image runs.
        dangerous_any_image: true,
        ..AttestationPolicy::default()
    }
}

/// Verifies `quote` and returns the report.
#[track_caller]
pub(crate) fn run(
    quote: &[u8],
    collateral: &Collateral,
    at: &str,
    policy: &AttestationPolicy,
) -> VerificationReport {
    let v = Verifier::new_prod();
    (*v.verify(
        &Evidence::from_quote(quote.to_vec()),
        policy,
        Some(collateral),
        t(at),
    ))
    .clone()
}

/// The first failed required check's name and found text.
#[track_caller]
pub(crate) fn first_failure(r: &VerificationReport) -> (String, String) {
    let c = r
        .first_failure()
        .unwrap_or_else(|| panic!("expected a failure, report:\n{r}"));
    (c.name.clone(), c.found.clone())
}
