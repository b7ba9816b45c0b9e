//! Verify a provider's TDX quote offline: Intel signature chain, collateral, TCB status, event-log
//! replay and the policy — then print the report.
//!
//! ```text
//! cargo run -p zg-examples --example verify_quote -- \
//!     testdata/attestation/dstack/quote-report.json \
//!     testdata/attestation/dcap-qvl/tdx_quote_outdated_collateral.json 2026-02-19T00:00:00Z
//! ```
//! With no arguments it verifies that same dstack fixture. Stored collateral has expired, so the
//! third argument pins the verification time inside its validity window.

#![allow(clippy::print_stdout, reason = "an example program: stdout is its output")]

use zg_attestation::{AttestationPolicy, Collateral, Evidence, ReportDataLayout, Timestamp, Verifier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/attestation");
    let mut args = std::env::args().skip(1);
    let quote_path = args
        .next()
        .unwrap_or_else(|| format!("{testdata}/dstack/quote-report.json"));
    let collateral_path = args
        .next()
        .unwrap_or_else(|| format!("{testdata}/dcap-qvl/tdx_quote_outdated_collateral.json"));
    let now = match args.next() {
        Some(t) => Timestamp::from_rfc3339(&t)?,
        None if std::env::args().len() > 1 => Timestamp::now(),
        None => Timestamp::from_rfc3339("2026-02-19T00:00:00Z")?,
    };

    // Evidence: a binary/hex quote, or a dstack/0G JSON document that also carries the event log.
    let evidence = Evidence::from_document(&std::fs::read(&quote_path)?)?;
    // Collateral is fetched apart (PCCS, a cache directory...) and passed in: verify does no I/O.
    let collateral = Collateral::from_file(&collateral_path)?;

    // What we accept. Real deployments pin images (MRTD/RTMR0-2), compose hashes and the on-chain
    // signer (see deploy/policy.toml); this fixture's REPORTDATA uses the dstack layout (address ‖
    // nonce), and its event log names the compose hash we allow. An empty allow-list would fail.
    let policy = AttestationPolicy {
        require_event_log: evidence.event_log.is_some(),
        report_data_layout: ReportDataLayout::Dstack,
        allowed_compose_hashes: vec![
            "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7".into(),
        ],
        ..AttestationPolicy::default()
    };

    let verifier = Verifier::new_prod(); // anchored at Intel's SGX Root CA
    let report = verifier.verify(&evidence, &policy, Some(&collateral), now);
    print!("{report}");
    if let Some(app) = &report.app {
        println!("compose hash from the replayed log: {:?}", app.compose_hash);
    }
    if !report.passed() {
        let why = report.first_failure().map(|c| c.name.clone()).unwrap_or_default();
        return Err(format!("verification failed at {why}").into());
    }
    Ok(())
}
