//! The guard in front of every local HTTP endpoint that spends the customer's money (`zg serve`, and any
//! dashboard that acts for the customer): it decides, before a handler runs or a body is read, whether a
//! request may come from who it claims to.
//!
//! # Threat model
//!
//! A gateway on `127.0.0.1` holds the customer's key and pays for every request it forwards, so:
//! - **any web page** the customer visits can send it requests: a `no-cors` `fetch` or an HTML form POSTs
//!   `text/plain`/form bodies cross-origin without a CORS preflight, and the page need not read the answer to
//!   spend the money. Refused: a browser always names its page in `Origin` (and `Sec-Fetch-Site`) on such
//!   requests, and every POST must declare `Content-Type: application/json`, which a page can only send
//!   after a preflight this guard never approves.
//! - **DNS rebinding**: a page on `attacker.example` re-points its name to `127.0.0.1`; its requests are then
//!   same-origin for the browser, and it can read the answers and `/zg/v1/status`. Refused: the `Host`
//!   header then names the attacker's domain, and only the bound address (and `localhost` on loopback) is
//!   accepted.
//! - **any local process**, of any user on the machine (and containers sharing the network namespace, SSH
//!   forwards): loopback is not a user boundary. Refused unless it sends the API key
//!   (`Authorization: Bearer <key>`), compared in constant time.
//!
//! Checks run in this order, and the first failure answers (with a [`Refusal`] named in the error `type`):
//! Host → Origin → Sec-Fetch-Site → preflight (when [`LocalGuard::refuse_preflights`]) → Content-Type (methods
//! other than GET/HEAD/OPTIONS: `application/json`, plus what [`LocalGuard::allow_content_type`] adds) → API key
//! (except the paths made public with [`LocalGuard::public_path`], or only under the prefix of
//! [`LocalGuard::with_api_key_under`]).
//!
//! `zg serve` and the `zg web` dashboard both decide with this one guard.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::error::Refusal;

