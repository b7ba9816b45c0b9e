//! The HTTP API: 0G-compatible routes under `/v1/proxy`, the native additions, health and metrics.
//! Every handler is a thin adapter over [`Provider`].
//!
//! The server loop ([`serve`]) bounds what a peer can hold: at most [`Limits::max_connections`] connections
//! (more wait in the listen backlog), [`Limits::header_timeout`] to send headers, and a connection whose writes
//! make no progress for [`Limits::write_timeout`] (a peer that stopped reading) is dropped. A billed request's
//! body is read only after its credentials verified and it holds a concurrency slot, within
//! [`Limits::body_timeout`] and [`MAX_BODY`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::core::{Credentials, Exchange, ExchangeBody, Limits, Provider, ReceiptJson, StreamItem, now_ms};
use crate::error::Error;
use crate::upstream::Route;

pub use zg_billing::{RECEIPT_EVENT, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A connection that holds one of the server's connection slots, and fails a write that makes no progress for
/// `write_timeout`: a peer that stops reading (a zero receive window) would otherwise hold the connection, and
/// the request's concurrency slot behind it, forever.
struct Conn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    write_timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    fn progress<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.write_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer read nothing for {} s", timeout.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then drains open requests and streams.
/// Sets `TCP_NODELAY`: SSE chunks leave at once instead of waiting for the peer's delayed ACK (Nagle).
/// Each request carries the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    state: Provider,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits: Limits = state.config().limits.clone();
    let app = router(state);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let io = TokioIo::new(Conn {
            io: tcp,
            _slot: slot,
            write_timeout: limits.write_timeout,
            stalled: None,
        });
        let tower = TowerToHyperService::new(app.clone());
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&tower, req)
        });
        let conn = graceful.watch(http.serve_connection(io, svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The provider's HTTP router.
pub fn router(state: Provider) -> Router {
    let billed = |route: Route| {
        post(
            move |State(s): State<Provider>, headers: HeaderMap, body: Body| async move {
                billed(s, route, headers, body).await
            },
        )
    };
    Router::new()
        .route("/v1/proxy/chat/completions", billed(Route::Chat))
        .route("/v1/proxy/v1/chat/completions", billed(Route::Chat))
        .route("/v1/proxy/completions", billed(Route::Completions))
        .route("/v1/proxy/v1/completions", billed(Route::Completions))
        .route("/v1/proxy/embeddings", billed(Route::Embeddings))
        .route("/v1/proxy/v1/embeddings", billed(Route::Embeddings))
        .route("/v1/proxy/models", get(models))
        .route("/v1/proxy/v1/models", get(models))
        .route("/v1/proxy/signature/{key}", get(signature))
        .route("/v1/proxy/receipt/{key}", get(receipt))
        .route("/v1/proxy/attestation/report", get(attestation_report))
        .route("/v1/models", get(catalog))
        .route("/v1/quote", get(quote))
        .route("/v1/attestation", get(attestation))
        .route("/v1/user/{addr}/unsettledfee", get(unsettled_fee))
        .route("/v1/service", get(service))
        .route("/v1/lora/adapters", get(lora_list))
        .route("/v1/lora/adapters/deploy", post(lora_deploy))
        .route("/v1/lora/adapters/{name}", get(lora_status))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(cors))
        .with_state(state)
}

async fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ZG-Res-Key, Retry-After, ZG-Receipt"),
    );
    resp
}

fn credentials(h: &HeaderMap) -> Credentials {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Credentials {
        authorization: get("authorization"),
        zg_request: get(REQUEST_HEADER),
    }
}

fn receipt_header(r: &ReceiptJson) -> Option<HeaderValue> {
    let json = serde_json::to_vec(r).ok()?;
    HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(json)).ok()
}

/// The SSE event carrying the native receipt.
pub fn receipt_event(r: &ReceiptJson) -> Bytes {
    let json = serde_json::to_string(r).unwrap_or_default();
    Bytes::from(format!("event: {RECEIPT_EVENT}\ndata: {json}\n\n"))
}

/// Reads a request body of at most `limit` bytes within `timeout`.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, Error> {
    let read = async {
        let mut chunks = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| Error::BadRequest(format!("request body: {e}")))?;
            if buf.len().saturating_add(chunk.len()) > limit {
                return Err(Error::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::BodyTimeout {
            secs: timeout.as_secs(),
        })?
}

/// A billed request: credentials first (signatures, then the account), then a concurrency slot, and only
/// then the body. A stranger's body is never read.
async fn billed(s: Provider, route: Route, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(Error::BodyTooLarge { limit: MAX_BODY });
        }
        let auth = s.authorize(route, &credentials(&headers)).await?;
        let slot = s.slot()?;
        let bytes = read_body(body, MAX_BODY, s.config().limits.body_timeout).await?;
        s.serve(auth, slot, route, bytes).await
    }
    .await;
    match r {
        Ok(x) => exchange_response(x),
        Err(e) => {
            s.metrics().rejected(e.code());
            e.into_response()
        }
    }
}

