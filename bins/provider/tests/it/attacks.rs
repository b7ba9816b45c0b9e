//! Issue 9, written as the attacks: each test is what a customer, a stranger or a broken upstream would do to get
//! free inference, take more than was agreed, or stall the provider. Every one failed before its fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use base64::Engine as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use zg_billing::{ChainAccount, EthSigner, Request, SessionClaims, SessionToken, body_hash};
use zg_provider::{ReceiptJson, now_ms};

use crate::common::*;
use zg_test_utils::fake_upstream;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn with_fake(max_concurrency: usize) -> (fake_upstream::Fake, Offline) {
    with_fake_limits(max_concurrency, Opts::default().limits).await
}

async fn with_fake_limits(
    max_concurrency: usize,
    limits: zg_provider::Limits,
) -> (fake_upstream::Fake, Offline) {
    let fake = fake_upstream::start().await;
    let o = offline(Opts {
        upstream: Some(fake.base.clone()),
        max_concurrency,
        limits,
        ..Opts::default()
    })
    .await;
    (fake, o)
}

fn calls(f: &fake_upstream::Fake) -> u64 {
    f.calls.load(Ordering::SeqCst)
}

fn funded(o: &Offline, balance: u128) -> EthSigner {
    let c = EthSigner::random();
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(balance),
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    c
}

fn envelope(o: &Offline, c: &EthSigner, service: &str, nonce: u64, body: &str, fee_cap: U256) -> String {
    let req = Request {
        user: c.address(),
        provider: o.me,
        service: service.into(),
        nonce: U256::from(nonce),
        bodyHash: body_hash(body.as_bytes()),
        feeCap: fee_cap,
    };
    o.domains.sign_request(c, req).unwrap().to_header()
}