/// A bearer key for a local gateway. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// Shortest key accepted from a flag or file (about 96 bits in base64).
    pub const MIN_LEN: usize = 16;

    /// A fresh random key: `sk-zg-` and 32 random bytes in base64url (256 bits).
    pub fn generate() -> Self {
        use base64::Engine as _;
        let bytes: [u8; 32] = rand::random();
        Self(format!(
            "sk-zg-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// A key chosen by the user (trimmed). Refuses keys shorter than [`ApiKey::MIN_LEN`] or with characters
    /// that cannot travel in an HTTP header.
    pub fn new(key: &str) -> Result<Self, String> {
        let key = key.trim();
        if key.len() < Self::MIN_LEN {
            return Err(format!(
                "the API key has {} characters; use at least {} (or let `zg serve` generate one)",
                key.len(),
                Self::MIN_LEN
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the API key must be printable ASCII without spaces".into());
        }
        Ok(Self(key.to_owned()))
    }

    /// The key itself, to show the user once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented key (hashes first, so the length leaks nothing either).
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (
            Sha256::digest(self.0.as_bytes()),
            Sha256::digest(presented.as_bytes()),
        );
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The rules a local endpoint applies to every request (see the module docs for the threat model).
///
/// ```
/// use zg_client::{ApiKey, LocalGuard};
/// let guard = LocalGuard::new("127.0.0.1:3001".parse().unwrap()).with_api_key(ApiKey::generate());
/// assert!(guard.allowed_hosts().contains(&"localhost:3001".to_owned()));
/// ```
#[derive(Debug, Clone)]
pub struct LocalGuard {
    hosts: Vec<String>,
    origins: Vec<String>,
    api_key: Option<ApiKey>,
    /// When set, the key is required only for paths under this prefix.
    key_prefix: Option<String>,
    public: Vec<String>,
    content_types: Vec<String>,
    refuse_preflights: bool,
}

impl LocalGuard {
    /// The guard for an endpoint bound to `bound` (the listener's real address, port included). Accepted
    /// `Host`s: that address, plus `localhost:<port>` when it is a loopback address. No API key until
    /// [`LocalGuard::with_api_key`].
    pub fn new(bound: SocketAddr) -> Self {
        let port = bound.port();
        let ip = match bound {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let mut names = vec![ip];
        if bound.ip().is_loopback() {
            names.push("localhost".into());
        }
        let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
        if port == 80 {
            // Browsers and curl leave the default port out of Host and Origin.
            hosts.extend(names);
        }
        let mut g = Self {
            hosts: Vec::new(),
            origins: Vec::new(),
            api_key: None,
            key_prefix: None,
            public: Vec::new(),
            content_types: vec!["application/json".into()],
            refuse_preflights: false,
        };
        for h in hosts {
            g = g.allow_host(h);
        }
        g
    }

    /// Also accept `host` (`name:port`, e.g. the machine's name when the gateway listens beyond loopback).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        let host = host.into().to_ascii_lowercase();
        self.origins.push(format!("http://{host}"));
        self.hosts.push(host);
        self
    }

    /// Require `Authorization: Bearer <key>` on every path that is not public.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Require `Authorization: Bearer <key>` only on paths under `prefix` (e.g. a dashboard's `/api/`, whose
    /// static pages carry no data); the other rules still apply everywhere.
    pub fn with_api_key_under(mut self, key: ApiKey, prefix: impl Into<String>) -> Self {
        self.api_key = Some(key);
        self.key_prefix = Some(prefix.into());
        self
    }

    /// Also accept this `Content-Type` essence on state-changing requests (e.g. `application/octet-stream` for
    /// uploads). Never add what an HTML form can send (`text/plain`, `application/x-www-form-urlencoded`,
    /// `multipart/form-data`): it needs no CORS preflight, so any page could send it.
    pub fn allow_content_type(mut self, essence: impl Into<String>) -> Self {
        self.content_types.push(essence.into().to_ascii_lowercase());
        self
    }

    /// Answer every CORS preflight (`OPTIONS`) with [`Refusal::Preflight`], so no browser ever lets another origin
    /// send headers or bodies that need one.
    pub fn refuse_preflights(mut self) -> Self {
        self.refuse_preflights = true;
        self
    }

    /// Serve `path` without the API key (Host, Origin and Content-Type rules still apply). For health checks
    /// that reveal nothing.
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        self.public.push(path.into());
        self
    }

    /// The `Host` values accepted.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether a key is required.
    pub fn requires_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Decides one request from its method, URI, headers (the body is never looked at).
    pub fn check<B>(&self, req: &axum::http::Request<B>) -> Result<(), Refusal> {
        let headers = req.headers();
        let lossy = |v: &header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
        // 1. Host: every Host value (and an absolute-form authority) must be ours.
        let mut hosts: Vec<String> = headers.get_all(header::HOST).iter().map(lossy).collect();
        if let Some(a) = req.uri().authority() {
            hosts.push(a.as_str().to_owned());
        }
        if hosts.is_empty() {
            return Err(Refusal::MissingHost);
        }
        for host in hosts {
            if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
                return Err(Refusal::ForeignHost {
                    host,
                    allowed: self.hosts.join(", "),
                });
            }
        }
        // 2. Origin: browsers send it on every cross-origin request and every POST; `null` included.
        for origin in headers.get_all(header::ORIGIN).iter().map(lossy) {
            if !self.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin)) {
                return Err(Refusal::ForeignOrigin {
                    origin,
                    allowed: self.origins.join(", "),
                });
            }
        }
        // 3. Sec-Fetch-Site: a browser's own verdict; another port of localhost is "same-site", not ours.
        if let Some(site) = headers.get("sec-fetch-site").map(lossy)
            && !site.eq_ignore_ascii_case("same-origin")
            && !site.eq_ignore_ascii_case("none")
        {
            return Err(Refusal::CrossSite { site });
        }
        // 4. Preflights, when refused: no other origin may ever send what needs one.
        let method = req.method();
        if self.refuse_preflights && method == Method::OPTIONS {
            return Err(Refusal::Preflight);
        }
        // 5. Content-Type: anything that may change state must be JSON (or an allowed non-form type), which
        // needs a CORS preflight.
        if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
            let ct = headers.get(header::CONTENT_TYPE).map(lossy).unwrap_or_default();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if !self.content_types.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
                return Err(Refusal::UnsupportedMediaType { content_type: ct });
            }
        }
        // 6. The API key, except on public paths (and, when scoped, outside its prefix).
        let path = req.uri().path();
        let keyed = match &self.key_prefix {
            Some(prefix) => path.starts_with(prefix.as_str()),
            None => !self.public.iter().any(|p| p == path),
        };
        if let Some(key) = &self.api_key
            && keyed
        {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, rest) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
                })
                .ok_or(Refusal::MissingApiKey)?;
            if !key.matches(presented) {
                return Err(Refusal::InvalidApiKey);
            }
        }
        Ok(())
    }

    /// `router` with this guard in front of every route: a refused request is answered with its
    /// [`Refusal`] (OpenAI error JSON) before any handler runs or any body is read.
    pub fn apply<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(self),
            guard_layer,
        ))
    }
}

async fn guard_layer(State(g): State<std::sync::Arc<LocalGuard>>, req: Request, next: Next) -> Response {
    match g.check(&req) {
        Ok(()) => next.run(req).await,
        Err(r) => refusal_response(&r),
    }
}

