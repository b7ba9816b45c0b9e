//! The 0G-compatible HTTP API (what the official `0g-compute-cli fine-tuning` verbs call; routes, bodies and
//! signatures as in ../shared/FINE_TUNING.md §1–2), plus `/metrics` and `/healthz`. Every handler is a thin
//! adapter over [`zg_finetune::Pipeline`].
//!
//! # Who can call what
//! - Writes (create, cancel, dataset upload, model download) need the customer's signature, checked by the
//!   pipeline; bad input is a 4xx `{"error": …, "code": …}` and nothing is stored.
//! - Reads (tasks, logs, pending count, quote, models) are open, as 0G's client expects; they show states,
//!   fees and trainer log lines only. `require_read_auth` makes task reads need `ZG-Read-Auth`.
//! - Bodies are bounded: 64 KiB of JSON; uploads up to the dataset limit, streamed to disk, within 10 minutes.

use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use zg_finetune::{CreateTask, TaskId, TaskRecord, TaskState, sig};

use crate::error::{Error, Result};
use crate::run::App;

/// Largest JSON body accepted.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// Header carrying a read signature when `require_read_auth` is on: `<unix seconds>:<0x signature>`.
pub const READ_AUTH_HEADER: &str = "zg-read-auth";
/// How long a dataset upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves [`router`] until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The broker's HTTP router.
pub fn router(app: App) -> Router {
    let upload_limit = usize::try_from(app.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    Router::new()
        .route("/v1/quote", get(quote))
        .route("/v1/attestation", get(attestation))
        .route("/v1/info", get(info))
        .route("/v1/task/pending", get(pending))
        .route("/v1/model", get(models))
        .route("/v1/model/{name}", get(model))
        .route("/v1/model/desc/{name}", get(model_usage))
        .route("/v1/user/{addr}/task", post(create).get(list))
        .route("/v1/user/{addr}/task/{id}", get(task))
        .route("/v1/user/{addr}/task/{id}/log", get(log))
        .route("/v1/user/{addr}/task/{id}/cancel", post(cancel))
        .route("/v1/user/{addr}/task/{id}/lora", post(lora))
        .route(
            "/v1/user/{addr}/dataset",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(app)
}

fn address(s: &str) -> Result<Address> {
    s.parse::<Address>()
        .map_err(|_| Error::BadRequest(format!("{s:?} is not an address")))
}

fn task_id(s: &str) -> Result<TaskId> {
    Ok(TaskId::parse(s)?)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A task as JSON: 0G's `Task` fields (`progress` = the state) plus ours. Nothing secret: no signature, no
/// public key, no wrapped key.
pub fn task_json(t: &TaskRecord, ack_timeout: Duration) -> Value {
    let opt = |v: Option<U256>| v.map(|x| x.to_string());
    let ack_deadline = t
        .delivered_at
        .filter(|_| t.state == TaskState::Delivered)
        .map(|d| rfc3339(d.saturating_add(i64::try_from(ack_timeout.as_millis()).unwrap_or(i64::MAX))));
    json!({
        "id": t.id.as_str(),
        "createdAt": rfc3339(t.created_at),
        "updatedAt": rfc3339(t.updated_at),
        "userAddress": t.user.to_checksum(None),
        "preTrainedModelHash": t.model_hash,
        "datasetHash": t.dataset_hash,
        "trainingParams": t.training_params,
        "fee": t.fee.map(|f| f.to_string()).unwrap_or_else(|| "0".into()),
        "nonce": t.nonce.to_string(),
        "progress": t.state.as_str(),
        "deliverIndex": Value::Null,
        "wait": t.wait,
        "model": t.model,
        "tokens": t.tokens,
        "epochs": t.epochs,
        "pricePerToken": opt(t.price),
        "failReason": t.fail_reason,
        "trainingProgress": t.progress,
        "modelRootHash": t.model_root_hash,
        "storageRoot": t.storage_root,
        "sealedSize": t.sealed_len,
        "deliverTx": t.deliver_tx,
        "settleTx": t.settle_tx,
        "charged": opt(t.charged),
        "ackDeadline": ack_deadline,
    })
}

/// Checks `ZG-Read-Auth` for `user` when reads must be authenticated.
fn read_auth(app: &App, headers: &HeaderMap, user: Address) -> Result<()> {
    if !app.require_read_auth {
        return Ok(());
    }
    let v = headers
        .get(READ_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            zg_finetune::Error::Unauthenticated(format!(
                "this broker requires `{READ_AUTH_HEADER}: <unix seconds>:<0x signature>` on task reads"
            ))
        })?;
    let (ts, s) = v.split_once(':').ok_or_else(|| {
        Error::BadRequest(format!(
            "{READ_AUTH_HEADER} must be `<unix seconds>:<0x signature>`"
        ))
    })?;
    let ts: i64 = ts
        .trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{READ_AUTH_HEADER}: the timestamp is not a number")))?;
    app.check_read(user, ts, &sig::parse_signature("read", s)?)?;
    Ok(())
}

fn counted(app: &App, route: &'static str, r: Result<Response>) -> Response {
    let resp = r.unwrap_or_else(IntoResponse::into_response);
    app.metrics.request(route, resp.status().as_u16());
    resp
}

async fn quote(State(app): State<App>) -> Response {
    let body = app.tee.quote().to_string();
    counted(
        &app,
        "quote",
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response()),
    )
}

#[derive(Debug, Deserialize)]
struct NonceQuery {
    nonce: String,
}

async fn attestation(State(app): State<App>, Query(q): Query<NonceQuery>) -> Response {
    let r = (|| {
        let nonce: [u8; 32] = hex::decode(q.nonce.trim_start_matches("0x"))
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::BadRequest("nonce must be 32 bytes of hex".into()))?;
        Ok(Json(app.tee.fresh(&nonce)?).into_response())
    })();
    counted(&app, "attestation", r)
}

