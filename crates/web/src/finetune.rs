//! The Fine-tuning page's API, as a customer of a fine-tuning broker speaking 0G's HTTP API: models and prices,
//! a token and fee estimate for a dataset, create a task (dataset upload + signed create), the task's live state
//! and log, acknowledge the delivered model (after checking its hash against the chain), and decrypt it once the
//! settlement revealed the key.
//!
//! Who can call these: only the page holding the session token. The worst a caller can do is what the customer
//! could with the official CLI: create tasks that the provider charges from the fine-tuning sub-account (the fee
//! is bounded by that balance), acknowledge a deliverable (only after its keccak256 equals the on-chain
//! `modelRootHash`), and write decrypted models under the dashboard's data directory (names derived from the
//! validated task id only, never from page input). The signing key never leaves this server; the broker is
//! reached at the URL registered on chain (or `--broker`), and every answer it sends is read with a size bound.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use zg_chain::Amount;
use zg_finetune::{
    ByteTokenizer, Dataset, DatasetLimits, TaskId, Tokenizer, TrainingParams, WordTokenizer, sig,
};

use crate::account::{now_secs, parse_address};
use crate::error::{Error, Result};
use crate::server::AppState;

/// Largest JSON answer read from a broker.
const MAX_JSON: usize = 4 * 1024 * 1024;
/// Largest sealed model downloaded.
const MAX_MODEL: u64 = 8 * 1024 * 1024 * 1024;
/// Log bytes shown (the tail).
const LOG_TAIL: usize = 64 * 1024;

fn key(s: &AppState) -> Result<&zg_finetune::SigningKey> {
    s.key.as_ref().ok_or_else(|| {
        Error::BadRequest("fine-tuning needs the customer key: start the dashboard with `zg web`".into())
    })
}

fn hex0x(b: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(b))
}

/// The broker's base URL for `provider`: `--broker` if given, else the URL registered on chain.
async fn broker(s: &AppState, provider: Address) -> Result<String> {
    if let Some(u) = &s.cfg.broker_url {
        return Ok(u.trim_end_matches('/').to_owned());
    }
    let svc = s
        .client
        .chain()
        .fine_tuning()
        .get_service(provider)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("{provider} has no fine-tuning service on chain")))?;
    let url = svc.url.trim_end_matches('/').to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::BadRequest(format!(
            "{provider} registered {url:?}, which is not an http(s) URL"
        )));
    }
    Ok(url)
}

