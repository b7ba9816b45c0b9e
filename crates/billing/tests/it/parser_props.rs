//! Property tests for the untrusted-input parsers (the cargo-fuzz targets in `fuzz/` run the same checks
//! for longer): arbitrary input yields `Ok` or a typed error, never a panic, and our encodings round-trip.

use alloy_primitives::{Address, B256, U256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use zg_billing::{
    Domains, Error, PendingRequest, Request, SESSION_TOKEN_PREFIX, SessionClaims, SessionToken,
    SignedRequest, Usage, Voucher, requests_hash,
};

use crate::common::signer;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn session_token_parse_never_panics(s in ".{0,300}", raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = SessionToken::parse(&s);
        let wrapped = format!("Bearer {SESSION_TOKEN_PREFIX}{}", STANDARD.encode(&raw));
        let r = SessionToken::parse(&wrapped);
        // Random bytes never carry a valid signature by their claimed address.
        prop_assert!(r.is_err());
    }

    #[test]
    fn signed_request_from_header_never_panics(s in ".{0,300}", raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = SignedRequest::from_header(&s);
        let _ = SignedRequest::from_header(&URL_SAFE_NO_PAD.encode(&raw));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn session_token_round_trips_and_any_byte_flip_is_rejected(
        nonce in "[ -~]{0,40}", ts in 0u64..4_000_000_000_000, life in 1u64..86_400_000, flip in any::<prop::sample::Index>(),
    ) {
        let user = signer(1);
        let claims = SessionClaims {
            address: user.address(),
            provider: signer(2).address().to_string(),
            timestamp: ts,
            expires_at: ts + life,
            nonce,
            generation: 0,
            token_id: 255,
        };
        let (token, header) = SessionToken::create(&user, &claims).unwrap();
        prop_assert_eq!(SessionToken::parse(&header).unwrap(), token);
        // Flip one bit of the decoded body.
        let mut body = STANDARD.decode(header.trim_start_matches("Bearer ").trim_start_matches(SESSION_TOKEN_PREFIX)).unwrap();
        let i = flip.index(body.len());
        body[i] ^= 0x01;
        let tampered = format!("Bearer {SESSION_TOKEN_PREFIX}{}", STANDARD.encode(&body));
        // The signature covers the raw JSON bytes, and a flipped signature byte is malformed or recovers
        // another address: every single-bit change is rejected.
        prop_assert!(SessionToken::parse(&tampered).is_err(), "accepted a token with byte {} flipped", i);
    }

    #[test]
    fn signed_request_header_round_trips(
        user_seed in 1u8..=200, provider in any::<[u8; 20]>(), service in "[ -~]{0,32}", nonce in any::<[u8; 32]>(),
        body in any::<[u8; 32]>(), cap in any::<u128>(), voucher in proptest::option::of((any::<u128>(), any::<u64>())),
    ) {
        let user = signer(user_seed);
        let d = Domains::new(31337, Address::repeat_byte(0x42));
        let req = Request {
            user: user.address(),
            provider: Address::from(provider),
            service,
            nonce: U256::from_be_bytes(nonce),
            bodyHash: B256::from(body),
            feeCap: U256::from(cap),
        };
        let mut signed = d.sign_request(&user, req.clone()).unwrap();
        if let Some((amount, n)) = voucher {
            let v = Voucher { user: user.address(), provider: req.provider, cumulativeAmount: U256::from(amount), nonce: U256::from(n) };
            signed = signed.with_voucher(d.sign_voucher(&user, v).unwrap());
        }
        let parsed = SignedRequest::from_header(&signed.to_header()).unwrap();
        prop_assert_eq!(parsed, signed);
    }

    #[test]
    fn requests_hash_separates_every_field_and_the_split(
        fees in proptest::collection::vec(any::<u64>(), 1..6), field in 0usize..6, which in any::<prop::sample::Index>(),
    ) {
        let rows: Vec<PendingRequest> = fees
            .iter()
            .enumerate()
            .map(|(i, f)| PendingRequest {
                id: i as u64,
                request_hash: B256::repeat_byte(i as u8),
                response_hash: B256::repeat_byte(0x80 | i as u8),
                usage: Usage { prompt_tokens: *f % 1000, completion_tokens: *f % 777 },
                fee: U256::from(*f),
                created_ms: 1_700_000_000_000 + i as u64,
            })
            .collect();
        let base = requests_hash(&rows);
        let mut changed = rows.clone();
        let r = &mut changed[which.index(rows.len())];
        match field {
            0 => r.request_hash.0[31] ^= 1,
            1 => r.response_hash.0[0] ^= 1,
            2 => r.fee ^= U256::from(1),
            3 => r.usage.prompt_tokens ^= 1,
            4 => r.usage.completion_tokens ^= 1,
            _ => r.created_ms ^= 1,
        }
        prop_assert_ne!(requests_hash(&changed), base);
        // Dropping a row (a shorter list) changes it too; the row id is not part of the commitment.
        prop_assert_ne!(requests_hash(&rows[..rows.len() - 1]), base);
        let mut renumbered = rows.clone();
        renumbered.iter_mut().for_each(|r| r.id += 100);
        prop_assert_eq!(requests_hash(&renumbered), base);
    }
}

#[test]
fn distinct_parse_errors_for_each_layer() {
    let check = |h: &str, want: fn(&Error) -> bool| {
        let e = SessionToken::parse(h).unwrap_err();
        assert!(want(&e), "{h:?} gave {e:?}");
    };
    check("Basic xyz", |e| matches!(e, Error::TokenPrefix));
    check("Bearer app-sk-!!!", |e| matches!(e, Error::TokenBase64(_)));
    check(
        &format!("Bearer app-sk-{}", STANDARD.encode(b"no separator")),
        |e| matches!(e, Error::TokenNoSeparator),
    );
    check(&format!("Bearer app-sk-{}", STANDARD.encode(b"{}|0x12")), |e| {
        matches!(e, Error::SignatureFormat(_))
    });
    let sig = format!("0x{}", "11".repeat(64) + "1b");
    check(
        &format!("Bearer app-sk-{}", STANDARD.encode(format!("not json|{sig}"))),
        |e| matches!(e, Error::TokenJson(_)),
    );
}