async fn post_native(o: &Offline, env: &str, body: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("zg-request", env)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn post_session(o: &Offline, token: &str, body: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn error_type(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
    (
        status,
        v["error"]["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The worst case the provider bounds a request by: every body byte a prompt token, `max_tokens` × choices.
fn bound(body: &str, max_tokens: u64, choices: u64) -> U256 {
    U256::from(body.len() as u64) * U256::from(INPUT_PRICE)
        + U256::from(max_tokens * choices) * U256::from(OUTPUT_PRICE)
}

// ---------------------------------------------------------------------------------------------------------
// Critical 1: free inference through the native fee cap.

#[tokio::test]
async fn native_fee_cap_below_the_worst_case_bound_is_refused_before_the_upstream() {
    let (fake, o) = with_fake(64).await;
    // An (almost) empty sub-account: what a free rider has.
    let c = funded(&o, 1);
    let body = r#"{"model":"ok","messages":[{"role":"user","content":"write a novel"}],"max_tokens":4000}"#;
    let b = bound(body, 4000, 1);
    for (nonce, cap) in [(1, U256::ZERO), (2, b - U256::from(1))] {
        let r = post_native(&o, &envelope(&o, &c, "chat", nonce, body, cap), body).await;
        let (status, msg) = error_type(r).await;
        assert_eq!(status, 402, "fee cap {cap}: {msg}");
        assert!(msg.contains("fee cap") && msg.contains(&b.to_string()), "{msg}");
    }
    // n = 3 triples the completion bound: a cap for one choice is short.
    let body3 = r#"{"model":"ok","messages":[],"max_tokens":100,"n":3}"#;
    let r = post_native(
        &o,
        &envelope(&o, &c, "chat", 3, body3, bound(body3, 100, 1)),
        body3,
    )
    .await;
    assert_eq!(r.status(), 402);
    assert_eq!(calls(&fake), 0, "nothing reached the upstream");

    // A cap at the bound is served and billed what was metered (not the cap, not zero).
    let rich = funded(&o, 10u128.pow(18));
    let r = post_native(&o, &envelope(&o, &rich, "chat", 1, body, b), body).await;
    assert_eq!(r.status(), 200);
    let receipt: ReceiptJson = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(r.headers()["zg-receipt"].as_bytes())
            .unwrap(),
    )
    .unwrap();
    let metered = fee(fake_upstream::PROMPT_TOKENS, fake_upstream::CHUNKS);
    assert_eq!(receipt.fee, metered.to_string());
    assert_eq!(o.provider.ledger().native_totals(rich.address()).0, metered);
}

// ---------------------------------------------------------------------------------------------------------
// High 3: a client that leaves mid-stream is billed for what the upstream generated, not zero.

#[tokio::test]
async fn client_leaving_mid_stream_is_billed_for_the_streamed_usage() {
    let (_fake, o) = with_fake(64).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    let mut r = post_session(
        &o,
        &token,
        r#"{"model":"ten","messages":[],"stream":true,"max_tokens":10}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    while seen.matches("chat.completion.chunk").count() < 9 {
        let chunk = r.chunk().await.unwrap().expect("the stream has ten chunks");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(r); // closes the connection after nine of ten chunks
    let want = fee(fake_upstream::PROMPT_TOKENS, 10);
    let deadline = Instant::now() + Duration::from_secs(10);
    while o.provider.ledger().unsettled_fee(c.address()) != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(o.provider.ledger().unsettled_fee(c.address()), want);
}

// ---------------------------------------------------------------------------------------------------------
// High 4: `"stream": 1` / `"true"` streams on vLLM but skipped the forced usage report.

#[tokio::test]
async fn non_boolean_stream_flags_are_refused_before_the_upstream() {
    let (fake, o) = with_fake(64).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    for flag in ["1", r#""true""#, r#""yes""#] {
        let body = format!(r#"{{"model":"ok","messages":[],"stream":{flag},"max_tokens":8}}"#);
        let (status, msg) = error_type(post_session(&o, &token, &body).await).await;
        assert_eq!(status, 400, "stream = {flag}: {msg}");
        assert!(msg.contains("stream"), "{msg}");
    }
    assert_eq!(calls(&fake), 0);
    assert_eq!(o.provider.ledger().unsettled_fee(c.address()), U256::ZERO);
    // Real booleans still work, and a stream is billed.
    let r = post_session(
        &o,
        &token,
        r#"{"model":"ok","messages":[],"stream":true,"max_tokens":8}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert_eq!(
        o.provider.ledger().unsettled_fee(c.address()),
        fee(fake_upstream::PROMPT_TOKENS, fake_upstream::CHUNKS)
    );
}

// ---------------------------------------------------------------------------------------------------------
// Medium 7: pre-authentication memory and chain amplification.

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .unwrap();
    kb * 1024
}

/// The stated bound: 64 strangers each announcing and sending a 16 MiB body (1 GiB in all) raise the
/// process's RSS by less than 64 MiB, because no body is read before its credentials are checked.
const UNAUTHENTICATED_RSS_BOUND: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_16_mib_bodies_are_never_buffered() {
    let (fake, o) = with_fake(256).await;
    let addr = o.url.trim_start_matches("http://").to_owned();
    let base = rss_bytes();
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    const SIXTEEN_MIB: usize = 16 << 20;
    let garbage = [
        String::new(),
        "authorization: Bearer app-sk-Zm9vfDB4MDA=\r\n".to_owned(),
        "zg-request: eyJub3QiOiJhbiBlbnZlbG9wZSJ9\r\n".to_owned(),
    ];
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (addr, cred) = (addr.clone(), garbage[i % garbage.len()].clone());
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let head = format!(
                    "POST /v1/proxy/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                     {cred}content-length: {SIXTEEN_MIB}\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.unwrap();
                let block = vec![b' '; 64 * 1024];
                let mut sent = 0;
                // The provider may answer and close early: that is the point.
                while sent < SIXTEEN_MIB && s.write_all(&block).await.is_ok() {
                    sent += block.len();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let grew = peak.load(Ordering::SeqCst).saturating_sub(base);
    assert!(
        grew < UNAUTHENTICATED_RSS_BOUND,
        "RSS grew by {} MiB for 64 unauthenticated 16 MiB bodies (bound {} MiB)",
        grew >> 20,
        UNAUTHENTICATED_RSS_BOUND >> 20
    );
    assert_eq!(calls(&fake), 0);
    assert_eq!(o.lookups.load(Ordering::SeqCst), 0, "no chain read for strangers");
}

#[tokio::test]
async fn garbage_envelopes_cost_no_chain_calls_and_unknown_accounts_are_cached() {
    let (fake, o) = with_fake(64).await;
    let victim = funded(&o, 10u128.pow(18));
    let mallory = EthSigner::random();
    let body = r#"{"model":"ok","messages":[],"max_tokens":4}"#;
    let cap = U256::from(10u64.pow(15));
    // Signed by mallory, claiming the victim's address.
    let forged = {
        let req = Request {
            user: victim.address(),
            provider: o.me,
            service: "chat".into(),
            nonce: U256::from(1),
            bodyHash: body_hash(body.as_bytes()),
            feeCap: cap,
        };
        let sig = o.domains.sign_request(&mallory, req.clone()).unwrap().signature;
        zg_billing::SignedRequest {
            request: req,
            signature: sig,
            voucher: None,
        }
        .to_header()
    };
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let garbage = [
        forged,
        "***".to_owned(),
        b64("{}"),
        b64(r#"{"user":"0x0000000000000000000000000000000000000001"}"#),
    ];
    for g in &garbage {
        let r = post_native(&o, g, body).await;
        assert!(matches!(r.status().as_u16(), 400 | 401), "{}", r.status());
    }
    // A session token signed by a key that is not the claimed address.
    let (status, _) = error_type(
        post_session(
            &o,
            &{
                let t = token(&mallory, o.me, 1, now_ms() + 60_000, 0);
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(t.trim_start_matches("Bearer app-sk-"))
                    .unwrap();
                let s = String::from_utf8(raw).unwrap().replace(
                    &mallory.address().to_checksum(None),
                    &victim.address().to_checksum(None),
                );
                format!(
                    "Bearer app-sk-{}",
                    base64::engine::general_purpose::STANDARD.encode(s)
                )
            },
            body,
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        o.lookups.load(Ordering::SeqCst),
        0,
        "garbage never reaches the chain"
    );
    assert_eq!(
        o.provider.ledger().customers(),
        0,
        "forged addresses leave nothing in memory"
    );
    // A valid signature of a key without an account: one chain read, then the negative cache answers.
    let stranger = EthSigner::random();
    let t = token(&stranger, o.me, 1, now_ms() + 60_000, 0);
    for _ in 0..5 {
        assert_eq!(post_session(&o, &t, body).await.status(), 402);
    }
    assert_eq!(o.lookups.load(Ordering::SeqCst), 1, "unknown accounts are cached");
    assert_eq!(
        o.provider.ledger().customers(),
        0,
        "an unknown account leaves nothing in the ledger"
    );
    assert_eq!(calls(&fake), 0);
}

/// The official SDK asks for `unsettledfee` before it funds a new sub-account: that call must not leave a negative
/// cache entry that refuses the request right after the funding.
#[tokio::test]
async fn unsettledfee_before_funding_does_not_refuse_the_first_request() {
    let (_fake, o) = with_fake(64).await;
    let c = EthSigner::random();
    let t = token(&c, o.me, 1, now_ms() + 60_000, 0);
    let r = http()
        .get(format!("{}/v1/user/{}/unsettledfee", o.url, c.address()))
        .header("authorization", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402, "no sub-account yet");
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    let r = post_session(&o, &t, r#"{"model":"ok","messages":[],"max_tokens":8}"#).await;
    assert_eq!(r.status(), 200);
}

/// Opens a connection that sends a streaming request and then never reads: a receive window of ~zero.
async fn zero_window_reader(addr: std::net::SocketAddr, token: String) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(1024).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let body = r#"{"model":"big","messages":[],"stream":true,"max_tokens":256}"#;
    let req = format!(
        "POST /v1/proxy/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: {token}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_window_readers_do_not_block_an_honest_request() {
    let limits = zg_provider::Limits {
        write_timeout: Duration::from_secs(2),
        ..Opts::default().limits
    };
    let (_fake, o) = with_fake_limits(256, limits).await;
    let addr: std::net::SocketAddr = o.url.trim_start_matches("http://").parse().unwrap();
    let (_, token) = customer(&o, 10u128.pow(24));
    let mut stalled = Vec::new();
    for _ in 0..256 {
        stalled.push(zero_window_reader(addr, token.clone()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let honest = r#"{"model":"ok","messages":[],"max_tokens":8}"#;
    loop {
        let r = post_session(&o, &token, honest).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "256 readers that never read held every slot for 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
}

#[tokio::test]
async fn attestation_quotes_are_rate_limited_per_peer() {
    let o = offline(Opts::default()).await;
    let nonce = hex::encode([7u8; 32]);
    let mut limited = 0;
    for _ in 0..20 {
        let r = http()
            .get(format!("{}/v1/attestation?nonce={nonce}", o.url))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => {}
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                limited += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 20 back-to-back quotes were limited"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Medium 8: fee caps and receipts agree.

#[tokio::test]
async fn session_bound_reads_string_and_float_max_tokens_and_n() {
    let (fake, o) = with_fake(64).await;
    // Enough for the 1024-token default, not for 3 × 4000 tokens.
    let body = r#"{"model":"ok","messages":[],"max_tokens":"4000","n":3}"#;
    let balance = bound(body, 1024, 1) * U256::from(2);
    let (_, token) = customer(&o, balance.to::<u128>());
    let (status, msg) = error_type(post_session(&o, &token, body).await).await;
    assert_eq!(status, 402, "{msg}");
    let body = r#"{"model":"ok","messages":[],"max_tokens":4000.0}"#;
    assert_eq!(post_session(&o, &token, body).await.status(), 402);
    let body = r#"{"model":"ok","messages":[],"max_tokens":"lots"}"#;
    assert_eq!(post_session(&o, &token, body).await.status(), 400);
    assert_eq!(calls(&fake), 0);
}

#[tokio::test]
async fn session_fee_never_exceeds_the_reserved_bound() {
    let (_fake, o) = with_fake(64).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    // The upstream ignores max_tokens and reports 100 000 completion tokens.
    let body = r#"{"model":"greedy","messages":[],"max_tokens":4}"#;
    let r = post_session(&o, &token, body).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert_eq!(o.provider.ledger().unsettled_fee(c.address()), bound(body, 4, 1));
}

// ---------------------------------------------------------------------------------------------------------
// Medium 9: never billed without an answer.

#[tokio::test]
async fn a_failed_receipt_write_bills_nothing_durably() {
    let (_fake, o) = with_fake(64).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    // Break receipt storage wherever it lives.
    for f in std::fs::read_dir(o._dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "sqlite") {
            let conn = rusqlite::Connection::open(&p).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            conn.execute_batch("DROP TABLE IF EXISTS receipts").unwrap();
        }
    }
    let r = post_session(&o, &token, r#"{"model":"ok","messages":[],"max_tokens":8}"#).await;
    let served = r.status() == 200;
    // What the disk says, as a restart would load it.
    o.provider.ledger().close();
    let ledger = zg_billing::Ledger::open(zg_billing::LedgerConfig::new(
        o._dir.path().join("ledger.sqlite"),
        o.me,
        o.domains.clone(),
    ))
    .unwrap();
    let owed = ledger.unsettled_fee(c.address());
    if served {
        panic!("served although the receipt could not be stored");
    }
    assert_eq!(owed, U256::ZERO, "charged ({owed}) without an answer");
}

// ---------------------------------------------------------------------------------------------------------
// Medium 11: a chunked upstream body respects the 64 MiB limit too.

#[tokio::test]
async fn chunked_upstream_body_over_64_mib_is_refused_and_not_billed() {
    let (_fake, o) = with_fake(64).await;
    let (c, token) = customer(&o, 10u128.pow(18));
    let (status, msg) =
        error_type(post_session(&o, &token, r#"{"model":"huge","messages":[],"max_tokens":8}"#).await).await;
    assert_eq!(status, 502, "{msg}");
    assert!(msg.contains("larger than"), "{msg}");
    assert_eq!(o.provider.ledger().unsettled_fee(c.address()), U256::ZERO);
}

// ---------------------------------------------------------------------------------------------------------
// Low items.

#[tokio::test]
async fn models_refuses_an_envelope_from_a_key_without_an_account() {
    let (_fake, o) = with_fake(64).await;
    let stranger = EthSigner::random();
    let env = envelope(&o, &stranger, "chat", 1, "", U256::ZERO);
    let r = http()
        .get(format!("{}/v1/proxy/models", o.url))
        .header("zg-request", env)
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 401 | 402), "{}", r.status());
}

#[tokio::test]
async fn a_request_signed_for_another_service_is_refused() {
    let (fake, o) = with_fake(64).await;
    let c = funded(&o, 10u128.pow(18));
    let body = r#"{"model":"ok","messages":[],"max_tokens":8}"#;
    let env = envelope(&o, &c, "embeddings", 1, body, bound(body, 8, 1));
    let (status, msg) = error_type(post_native(&o, &env, body).await).await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("service"), "{msg}");
    assert_eq!(calls(&fake), 0);
}

#[tokio::test]
async fn a_never_expiring_token_older_than_the_policy_is_refused() {
    let (_fake, o) = with_fake(64).await;
    let c = funded(&o, 10u128.pow(18));
    let make = |age_days: u64| {
        let claims = SessionClaims {
            address: c.address(),
            provider: o.me.to_string(),
            timestamp: now_ms() - age_days * 86_400_000,
            expires_at: 0,
            nonce: "api-key".into(),
            generation: 0,
            token_id: 3,
        };
        SessionToken::create(&c, &claims).unwrap().1
    };
    let body = r#"{"model":"ok","messages":[],"max_tokens":8}"#;
    assert_eq!(post_session(&o, &make(1), body).await.status(), 200);
    let (status, msg) = error_type(post_session(&o, &make(400), body).await).await;
    assert_eq!(status, 401, "{msg}");
    assert!(msg.contains("older"), "{msg}");
}

#[test]
fn the_provider_key_is_not_a_command_line_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zg-provider"))
        .args([
            "run",
            "--provider-key",
            "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unexpected argument '--provider-key'"), "{err}");
}
