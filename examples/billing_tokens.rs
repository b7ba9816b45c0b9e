//! zg-billing tour: make and check a 0G session token, sign a native request with a voucher, verify
//! both receipt kinds. Run with `cargo run -p zg-examples --example billing_tokens`.

use alloy_primitives::U256;
use zg_billing::{
    Domains, EthSigner, KeyCache, Receipt, ReceiptSigner, Request, SessionClaims, SessionToken,
    SessionVerifier, SignedRequest, TokenState, Usage, Voucher, ZgReceipt, body_hash,
};

fn main() -> Result<(), zg_billing::Error> {
    let (customer, provider, tee) = (EthSigner::random(), EthSigner::random(), EthSigner::random());
    let now_ms = 1_700_000_000_000;

    // 0G-compatible session token, as the official SDK sends it.
    let claims = SessionClaims {
        address: customer.address(),
        provider: provider.address().to_string().to_lowercase(),
        timestamp: now_ms,
        expires_at: now_ms + 3_600_000,
        nonce: "example".into(),
        generation: 0,
        token_id: 255,
    };
    let (_, authorization) = SessionToken::create(&customer, &claims)?;
    let verifier = SessionVerifier::new(provider.address(), 60_000);
    let token = verifier.verify(&authorization, now_ms + 1, |_| Some(TokenState::default()))?;
    assert_eq!(token.user(), customer.address());

    // Native signed request carrying the cumulative voucher for earlier responses.
    let domains = Domains::new(31337, provider.address()); // use the InferenceServing address in practice
    let body = br#"{"model":"demo","messages":[]}"#;
    let request = Request {
        user: customer.address(),
        provider: provider.address(),
        service: "chat".into(),
        nonce: U256::from(2),
        bodyHash: body_hash(body),
        feeCap: U256::from(1_000_000u64),
    };
    let voucher = Voucher {
        user: customer.address(),
        provider: provider.address(),
        cumulativeAmount: U256::from(500u64),
        nonce: U256::from(2),
    };
    let header = domains
        .sign_request(&customer, request)?
        .with_voucher(domains.sign_voucher(&customer, voucher)?)
        .to_header();
    let parsed = SignedRequest::from_header(&header)?;
    parsed.check_body(body)?;
    let keys = KeyCache::default();
    domains.verify_request(&keys, &parsed)?;

    // Receipts: the 0G text signature and the native ed25519 receipt, both checked fail-closed.
    let response = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
    ZgReceipt::sign(&tee, body, response)?.verify(body, response, tee.address())?;
    let key = ReceiptSigner::random();
    let receipt = key.sign(Receipt {
        request_hash: body_hash(body),
        response_hash: body_hash(response),
        model: "demo".into(),
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
        },
        fee: U256::from(11u64),
        nonce: U256::from(2),
    });
    key.verifying_key().verify_exchange(&receipt, body, response)?;
    tracing::info!(user = %customer.address(), "token, request and receipts verified");
    Ok(())
}
