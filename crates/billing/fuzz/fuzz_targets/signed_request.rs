//! `SignedRequest::from_header` on arbitrary `ZG-Request` values: `Ok` or a typed error, never a panic; and
//! whatever parses re-encodes to a header that parses to the same request. The first byte picks the layer:
//! raw header text, or arbitrary bytes behind a valid base64url layer (so the fuzzer reaches the JSON).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use zg_billing::SignedRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let header = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        URL_SAFE_NO_PAD.encode(rest)
    };
    if let Ok(req) = SignedRequest::from_header(&header) {
        let again = SignedRequest::from_header(&req.to_header()).expect("our own encoding parses");
        assert_eq!(again, req);
    }
});
