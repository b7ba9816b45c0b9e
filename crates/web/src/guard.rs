//! The local-origin guard: every request must name this server as its Host, come from no other Origin, and every
//! `/api/` call must carry the session token; state-changing calls must also send a non-form Content-Type.
//!
//! Who can reach the dashboard, and the worst each could do without this guard:
//! - **Any web page the customer visits** (cross-origin): a `<form method=post>` or `fetch(..., {mode:
//!   "no-cors"})` to `http://127.0.0.1:4000/api/tx/send` would move funds. Refused three ways: the Origin check,
//!   the session token (a page on another origin cannot read it, and cannot send an `Authorization` header
//!   without a CORS preflight this server never grants), and the Content-Type rule (forms can only send
//!   `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`).
//! - **A DNS-rebinding page** (`evil.example` re-resolved to 127.0.0.1, so the browser treats our server as
//!   same-origin with it): it could read `/api/session` and then spend. Refused by the Host check on every
//!   request, including the static pages, so it cannot even load the app shell.
//! - **Another local user or process** (anything can connect to 127.0.0.1): without the token, which `zg web`
//!   prints only to the terminal that started it, every `/api/` call is refused (reads too: balances and
//!   addresses are private).
//!
//! CORS preflights (`OPTIONS`) are never answered with `Access-Control-Allow-*`, so a browser never lets another
//! origin send the token header at all. The comparison of tokens is constant-time.
//!
//! The decision is zg-client's [`LocalGuard`], the one guard `zg serve` uses too (session token = its API key,
//! required under `/api/`; `application/octet-stream` allowed for dataset uploads; preflights refused); this module
//! only renders its refusals the dashboard's way and adds the security headers.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use zg_client::{ApiKey, LocalGuard};

/// The header the page sends the session token in, as `Bearer <token>` (the same as `zg serve`'s API key).
pub const TOKEN_HEADER: &str = "authorization";

/// What the guard accepts. Built once at start from the bound port and the session token.
#[derive(Clone, Debug)]
pub struct GuardRules {
    // `LocalGuard`'s `Debug` never prints the key.
    guard: Arc<LocalGuard>,
}

/// Why the guard refused a request (the text tells a developer what to fix; it never echoes the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The Host header is not this server (DNS rebinding, or a proxy in front).
    Host,
    /// The Origin header is another site.
    Origin,
    /// The browser says the request is cross-site.
    CrossSite,
    /// No or a wrong session token.
    Token,
    /// A state-changing call with a form-like Content-Type.
    ContentType,
    /// A CORS preflight: never allowed.
    Preflight,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Token => StatusCode::UNAUTHORIZED,
            Refusal::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Host => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Host => {
                "refused: the Host header does not name this dashboard (open it at http://127.0.0.1:PORT/)"
            }
            Refusal::Origin => {
                "refused: cross-origin request (only this dashboard's own pages may call its API)"
            }
            Refusal::CrossSite => "refused: cross-site request",
            Refusal::Token => {
                "refused: missing or wrong session token (open the URL `zg web` printed; it carries the token)"
            }
            Refusal::ContentType => "refused: state-changing calls must send Content-Type: application/json",
            Refusal::Preflight => "refused: this dashboard answers no CORS preflight",
        }
    }

    /// A stable code for the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Host => "bad_host",
            Refusal::Origin => "bad_origin",
            Refusal::CrossSite => "cross_site",
            Refusal::Token => "bad_token",
            Refusal::ContentType => "bad_content_type",
            Refusal::Preflight => "preflight",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.message()}});
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<zg_client::Refusal> for Refusal {
    fn from(r: zg_client::Refusal) -> Self {
        use zg_client::Refusal as R;
        match r {
            R::MissingHost | R::ForeignHost { .. } => Refusal::Host,
            R::ForeignOrigin { .. } => Refusal::Origin,
            R::CrossSite { .. } => Refusal::CrossSite,
            R::UnsupportedMediaType { .. } => Refusal::ContentType,
            R::MissingApiKey | R::InvalidApiKey => Refusal::Token,
            R::Preflight => Refusal::Preflight,
            // A refusal this dashboard does not know yet is still a refusal (fail closed).
            _ => Refusal::Origin,
        }
    }
}

