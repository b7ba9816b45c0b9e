//! The Chat playground's API: a streamed, paid, receipt-verified chat; the running cost with a provider; 0G
//! session secrets (get-secret) and their revocation.
//!
//! Who can call these: only the page holding the session token. A chat spends the customer's funds (the signed
//! fee cap bounds each request, and the sub-account is topped up under zg-client's [`zg_client::TopUpPolicy`]);
//! get-secret hands the page an `app-sk-…` bearer secret for that provider, which is what the customer asked for
//! (it is shown once to copy; the private key itself never leaves the server); when the customer has not yet
//! acknowledged that provider's TEE signer, get-secret verifies the provider and acknowledges it first (one
//! transaction; providers refuse session tokens otherwise). Revoke sends one transaction.
//!
//! Stream protocol to the page (SSE over a `fetch` POST): `event: delta` `{"text"}` as tokens arrive, then either
//! `event: receipt` with the verified receipt, or `event: error` `{"message", "code"}`. Text that arrived before an
//! error was never verified and the page marks it rejected.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use zg_chain::Amount;
use zg_client::StreamEvent;

use crate::account::parse_address;
use crate::error::{Error, Result};
use crate::server::AppState;

/// Most messages one chat request may carry.
const MAX_MESSAGES: usize = 256;
/// Most completion tokens the page may ask for (bounds the fee cap the server signs).
const MAX_TOKENS: u64 = 4096;

/// One message of the conversation.
#[derive(Debug, Deserialize, serde::Serialize)]
pub(crate) struct Message {
    role: String,
    content: String,
}

/// What the page sends to chat.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    messages: Vec<Message>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    /// A deployed fine-tuned adapter's model id (default: the service's model).
    #[serde(default)]
    model: Option<String>,
}

impl ChatRequest {
    fn body(&self) -> Result<String> {
        if self.messages.is_empty() || self.messages.len() > MAX_MESSAGES {
            return Err(Error::BadRequest(format!(
                "a chat needs 1 to {MAX_MESSAGES} messages, got {}",
                self.messages.len()
            )));
        }
        if let Some(m) = self
            .messages
            .iter()
            .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
        {
            return Err(Error::BadRequest(format!(
                "message role {:?} is not one of system, user, assistant",
                m.role
            )));
        }
        let max_tokens = self.max_tokens.unwrap_or(256);
        if max_tokens == 0 || max_tokens > MAX_TOKENS {
            return Err(Error::BadRequest(format!(
                "max_tokens must be 1 to {MAX_TOKENS}, got {max_tokens}"
            )));
        }
        let mut body = json!({"messages": self.messages, "max_tokens": max_tokens, "stream": true});
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(Error::BadRequest(format!("temperature must be 0 to 2, got {t}")));
            }
            body["temperature"] = json!(t);
        }
        if let Some(m) = self.model.as_deref().filter(|m| !m.is_empty()) {
            body["model"] = json!(m);
        }
        Ok(body.to_string())
    }
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn error_event(e: &zg_client::Error) -> Bytes {
    let code = if e.is_verification_failure() {
        "verification_failed"
    } else if e.is_insufficient_balance() {
        "insufficient_balance"
    } else {
        "chat_failed"
    };
    sse("error", &json!({"message": e.to_string(), "code": code}))
}

/// `POST /api/chat/{addr}`: streams the answer; its last event is the verified receipt or an error.
pub(crate) async fn chat(
    State(s): State<AppState>,
    Path(addr): Path<String>,
    Json(req): Json<ChatRequest>,
) -> Result<Response> {
    let p = parse_address("provider", &addr)?;
    let body = req.body()?;
    let stream = match s.client.chat_stream(p, body).await {
        Ok(st) => st,
        Err(e) => {
            // Failed before any byte: still a stream, so the page has one code path.
            let b = error_event(&e);
            return Ok(sse_response(Body::from(b)));
        }
    };
    let out = futures::stream::unfold(Some(stream), move |st| async move {
        let mut st = st?;
        loop {
            match st.next().await {
                Some(Ok(ev @ StreamEvent::Data(_))) => {
                    if let Some(t) = ev.delta_text().filter(|t| !t.is_empty()) {
                        return Some((
                            Ok::<Bytes, std::io::Error>(sse("delta", &json!({"text": t}))),
                            Some(st),
                        ));
                    }
                }
                Some(Ok(StreamEvent::Receipt(r))) => {
                    let v = json!({
                        "key": r.receipt.key,
                        "model": r.receipt.model,
                        "prompt_tokens": r.receipt.usage.prompt_tokens,
                        "completion_tokens": r.receipt.usage.completion_tokens,
                        "fee": Amount(r.fee),
                        "owed_after": Amount(r.owed_after),
                        "nonce": r.receipt.nonce,
                        "request_hash": r.receipt.request_hash,
                        "response_hash": r.receipt.response_hash,
                        "signature": r.receipt.signature,
                        "response_key": r.receipt.response_key,
                        "verified": true,
                    });
                    return Some((Ok(sse("receipt", &v)), None));
                }
                Some(Err(e)) => {
                    if e.is_verification_failure() {
                        tracing::error!(error = %e, "REJECTED an unverifiable answer in the dashboard");
                    }
                    return Some((Ok(error_event(&e)), None));
                }
                None => {
                    let e = zg_client::Error::StreamIncomplete("the stream ended without a receipt".into());
                    return Some((Ok(error_event(&e)), None));
                }
            }
        }
    });
    Ok(sse_response(Body::from_stream(out)))
}