async fn read_bounded(resp: reqwest::Response, max: usize, what: &str) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Upstream {
            what: what.into(),
            reason: e.to_string(),
        })?;
        if body.len().saturating_add(chunk.len()) > max {
            return Err(Error::Upstream {
                what: what.into(),
                reason: format!("answer larger than {max} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends a request to the broker; a non-2xx answer becomes an error carrying the broker's `error` text.
async fn call(s: &AppState, req: reqwest::RequestBuilder, what: &str) -> Result<Vec<u8>> {
    let resp = req
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| Error::Upstream {
            what: what.into(),
            reason: e.to_string(),
        })?;
    let status = resp.status();
    let _ = s;
    let body = read_bounded(resp, MAX_JSON, what).await?;
    if !status.is_success() {
        let v: Option<Value> = serde_json::from_slice(&body).ok();
        let msg = v
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        let e = format!("HTTP {}: {msg}", status.as_u16());
        return Err(if status.is_client_error() {
            Error::BadRequest(format!("{what}: {e}"))
        } else {
            Error::Upstream {
                what: what.into(),
                reason: e,
            }
        });
    }
    Ok(body)
}

async fn get_json(s: &AppState, url: &str, what: &str) -> Result<Value> {
    let body = call(s, s.http.get(url), what).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Upstream {
        what: what.into(),
        reason: format!("not JSON: {e}"),
    })
}

fn user_path(base: &str, me: Address, rest: &str) -> String {
    format!("{base}/v1/user/{}{rest}", me.to_checksum(None))
}

/// `GET /api/finetune`: every fine-tuning service with its models (from its broker), this customer's sub-account
/// and acknowledgement, and this customer's tasks.
pub(crate) async fn overview(State(s): State<AppState>) -> Result<Json<Value>> {
    let chain = s.client.chain();
    let me = s.client.address();
    let services = chain.fine_tuning().list_services().await?;
    let mut out = Vec::new();
    for svc in services {
        let acct = chain.fine_tuning().get_account(me, svc.provider).await?;
        let base = broker(&s, svc.provider).await;
        let (mut models, mut tasks, mut error) = (Vec::new(), Vec::new(), None::<String>);
        match &base {
            Ok(base) => {
                for name in &svc.models {
                    match get_json(&s, &format!("{base}/v1/model/{name}"), "model").await {
                        Ok(m) => models.push(m),
                        Err(e) => error = Some(e.to_string()),
                    }
                }
                match get_json(&s, &user_path(base, me, "/task"), "tasks").await {
                    Ok(Value::Array(t)) => tasks = t,
                    Ok(_) => {}
                    Err(e) => error = Some(e.to_string()),
                }
            }
            Err(e) => error = Some(e.to_string()),
        }
        out.push(json!({
            "provider": svc.provider,
            "url": svc.url,
            "models": models,
            "model_names": svc.models,
            "price_per_token": Amount(svc.price_per_token),
            "occupied": svc.occupied,
            "tee_signer": svc.tee_signer,
            "owner_acknowledged": svc.tee_signer_acknowledged,
            "you_acknowledged": acct.as_ref().is_some_and(|a| a.acknowledged),
            "sub_account": acct.as_ref().map(|a| a.balance),
            "tasks": tasks,
            "error": error,
        }));
    }
    Ok(Json(json!({"services": out, "has_key": s.key.is_some()})))
}

/// What the page sends to estimate or create a task.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskRequest {
    provider: String,
    model: String,
    #[serde(default)]
    training_params: String,
    /// The dataset, JSONL text.
    dataset: String,
    #[serde(default)]
    dataset_name: Option<String>,
}

/// Tokens, epochs, price and fee as the broker will count them (same tokenizer, same rule).
async fn estimate_of(s: &AppState, r: &TaskRequest) -> Result<(Address, String, Value, Value)> {
    let provider = parse_address("provider", &r.provider)?;
    let base = broker(s, provider).await?;
    if r.model.is_empty() || r.model.len() > 200 || r.model.contains(['/', '?', '#']) {
        return Err(Error::BadRequest(format!(
            "model {:?} is not a model name",
            r.model
        )));
    }
    let model = get_json(s, &format!("{base}/v1/model/{}", r.model), "model").await?;
    let params_text = if r.training_params.trim().is_empty() {
        "{}".to_owned()
    } else {
        r.training_params.clone()
    };
    let params = TrainingParams::parse(&params_text, u32::MAX)
        .map_err(|e| Error::BadRequest(format!("training parameters: {e}")))?;
    let dataset = r.dataset.clone().into_bytes();
    let tokenizer_name = model["tokenizer"].as_str().unwrap_or_default().to_owned();
    let (records, tokens) = tokio::task::spawn_blocking(move || -> Result<(usize, Option<u64>)> {
        let ds = Dataset::from_jsonl(&dataset, &DatasetLimits::default())
            .map_err(|e| Error::BadRequest(format!("dataset: {e}")))?;
        let tok: Option<&dyn Tokenizer> = match tokenizer_name.as_str() {
            "zg-ngram" => Some(&WordTokenizer),
            "bytes" => Some(&ByteTokenizer),
            _ => None,
        };
        Ok((ds.records.len(), tok.map(|t| ds.token_count(t))))
    })
    .await
    .map_err(|e| Error::BadRequest(format!("counting tokens: {e}")))??;
    let price: U256 = model["pricePerToken"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    let epochs = params.num_train_epochs;
    let fee = tokens.map(|t| {
        Amount(
            U256::from(t)
                .saturating_mul(U256::from(epochs))
                .saturating_mul(price),
        )
    });
    let est = json!({
        "records": records,
        "tokens": tokens,
        "tokenizer": model["tokenizer"],
        "epochs": epochs,
        "price_per_token": Amount(price),
        "fee": fee,
        "rule": "tokens × num_train_epochs × price per token (the broker's count is final)",
    });
    Ok((provider, base, model, est))
}

/// `POST /api/finetune/estimate`: tokens and fee for a dataset, counted here the way the broker counts them.
pub(crate) async fn estimate(State(s): State<AppState>, Json(r): Json<TaskRequest>) -> Result<Json<Value>> {
    let (_, _, _, est) = estimate_of(&s, &r).await?;
    Ok(Json(est))
}

/// `POST /api/finetune/acknowledge-signer` `{provider}`: acknowledge the broker's TEE signer for this customer.
pub(crate) async fn acknowledge_signer(
    State(s): State<AppState>,
    Json(v): Json<Value>,
) -> Result<Json<Value>> {
    let provider = parse_address("provider", v["provider"].as_str().unwrap_or_default())?;
    let tx = s
        .client
        .chain()
        .fine_tuning()
        .acknowledge_tee_signer(provider, true)
        .await?;
    Ok(Json(json!({"provider": provider, "tx": tx})))
}

/// A multipart body (0G's dataset upload: `file`, `signature`, `timestamp`), built by hand.
fn multipart(name: &str, file: &[u8], signature: &str, timestamp: i64) -> (String, Vec<u8>) {
    let boundary = format!("zgweb{}", hex::encode(rand::random::<[u8; 12]>()));
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(100)
        .collect();
    let safe = if safe.is_empty() {
        "dataset.jsonl".to_owned()
    } else {
        safe
    };
    let mut b = Vec::with_capacity(file.len() + 512);
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(file);
    for (k, v) in [
        ("signature", signature.to_owned()),
        ("timestamp", timestamp.to_string()),
    ] {
        b.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}").as_bytes(),
        );
    }
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

/// `POST /api/finetune/tasks`: uploads the dataset to the broker's TEE and creates the task (0G's signed body).
pub(crate) async fn create(State(s): State<AppState>, Json(r): Json<TaskRequest>) -> Result<Json<Value>> {
    let key = key(&s)?.clone();
    let (provider, base, model, est) = estimate_of(&s, &r).await?;
    let me = s.client.address();
    // 1. The dataset, signed as 0G's signDatasetUpload (EIP-55 address ‖ timestamp).
    let ts = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let dsig = sig::sign_personal(&key, &sig::dataset_digest(me, ts))
        .map_err(|e| Error::BadRequest(format!("signing the upload: {e}")))?;
    let (ct, body) = multipart(
        r.dataset_name.as_deref().unwrap_or("dataset.jsonl"),
        r.dataset.as_bytes(),
        &hex0x(dsig),
        ts,
    );
    let up = call(
        &s,
        s.http
            .post(user_path(&base, me, "/dataset"))
            .header(header::CONTENT_TYPE, ct)
            .body(body),
        "dataset upload",
    )
    .await?;
    let up: Value = serde_json::from_slice(&up).unwrap_or(Value::Null);
    let dataset_hash = up["datasetHash"]
        .as_str()
        .ok_or_else(|| Error::Upstream {
            what: "dataset upload".into(),
            reason: format!("no datasetHash in {up}"),
        })?
        .to_owned();
    // 2. The task, signed as 0G's signRequest (address ‖ nonce ‖ datasetHash); nonce = ms·10⁴+40 as the SDK.
    let nonce = U256::from(zg_finetune::now_ms() as u64)
        .saturating_mul(U256::from(10_000u64))
        .saturating_add(U256::from(40u64));
    let csig = sig::sign_personal(&key, &sig::create_digest(me, nonce, &dataset_hash))
        .map_err(|e| Error::BadRequest(format!("signing the task: {e}")))?;
    let params = if r.training_params.trim().is_empty() {
        "{}".to_owned()
    } else {
        r.training_params.clone()
    };
    let body = json!({
        "userAddress": me.to_checksum(None),
        "datasetHash": dataset_hash,
        "trainingParams": params,
        "preTrainedModelHash": model["hash"],
        "fee": "0",
        "nonce": nonce.to_string(),
        "signature": hex0x(csig),
        "wait": false,
    });
    let t = call(
        &s,
        s.http
            .post(user_path(&base, me, "/task"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string()),
        "create task",
    )
    .await?;
    let task: Value = serde_json::from_slice(&t).unwrap_or(Value::Null);
    tracing::info!(provider = %provider, task = %task["id"], "fine-tuning task created from the dashboard");
    Ok(Json(
        json!({"task": task, "estimate": est, "dataset_hash": dataset_hash}),
    ))
}

fn task_id(id: &str) -> Result<TaskId> {
    TaskId::parse(id).map_err(|e| Error::BadRequest(format!("task id {id:?}: {e}")))
}

/// `GET /api/finetune/tasks/{provider}/{id}`: the task and the tail of its log.
pub(crate) async fn task(
    State(s): State<AppState>,
    Path((provider, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let provider = parse_address("provider", &provider)?;
    let id = task_id(&id)?;
    let base = broker(&s, provider).await?;
    let me = s.client.address();
    let t = get_json(&s, &user_path(&base, me, &format!("/task/{id}")), "task").await?;
    let log = call(
        &s,
        s.http.get(user_path(&base, me, &format!("/task/{id}/log"))),
        "task log",
    )
    .await?;
    let log = String::from_utf8_lossy(&log);
    let tail = log
        .char_indices()
        .rev()
        .nth(LOG_TAIL)
        .map(|(i, _)| &log[i..])
        .unwrap_or(&log);
    let d = s
        .client
        .chain()
        .fine_tuning()
        .get_deliverable(me, provider, &id.to_string())
        .await
        .ok();
    let model = model_path(&s, provider, &id);
    Ok(Json(json!({
        "task": t,
        "log": tail,
        "deliverable": d.map(|d| json!({
            "acknowledged": d.acknowledged,
            "settled": d.settled,
            "key_revealed": !d.encrypted_secret.is_empty(),
            "model_root_hash": hex0x(&d.model_root_hash),
        })),
        "decrypted": model.1.is_file(),
    })))
}

/// Where the sealed and decrypted models of a task go: `<data_dir>/<customer>/finetune/<provider>-<task id>.*`.
fn model_path(s: &AppState, provider: Address, id: &TaskId) -> (PathBuf, PathBuf) {
    let dir = s
        .client
        .config()
        .data_dir
        .join(format!("{:#x}", s.client.address()))
        .join("finetune");
    let stem = format!("{provider:#x}-{id}");
    (
        dir.join(format!("{stem}.sealed")),
        dir.join(format!("{stem}.model")),
    )
}

/// `POST /api/finetune/tasks/{provider}/{id}/acknowledge`: downloads the sealed model from the broker's TEE,
/// checks its keccak256 against the deliverable's `modelRootHash` on chain, then acknowledges it on chain.
pub(crate) async fn acknowledge(
    State(s): State<AppState>,
    Path((provider, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let key = key(&s)?.clone();
    let provider = parse_address("provider", &provider)?;
    let id = task_id(&id)?;
    let base = broker(&s, provider).await?;
    let me = s.client.address();
    let d = s
        .client
        .chain()
        .fine_tuning()
        .get_deliverable(me, provider, &id.to_string())
        .await?;
    let ts = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let lsig = sig::sign_personal(&key, &sig::lora_digest(&id, ts))
        .map_err(|e| Error::BadRequest(format!("signing the download: {e}")))?;
    let resp = s
        .http
        .post(user_path(&base, me, &format!("/task/{id}/lora")))
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"signature": hex0x(lsig), "timestamp": ts}).to_string())
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| Error::Upstream {
            what: "model download".into(),
            reason: e.to_string(),
        })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = read_bounded(resp, MAX_JSON, "model download")
            .await
            .unwrap_or_default();
        return Err(Error::BadRequest(format!(
            "model download: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        )));
    }
    let (sealed, _) = model_path(&s, provider, &id);
    if let Some(dir) = sealed.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::BadRequest(format!("creating {}: {e}", dir.display())))?;
    }
    let part = sealed.with_extension("sealed.part");
    let mut f = tokio::fs::File::create(&part)
        .await
        .map_err(|e| Error::BadRequest(format!("creating {}: {e}", part.display())))?;
    let mut stream = resp.bytes_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Upstream {
            what: "model download".into(),
            reason: e.to_string(),
        })?;
        n = n.saturating_add(chunk.len() as u64);
        if n > MAX_MODEL {
            return Err(Error::Upstream {
                what: "model download".into(),
                reason: format!("larger than {MAX_MODEL} bytes"),
            });
        }
        tokio::io::AsyncWriteExt::write_all(&mut f, &chunk)
            .await
            .map_err(|e| Error::BadRequest(format!("writing {}: {e}", part.display())))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut f)
        .await
        .map_err(|e| Error::BadRequest(format!("writing {}: {e}", part.display())))?;
    drop(f);
    let p2 = part.clone();
    let (keccak, _, size) = tokio::task::spawn_blocking(move || zg_finetune::hash_file(&p2))
        .await
        .map_err(|e| Error::BadRequest(format!("hashing: {e}")))?
        .map_err(|e| Error::BadRequest(format!("hashing the model: {e}")))?;
    let expected = B256::try_from(d.model_root_hash.as_ref()).unwrap_or_default();
    if keccak != expected {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Error::BadRequest(format!(
            "the downloaded model's keccak256 {keccak} is not the modelRootHash {expected} recorded on chain: \
             not acknowledged"
        )));
    }
    tokio::fs::rename(&part, &sealed)
        .await
        .map_err(|e| Error::BadRequest(format!("saving {}: {e}", sealed.display())))?;
    let tx = s
        .client
        .chain()
        .fine_tuning()
        .acknowledge_deliverable(provider, &id.to_string())
        .await?;
    Ok(Json(json!({"bytes": size, "model_root_hash": keccak, "tx": tx})))
}