impl GuardRules {
    /// Rules for a server on loopback `port`, with `token` as the session token (at least
    /// [`ApiKey::MIN_LEN`] printable characters; the dashboard draws 64 hex digits).
    pub fn new(port: u16, token: &str) -> Result<Self, String> {
        let mut guard = LocalGuard::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        // The dashboard is reachable over IPv6 loopback too.
        let v6 = LocalGuard::new(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        for h in v6.allowed_hosts().iter().filter(|h| h.starts_with('[')) {
            guard = guard.allow_host(h.clone());
        }
        let guard = guard
            .with_api_key_under(ApiKey::new(token)?, "/api/")
            .allow_content_type("application/octet-stream")
            .refuse_preflights();
        Ok(Self {
            guard: Arc::new(guard),
        })
    }

    /// Checks one request's method, path and headers (never its body).
    pub fn check(&self, method: &Method, path: &str, h: &HeaderMap) -> Result<(), Refusal> {
        let mut req = axum::http::Request::new(());
        *req.method_mut() = method.clone();
        *req.uri_mut() = path.parse().map_err(|_| Refusal::Host)?;
        *req.headers_mut() = h.clone();
        self.check_request(&req)
    }

    fn check_request<B>(&self, req: &axum::http::Request<B>) -> Result<(), Refusal> {
        self.guard.check(req).map_err(Refusal::from)
    }
}

/// The axum middleware applying [`GuardRules`], plus the security headers every answer carries.
pub(crate) async fn guard(State(rules): State<GuardRules>, req: Request, next: Next) -> Response {
    if let Err(r) = rules.check_request(&req) {
        tracing::warn!(
            refusal = r.code(),
            method = %req.method(),
            path = req.uri().path(),
            "zg web refused a request"
        );
        let mut resp = r.into_response();
        security_headers(resp.headers_mut(), true);
        return resp;
    }
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    security_headers(resp.headers_mut(), api);
    resp
}

/// No framing, no sniffing, no referrer, scripts and styles from this server only; API answers are not cached.
fn security_headers(h: &mut HeaderMap, no_store: bool) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             font-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if no_store {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const TOKEN: &str = "t0ken-0123456789abcdef";
    const BEARER: &str = "Bearer t0ken-0123456789abcdef";

    #[track_caller]
    fn check(method: Method, path: &str, pairs: &[(&'static str, &str)], want: Result<(), Refusal>) {
        let rules = GuardRules::new(4000, TOKEN).unwrap();
        assert_eq!(
            rules.check(&method, path, &headers(pairs)),
            want,
            "{method} {path} {pairs:?}"
        );
    }

    #[test]
    fn rules() {
        let ok_post = [
            ("host", "127.0.0.1:4000"),
            ("origin", "http://127.0.0.1:4000"),
            (TOKEN_HEADER, BEARER),
            ("content-type", "application/json"),
        ];
        check(Method::POST, "/api/tx/send", &ok_post, Ok(()));
        check(Method::GET, "/", &[("host", "localhost:4000")], Ok(()));
        check(
            Method::GET,
            "/",
            &[("host", "evil.example:4000")],
            Err(Refusal::Host),
        );
        check(
            Method::GET,
            "/",
            &[("host", "127.0.0.1:4001")],
            Err(Refusal::Host),
        );
        check(Method::GET, "/", &[], Err(Refusal::Host));
        check(
            Method::POST,
            "/api/tx/send",
            &[
                ("host", "127.0.0.1:4000"),
                ("origin", "http://evil.example"),
                (TOKEN_HEADER, BEARER),
                ("content-type", "application/json"),
            ],
            Err(Refusal::Origin),
        );
        check(
            Method::POST,
            "/api/tx/send",
            &[
                ("host", "127.0.0.1:4000"),
                ("origin", "null"),
                (TOKEN_HEADER, BEARER),
                ("content-type", "application/json"),
            ],
            Err(Refusal::Origin),
        );
        check(
            Method::POST,
            "/api/tx/send",
            &[("host", "127.0.0.1:4000"), ("content-type", "application/json")],
            Err(Refusal::Token),
        );
        check(
            Method::POST,
            "/api/tx/send",
            &[
                ("host", "127.0.0.1:4000"),
                (TOKEN_HEADER, "Bearer t0ken-0123456789abcdeX"),
                ("content-type", "application/json"),
            ],
            Err(Refusal::Token),
        );
        check(
            Method::POST,
            "/api/tx/send",
            &[
                ("host", "127.0.0.1:4000"),
                (TOKEN_HEADER, BEARER),
                ("content-type", "text/plain"),
            ],
            Err(Refusal::ContentType),
        );
        check(
            Method::GET,
            "/api/account",
            &[
                ("host", "127.0.0.1:4000"),
                ("sec-fetch-site", "cross-site"),
                (TOKEN_HEADER, BEARER),
            ],
            Err(Refusal::CrossSite),
        );
        check(
            Method::OPTIONS,
            "/api/tx/send",
            &[("host", "127.0.0.1:4000"), ("origin", "http://127.0.0.1:4000")],
            Err(Refusal::Preflight),
        );
        check(
            Method::GET,
            "/api/account",
            &[("host", "127.0.0.1:4000")],
            Err(Refusal::Token),
        );
    }

    #[test]
    fn port_80_accepts_a_portless_host_and_no_other_port_does() {
        let h = |v: &str| headers(&[("host", v)]);
        assert_eq!(
            GuardRules::new(80, TOKEN)
                .unwrap()
                .check(&Method::GET, "/", &h("127.0.0.1")),
            Ok(())
        );
        assert_eq!(
            GuardRules::new(80, TOKEN)
                .unwrap()
                .check(&Method::GET, "/", &h("localhost:80")),
            Ok(())
        );
        assert_eq!(
            GuardRules::new(4000, TOKEN)
                .unwrap()
                .check(&Method::GET, "/", &h("127.0.0.1")),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn debug_never_prints_the_token() {
        let rules = GuardRules::new(1, "s3cret-token-0123456789").unwrap();
        assert!(!format!("{rules:?}").contains("s3cret"));
        assert!(GuardRules::new(1, "short").is_err(), "a short token is refused");
    }
}