/// The OpenAI-style error answer for a refusal.
pub(crate) fn refusal_response(r: &Refusal) -> Response {
    tracing::warn!(refusal = r.kind(), "refused a request: {r}");
    let status = axum::http::StatusCode::from_u16(r.status()).unwrap_or(axum::http::StatusCode::FORBIDDEN);
    let body = serde_json::json!({"error": {"message": format!("request refused: {r}"), "type": r.kind(), "code": r.status()}});
    let mut resp = (status, axum::Json(body)).into_response();
    if matches!(r, Refusal::MissingApiKey | Refusal::InvalidApiKey)
        && let Ok(v) = header::HeaderValue::from_str("Bearer")
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> axum::http::Request<()> {
        let mut r = axum::http::Request::get(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn hosts_for_ipv6_and_the_default_port() {
        let g = LocalGuard::new("[::1]:8080".parse().unwrap());
        assert_eq!(g.allowed_hosts(), ["[::1]:8080", "localhost:8080"]);
        let g = LocalGuard::new("127.0.0.1:80".parse().unwrap());
        assert!(
            g.check(&get(
                "/",
                &[("host", "localhost"), ("origin", "http://localhost")]
            ))
            .is_ok()
        );
        // Beyond loopback only the bound address, and what the operator names.
        let g = LocalGuard::new("10.0.0.5:3001".parse().unwrap()).allow_host("gpu-box:3001");
        assert_eq!(g.allowed_hosts(), ["10.0.0.5:3001", "gpu-box:3001"]);
    }

    #[test]
    fn every_host_and_origin_value_counts_and_public_paths_skip_only_the_key() {
        let g = LocalGuard::new("127.0.0.1:3001".parse().unwrap())
            .with_api_key(ApiKey::new("sk-zg-0123456789abcdef").unwrap())
            .public_path("/healthz");
        let two_hosts = get(
            "/healthz",
            &[("host", "127.0.0.1:3001"), ("host", "evil.example:3001")],
        );
        assert_eq!(g.check(&two_hosts).unwrap_err().kind(), "forbidden_host");
        let no_host = get("/healthz", &[]);
        assert_eq!(g.check(&no_host), Err(Refusal::MissingHost));
        let two_origins = get(
            "/healthz",
            &[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://127.0.0.1:3001"),
                ("origin", "null"),
            ],
        );
        assert_eq!(g.check(&two_origins).unwrap_err().kind(), "forbidden_origin");
        assert!(g.check(&get("/healthz", &[("host", "127.0.0.1:3001")])).is_ok());
        assert_eq!(
            g.check(&get("/zg/v1/status", &[("host", "127.0.0.1:3001")])),
            Err(Refusal::MissingApiKey)
        );
        let ok = get(
            "/zg/v1/status",
            &[
                ("host", "LOCALHOST:3001"),
                ("authorization", "bearer  sk-zg-0123456789abcdef "),
            ],
        );
        assert!(g.check(&ok).is_ok());
        let prefix = get(
            "/zg/v1/status",
            &[
                ("host", "127.0.0.1:3001"),
                ("authorization", "Bearer sk-zg-0123456789abcde"),
            ],
        );
        assert_eq!(g.check(&prefix), Err(Refusal::InvalidApiKey));
    }

    #[test]
    fn a_scoped_key_an_upload_type_and_refused_preflights() {
        let key = ApiKey::new("sk-zg-0123456789abcdef").unwrap();
        let g = LocalGuard::new("127.0.0.1:4000".parse().unwrap())
            .with_api_key_under(key, "/api/")
            .allow_content_type("application/octet-stream")
            .refuse_preflights();
        let host = ("host", "127.0.0.1:4000");
        assert!(g.check(&get("/", &[host])).is_ok(), "pages need no key");
        assert_eq!(
            g.check(&get("/api/account", &[host])),
            Err(Refusal::MissingApiKey)
        );
        let post = |ct: &str| {
            axum::http::Request::post("/api/upload")
                .header("host", "127.0.0.1:4000")
                .header("authorization", "Bearer sk-zg-0123456789abcdef")
                .header("content-type", ct)
                .body(())
                .unwrap()
        };
        assert!(g.check(&post("application/octet-stream")).is_ok());
        assert!(g.check(&post("application/json; charset=utf-8")).is_ok());
        assert_eq!(
            g.check(&post("text/plain")).unwrap_err().kind(),
            "unsupported_media_type"
        );
        let pre = axum::http::Request::options("/api/upload")
            .header("host", "127.0.0.1:4000")
            .header("origin", "http://127.0.0.1:4000")
            .body(())
            .unwrap();
        assert_eq!(g.check(&pre), Err(Refusal::Preflight));
        // Without the option, a preflight passes the guard (and the router answers it).
        let plain = LocalGuard::new("127.0.0.1:4000".parse().unwrap());
        assert!(plain.check(&pre).is_ok());
    }

    #[test]
    fn keys_are_long_printable_and_never_shown_by_debug() {
        assert!(ApiKey::new("short").is_err());
        assert!(ApiKey::new("sk-zg-has a space in it").is_err());
        let k = ApiKey::generate();
        assert!(k.expose().starts_with("sk-zg-") && k.expose().len() == 6 + 43);
        assert_ne!(k, ApiKey::generate());
        assert!(!format!("{k:?}").contains(k.expose()));
        assert!(k.matches(k.expose()) && !k.matches(""));
    }
}
