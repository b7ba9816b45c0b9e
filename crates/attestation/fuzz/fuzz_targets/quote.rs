//! Fuzz the quote parser, the document decoder and the full verifier (no panics allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zg_attestation::{AttestationPolicy, Evidence, TdQuote, Timestamp, Verifier};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = TdQuote::parse(data) {
        let _ = q.fmspc();
        let _ = q.pck_ca();
    }
    let _ = Evidence::from_document(data);
    let policy = AttestationPolicy {
        dangerous_allow_simulated: true,
        ..AttestationPolicy::default()
    };
    let _ = Verifier::new_prod().verify(
        &Evidence::from_quote(data.to_vec()),
        &policy,
        None,
        Timestamp(1_750_000_000),
    );
});
