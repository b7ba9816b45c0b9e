//! The page itself: one HTML shell, one script, one stylesheet and an icon, compiled into the binary with
//! `include_str!` (no build step, no Node, no CDN; the page works on a machine with no network at all).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON: &str = include_str!("../assets/icon.svg");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets are part of the binary: a new binary is a new page, so never serve a stale one.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `/`, `/app.js`, `/app.css`, `/icon.svg`. Pages are routed in the page (`#/account`, `#/providers`, ...).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/icon.svg", get(|| async { asset(ICON, "image/svg+xml") }))
}

/// Total size of the embedded assets, bytes (reported by the size figure in ARCHITECTURE.md).
pub const ASSET_BYTES: usize = INDEX.len() + APP_JS.len() + APP_CSS.len() + ICON.len();