/// `POST /api/finetune/tasks/{provider}/{id}/decrypt`: unwraps the key the settlement revealed, verifies the TEE
/// signature over every chunk tag and decrypts the model into the data directory.
pub(crate) async fn decrypt(
    State(s): State<AppState>,
    Path((provider, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let key = key(&s)?.clone();
    let provider = parse_address("provider", &provider)?;
    let id = task_id(&id)?;
    let me = s.client.address();
    let chain = s.client.chain();
    let d = chain
        .fine_tuning()
        .get_deliverable(me, provider, &id.to_string())
        .await?;
    if d.encrypted_secret.is_empty() {
        return Err(Error::BadRequest(if !d.acknowledged {
            "no key revealed yet: acknowledge the model first, then wait for the provider to settle".into()
        } else {
            "no key revealed yet: you acknowledged it; the key is revealed when the provider settles".into()
        }));
    }
    let signer = chain
        .fine_tuning()
        .tee_signer(provider)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("{provider} has no fine-tuning service on chain")))?;
    let (sealed, out) = model_path(&s, provider, &id);
    if !sealed.is_file() {
        return Err(Error::BadRequest(
            "download and acknowledge the model first".into(),
        ));
    }
    let secret = zg_sealing::k256::SecretKey::from_bytes(&key.to_bytes())
        .map_err(|_| Error::BadRequest("the customer key is not a secp256k1 key".into()))?;
    let enc = d.encrypted_secret.to_vec();
    let summary = tokio::task::spawn_blocking(move || -> Result<zg_sealing::UnsealSummary> {
        let k = zg_sealing::EncryptedSecret::from_bytes(enc)
            .unwrap_with(&secret)
            .map_err(|e| Error::BadRequest(format!("opening the revealed key: {e}")))?;
        zg_sealing::Unsealer::new(&k, signer)
            .unseal_file(&sealed, &out)
            .map_err(|e| Error::BadRequest(format!("decrypting: {e}")))
    })
    .await
    .map_err(|e| Error::BadRequest(format!("decrypting: {e}")))??;
    Ok(Json(json!({
        "bytes": summary.plaintext_len,
        "chunks": summary.chunks,
        "signer": summary.signer,
    })))
}

/// `GET /api/finetune/tasks/{provider}/{id}/model`: the decrypted model, as a download.
pub(crate) async fn model(
    State(s): State<AppState>,
    Path((provider, id)): Path<(String, String)>,
) -> Result<Response> {
    let provider = parse_address("provider", &provider)?;
    let id = task_id(&id)?;
    let (_, out) = model_path(&s, provider, &id);
    let f = tokio::fs::File::open(&out)
        .await
        .map_err(|_| Error::BadRequest("decrypt the model first".into()))?;
    let stream = tokio_util_stream(f);
    let name = format!("zg-model-{id}.bin");
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// A file as a stream of 64 KiB chunks (read on tokio's blocking-aware file API).
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::io::AsyncReadExt::read(&mut f, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn multipart_has_the_three_parts_and_a_safe_filename() {
        let (ct, body) = multipart("../../etc/passwd\"\r\nX: y", b"{\"a\":1}\n", "0xab", 17);
        let boundary = ct.split("boundary=").nth(1).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("filename=\"....etcpasswdXy\""), "{text}");
        assert!(text.contains("name=\"signature\"\r\n\r\n0xab"));
        assert!(text.contains("name=\"timestamp\"\r\n\r\n17"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
