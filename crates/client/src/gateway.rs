//! The local OpenAI-compatible gateway that `zg serve` runs: any OpenAI client pointed at it gets answers
//! that were signed for, paid for and verified by this [`Client`].
//!
//! Non-streamed answers carry the verified receipt in `ZG-Receipt` (base64url JSON), the fee in `ZG-Fee`
//! and `ZG-Verified: true`; an answer whose receipt does not verify is never returned (502). Streams are
//! forwarded event by event; the final `data: [DONE]` is held back until the receipt verified, then sent
//! followed by an SSE comment `: zg-receipt <json>` (ignored by OpenAI clients); if verification fails the
//! stream ends with an error event instead. `GET /zg/v1/receipts/{res_key}` returns a verified receipt
//! later (streams expose `ZG-Res-Key` as a header).
//!
//! # Who can call it
//!
//! Every route sits behind a [`LocalGuard`]: only a caller on the bound address (`Host`), not a foreign
//! web page (`Origin`, `Sec-Fetch-Site`), with a JSON body on POSTs and, unless the operator turned it off,
//! the API key. What such a caller can do is written on each route below; the worst is spending the
//! customer's funds with this one provider at the prices registered on chain, bounded by the ledger
//! balance and by each request's signed fee cap. Nothing reaches a provider whose on-chain TEE signer is not
//! the one verified ([`Error::SignerChanged`] → 403 `tee_signer_changed`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use alloy_primitives::Address;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::client::{Client, Route};
use crate::error::Error;
use crate::guard::{LocalGuard, refusal_response};
use crate::receipt::VerifiedReceipt;
use crate::stream::StreamEvent;

/// How many verified receipts the gateway keeps for `GET /zg/v1/receipts/{key}`.
const KEEP_RECEIPTS: usize = 4096;

/// Verified receipts by `ZG-Res-Key`, and their insertion order (oldest evicted first).
type ReceiptCache = (HashMap<String, VerifiedReceipt>, VecDeque<String>);

#[derive(Clone)]
struct Gw {
    client: Client,
    provider: Address,
    receipts: Arc<Mutex<ReceiptCache>>,
}

impl Gw {
    fn keep(&self, r: &VerifiedReceipt) {
        if let Ok(mut g) = self.receipts.lock() {
            let (map, order) = &mut *g;
            if map.insert(r.receipt.key.clone(), r.clone()).is_none() {
                order.push_back(r.receipt.key.clone());
            }
            while order.len() > KEEP_RECEIPTS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }
}

/// The gateway's router for one provider, every route behind `guard`:
///
/// | route | a caller the guard lets through can | worst case |
/// |---|---|---|
/// | `POST /v1/chat/completions` (and `/chat/completions`), `/v1/completions`, `/v1/embeddings` | send a request, signed and paid by the customer | spend the customer's funds with this provider (each request bounded by its fee cap, the total by the ledger) |
/// | `GET /v1/models` | read the provider's on-chain model | none (public chain data) |
/// | `GET /zg/v1/receipts/{key}` | read a verified receipt kept in memory (last 4,096) | learn token counts and fees of earlier answers |
/// | `GET /zg/v1/status` | read the customer's balance with this provider | learn balances (public on chain) and receipt counts |
/// | `GET /healthz` | public (no key): `ok` | learn that a gateway runs |
///
/// The guard answers refused requests itself (named error `type`: `forbidden_host`, `forbidden_origin`,
/// `forbidden_cross_site`, `unsupported_media_type`, `missing_api_key`, `invalid_api_key`) before any
/// body is read; handlers never see them.
pub fn gateway_router(client: Client, provider: Address, guard: LocalGuard) -> Router {
    let gw = Gw {
        client,
        provider,
        receipts: Arc::default(),
    };
    let billed = |route: Route| {
        post(move |State(g): State<Gw>, body: Bytes| async move { forward(g, route, body).await })
    };
    let router = Router::new()
        .route("/v1/chat/completions", billed(Route::Chat))
        .route("/chat/completions", billed(Route::Chat))
        .route("/v1/completions", billed(Route::Completions))
        .route("/v1/embeddings", billed(Route::Embeddings))
        .route("/v1/models", get(models))
        .route("/zg/v1/receipts/{key}", get(receipt))
        .route("/zg/v1/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(gw);
    guard.public_path("/healthz").apply(router)
}

/// An OpenAI-style error response.
fn error_response(e: &Error) -> Response {
    let (status, kind) = match e {
        Error::Provider { status, kind, .. } => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            kind.as_str(),
        ),
        Error::Refused(r) => return refusal_response(r),
        Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        Error::SignerChanged { .. } => (StatusCode::FORBIDDEN, "tee_signer_changed"),
        Error::ResponseTooLarge { .. } => (StatusCode::BAD_GATEWAY, "provider_response_too_large"),
        Error::ResponseTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "provider_timeout"),
        e if e.is_verification_failure() => (StatusCode::BAD_GATEWAY, "verification_failed"),
        e if e.is_insufficient_balance() => (StatusCode::PAYMENT_REQUIRED, "insufficient_balance"),
        Error::Http { .. } | Error::StreamIncomplete(_) => (StatusCode::BAD_GATEWAY, "provider_unreachable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "gateway_error"),
    };
    if e.is_verification_failure() {
        tracing::error!(error = %e, "REJECTED an unverifiable answer");
    } else {
        tracing::warn!(error = %e, "request failed");
    }
    let body = json!({"error": {"message": e.to_string(), "type": kind, "code": status.as_u16()}});
    (status, Json(body)).into_response()
}

fn receipt_headers(h: &mut HeaderMap, r: &VerifiedReceipt) {
    let mut set = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("zg-receipt", &r.header_value());
    set("zg-res-key", &r.receipt.key);
    set("zg-fee", &r.fee.to_string());
    set("zg-owed", &r.owed_after.to_string());
    set("zg-verified", "true");
}

/// Whether the request asks for a stream: any `stream` value other than absent, `null` or `false` (vLLM and
/// the provider's meter treat `1` or `"true"` as streaming too, so the answer would come as SSE).
fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("stream").cloned())
        .is_some_and(|s| !s.is_null() && s != serde_json::Value::Bool(false))
}