/// What a client needs beyond the chain: the gRPC endpoint and the terms.
async fn info(State(app): State<App>) -> Response {
    let p = &app.pipeline;
    let body = json!({
        "provider": zg_finetune::FineTuningChain::provider(p.chain()).to_checksum(None),
        "teeSigner": p.tee_signer().to_checksum(None),
        "grpcUrl": app.public_grpc_url,
        "pricePerToken": p.config().price_per_token.to_string(),
        "ackTimeoutSecs": p.config().ack_timeout.as_secs(),
        "models": p.models().iter().map(|m| json!({"name": m.name, "hash": m.hash, "tokenizer": m.tokenizer.name()})).collect::<Vec<_>>(),
    });
    counted(&app, "info", Ok(Json(body).into_response()))
}

async fn pending(State(app): State<App>) -> Response {
    // 0G's create-task asks the user on stdin when this is above zero: report only tasks that wait beyond the
    // training slots (a queue the customer would actually wait behind).
    let r = async {
        let waiting = app.pipeline.pending().await?;
        let slots = app.pipeline.config().max_parallel as u64;
        Ok(waiting.saturating_sub(slots).to_string().into_response())
    }
    .await;
    counted(&app, "pending", r)
}

async fn models(State(app): State<App>) -> Response {
    let list: Vec<Value> = app
        .pipeline
        .models()
        .iter()
        .map(|m| json!({"name": m.name, "description": m.description}))
        .collect();
    counted(&app, "models", Ok(Json(list).into_response()))
}

async fn model(State(app): State<App>, Path(name): Path<String>) -> Response {
    let r = (|| {
        let m = app.pipeline.model(&name)?;
        Ok(Json(json!({
            "name": m.name,
            "hash": m.hash,
            "description": m.description,
            "tokenizer": m.tokenizer.name(),
            "dataType": "text",
            "executor": m.executor.kind(),
            "pricePerToken": app.pipeline.config().price_per_token.to_string(),
        }))
        .into_response())
    })();
    counted(&app, "model", r)
}

async fn model_usage(State(app): State<App>, Path(name): Path<String>) -> Response {
    let r = (|| {
        let m = app.pipeline.model(&name)?;
        let readme = format!(
            "# {name}\n\n{desc}\n\n- executor: {ex}\n- tokenizer (fee counting): {tok}\n- fee: tokens x num_train_epochs x {price} neuron\n\
             - datasets: JSONL (chat `messages`, `instruction`/`input`/`output`, `prompt`/`completion`, `text`) or a zip of them\n\
             - training params: a JSON object; unknown keys are refused (num_train_epochs, learning_rate, seed, validation_split, lora_r, ...)\n",
            name = m.name,
            desc = m.description,
            ex = m.executor.kind(),
            tok = m.tokenizer.name(),
            price = app.pipeline.config().price_per_token,
        );
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        w.start_file("README.md", opts)
            .and_then(|()| std::io::Write::write_all(&mut w, readme.as_bytes()).map_err(Into::into))
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let bytes = w
            .finish()
            .map_err(|e| Error::BadRequest(e.to_string()))?
            .into_inner();
        Ok(([(header::CONTENT_TYPE, "application/zip")], bytes).into_response())
    })();
    counted(&app, "model_usage", r)
}

