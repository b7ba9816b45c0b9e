//! A fast fake OpenAI-compatible upstream on loopback (tests and benches of the provider and its clients). The request's `model`
//! steers it: `slow` streams one chunk every 150 ms, `fail` answers 500, `nousage` omits usage,
//! `ten` streams ten chunks 100 ms apart, `big` streams 4 MiB in 16 KiB events, `huge` answers a
//! chunked (no `Content-Length`) JSON body of 65 MiB, `greedy` reports 100 000 completion tokens.
//! `stream` is read the way vLLM's pydantic model reads it (lax booleans: `1`, `"true"`, `"yes"`...).
//! Every other answer reports `usage` {prompt_tokens: 7, completion_tokens: <chunks>}.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// Chunks (= completion tokens) per answer.
pub const CHUNKS: u64 = 8;
/// Prompt tokens every answer reports.
pub const PROMPT_TOKENS: u64 = 7;

/// A running fake upstream.
#[derive(Debug, Clone)]
pub struct Fake {
    /// `http://addr/v1`.
    pub base: String,
    /// Requests received.
    pub calls: Arc<AtomicU64>,
}

#[allow(
    clippy::unwrap_used,
    reason = "test server: a bad request body is answered as non-streaming"
)]
async fn chat(calls: Arc<AtomicU64>, body: Bytes) -> Response {
    calls.fetch_add(1, Ordering::Relaxed);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = v["model"].as_str().unwrap_or("").to_owned();
    if model == "fail" {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"boom"}}"#,
        )
            .into_response();
    }
    let usage = format!(
        r#"{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{CHUNKS},"total_tokens":{}}}"#,
        PROMPT_TOKENS + CHUNKS
    );
    let with_usage = model != "nousage";
    if model == "huge" {
        // 65 MiB of JSON, chunked: no Content-Length announces the size.
        let chunk = Bytes::from(vec![b' '; 1 << 20]);
        let parts = (0..65)
            .map(move |_| Ok::<_, std::io::Error>(chunk.clone()))
            .chain(std::iter::once(Ok(Bytes::from_static(
                br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":8}}"#,
            ))));
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(futures::stream::iter(parts)),
        )
            .into_response();
    }
    if model == "greedy" {
        let b = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":100000}}"#;
        return ([(header::CONTENT_TYPE, "application/json")], b).into_response();
    }
    if !lax_true(&v["stream"]) {
        let u = if with_usage {
            format!(r#","usage":{usage}"#)
        } else {
            String::new()
        };
        let b = format!(
            r#"{{"id":"x","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"hello world"}},"finish_reason":"stop"}}]{u}}}"#
        );
        return ([(header::CONTENT_TYPE, "application/json")], b).into_response();
    }
    let delay = match model.as_str() {
        "slow" => Duration::from_millis(150),
        "ten" => Duration::from_millis(100),
        _ => Duration::ZERO,
    };
    let (chunks, pad) = match model.as_str() {
        "ten" => (10, 0),
        "big" => (256, 16 * 1024),
        _ => (CHUNKS, 0),
    };
    let usage = format!(
        r#"{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{chunks},"total_tokens":{}}}"#,
        PROMPT_TOKENS + chunks
    );
    let filler = " ".repeat(pad);
    let want_usage = with_usage && v["stream_options"]["include_usage"].as_bool() == Some(true);
    let stream = futures::stream::unfold(0u64, move |i| {
        let (usage, filler) = (usage.clone(), filler.clone());
        async move {
            if i > chunks + 1 {
                return None;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let ev = if i < chunks {
                format!(
                    "data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} {filler}\"}}}}]}}\n\n"
                )
            } else if i == chunks {
                if want_usage {
                    format!("data: {{\"id\":\"x\",\"choices\":[],\"usage\":{usage}}}\n\n")
                } else {
                    String::new()
                }
            } else {
                "data: [DONE]\n\n".to_owned()
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(ev)), i + 1))
        }
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `stream` as pydantic's lax `bool` reads it (what vLLM does with `"stream": 1`).
fn lax_true(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64() == Some(1.0),
        serde_json::Value::String(s) => {
            matches!(
                s.to_ascii_lowercase().as_str(),
                "1" | "true" | "t" | "yes" | "y" | "on"
            )
        }
        _ => false,
    }
}

/// Starts the fake on 127.0.0.1:0.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests only: no loopback port is a broken machine"
)]
pub async fn start() -> Fake {
    let calls = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&calls);
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |b: Bytes| chat(Arc::clone(&c), b)),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Fake {
        base: format!("http://{addr}/v1"),
        calls,
    }
}
