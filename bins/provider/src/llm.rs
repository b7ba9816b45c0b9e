//! The built-in real model (`--upstream builtin` with `model = "smollm2-135m-instruct"`): SmolLM2-135M-Instruct run
//! in-process by zg-model, behind the same OpenAI-compatible interface as an HTTP upstream.
//!
//! Usage is the model's own tokenizer count (`prompt_tokens`: the templated prompt; `completion_tokens`: every
//! sampled token), so fees are exact. Generation is CPU-bound and blocking: each request parses, tokenizes and
//! generates on a blocking thread (`spawn_blocking`), never on the async executor, and at most
//! [`LlmUpstream::max_streams`] generate at once (one core each by default); the rest wait for a turn, at most the
//! upstream timeout, then get a 503 (not billed).
//!
//! Who can call it, and the worst they can do: only a request the provider already authenticated and admitted
//! reaches it (its body bounded by the provider's body limit, its worst-case fee reserved). Such a customer can
//! hold one generation slot for up to `max_tokens` tokens (bounded by the context window, 8192), paid for at the
//! provider's prices; a stream whose reader leaves stops generating at the next token (the tokens computed are
//! still counted). Bad parameters get a 400 naming the field and are not billed.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use zg_model::{ChatMessage, FinishReason, GenerateRequest, LoadOptions, Model, Prompt, SamplingParams};

use crate::error::{Error, Result};
use crate::upstream::{Route, UpBody, UpResponse};

/// The model id `upstream.model` names to serve SmolLM2 from the built-in upstream.
pub const SMOLLM2_MODEL_ID: &str = "smollm2-135m-instruct";

/// Where the GGUF is looked for when `upstream.model_path` is not set (what `just setup` fetches).
pub const DEFAULT_MODEL_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Chunks a stream may run ahead of its reader before generation waits.
const STREAM_BUFFER: usize = 32;

/// SmolLM2 (any llama-family GGUF zg-model loads) served in-process.
#[derive(Debug, Clone)]
pub struct LlmUpstream {
    model: Model,
    id: String,
    gate: Arc<Semaphore>,
    max_streams: usize,
    wait: Duration,
}

/// Sets a flag when dropped: the generation polls it, so a request whose caller went away stops computing.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A request the model refuses: status and OpenAI error body (passed through, not billed).
struct Refusal {
    status: u16,
    message: String,
}

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    fn response(&self) -> UpResponse {
        let kind = if self.status < 500 {
            "invalid_request_error"
        } else {
            "server_error"
        };
        UpResponse {
            status: self.status,
            content_type: "application/json".into(),
            body: UpBody::Full(Bytes::from(
                json!({"error": {"message": self.message, "type": kind, "code": null}}).to_string(),
            )),
        }
    }
}

impl From<zg_model::Error> for Refusal {
    fn from(e: zg_model::Error) -> Self {
        Self {
            status: if e.is_client_fault() { 400 } else { 500 },
            message: e.to_string(),
        }
    }
}

impl LlmUpstream {
    /// Loads the GGUF at `path` (blocking: a second or so) and serves it as `id`, `max_streams` generations at a
    /// time (0 = one per available core); a request waits at most `wait` for its turn.
    pub fn load(path: &Path, id: &str, max_streams: usize, wait: Duration) -> Result<Self> {
        let model = Model::load(
            path,
            LoadOptions {
                name: Some(id.to_owned()),
                ..LoadOptions::default()
            },
        )
        .map_err(|e| Error::Config {
            field: "upstream.model_path",
            value: path.display().to_string(),
            fix: format!(
                "{e} (run `just setup` to fetch SmolLM2, or set --model-path / upstream.model_path)"
            ),
        })?;
        let max_streams = if max_streams == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            max_streams
        };
        Ok(Self {
            model,
            id: id.to_owned(),
            gate: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            wait,
        })
    }

    /// The model (for its tokenizer: tests and tools count usage with it).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The id served and put into responses.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Generations run at once.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// Serves one request.
    pub async fn send(&self, route: Route, body: Bytes) -> Result<UpResponse> {
        let chat = match route {
            Route::Models => {
                let v = json!({"object": "list", "data": [
                    {"id": self.id, "object": "model", "created": 0, "owned_by": "zg-compute (built-in, zg-model)"}]});
                return Ok(UpResponse {
                    status: 200,
                    content_type: "application/json".into(),
                    body: UpBody::Full(Bytes::from(v.to_string())),
                });
            }
            Route::Embeddings => {
                return Ok(Refusal {
                    status: 404,
                    message: format!("{} serves chat and completions, not embeddings", self.id),
                }
                .response());
            }
            Route::Chat => true,
            Route::Completions => false,
        };
        let permit = match tokio::time::timeout(self.wait, Arc::clone(&self.gate).acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Ok(Refusal {
                    status: 503,
                    message: format!(
                        "all {} generation slots stayed busy for {} s; retry later",
                        self.max_streams,
                        self.wait.as_secs()
                    ),
                }
                .response());
            }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(Arc::clone(&cancel));
        let (head_tx, head_rx) = oneshot::channel::<std::result::Result<bool, Refusal>>();
        let (tx, rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
        let model = self.model.clone();
        let id = self.id.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            run(&model, &id, chat, &body, head_tx, &tx, &cancel)
        });
        let stream = match head_rx.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(refusal)) => return Ok(refusal.response()),
            Err(_) => {
                // The job ended without a verdict: it panicked.
                let reason = match job.await {
                    Err(e) => e.to_string(),
                    Ok(_) => "generation ended early".into(),
                };
                return Err(Error::Upstream {
                    url: "builtin".into(),
                    reason,
                });
            }
        };
        if stream {
            // The guard travels with the stream: the relay dropping it stops the generation.
            let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |b| {
                let _keep = &guard;
                Ok::<Bytes, String>(b)
            });
            return Ok(UpResponse {
                status: 200,
                content_type: "text/event-stream".into(),
                body: UpBody::Stream(events.boxed()),
            });
        }
        let out = job.await.map_err(|e| Error::Upstream {
            url: "builtin".into(),
            reason: e.to_string(),
        })?;
        drop(guard);
        Ok(match out {
            Ok(json) => UpResponse {
                status: 200,
                content_type: "application/json".into(),
                body: UpBody::Full(json),
            },
            Err(refusal) => refusal.response(),
        })
    }
}

