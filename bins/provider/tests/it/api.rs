//! The HTTP API over loopback with in-memory chain accounts: happy paths, receipts, rejections,
//! back-pressure, upstream errors, concurrency with exact fees.

use alloy_primitives::{Address, U256};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use zg_billing::{ChainAccount, EthSigner, Request, TokenState, ZgReceipt, body_hash};
use zg_provider::{RECEIPT_EVENT, ReceiptJson, now_ms};

use crate::common::*;
use zg_test_utils::fake_upstream;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

const CHAT: &str = r#"{"model":"zg-demo-ngram","messages":[{"role":"user","content":"How does settlement work?"}],"max_tokens":12,"seed":3}"#;

async fn zg_receipt(o: &Offline, key: &str) -> ZgReceipt {
    let r = http()
        .get(format!("{}/v1/proxy/signature/{key}", o.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

async fn unsettled(o: &Offline, token: &str, user: Address) -> U256 {
    let r = http()
        .get(format!("{}/v1/user/{user}/unsettledfee", o.url))
        .header("authorization", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["unsettledFee"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn plain_chat_is_billed_exactly_and_both_receipts_verify() {
    let o = offline(Opts::default()).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    let r = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(
        h["access-control-expose-headers"],
        "ZG-Res-Key, Retry-After, ZG-Receipt"
    );
    let key = h["zg-res-key"].to_str().unwrap().to_owned();
    let native: ReceiptJson = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h["zg-receipt"].as_bytes())
            .unwrap(),
    )
    .unwrap();
    let body = r.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let (p, cpl) = (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(p, 1 + 5); // role + "how does settlement work ?"
    assert!((1..=12).contains(&cpl));
    // 0G receipt: text over exactly these bytes, signed by the TEE signer.
    let zg = zg_receipt(&o, &key).await;
    zg.verify(CHAT.as_bytes(), &body, o.provider.tee().signer())
        .unwrap();
    assert_eq!(zg.text, format!("{}:{}", sha(CHAT.as_bytes()), sha(&body)));
    // Signed on read (RFC 6979): every read answers the same signature, also over gRPC's path.
    assert_eq!(zg_receipt(&o, &key).await, zg);
    let direct = o.provider.zg_receipt(key.clone()).await.unwrap().unwrap();
    assert_eq!(
        (direct.text, direct.signature),
        (zg.text.clone(), zg.signature.clone())
    );
    // Native receipt: ed25519 over the same hashes and the exact fee.
    let signed = native.to_signed().unwrap();
    o.provider
        .tee()
        .keys()
        .response
        .verifying_key()
        .verify_exchange(&signed, CHAT.as_bytes(), &body)
        .unwrap();
    assert_eq!(signed.receipt.fee, fee(p, cpl));
    // A tampered response no longer verifies.
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert!(
        zg.verify(CHAT.as_bytes(), &tampered, o.provider.tee().signer())
            .is_err()
    );
    assert_eq!(unsettled(&o, &token, c.address()).await, fee(p, cpl));
    // Also under /v1/proxy/v1/...
    let r = http()
        .post(format!("{}/v1/proxy/v1/chat/completions", o.url))
        .header("authorization", &token)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn session_stream_hashes_every_sse_byte_and_bills_the_usage_chunk() {
    let o = offline(Opts::default()).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    let body = r#"{"messages":[{"role":"user","content":"the provider signs"}],"stream":true,"max_tokens":20,"seed":1}"#;
    let r = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let key = r.headers()["zg-res-key"].to_str().unwrap().to_owned();
    let bytes = r.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(!text.contains(RECEIPT_EVENT), "0G clients get no extra SSE event");
    // include_usage was forced upstream, so the stream carries usage.
    let usage_line = text.lines().rfind(|l| l.contains("\"usage\"")).unwrap();
    let u: Value = serde_json::from_str(usage_line.trim_start_matches("data: ")).unwrap();
    let (p, cpl) = (
        u["usage"]["prompt_tokens"].as_u64().unwrap(),
        u["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let zg = zg_receipt(&o, &key).await;
    zg.verify(body.as_bytes(), &bytes, o.provider.tee().signer())
        .unwrap();
    assert_eq!(unsettled(&o, &token, c.address()).await, fee(p, cpl));
}

#[tokio::test]
async fn native_stream_ends_with_a_receipt_event_and_replayed_nonce_is_refused() {
    let o = offline(Opts::default()).await;
    let c = EthSigner::random();
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    let body = r#"{"messages":[{"role":"user","content":"verify the quote"}],"stream":true,"max_tokens":10,"seed":9}"#;
    let req = Request {
        user: c.address(),
        provider: o.me,
        service: "chat".into(),
        nonce: U256::from(1),
        bodyHash: body_hash(body.as_bytes()),
        feeCap: U256::from(10u64.pow(15)),
    };
    let env = o.domains.sign_request(&c, req).unwrap().to_header();
    let send = || {
        http()
            .post(format!("{}/v1/proxy/chat/completions", o.url))
            .header("zg-request", &env)
            .body(body)
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let at = text
        .find(&format!("event: {RECEIPT_EVENT}\n"))
        .expect("receipt event");
    let (served, event) = text.split_at(at);
    let receipt: ReceiptJson =
        serde_json::from_str(event.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    let signed = receipt.to_signed().unwrap();
    o.provider
        .tee()
        .keys()
        .response
        .verifying_key()
        .verify_exchange(&signed, body.as_bytes(), served.as_bytes())
        .unwrap();
    assert_eq!(signed.receipt.nonce, U256::from(1));
    assert!(receipt.billed);
    // Same signed request again: the nonce is spent.
    let r = send().await.unwrap();
    assert_eq!(r.status(), 409);
    // A body that differs from the signed hash.
    let r = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("zg-request", &env)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn every_bad_credential_is_refused_before_the_upstream() {
    let fake = fake_upstream::start().await;
    let o = offline(Opts {
        upstream: Some(fake.base.clone()),
        ..Opts::default()
    })
    .await;
    let (c, good) = customer(&o, 10u128.pow(18));
    let post = |auth: Option<String>, body: &'static str| {
        let mut b = http()
            .post(format!("{}/v1/proxy/chat/completions", o.url))
            .body(body);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.send()
    };
    let body = r#"{"model":"ok","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#;
    // No credentials.
    assert_eq!(post(None, body).await.unwrap().status(), 401);
    // Forged: signed by a key that is not the claimed address.
    let mallory = EthSigner::random();
    let forged = {
        let t = token(&mallory, o.me, 1, now_ms() + 60_000, 0);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(t.trim_start_matches("Bearer app-sk-"))
            .unwrap();
        let s = String::from_utf8(raw).unwrap();
        let s = s.replace(
            &mallory.address().to_checksum(None),
            &c.address().to_checksum(None),
        );
        format!(
            "Bearer app-sk-{}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert_eq!(post(Some(forged), body).await.unwrap().status(), 401);
    // Forged native envelopes: signed by mallory for c, for another provider, over another body, with a
    // voucher mallory signed, or not an envelope at all.
    let native = |signer: &EthSigner, user: Address, provider: Address, signed_body: &str| {
        let req = Request {
            user,
            provider,
            service: "chat".into(),
            nonce: U256::from(7),
            bodyHash: body_hash(signed_body.as_bytes()),
            feeCap: U256::from(10u64.pow(15)),
        };
        let signature = o.domains.sign_request(signer, req.clone()).unwrap().signature;
        zg_billing::SignedRequest {
            request: req,
            signature,
            voucher: None,
        }
    };
    let with_foreign_voucher = native(&c, c.address(), o.me, body).with_voucher(
        o.domains
            .sign_voucher(
                &mallory,
                zg_billing::Voucher {
                    user: c.address(),
                    provider: o.me,
                    cumulativeAmount: U256::ZERO,
                    nonce: U256::from(7),
                },
            )
            .unwrap(),
    );
    for (what, env, want) in [
        (
            "signed by another key",
            native(&mallory, c.address(), o.me, body).to_header(),
            401,
        ),
        (
            "for another provider",
            native(&c, c.address(), Address::repeat_byte(9), body).to_header(),
            400,
        ),
        (
            "over another body",
            native(&c, c.address(), o.me, "{}").to_header(),
            400,
        ),
        (
            "with a voucher signed by another key",
            with_foreign_voucher.to_header(),
            401,
        ),
        ("not an envelope", "bm90IGFuIGVudmVsb3Bl".to_owned(), 400),
    ] {
        let r = http()
            .post(format!("{}/v1/proxy/chat/completions", o.url))
            .header("zg-request", env)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "native envelope {what}");
    }
    // Expired.
    assert_eq!(
        post(Some(token(&c, o.me, 1, now_ms() - 10, 0)), body)
            .await
            .unwrap()
            .status(),
        401
    );
    // For another provider.
    assert_eq!(
        post(
            Some(token(&c, Address::repeat_byte(9), 1, now_ms() + 60_000, 0)),
            body
        )
        .await
        .unwrap()
        .status(),
        401
    );
    // Revoked token id 1 and bumped generation (chain state re-read: TTL 0 in tests).
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            tokens: TokenState {
                generation: U256::ZERO,
                revoked_bitmap: U256::from(1u8) << 1,
            },
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    assert_eq!(post(Some(good.clone()), body).await.unwrap().status(), 401);
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            tokens: TokenState {
                generation: U256::from(1),
                revoked_bitmap: U256::ZERO,
            },
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    assert_eq!(post(Some(good.clone()), body).await.unwrap().status(), 401);
    // Insufficient balance: 4 tokens cap at 2e9 + ~70 bytes at 1e9 ≈ 7.8e10 > 1e9.
    let (_, poor) = customer(&o, 1_000_000_000);
    let r = post(Some(poor), body).await.unwrap();
    assert_eq!(r.status(), 402);
    // Unknown account.
    let stranger = EthSigner::random();
    assert_eq!(
        post(Some(token(&stranger, o.me, 1, now_ms() + 60_000, 0)), body)
            .await
            .unwrap()
            .status(),
        402
    );
    assert_eq!(
        fake.calls.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no rejected request reached the upstream"
    );
    assert_eq!(o.provider.ledger().receipt_count().await.unwrap(), 0);
    // Non-billed routes are authenticated too.
    assert_eq!(
        http()
            .get(format!("{}/v1/proxy/models", o.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Someone else's unsettled fee.
    let (_, other) = customer(&o, 10u128.pow(18));
    let r = http()
        .get(format!("{}/v1/user/{}/unsettledfee", o.url, c.address()))
        .header("authorization", other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Unknown receipt key.
    let r = http()
        .get(format!("{}/v1/proxy/signature/nope", o.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), r#"{"error":"chat_id_not_found"}"#);
}

#[tokio::test]
async fn upstream_errors_pass_through_unbilled_and_missing_usage_is_not_billed() {
    let fake = fake_upstream::start().await;
    let o = offline(Opts {
        upstream: Some(fake.base.clone()),
        ..Opts::default()
    })
    .await;
    let (c, token) = customer(&o, 10u128.pow(18));
    let r = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(r#"{"model":"fail","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("zg-res-key").is_none());
    assert_eq!(r.text().await.unwrap(), r#"{"error":{"message":"boom"}}"#);
    let r = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(r#"{"model":"nousage","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let key = r.headers()["zg-res-key"].to_str().unwrap().to_owned();
    let answer = r.bytes().await.unwrap();
    // Not billed, but still signed over exactly these bytes.
    let zg = zg_receipt(&o, &key).await;
    let sent = br#"{"model":"nousage","messages":[]}"#;
    zg.verify(sent, &answer, o.provider.tee().signer()).unwrap();
    assert_eq!(zg.text, format!("{}:{}", sha(sent), sha(&answer)));
    assert_eq!(unsettled(&o, &token, c.address()).await, U256::ZERO);
    assert_eq!(
        o.provider.ledger().available(c.address()),
        Some(U256::from(10u128.pow(18))),
        "reservations released"
    );
    let m = http()
        .get(format!("{}/metrics", o.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("zg_provider_unbilled_total 1"), "{m}");
    assert!(
        m.contains("zg_provider_requests_total{route=\"chat\",status=\"500\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn saturation_answers_429_with_retry_after() {
    let fake = fake_upstream::start().await;
    let o = offline(Opts {
        upstream: Some(fake.base.clone()),
        max_concurrency: 1,
        ..Opts::default()
    })
    .await;
    let (_, token) = customer(&o, 10u128.pow(18));
    let slow = r#"{"model":"slow","messages":[],"stream":true}"#;
    let first = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(slow)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(slow)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "2");
    let _ = first.bytes().await.unwrap();
    let third = http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(slow)
        .send()
        .await
        .unwrap();
    assert_eq!(
        third.status(),
        200,
        "the slot is free again once the stream ended"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_streams_from_ten_customers_bill_exactly() {
    let fake = fake_upstream::start().await;
    let o = offline(Opts {
        upstream: Some(fake.base.clone()),
        max_concurrency: 256,
        ..Opts::default()
    })
    .await;
    let customers: Vec<_> = (0..10).map(|_| customer(&o, 10u128.pow(18))).collect();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (url, token) = (o.url.clone(), customers[i % 10].1.clone());
        tasks.push(tokio::spawn(async move {
            let r = http()
                .post(format!("{url}/v1/proxy/chat/completions"))
                .header("authorization", token)
                .body(r#"{"model":"ok","messages":[],"stream":true,"max_tokens":8}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap() > 0);
    }
    let per = fee(fake_upstream::PROMPT_TOKENS, fake_upstream::CHUNKS) * U256::from(20);
    for (c, token) in &customers {
        assert_eq!(unsettled(&o, token, c.address()).await, per);
    }
    assert_eq!(o.provider.ledger().receipt_count().await.unwrap(), 200);
}

#[tokio::test]
async fn quote_attestation_models_embeddings_and_completions() {
    let o = offline(Opts::default()).await;
    let (_, token) = customer(&o, 10u128.pow(18));
    let q: Value = http()
        .get(format!("{}/v1/quote", o.url))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let rd = base64::engine::general_purpose::STANDARD
        .decode(q["report_data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&rd[..42], o.provider.tee().signer().to_checksum(None).as_bytes());
    assert!(q["event_log"].as_str().unwrap().contains("compose-hash"));
    assert!(
        serde_json::from_str::<Value>(q["tcb_info"].as_str().unwrap()).unwrap()["app_compose"].is_string()
    );
    let r = http()
        .get(format!("{}/v1/proxy/attestation/report", o.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // 0G's nvidia_payload: GPU evidence whose reports bind SHA-256 of the quote's REPORTDATA.
    let report: Value = r.json_value().await;
    assert_eq!(report["nvidia_payload"], q["nvidia_payload"]);
    let payload = zg_attestation::GpuEvidence::from_json(q["nvidia_payload"].as_str().unwrap()).unwrap();
    let spdm = zg_attestation::SpdmReport::parse(&payload.devices[0].report).unwrap();
    assert_eq!(spdm.request_nonce, <[u8; 32]>::from(sha2::Sha256::digest(&rd)));
    let nonce = hex::encode([5u8; 32]);
    let a: Value = http()
        .get(format!("{}/v1/attestation?nonce={nonce}", o.url))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(a["nonce"], nonce);
    let ev = zg_attestation::Evidence::from_document(a.to_string().as_bytes()).unwrap();
    // The simulated TD's image, named explicitly (deploy/policy.simulated.toml), and the simulated opt-in.
    let policy = zg_attestation::AttestationPolicy {
        dangerous_allow_simulated: true,
        ..zg_attestation::AttestationPolicy::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/policy.simulated.toml"
        ))
        .unwrap()
    }
    .with_nonce([5u8; 32]);
    let report =
        zg_attestation::Verifier::new_prod().verify(&ev, &policy, None, zg_attestation::Timestamp::now());
    assert!(report.passed(), "{report}");
    assert_eq!(report.gpus.len(), 1, "{report}");
    assert!(report.check("gpu.nonce").unwrap().ok && report.check("gpu.simulated.allowed").unwrap().ok);
    assert_eq!(
        http()
            .get(format!("{}/v1/attestation", o.url))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let m: Value = http()
        .get(format!("{}/v1/proxy/models", o.url))
        .header("authorization", &token)
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(m["data"][0]["id"], "zg-demo-ngram");
    let e = http()
        .post(format!("{}/v1/proxy/embeddings", o.url))
        .header("authorization", &token)
        .body(r#"{"input":"a b c"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(e.status(), 200);
    let e: Value = e.json_value().await;
    assert_eq!(e["usage"]["prompt_tokens"], 3);
    let c = http()
        .post(format!("{}/v1/proxy/completions", o.url))
        .header("authorization", &token)
        .body(json!({"prompt": "fees are", "max_tokens": 5, "seed": 2}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), 200);
    assert_eq!(
        http()
            .get(format!("{}/healthz", o.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

/// The official 0G SDK's request flow: `GET unsettledfee` (the provider reads the account and caches it),
/// `transferFund` (the SDK tops the sub-account up on chain), then the request, all within the account cache's
/// lifetime. Found by running the SDK (bins/cli/tests/it/official_cli.rs): the request was refused with 402
/// on the stale balance. A refusal for balance now re-reads the account first (at most once per cache
/// lifetime, so an empty account cannot make every request an RPC).
#[tokio::test]
async fn a_top_up_right_after_a_cached_read_is_seen_before_refusing() {
    let o = offline(Opts {
        account_ttl: std::time::Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let (c, token) = customer(&o, 0);
    assert_eq!(unsettled(&o, &token, c.address()).await, U256::ZERO);
    let post = || {
        http()
            .post(format!("{}/v1/proxy/chat/completions", o.url))
            .header("authorization", &token)
            .body(CHAT)
            .send()
    };
    // The top-up lands on chain after the provider cached the empty account.
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    let r = post().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let billed = unsettled(&o, &token, c.address()).await;
    assert!(billed > U256::ZERO);

    // An account that is still short after the re-read is refused (402, named), and the next refusal within
    // the cache lifetime does not re-read: a later top-up waits for the cache to expire.
    let (c2, token2) = customer(&o, 0);
    let post2 = || {
        http()
            .post(format!("{}/v1/proxy/chat/completions", o.url))
            .header("authorization", &token2)
            .body(CHAT)
            .send()
    };
    assert_eq!(post2().await.unwrap().status(), 402);
    o.accounts.set(
        c2.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    let r = post2().await.unwrap();
    assert_eq!(r.status(), 402, "one re-read per cache lifetime");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v.to_string().contains("insufficient_balance"), "{v}");
}

/// `GET /v1/models` is public and lists the registered model with its prices in neuron, in the shape the
/// official CLI's `inference get-models` reads (before, the route did not exist and the verb failed with 404).
#[tokio::test]
async fn public_model_catalog_for_the_official_get_models() {
    let o = offline(Opts::default()).await;
    let r = http().get(format!("{}/v1/models", o.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["object"], "list");
    let m = &v["data"][0];
    assert_eq!(m["id"], zg_provider::DEMO_MODEL_ID);
    assert_eq!(m["pricing"]["prompt"], INPUT_PRICE.to_string());
    assert_eq!(m["pricing"]["completion"], OUTPUT_PRICE.to_string());
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}