/// 0G's create-task body (`SV.createTask`); unknown keys are ignored as 0G's Go broker does.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    user_address: String,
    dataset_hash: String,
    training_params: String,
    pre_trained_model_hash: String,
    #[serde(default)]
    #[allow(dead_code, reason = "0G's client sends \"0\": the broker computes the fee")]
    fee: Option<Value>,
    nonce: Value,
    signature: String,
    #[serde(default)]
    wait: bool,
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("body: {e}")))
}

async fn create(State(app): State<App>, Path(addr): Path<String>, body: axum::body::Bytes) -> Response {
    let r = async {
        let user = address(&addr)?;
        let b: CreateBody = json_body(&body)?;
        let body_user = address(&b.user_address)?;
        if body_user != user {
            return Err(Error::BadRequest(format!(
                "userAddress {} does not match the path address {user}",
                b.user_address
            )));
        }
        let nonce = match &b.nonce {
            Value::String(s) => s.parse::<U256>().ok(),
            Value::Number(n) => n.as_u64().map(U256::from),
            _ => None,
        }
        .ok_or_else(|| zg_finetune::Error::InvalidField {
            field: "nonce",
            reason: "must be a decimal integer".into(),
        })?;
        let t = app
            .pipeline
            .create_task(CreateTask {
                user,
                dataset_hash: b.dataset_hash,
                training_params: b.training_params,
                model: b.pre_trained_model_hash,
                nonce,
                signature: b.signature,
                wait: b.wait,
                max_fee: None,
            })
            .await?;
        app.crash.hit("accepted");
        Ok(Json(task_json(&t, app.pipeline.config().ack_timeout)).into_response())
    }
    .await;
    counted(&app, "create_task", r)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    latest: Option<bool>,
}

async fn list(
    State(app): State<App>,
    Path(addr): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let user = address(&addr)?;
        read_auth(&app, &headers, user)?;
        let limit = if q.latest == Some(true) { 1 } else { 500 };
        let tasks = app.pipeline.store().list(user, limit).await?;
        let ack = app.pipeline.config().ack_timeout;
        Ok(Json(tasks.iter().map(|t| task_json(t, ack)).collect::<Vec<_>>()).into_response())
    }
    .await;
    counted(&app, "list_tasks", r)
}

async fn task(
    State(app): State<App>,
    Path((addr, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let user = address(&addr)?;
        read_auth(&app, &headers, user)?;
        let t = app.pipeline.store().get_for(user, &task_id(&id)?).await?;
        Ok(Json(task_json(&t, app.pipeline.config().ack_timeout)).into_response())
    }
    .await;
    counted(&app, "get_task", r)
}

/// The task log as text, one line per entry: `<RFC 3339 time> <kind> <line>`.
pub fn render_log(lines: &[zg_finetune::LogLine]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&rfc3339(l.at));
        out.push(' ');
        if l.kind != "log" {
            out.push_str(&l.kind);
            out.push_str(": ");
        }
        out.push_str(&l.line);
        out.push('\n');
    }
    out
}

async fn log(
    State(app): State<App>,
    Path((addr, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let user = address(&addr)?;
        read_auth(&app, &headers, user)?;
        let id = task_id(&id)?;
        app.pipeline.store().get_for(user, &id).await?;
        let lines = app.pipeline.store().log_since(&id, 0).await?;
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render_log(&lines),
        )
            .into_response())
    }
    .await;
    counted(&app, "get_log", r)
}

#[derive(Debug, Deserialize)]
struct SignatureBody {
    signature: String,
    #[serde(default)]
    timestamp: Option<i64>,
}

