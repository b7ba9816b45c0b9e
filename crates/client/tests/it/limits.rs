//! A provider is anyone registered on chain: every body the client reads from one is bounded in size and
//! time, with a named error (issue 9, item 11). A loopback fake provider sends endless and dripping bodies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use zg_client::{ClientConfig, Error};

use crate::common::{chat_body, env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward everything to the real provider.
    Honest,
    /// `GET /v1/attestation` answers 200 with an endless body.
    EndlessEvidence,
    /// Billed routes answer 200 `application/json` with an endless body.
    EndlessAnswer,
    /// Billed routes answer 500 with an endless error body.
    EndlessError,
    /// Billed routes answer an endless SSE stream of valid events, never a receipt.
    EndlessStream,
    /// Billed routes answer 200 and then one byte every 100 ms, forever.
    Drip,
    /// Billed routes answer an SSE stream with one small event every 100 ms, forever.
    DripStream,
}

#[derive(Clone)]
struct Fake {
    real: String,
    mode: Arc<Mutex<Mode>>,
    http: reqwest::Client,
}

/// 64 KiB chunks, paced at about 10 MB/s so even an unbounded reader cannot exhaust the machine in a test.
fn endless(chunk: &'static [u8], every: Duration) -> Body {
    let s = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(chunk)), ()))
    });
    Body::from_stream(s)
}

static JUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
const EVENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"again \"}}]}\n\n";

async fn fake(State(f): State<Fake>, req: Request) -> Response {
    let mode = *f.mode.lock().unwrap();
    let path = req.uri().path().to_owned();
    let billed = path.starts_with("/v1/proxy/");
    let sse = |b: Body| ([(header::CONTENT_TYPE, "text/event-stream")], b).into_response();
    match mode {
        Mode::EndlessEvidence if path == "/v1/attestation" => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                endless(&JUNK, Duration::from_millis(5)),
            )
                .into_response();
        }
        Mode::EndlessAnswer if billed => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                endless(&JUNK, Duration::from_millis(5)),
            )
                .into_response();
        }
        Mode::EndlessError if billed => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                endless(&JUNK, Duration::from_millis(5)),
            )
                .into_response();
        }
        Mode::EndlessStream if billed => {
            let many: &'static [u8] = EVENT.repeat(1024).leak();
            return sse(endless(many, Duration::from_millis(5)));
        }
        Mode::Drip if billed => return endless(b"x", Duration::from_millis(100)).into_response(),
        Mode::DripStream if billed => return sse(endless(EVENT, Duration::from_millis(100))),
        _ => {}
    }
    // Honest: forward to the real provider.
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let url = format!(
        "{}{}",
        f.real,
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut out = f.http.request(parts.method, url).body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    let resp = out.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let mut r = (status, bytes).into_response();
    for (k, v) in &headers {
        if k != "content-length" && k != "transfer-encoding" {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

async fn start_fake(real: &str) -> (String, Arc<Mutex<Mode>>) {
    let f = Fake {
        real: real.to_owned(),
        mode: Arc::new(Mutex::new(Mode::Honest)),
        http: reqwest::Client::new(),
    };
    let mode = f.mode.clone();
    let app = axum::Router::new().fallback(fake).with_state(f);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, mode)
}

/// Runs `fut`, failing the test if it has not finished in 10 s (an unbounded reader never does).
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(v) => (v, t.elapsed()),
        Err(_) => panic!("{what}: the client was still reading after 10 s (no size or time bound)"),
    }
}

#[tokio::test]
async fn endless_and_dripping_provider_bodies_end_in_named_errors() {
    let e = env(10).await;
    let (url, mode) = start_fake(&e.provider_url).await;
    let limit = 1024 * 1024;
    let cfg = ClientConfig {
        url_override: Some(url),
        max_response_bytes: limit,
        timeout: Duration::from_secs(2),
        stream_timeout: Duration::from_secs(2),
        ..e.config()
    };
    let client = e.client_with(cfg).await;

    // Evidence: an endless attestation document.
    *mode.lock().unwrap() = Mode::EndlessEvidence;
    let (r, _) = bounded("attestation", client.verify_provider(e.provider)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { what: "attestation", limit: l } if l == limit),
        "{err}"
    );
    *mode.lock().unwrap() = Mode::Honest;
    client.verify_provider(e.provider).await.unwrap();
    let ok = client
        .chat(e.provider, chat_body("hello", 8, false))
        .await
        .unwrap();
    let owed = ok.receipt.owed_after;

    // A plain answer that never ends.
    *mode.lock().unwrap() = Mode::EndlessAnswer;
    let (r, _) = bounded("answer", client.chat(e.provider, chat_body("hi", 8, false))).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { what: "answer", .. }),
        "{err}"
    );

    // An error body that never ends: the status is what counts; the message is cut short.
    *mode.lock().unwrap() = Mode::EndlessError;
    let (r, _) = bounded("error body", client.chat(e.provider, chat_body("hi", 8, false))).await;
    let err = r.unwrap_err();
    assert!(
        matches!(&err, Error::Provider { status: 500, message, .. } if message.len() <= 512),
        "{err}"
    );

    // A stream of valid events that never ends and never brings a receipt.
    *mode.lock().unwrap() = Mode::EndlessStream;
    let (r, _) = bounded("stream", async {
        let s = client.chat_stream(e.provider, chat_body("hi", 8, true)).await?;
        s.collect_text().await
    })
    .await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { what: "stream", .. }),
        "{err}"
    );

    // A slow drip: each read is quick, the whole body never completes.
    *mode.lock().unwrap() = Mode::Drip;
    let (r, took) = bounded("drip", client.chat(e.provider, chat_body("hi", 8, false))).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTimeout { what: "answer", .. }),
        "{err}"
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");

    *mode.lock().unwrap() = Mode::DripStream;
    let (r, _) = bounded("drip stream", async {
        let mut s = client.chat_stream(e.provider, chat_body("hi", 8, true)).await?;
        let mut events = 0;
        while let Some(ev) = s.next().await {
            ev?;
            events += 1;
        }
        Ok::<_, Error>(events)
    })
    .await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTimeout { what: "stream", .. }),
        "{err}"
    );

    // None of it was counted as owed, and honest traffic still works.
    assert_eq!(client.state(e.provider).await.unwrap().owed, owed);
    *mode.lock().unwrap() = Mode::Honest;
    let r = client
        .chat(e.provider, chat_body("again", 8, false))
        .await
        .unwrap();
    assert!(r.receipt.fee > U256::ZERO);
}