fn exchange_response(x: Exchange) -> Response {
    let status = StatusCode::from_u16(x.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    if let Ok(ct) = HeaderValue::from_str(&x.content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(k) = x.res_key.as_deref().and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert(HeaderName::from_static(RES_KEY_HEADER), k);
    }
    match x.body {
        ExchangeBody::Full { bytes, receipt } => {
            if let Some(v) = receipt.as_deref().and_then(receipt_header) {
                headers.insert(HeaderName::from_static(RECEIPT_HEADER), v);
            }
            (status, headers, bytes).into_response()
        }
        ExchangeBody::Stream(rx) => {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            let native = x.native;
            let stream = futures::stream::unfold(rx, move |mut rx| async move {
                loop {
                    let item = match rx.recv().await? {
                        StreamItem::Data(b) => Ok(b),
                        StreamItem::Receipt(r) if native => Ok(receipt_event(&r)),
                        StreamItem::Receipt(_) => continue,
                        StreamItem::Failed(e) => Err(std::io::Error::other(e)),
                    };
                    return Some((item, rx));
                }
            });
            (status, headers, Body::from_stream(stream)).into_response()
        }
    }
}

async fn models(State(s): State<Provider>, headers: HeaderMap) -> Response {
    match s.models(&credentials(&headers)).await {
        Ok((status, ct, bytes)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [(header::CONTENT_TYPE, ct)], bytes).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/models`, public: the model this provider serves and its prices in neuron per token, in the shape
/// the official 0G SDK 0.9.0 reads (`getProviderModels`, the CLI's `inference get-models`: an OpenAI list whose
/// entries carry `pricing.prompt`/`pricing.completion`). Everything in it is already public on chain; it costs no
/// upstream call and no RPC, so anyone may call it.
async fn catalog(State(s): State<Provider>) -> Response {
    let c = s.config();
    Json(json!({
        "object": "list",
        "data": [{
            "id": c.model,
            "object": "model",
            "owned_by": s.address().to_checksum(None),
            "type": "chatbot",
            "pricing": {
                "prompt": c.prices.input.to_string(),
                "completion": c.prices.output.to_string(),
            },
        }],
    }))
    .into_response()
}

async fn signature(State(s): State<Provider>, Path(key): Path<String>) -> Response {
    match s.zg_receipt(key).await {
        Ok(Some(r)) => Json(json!({
            "text": r.text,
            "signature": r.signature,
            "signing_address": s.tee().signer().to_checksum(None),
            "signing_algo": "ecdsa",
        }))
        .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Json(json!({"error": "chat_id_not_found"}))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn receipt(State(s): State<Provider>, Path(key): Path<String>) -> Response {
    match s.ledger().receipt(key).await {
        Ok(Some(r)) => ([(header::CONTENT_TYPE, "application/json")], r.native).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Json(json!({"error": "chat_id_not_found"}))).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

async fn quote(State(s): State<Provider>) -> Response {
    Json(s.tee().zerog_quote().clone()).into_response()
}

async fn attestation_report(State(s): State<Provider>) -> Response {
    let q = s.tee().zerog_quote();
    Json(json!({
        "signing_address": q["signing_address"],
        "signing_algo": "ecdsa",
        "intel_quote": q["quote"],
        "nvidia_payload": q["nvidia_payload"],
        "event_log": q["event_log"],
        "report_data": q["report_data"],
        "tcb_info": q["tcb_info"],
        "simulated": q["simulated"],
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct NonceQuery {
    nonce: Option<String>,
}

/// Parses a 32-byte hex nonce.
pub(crate) fn parse_nonce(n: Option<&str>) -> Result<[u8; 32], Error> {
    let n = n.ok_or_else(|| Error::BadRequest("nonce is required: ?nonce=<64 hex chars>".into()))?;
    hex::decode(n.trim_start_matches("0x"))
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| Error::BadRequest(format!("nonce must be 32 bytes of hex, got {n:?}")))
}

async fn attestation(State(s): State<Provider>, Query(q): Query<NonceQuery>, req: Request) -> Response {
    let nonce = match parse_nonce(q.nonce.as_deref()) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    // Anyone may ask: a fresh quote is TEE work, so each peer gets a small allowance.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let _quote = match s.quote_permit(peer) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match fresh_evidence(&s, nonce).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Fresh evidence off the async runtime (the dstack agent is a blocking socket call).
pub(crate) async fn fresh_evidence(s: &Provider, nonce: [u8; 32]) -> Result<serde_json::Value, Error> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || s.tee().fresh(&nonce))
        .await
        .map_err(|e| Error::BadRequest(format!("attestation task failed: {e}")))?
}

async fn unsettled_fee(State(s): State<Provider>, Path(addr): Path<String>, headers: HeaderMap) -> Response {
    match s.unsettled_fee(&credentials(&headers), &addr).await {
        Ok(fee) => Json(json!({"unsettledFee": fee.to_string()})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn service(State(s): State<Provider>) -> Response {
    let c = s.config();
    Json(json!({
        "provider": s.address().to_checksum(None),
        "model": c.model,
        "input_price": c.prices.input.to_string(),
        "output_price": c.prices.output.to_string(),
        "tee_signer": s.tee().signer().to_checksum(None),
        "response_key": format!("0x{}", hex::encode(s.tee().keys().response.verifying_key().to_bytes())),
        "tee_backend": s.tee().backend(),
        "builtin_model": s.upstream().is_builtin(),
        // What a request without max_tokens is bounded by (and forwarded with): a native client signs a fee
        // cap of at least body bytes × input_price + max_tokens × choices × output_price.
        "default_max_tokens": c.default_max_tokens,
    }))
    .into_response()
}

async fn metrics(State(s): State<Provider>) -> Response {
    let unsettled = s.ledger().users_with_unsettled();
    let total = unsettled.iter().fold(0u128, |a, (_, f)| {
        a.saturating_add(u128::try_from(*f).unwrap_or(u128::MAX))
    });
    let text = s.metrics().render(now_ms() / 1000, total, unsettled.len());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Largest body of `POST /v1/lora/adapters/deploy` (`{"taskId", "baseModel"}` or `{"adapterName"}`).
const MAX_LORA_BODY: usize = 16 * 1024;

/// The session token's customer (the 0G SDK's LoRA calls send `Authorization: Bearer app-sk-…`).
async fn lora_user(s: &Provider, headers: &HeaderMap) -> Result<alloy_primitives::Address, Error> {
    let auth = credentials(headers).authorization.ok_or(Error::NoCredentials)?;
    Ok(s.authenticate(&auth).await?.user())
}

fn lora_not_found(name: &str) -> Response {
    Error::Adapter {
        code: "model_not_found",
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no adapter {:?} of yours is deployed here",
            name.chars().take(zg_adapters::MAX_NAME_LEN).collect::<String>()
        ),
    }
    .into_response()
}

/// `GET /v1/lora/adapters` (0G SDK `listAdapters`): the caller's adapters only.
async fn lora_list(State(s): State<Provider>, headers: HeaderMap) -> Response {
    match lora_user(&s, &headers).await {
        Ok(user) => {
            let adapters: Vec<_> = s
                .adapters()
                .owned_by(user)
                .iter()
                .map(crate::adapters::Deployment::zerog_json)
                .collect();
            Json(json!({ "adapters": adapters })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/lora/adapters/{name}` (0G SDK `getAdapterStatus`): `state: "active"` for the caller's own adapter,
/// 404 otherwise (another customer's adapter is not revealed).
async fn lora_status(State(s): State<Provider>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let user = match lora_user(&s, &headers).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match s.adapters().get(&name) {
        Some(d) if d.owner == user => Json(d.zerog_json()).into_response(),
        _ => lora_not_found(&name),
    }
}

/// `POST /v1/lora/adapters/deploy` (0G SDK `deployAdapter`): here an adapter arrives from the fine-tuning
/// broker over gRPC (mutual attestation), never from the customer. The SDK's call is answered with 0G's
/// "already deployed" message when the caller's adapter is active, else with 412 `deploy_through_broker`
/// naming the command that deploys it. The body is bounded before the token is checked, and read after.
async fn lora_deploy(State(s): State<Provider>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_LORA_BODY as u64) {
            return Err(Error::BodyTooLarge { limit: MAX_LORA_BODY });
        }
        let user = lora_user(&s, &headers).await?;
        let bytes = read_body(body, MAX_LORA_BODY, s.config().limits.body_timeout).await?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadRequest(format!("body is not JSON: {e}")))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let name = match (field("adapterName"), field("taskId"), field("baseModel")) {
            (Some(n), _, _) => n,
            (None, Some(task), Some(base)) => zg_adapters::adapter_name(&base, &task),
            _ => {
                return Err(Error::BadRequest(
                    "give adapterName, or taskId and baseModel".into(),
                ));
            }
        };
        match s.adapters().get(&name) {
            Some(d) if d.owner == user => Ok(Json(json!({
                "message": "Adapter is already deployed and active!",
                "adapterName": d.name,
                "state": crate::adapters::STATE_ACTIVE,
            }))
            .into_response()),
            _ => Err(Error::Adapter {
                code: "deploy_through_broker",
                status: StatusCode::PRECONDITION_FAILED,
                message: format!(
                    "adapter {:?} is not deployed here. Adapters reach this provider from the fine-tuning provider \
                     that trained them, over attested gRPC: ask it with `zg fine-tuning deploy-adapter \
                     --provider <fine-tuning provider> --task-id <task id>` for this inference provider ({})",
                    name.chars().take(zg_adapters::MAX_NAME_LEN).collect::<String>(),
                    s.address().to_checksum(None)
                ),
            }),
        }
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