fn sse_response(body: Body) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/chat/{addr}/balance`: what the customer owes this provider (the running cost).
pub(crate) async fn balance(State(s): State<AppState>, Path(addr): Path<String>) -> Result<Json<Value>> {
    let p = parse_address("provider", &addr)?;
    let b = s.client.balance(p).await?;
    Ok(Json(json!({
        "provider": p,
        "sub_account": Amount(b.sub_account),
        "pending_refund": Amount(b.pending_refund),
        "owed": Amount(b.owed),
        "vouched": Amount(b.vouched),
        "paid": Amount(b.paid),
        "unsettled": Amount(b.unsettled),
        "receipts": b.receipts,
    })))
}

/// `POST /api/tokens/{addr}/secret` body.
#[derive(Debug, Deserialize)]
pub(crate) struct SecretRequest {
    token_id: u8,
    #[serde(default)]
    duration_secs: Option<u64>,
}

/// `POST /api/tokens/{addr}/secret`: an `app-sk-…` session secret for that provider.
pub(crate) async fn secret(
    State(s): State<AppState>,
    Path(addr): Path<String>,
    Json(r): Json<SecretRequest>,
) -> Result<Json<Value>> {
    let p = parse_address("provider", &addr)?;
    if r.token_id == 255 && r.duration_secs.is_some_and(|d| d > 24 * 3600) {
        return Err(Error::BadRequest(
            "token id 255 is ephemeral and lives at most 24 h (86400 s): lower the duration or pick an id 0-254"
                .into(),
        ));
    }
    // Providers refuse session tokens of customers who have not acknowledged their current TEE signer (TEE
    // batches would not pay for them): verify and acknowledge first, as `zg inference get-secret` does.
    let acknowledged = s.client.ensure_acknowledged(p).await?;
    let secret = s
        .client
        .session_token(p, r.token_id, r.duration_secs.map(std::time::Duration::from_secs))
        .await?;
    Ok(Json(json!({
        "provider": p, "token_id": r.token_id, "duration_secs": r.duration_secs, "secret": secret,
        "acknowledged_tx": acknowledged.map(|(_, tx)| tx.tx),
    })))
}

/// `POST /api/tokens/{addr}/revoke` body.
#[derive(Debug, Deserialize)]
pub(crate) struct RevokeRequest {
    token_id: u8,
}

/// `POST /api/tokens/{addr}/revoke`: revokes one token id on chain.
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Path(addr): Path<String>,
    Json(r): Json<RevokeRequest>,
) -> Result<Json<Value>> {
    let p = parse_address("provider", &addr)?;
    let tx = s.client.revoke_token(p, r.token_id).await?;
    Ok(Json(json!({"provider": p, "token_id": r.token_id, "tx": tx})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn bodies_are_bounded_and_streamed() {
        let b = req(json!({"messages": [{"role": "user", "content": "hi"}]}))
            .body()
            .unwrap();
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["max_tokens"], 256);
        assert!(req(json!({"messages": []})).body().is_err());
        assert!(
            req(json!({"messages": [{"role": "tool", "content": "x"}]}))
                .body()
                .unwrap_err()
                .to_string()
                .contains("tool")
        );
        assert!(
            req(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}))
                .body()
                .is_err()
        );
        assert!(
            req(json!({"messages": [{"role": "user", "content": "x"}], "temperature": 9.0}))
                .body()
                .is_err()
        );
    }
}
