//! The crate's error type, and how an error reaches the page: JSON `{"error": {"code", "message"}}` whose message
//! is the same actionable text the CLI prints (it names the fix).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Errors of `zg-web`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The port could not be bound.
    #[error(
        "cannot listen on 127.0.0.1:{port}: {source} (pick another --port / ZG_WEB_PORT, or 0 for any free port)"
    )]
    Bind {
        /// The port asked for.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("the dashboard server failed: {0}")]
    Serve(std::io::Error),
    /// A client-side fault in what the page sent (bad amount, unknown provider, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The customer SDK failed (chain, provider, verification).
    #[error(transparent)]
    Client(#[from] zg_client::Error),
    /// The chain client failed.
    #[error(transparent)]
    Chain(#[from] zg_chain::Error),
    /// An HTTP call to a provider or metrics endpoint failed.
    #[error("{what}: {reason}")]
    Upstream {
        /// What was being fetched.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the fault is in the request (4xx) rather than in the network or our side.
    pub fn is_client_fault(&self) -> bool {
        match self {
            Error::BadRequest(_) => true,
            Error::Client(e) => matches!(e, zg_client::Error::InvalidInput(_)) || e.is_insufficient_balance(),
            Error::Chain(e) => matches!(
                e,
                zg_chain::Error::InsufficientLedgerBalance { .. } | zg_chain::Error::Reverted { .. }
            ),
            _ => false,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Client(e) if e.is_verification_failure() => "verification_failed",
            Error::Client(e) if e.is_insufficient_balance() => "insufficient_balance",
            Error::Client(_) => "client_error",
            Error::Chain(zg_chain::Error::Reverted { .. }) => "reverted",
            Error::Chain(zg_chain::Error::InsufficientLedgerBalance { .. }) => "insufficient_balance",
            Error::Chain(_) => "chain_error",
            Error::Upstream { .. } => "upstream_error",
            Error::Bind { .. } | Error::Serve(_) => "server_error",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = if self.is_client_fault() {
            StatusCode::BAD_REQUEST
        } else if matches!(self, Error::Client(ref e) if e.is_verification_failure()) {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_GATEWAY
        };
        tracing::warn!(error = %self, "dashboard call failed");
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        (status, Json(body)).into_response()
    }
}
