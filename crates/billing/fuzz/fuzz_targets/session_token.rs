//! `SessionToken::parse` on arbitrary `Authorization` values: it must return `Ok` or a typed error, never
//! panic. The first byte picks the layer: raw header text, or arbitrary bytes behind a valid `Bearer app-sk-`
//! prefix and base64 (so the fuzzer reaches the `|` split, the JSON claims and the signature directly).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use zg_billing::{SESSION_TOKEN_PREFIX, SessionToken};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let header = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!("Bearer {SESSION_TOKEN_PREFIX}{}", STANDARD.encode(rest))
    };
    if let Ok(token) = SessionToken::parse(&header) {
        // A token that parses has a signature that recovers to its own address.
        assert_eq!(SessionToken::parse(&header).ok(), Some(token));
    }
});
