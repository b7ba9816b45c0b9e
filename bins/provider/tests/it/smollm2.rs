//! The built-in SmolLM2 upstream (issue 11 item 2) over loopback: a signed request gets a real answer and a receipt
//! whose usage is the model tokenizer's count; streams bill their usage chunk; refusals are not billed; generation
//! never runs on the async executor.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use base64::Engine as _;
use serde_json::Value;
use zg_billing::{ChainAccount, EthSigner, Request, body_hash};
use zg_model::{ChatMessage, GenerateRequest, Prompt, SamplingParams};
use zg_provider::{ReceiptJson, Upstream};

use crate::common::*;

fn llm(o: &Offline) -> &zg_model::Model {
    match o.provider.upstream() {
        Upstream::Llm(m) => m.model(),
        other => panic!("not the built-in LLM: {other:?}"),
    }
}

/// What zg-model itself answers to `question` greedily: text, prompt tokens (the templated prompt, counted by the
/// model's tokenizer independently of the generation) and completion tokens.
fn direct(o: &Offline, question: &str, max_tokens: usize) -> (String, u64, u64) {
    let m = llm(o);
    let msgs = vec![ChatMessage::new("user", question)];
    let prompt = m.tokenizer().count(&m.render_chat(&msgs, true).unwrap()) as u64;
    let c = m
        .generate(
            &GenerateRequest {
                model: None,
                prompt: Prompt::Chat(msgs),
                params: SamplingParams {
                    max_tokens,
                    ..SamplingParams::default()
                },
            },
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(c.prompt_tokens as u64, prompt);
    (c.text, prompt, c.completion_tokens as u64)
}

fn chat_body(question: &str, max_tokens: u64, stream: bool) -> String {
    serde_json::json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": question}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": stream})
    .to_string()
}

#[tokio::test]
async fn smollm2_answers_a_signed_request_with_a_receipt_of_the_tokenizers_usage() {
    let o = offline(Opts {
        smollm2: true,
        ..Opts::default()
    })
    .await;
    let c = EthSigner::random();
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(10u128.pow(18)),
            ..Default::default()
        },
    );
    let question = "Name the capital of France.";
    let body = chat_body(question, 24, false);
    let req = Request {
        user: c.address(),
        provider: o.me,
        service: "chat".into(),
        nonce: U256::from(1),
        bodyHash: body_hash(body.as_bytes()),
        feeCap: U256::from(10u64.pow(15)),
    };
    let env = o.domains.sign_request(&c, req).unwrap().to_header();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("zg-request", &env)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let receipt: ReceiptJson = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(r.headers()["zg-receipt"].as_bytes())
            .unwrap(),
    )
    .unwrap();
    let bytes = r.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, "The capital of France is Paris.");
    assert_eq!(v["model"], "smollm2-135m-instruct");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // The usage is the model's own count, equal to an independent run of zg-model on the same request.
    let (want_text, prompt, completion) = direct(&o, question, 24);
    assert_eq!(text, want_text);
    assert_eq!(v["usage"]["prompt_tokens"].as_u64(), Some(prompt));
    assert_eq!(v["usage"]["completion_tokens"].as_u64(), Some(completion));
    // "The capital of France is Paris." + <|im_end|>, each a token of SmolLM2's vocabulary.
    assert_eq!(
        completion,
        llm(&o).tokenizer().count("The capital of France is Paris.") as u64 + 1
    );
    // The receipt is signed by the TEE key over these bytes and bills exactly those tokens.
    let signed = receipt.to_signed().unwrap();
    o.provider
        .tee()
        .keys()
        .response
        .verifying_key()
        .verify_exchange(&signed, body.as_bytes(), &bytes)
        .unwrap();
    assert!(receipt.billed);
    assert_eq!(signed.receipt.fee, fee(prompt, completion));
    // The served model is listed under its id.
    let models = o
        .provider
        .upstream()
        .send(zg_provider::Route::Models, Default::default())
        .await
        .unwrap();
    let zg_provider::UpBody::Full(list) = models.body else {
        panic!("models is JSON")
    };
    assert!(String::from_utf8_lossy(&list).contains("\"smollm2-135m-instruct\""));
}

