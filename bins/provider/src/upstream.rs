//! Where requests are served: a built-in model in-process (the demo n-gram, or SmolLM2 through zg-model), or any
//! OpenAI-compatible server over HTTP. Streams pass through chunk by chunk; nothing buffers a whole streamed response.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;

use crate::demo::{DemoReply, NgramModel};
use crate::error::{Error, Result};
use crate::llm::LlmUpstream;

/// An OpenAI route the provider serves (relative to `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /chat/completions`.
    Chat,
    /// `POST /completions`.
    Completions,
    /// `POST /embeddings`.
    Embeddings,
    /// `GET /models`.
    Models,
}

impl Route {
    /// Path under the upstream's `/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Route::Chat => "chat/completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::Models => "models",
        }
    }

    /// Parses `chat/completions`, `v1/chat/completions`, … (the gRPC `route` field).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim_start_matches('/').trim_start_matches("v1/") {
            "chat/completions" => Some(Route::Chat),
            "completions" => Some(Route::Completions),
            "embeddings" => Some(Route::Embeddings),
            "models" => Some(Route::Models),
            _ => None,
        }
    }

    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::Chat => "chat",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::Models => "models",
        }
    }
}

/// A response body from the upstream.
pub enum UpBody {
    /// The whole body.
    Full(Bytes),
    /// A server-sent-events stream, chunk by chunk as it arrives.
    Stream(BoxStream<'static, std::result::Result<Bytes, String>>),
}

impl std::fmt::Debug for UpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpBody::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            UpBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// An upstream's answer: status, content type and body.
#[derive(Debug)]
pub struct UpResponse {
    /// HTTP status from the upstream.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: UpBody,
}

/// An OpenAI-compatible server reached over HTTP.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    timeout: Duration,
    max_body: usize,
}

/// The model server behind the provider.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The built-in demo n-gram model (`zg-demo-ngram`: instant, for tests and demos of the money path).
    Builtin(Arc<NgramModel>),
    /// A real LLM in-process (SmolLM2-135M-Instruct on zg-model): generation on blocking threads.
    Llm(LlmUpstream),
    /// An external OpenAI-compatible server.
    Http(HttpUpstream),
}

impl Upstream {
    /// The built-in demo model, trained on `corpus`.
    pub fn builtin(corpus: &str) -> Self {
        Upstream::Builtin(Arc::new(NgramModel::train(corpus)))
    }

    /// An HTTP upstream. `base` is the server's OpenAI root, e.g. `http://127.0.0.1:8000/v1`.
    pub fn http(base: &str, api_key: Option<String>, timeout: Duration) -> Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config {
                field: "upstream.url",
                value: base.to_owned(),
                fix: "use `builtin` or an http(s) URL of the server's OpenAI root, e.g. http://127.0.0.1:8000/v1 \
                      (flag --upstream, env ZG_PROVIDER_UPSTREAM)"
                    .into(),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Config {
                field: "upstream.url",
                value: base.to_owned(),
                fix: format!("cannot build an HTTP client: {e} (https needs the `tls` feature)"),
            })?;
        Ok(Upstream::Http(HttpUpstream {
            client,
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            timeout,
            max_body: 64 * 1024 * 1024,
        }))
    }

    /// Whether the model runs in-process (the demo n-gram or the built-in LLM).
    pub fn is_builtin(&self) -> bool {
        matches!(self, Upstream::Builtin(_) | Upstream::Llm(_))
    }

    /// Sends one request. For POST routes `body` is the JSON to forward.
    pub async fn send(&self, route: Route, body: Bytes) -> Result<UpResponse> {
        match self {
            Upstream::Builtin(m) => Ok(builtin(m, route, &body)),
            Upstream::Llm(m) => m.send(route, body).await,
            Upstream::Http(h) => h.send(route, body).await,
        }
    }
}

fn builtin(m: &NgramModel, route: Route, body: &[u8]) -> UpResponse {
    let reply = match route {
        Route::Chat => m.chat(body),
        Route::Completions => m.completion(body),
        Route::Embeddings => m.embeddings(body),
        Route::Models => Ok(DemoReply::Json(m.models())),
    };
    match reply {
        Ok(DemoReply::Json(b)) => UpResponse {
            status: 200,
            content_type: "application/json".into(),
            body: UpBody::Full(b.into()),
        },
        Ok(DemoReply::Events(ev)) => UpResponse {
            status: 200,
            content_type: "text/event-stream".into(),
            body: UpBody::Stream(futures::stream::iter(ev.into_iter().map(|e| Ok(Bytes::from(e)))).boxed()),
        },
        Err(e) => UpResponse {
            status: e.status,
            content_type: "application/json".into(),
            body: UpBody::Full(e.body().into()),
        },
    }
}

impl HttpUpstream {
    /// vLLM's runtime LoRA API: `POST {root}/load_lora_adapter {"lora_name", "lora_path"}` (`root` is the
    /// upstream's OpenAI root, `…/v1`). vLLM must run with `--enable-lora` and
    /// `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, and see `lora_path` (the provider's adapter directory) on its
    /// file system.
    pub async fn load_lora(&self, name: &str, path: &std::path::Path) -> Result<()> {
        let body = serde_json::json!({"lora_name": name, "lora_path": path.display().to_string()});
        self.lora_call("load_lora_adapter", body).await
    }

    /// vLLM's `POST {root}/unload_lora_adapter {"lora_name"}`.
    pub async fn unload_lora(&self, name: &str) -> Result<()> {
        self.lora_call("unload_lora_adapter", serde_json::json!({"lora_name": name}))
            .await
    }

    async fn lora_call(&self, op: &str, body: serde_json::Value) -> Result<()> {
        let url = format!("{}/{op}", self.base);
        let mut req = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let fail = |reason: String| Error::Upstream {
            url: url.clone(),
            reason,
        };
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| Error::UpstreamTimeout {
                secs: self.timeout.as_secs(),
            })?
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = tokio::time::timeout(Duration::from_secs(5), resp.text())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        Err(fail(format!(
            "{op} answered {status}: {}",
            text.chars().take(512).collect::<String>()
        )))
    }

    async fn send(&self, route: Route, body: Bytes) -> Result<UpResponse> {
        let url = format!("{}/{}", self.base, route.path());
        let mut req = match route {
            Route::Models => self.client.get(&url),
            _ => self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
        };
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let secs = self.timeout.as_secs();
        let fail = |e: reqwest::Error| Error::Upstream {
            url: url.clone(),
            reason: e.to_string(),
        };
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| Error::UpstreamTimeout { secs })?
            .map_err(fail)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        if content_type.starts_with("text/event-stream") {
            let stream = resp.bytes_stream().map(|r| r.map_err(|e| e.to_string())).boxed();
            return Ok(UpResponse {
                status,
                content_type,
                body: UpBody::Stream(stream),
            });
        }
        let too_large = || Error::Upstream {
            url: url.clone(),
            reason: format!("response larger than {} bytes", self.max_body),
        };
        let announced = resp.content_length();
        if announced.is_some_and(|l| l > self.max_body as u64) {
            return Err(too_large());
        }
        // Read chunk by chunk: a chunked body announces no length, and must stop at the limit too.
        let read = async {
            let mut buf = Vec::with_capacity(announced.map_or(0, |l| l as usize));
            let mut chunks = resp.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(fail)?;
                if buf.len().saturating_add(chunk.len()) > self.max_body {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(buf))
        };
        let bytes = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| Error::UpstreamTimeout { secs })??;
        Ok(UpResponse {
            status,
            content_type,
            body: UpBody::Full(bytes),
        })
    }
}