/// `POST /v1/chat/completions`, `/chat/completions`, `/v1/completions`, `/v1/embeddings`.
///
/// Caller: whoever passed the guard (the key holder on this machine). Worst case: spends the customer's
/// funds with this provider, each request bounded by the fee cap it signs (prompt bytes and `max_tokens` at
/// the on-chain prices) and all of them by the ledger; the body is parsed only as JSON for the fee cap.
async fn forward(g: Gw, route: Route, body: Bytes) -> Response {
    if route != Route::Embeddings && wants_stream(&body) {
        return forward_stream(g, route, body).await;
    }
    match g.client.request(g.provider, route, body).await {
        Ok(r) => {
            g.keep(&r.receipt);
            tracing::info!(key = %r.receipt.receipt.key, fee = %r.receipt.fee, owed = %r.receipt.owed_after, "verified receipt");
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            receipt_headers(&mut h, &r.receipt);
            (
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
                h,
                r.body,
            )
                .into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// The streamed form of [`forward`]: same caller, same worst case; the stream is bounded by
/// [`crate::ClientConfig::max_response_bytes`] and [`crate::ClientConfig::stream_timeout`].
async fn forward_stream(g: Gw, route: Route, body: Bytes) -> Response {
    let stream = match g.client.request_stream(g.provider, route, body).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(k) = stream.res_key().and_then(|k| HeaderValue::from_str(k).ok()) {
        h.insert(HeaderName::from_static("zg-res-key"), k);
    }
    // State: the stream, the held-back [DONE] event, and whether we are finished.
    let out = futures::stream::unfold(
        (stream, None::<Bytes>, false, g),
        |(mut s, mut held, done, g)| async move {
            if done {
                return None;
            }
            loop {
                match s.next().await {
                    Some(Ok(ev @ StreamEvent::Data(_))) if ev.is_done_marker() => {
                        if let StreamEvent::Data(b) = ev {
                            held = Some(b);
                        }
                    }
                    Some(Ok(StreamEvent::Data(b))) => {
                        return Some((Ok::<Bytes, std::io::Error>(b), (s, held, false, g)));
                    }
                    Some(Ok(StreamEvent::Receipt(r))) => {
                        let r = *r;
                        g.keep(&r);
                        tracing::info!(key = %r.receipt.key, fee = %r.fee, owed = %r.owed_after, "verified streamed receipt");
                        let mut tail = held
                            .take()
                            .map(|b| b.to_vec())
                            .unwrap_or_else(|| b"data: [DONE]\n\n".to_vec());
                        let json = serde_json::to_string(&r).unwrap_or_default();
                        tail.extend_from_slice(format!(": zg-receipt {json}\n\n").as_bytes());
                        return Some((Ok(Bytes::from(tail)), (s, None, true, g)));
                    }
                    Some(Err(e)) => {
                        if e.is_verification_failure() {
                            tracing::error!(error = %e, "REJECTED an unverifiable stream");
                        } else {
                            tracing::warn!(error = %e, "stream failed");
                        }
                        let err = json!({"error": {"message": e.to_string(), "type": "verification_failed", "code": 502}});
                        let b = Bytes::from(format!("data: {err}\n\n"));
                        return Some((Ok(b), (s, None, true, g)));
                    }
                    None => return None,
                }
            }
        },
    );
    (StatusCode::OK, h, Body::from_stream(out)).into_response()
}

/// `GET /v1/models`: the provider's model from the chain. Caller: whoever passed the guard. Worst case:
/// one chain read per call (public data).
async fn models(State(g): State<Gw>) -> Response {
    match g.client.service(g.provider).await {
        Ok(s) => Json(json!({
            "object": "list",
            "data": [{"id": s.model, "object": "model", "created": s.updated_at, "owned_by": format!("{:#x}", g.provider)}],
        }))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

/// `GET /zg/v1/receipts/{key}`: a verified receipt kept in memory. Caller: whoever passed the guard.
/// Worst case: reads token counts and fees of earlier answers (never the prompts or answers).
async fn receipt(State(g): State<Gw>, Path(key): Path<String>) -> Response {
    let r = g.receipts.lock().ok().and_then(|m| m.0.get(&key).cloned());
    match r {
        Some(r) => Json(r).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": format!("no verified receipt {key:?}"), "type": "not_found"}})),
        )
            .into_response(),
    }
}

/// `GET /zg/v1/status`: the customer's balance with the provider. Caller: whoever passed the guard. Worst
/// case: reads balances (public on chain) and receipt counts; three chain reads per call.
async fn status(State(g): State<Gw>) -> Response {
    match g.client.balance(g.provider).await {
        Ok(b) => Json(json!({"provider": g.provider, "customer": g.client.address(), "balance": b}))
            .into_response(),
        Err(e) => error_response(&e),
    }
}