#[tokio::test]
async fn smollm2_streams_bill_the_usage_chunk_and_refusals_bill_nothing() {
    let o = offline(Opts {
        smollm2: true,
        ..Opts::default()
    })
    .await;
    let (c, token) = customer(&o, 10u128.pow(18));
    let http = reqwest::Client::new();
    let question = "What is the capital of Germany?";
    let body = chat_body(question, 16, true);
    let r = http
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(body.clone())
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
    let sse = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
    let mut text = String::new();
    let mut usage = None;
    let mut chunks = 0;
    for line in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(d) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(d);
            chunks += 1;
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    let (want, prompt, completion) = direct(&o, question, 16);
    assert_eq!(text, want);
    assert!(text.contains("Berlin"), "{text}");
    assert!(chunks > 3, "streamed piece by piece: {chunks} chunks");
    let usage = usage.expect("usage chunk (include_usage is forced upstream)");
    assert_eq!(usage["prompt_tokens"].as_u64(), Some(prompt));
    assert_eq!(usage["completion_tokens"].as_u64(), Some(completion));
    let receipt = reqwest::get(format!("{}/v1/proxy/signature/{key}", o.url))
        .await
        .unwrap()
        .json::<zg_billing::ZgReceipt>()
        .await
        .unwrap();
    receipt
        .verify(body.as_bytes(), &bytes, o.provider.tee().signer())
        .unwrap();
    let unsettled = |http: reqwest::Client| {
        let (url, token, user) = (o.url.clone(), token.clone(), c.address());
        async move {
            let v: Value = http
                .get(format!("{url}/v1/user/{user}/unsettledfee"))
                .header("authorization", token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["unsettledFee"].as_str().unwrap().parse::<U256>().unwrap()
        }
    };
    let billed = fee(prompt, completion);
    assert_eq!(unsettled(http.clone()).await, billed);

    // Refused by the model (400, named) and not billed: a context window overrun, n > 1, a non-string prompt.
    for (bad, needle) in [
        (chat_body(question, 8190, true), "context"),
        (
            r#"{"messages":[{"role":"user","content":"hi"}],"n":2,"max_tokens":4}"#.to_owned(),
            "n must be 1",
        ),
        (
            r#"{"messages":[{"role":"user","content":{"x":1}}],"max_tokens":4}"#.to_owned(),
            "content",
        ),
    ] {
        let r = http
            .post(format!("{}/v1/proxy/chat/completions", o.url))
            .header("authorization", &token)
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e = r.text().await.unwrap();
        assert!(e.contains(needle), "{e}");
    }
    assert_eq!(unsettled(http.clone()).await, billed);
}

/// Generation runs on blocking threads: while two long generations fill both model slots, the provider's async
/// side still answers at once; a third request waits for a slot and is then served, billed exactly.
#[tokio::test]
async fn smollm2_generation_never_blocks_the_executor_and_slots_bound_it() {
    let o = offline(Opts {
        smollm2: true,
        ..Opts::default()
    })
    .await;
    let (_, token) = customer(&o, 10u128.pow(18));
    let long = chat_body("Count from 1 to 100, separated by commas.", 160, false);
    let post = |body: String| {
        let (url, token) = (o.url.clone(), token.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/proxy/chat/completions"))
                .header("authorization", token)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v, t.elapsed())
        })
    };
    // A pinger on the same (single-threaded) runtime: had a generation run on the executor, one ping would wait
    // behind it for the whole generation.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (url, done) = (o.url.clone(), std::sync::Arc::clone(&done));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut worst, mut pings) = (Duration::ZERO, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let r = http.get(format!("{url}/healthz")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                worst = worst.max(t.elapsed());
                pings += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (worst, pings)
        })
    };
    let a = post(long.clone());
    let b = post(long.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = post(chat_body("Name the capital of France.", 12, false));
    let (sa, va, ta) = a.await.unwrap();
    let (sb, vb, _) = b.await.unwrap();
    let (sc, vc, _) = c.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, pings) = pinger.await.unwrap();
    assert_eq!((sa, sb, sc), (200, 200, 200), "{va} {vb} {vc}");
    assert!(pings >= 5, "{pings} pings during {ta:?}");
    assert!(
        worst < ta / 4,
        "a /healthz took {worst:?} while a generation took {ta:?}"
    );
    for v in [&va, &vb] {
        assert_eq!(v["usage"]["completion_tokens"].as_u64(), Some(160), "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }
    assert_eq!(
        vc["choices"][0]["message"]["content"],
        "The capital of France is Paris."
    );
}

/// At most `max_streams` generate at once: with one slot and a short wait, a second request meets a busy model and
/// gets a 503 (which the provider passes through unbilled), while the first is served.
#[tokio::test]
async fn smollm2_slots_bound_concurrent_generations() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../")
        .join(zg_provider::DEFAULT_MODEL_PATH);
    let up = zg_provider::LlmUpstream::load(
        &path,
        zg_provider::SMOLLM2_MODEL_ID,
        1,
        Duration::from_millis(200),
    )
    .unwrap();
    assert_eq!(up.max_streams(), 1);
    let long = chat_body("Count from 1 to 100, separated by commas.", 96, false);
    let first = {
        let up = up.clone();
        let body = long.clone();
        tokio::spawn(async move { up.send(zg_provider::Route::Chat, body.into()).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = up
        .send(zg_provider::Route::Chat, long.clone().into())
        .await
        .unwrap();
    assert_eq!(second.status, 503);
    let zg_provider::UpBody::Full(msg) = second.body else {
        panic!("a refusal is JSON")
    };
    assert!(String::from_utf8_lossy(&msg).contains("slots"));
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    // The slot is free again.
    let third = up.send(zg_provider::Route::Chat, long.into()).await.unwrap();
    assert_eq!(third.status, 200);
}

/// `zg-provider run` with `model = "smollm2-135m-instruct"`: the model loads first, so a missing GGUF fails with the
/// config key and the fix before anything touches the chain; with the real file the start gets past the model to
/// the chain (a dead RPC URL here).
#[tokio::test]
async fn run_loads_smollm2_before_touching_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let settings = |model_path: std::path::PathBuf| {
        let mut s = zg_provider::Settings::resolve(zg_provider::RunArgs {
            data_dir: Some(dir.path().to_path_buf()),
            upstream: Some("builtin".into()),
            model: Some("smollm2-135m-instruct".into()),
            model_path: Some(model_path),
            rpc_url: Some("http://127.0.0.1:1".into()),
            tee: Some(zg_provider::BackendChoice::Simulated),
            ..zg_provider::RunArgs::default()
        })
        .unwrap();
        s.provider_key = Some(format!("0x{}", "11".repeat(32)));
        s
    };
    let Err(e) = zg_provider::start(settings(dir.path().join("missing.gguf"))).await else {
        panic!("a missing model fails the start")
    };
    let msg = e.to_string();
    assert!(
        msg.contains("upstream.model_path") && msg.contains("just setup"),
        "{msg}"
    );
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../")
        .join(zg_provider::DEFAULT_MODEL_PATH);
    let Err(e) = zg_provider::start(settings(real)).await else {
        panic!("no chain at 127.0.0.1:1")
    };
    let msg = e.to_string();
    assert!(
        !msg.contains("model_path") && msg.contains("chain call"),
        "the model loaded; the chain failed: {msg}"
    );
}