async fn cancel(
    State(app): State<App>,
    Path((addr, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let user = address(&addr)?;
        let b: SignatureBody = json_body(&body)?;
        let t = app
            .pipeline
            .cancel_task(user, &task_id(&id)?, &b.signature)
            .await?;
        Ok(format!("task {} cancelled: nothing is charged", t.id).into_response())
    }
    .await;
    counted(&app, "cancel_task", r)
}

async fn lora(
    State(app): State<App>,
    Path((addr, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let user = address(&addr)?;
        let b: SignatureBody = json_body(&body)?;
        let ts = b
            .timestamp
            .ok_or_else(|| Error::BadRequest("timestamp (unix seconds) is required".into()))?;
        let (path, len) = app
            .pipeline
            .deliverable_file(user, &task_id(&id)?, &b.signature, ts)
            .await?;
        file_response(path, len).await
    }
    .await;
    counted(&app, "download_model", r)
}

async fn file_response(path: PathBuf, len: u64) -> Result<Response> {
    let f = tokio::fs::File::open(&path).await.map_err(|source| Error::Io {
        op: "open sealed model",
        path: path.clone(),
        source,
    })?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    Ok(resp)
}

async fn upload(State(app): State<App>, Path(addr): Path<String>, multipart: Multipart) -> Response {
    let r = async {
        let user = address(&addr)?;
        let tmp = app.upload_dir.join(format!("upload-{}", TaskId::random()));
        let res = tokio::time::timeout(UPLOAD_TIMEOUT, read_upload(&app, multipart, &tmp))
            .await
            .unwrap_or_else(|_| Err(Error::BadRequest("the upload took longer than 10 minutes".into())));
        let (signature, timestamp) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let hash = app
            .pipeline
            .upload_dataset(user, &signature, timestamp, tmp)
            .await?;
        Ok(Json(json!({"datasetHash": hash, "message": "dataset uploaded to the TEE"})).into_response())
    }
    .await;
    counted(&app, "upload_dataset", r)
}

/// Streams the `file` part to `tmp` (bounded) and returns the `signature` and `timestamp` parts. 0G's client
/// sends the file first, so the signature can only be checked afterwards; a refused upload is deleted.
async fn read_upload(app: &App, mut mp: Multipart, tmp: &std::path::Path) -> Result<(String, i64)> {
    let max = app.max_upload_bytes;
    let (mut signature, mut timestamp, mut got_file) = (None, None, false);
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| Error::BadRequest(format!("multipart: {e}")))?
    {
        match field.name().unwrap_or_default() {
            "file" => {
                let mut f = tokio::fs::File::create(tmp).await.map_err(|source| Error::Io {
                    op: "create upload",
                    path: tmp.to_owned(),
                    source,
                })?;
                let mut n = 0u64;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| Error::BadRequest(format!("multipart: {e}")))?
                {
                    n = n.saturating_add(chunk.len() as u64);
                    if n > max {
                        return Err(zg_finetune::Error::DatasetTooLarge {
                            what: "bytes",
                            size: n,
                            max,
                        }
                        .into());
                    }
                    f.write_all(&chunk).await.map_err(|source| Error::Io {
                        op: "write upload",
                        path: tmp.to_owned(),
                        source,
                    })?;
                }
                f.flush().await.map_err(|source| Error::Io {
                    op: "write upload",
                    path: tmp.to_owned(),
                    source,
                })?;
                got_file = true;
            }
            "signature" => signature = Some(small_text(field).await?),
            "timestamp" => {
                let t = small_text(field).await?;
                timestamp = Some(
                    t.trim()
                        .parse::<i64>()
                        .map_err(|_| Error::BadRequest("timestamp must be unix seconds".into()))?,
                );
            }
            other => return Err(Error::BadRequest(format!("unexpected multipart field {other:?}"))),
        }
    }
    if !got_file {
        return Err(Error::BadRequest("the multipart body has no `file` part".into()));
    }
    let signature = signature.ok_or_else(|| Error::BadRequest("missing `signature` part".into()))?;
    let timestamp = timestamp.ok_or_else(|| Error::BadRequest("missing `timestamp` part".into()))?;
    Ok((signature, timestamp))
}

async fn small_text(mut field: axum::extract::multipart::Field<'_>) -> Result<String> {
    let mut out = Vec::new();
    while let Some(c) = field
        .chunk()
        .await
        .map_err(|e| Error::BadRequest(format!("multipart: {e}")))?
    {
        out.extend_from_slice(&c);
        if out.len() > 1024 {
            return Err(Error::BadRequest("a multipart text part is over 1 KiB".into()));
        }
    }
    String::from_utf8(out).map_err(|_| Error::BadRequest("a multipart text part is not UTF-8".into()))
}

async fn healthz(State(app): State<App>) -> Response {
    let r = async {
        let counts = app.pipeline.store().counts().await?;
        let open: u64 = counts
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        Ok(Json(json!({
            "status": "ok",
            "tee_backend": app.tee.backend(),
            "tee_signer": app.tee.signer().to_checksum(None),
            "open_tasks": open,
        }))
        .into_response())
    }
    .await;
    counted(&app, "healthz", r)
}

async fn metrics(State(app): State<App>) -> Response {
    let counts = app.pipeline.store().counts().await.unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&counts),
    )
        .into_response()
}