/// The request's messages (chat) or prompt (completions).
fn prompt_of(req: &Value, chat: bool) -> std::result::Result<Prompt, Refusal> {
    if !chat {
        return match req.get("prompt") {
            Some(Value::String(p)) => Ok(Prompt::Text(p.clone())),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Ok(Prompt::Text(a[0].as_str().unwrap_or_default().to_owned()))
            }
            _ => Err(Refusal::bad("prompt must be a string (one prompt per request)")),
        };
    }
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Refusal::bad("messages must be a non-empty array"))?;
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::bad(format!("messages[{i}].role must be a string")))?;
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (
                        p.get("type").and_then(Value::as_str),
                        p.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text") | None, Some(t)) => s.push_str(t),
                        _ => {
                            return Err(Refusal::bad(format!(
                                "messages[{i}].content: only text parts are supported"
                            )));
                        }
                    }
                }
                s
            }
            None | Some(Value::Null) => String::new(),
            Some(_) => {
                return Err(Refusal::bad(format!(
                    "messages[{i}].content must be a string or text parts"
                )));
            }
        };
        out.push(ChatMessage::new(role, &content));
    }
    Ok(Prompt::Chat(out))
}

/// OpenAI sampling fields (defaults as OpenAI's: temperature 1, top_p 1, a random seed).
fn params_of(req: &Value) -> std::result::Result<SamplingParams, Refusal> {
    let num = |k: &str| -> std::result::Result<Option<f64>, Refusal> {
        match req.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Refusal::bad(format!("{k} must be a number"))),
        }
    };
    let max = req
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| req.get("max_tokens").filter(|v| !v.is_null()));
    // The provider writes its default into a body that sets none, so this is always present from it.
    let max_tokens = match max {
        None => crate::demo::DEFAULT_MAX_TOKENS as usize,
        Some(v) => v
            .as_u64()
            .and_then(|m| usize::try_from(m).ok())
            .ok_or_else(|| Refusal::bad("max_tokens must be a positive integer"))?,
    };
    let seed = match req.get("seed") {
        None | Some(Value::Null) => rand::random(),
        Some(v) => v
            .as_i64()
            .map(|s| s as u64)
            .or_else(|| v.as_u64())
            .ok_or_else(|| Refusal::bad("seed must be an integer"))?,
    };
    let stop = match req.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Refusal::bad("stop must be a string or an array of strings"))?,
        Some(_) => return Err(Refusal::bad("stop must be a string or an array of strings")),
    };
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(Refusal::bad("n must be 1"));
    }
    Ok(SamplingParams {
        max_tokens,
        temperature: num("temperature")?.unwrap_or(1.0) as f32,
        top_p: num("top_p")?.unwrap_or(1.0) as f32,
        seed,
        stop,
        ..SamplingParams::default()
    })
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses, generates and answers one request (on a blocking thread). Sends the verdict (stream or not, or the
/// refusal) on `head` as soon as the request is understood; a stream's events go to `tx` as they are generated; a
/// full response is returned.
fn run(
    model: &Model,
    id: &str,
    chat: bool,
    body: &[u8],
    head: oneshot::Sender<std::result::Result<bool, Refusal>>,
    tx: &mpsc::Sender<Bytes>,
    cancel: &AtomicBool,
) -> std::result::Result<Bytes, Refusal> {
    let parsed = serde_json::from_slice::<Value>(body)
        .map_err(|e| Refusal::bad(format!("body is not JSON: {e}")))
        .and_then(|req| Ok((prompt_of(&req, chat)?, params_of(&req)?, req)));
    let (prompt, params, req) = match parsed {
        Ok(p) => p,
        Err(r) => {
            let _ = head.send(Err(Refusal {
                status: r.status,
                message: r.message.clone(),
            }));
            return Err(r);
        }
    };
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    // A deployed LoRA adapter (`ft-…`, attached with `Model::add_adapter`) serves a request naming it; the core
    // let only its owner through. Any other model name is the base.
    let adapter = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| zg_adapters::is_adapter_name(m))
        .map(str::to_owned);
    let id: &str = adapter.as_deref().unwrap_or(id);
    let gen_req = GenerateRequest {
        model: adapter.clone(),
        prompt,
        params,
    };
    let created = now_secs();
    let rid = format!(
        "{}-{:016x}",
        if chat { "chatcmpl" } else { "cmpl" },
        rand::random::<u64>()
    );
    let (object, chunk_object) = if chat {
        ("chat.completion", "chat.completion.chunk")
    } else {
        ("text_completion", "text_completion")
    };
    let chunk = |delta: &str, finish: Value| {
        if chat {
            json!({"id": rid, "object": chunk_object, "created": created, "model": id,
                   "choices": [{"index": 0, "delta": {"content": delta}, "logprobs": null, "finish_reason": finish}]})
        } else {
            json!({"id": rid, "object": chunk_object, "created": created, "model": id,
                   "choices": [{"index": 0, "text": delta, "logprobs": null, "finish_reason": finish}]})
        }
    };
    // A full response's verdict is known now (errors come back as the job's result). A stream's goes out with its
    // first piece: the model refuses a request (context window, bad token id) before computing anything, and that
    // must still be a plain 400, not a stream.
    let mut head = Some(head);
    if !stream && let Some(h) = head.take() {
        let _ = h.send(Ok(false));
    }
    let mut started = false;
    let mut on_text = |piece: &str| -> ControlFlow<()> {
        if cancel.load(Ordering::Relaxed) {
            return ControlFlow::Break(());
        }
        if !stream {
            return ControlFlow::Continue(());
        }
        if let Some(h) = head.take() {
            let _ = h.send(Ok(true));
        }
        if chat && !started {
            started = true;
            let first = json!({"id": rid, "object": chunk_object, "created": created, "model": id,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                             "finish_reason": null}]});
            if tx.blocking_send(sse(&first)).is_err() {
                return ControlFlow::Break(());
            }
        }
        if tx.blocking_send(sse(&chunk(piece, Value::Null))).is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    };
    let done = match model.generate(&gen_req, &mut on_text) {
        Ok(d) => d,
        Err(e) => {
            let r = Refusal::from(e);
            if let Some(h) = head.take() {
                let _ = h.send(Err(Refusal {
                    status: r.status,
                    message: r.message.clone(),
                }));
            }
            return Err(r);
        }
    };
    if let Some(h) = head.take() {
        let _ = h.send(Ok(stream));
    }
    let usage = json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    });
    let finish = finish_str(done.finish_reason);
    if !stream {
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": null,
                   "finish_reason": finish})
        } else {
            json!({"index": 0, "text": done.text, "logprobs": null, "finish_reason": finish})
        };
        let v = json!({"id": rid, "object": object, "created": created, "model": id, "choices": [choice],
                       "usage": usage});
        return Ok(Bytes::from(v.to_string()));
    }
    if done.finish_reason == FinishReason::Cancelled {
        return Ok(Bytes::new());
    }
    let mut tail = Vec::new();
    if chat && !started {
        tail.push(
            json!({"id": rid, "object": chunk_object, "created": created, "model": id,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                         "finish_reason": null}]}),
        );
    }
    let mut last = chunk("", json!(finish));
    if chat && let Some(c) = last.pointer_mut("/choices/0/delta") {
        *c = json!({});
    }
    tail.push(last);
    if include_usage {
        tail.push(
            json!({"id": rid, "object": chunk_object, "created": created, "model": id, "choices": [],
                         "usage": usage}),
        );
    }
    for v in &tail {
        if tx.blocking_send(sse(v)).is_err() {
            return Ok(Bytes::new());
        }
    }
    let _ = tx.blocking_send(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(Bytes::new())
}
