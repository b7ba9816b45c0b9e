//! The crate's one error type and its two boundary mappings: HTTP (`IntoResponse`) and gRPC (`Status`).

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the provider can refuse or fail with. Client faults carry what was wrong; internal
/// failures are logged with their chain and answered with a generic message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither `Authorization: Bearer app-sk-…` nor a `ZG-Request` envelope was sent.
    #[error(
        "missing credentials: send `Authorization: Bearer app-sk-…` (0G session token) or a `ZG-Request` header"
    )]
    NoCredentials,
    /// The session token or signed request was refused, or admission failed (balance, nonce, …).
    #[error(transparent)]
    Billing(#[from] zg_billing::Error),
    /// The authenticated customer asked about another customer.
    #[error("token of {token_user} cannot read the account of {asked}")]
    Forbidden {
        /// The token's address.
        token_user: alloy_primitives::Address,
        /// The address in the path.
        asked: String,
    },
    /// Every request slot is taken: retry later.
    #[error("provider is saturated ({limit} requests in flight); retry after {retry_after_secs} s")]
    Saturated {
        /// The concurrency limit.
        limit: usize,
        /// Seconds the client should wait.
        retry_after_secs: u64,
    },
    /// A peer asked for more of something costly than its allowance.
    #[error("too many {what}; retry after {retry_after_secs} s")]
    RateLimited {
        /// What was limited.
        what: &'static str,
        /// Seconds until the next one is allowed.
        retry_after_secs: u64,
    },
    /// The request body is larger than the provider accepts.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body did not arrive in time.
    #[error("request body did not arrive within {secs} s")]
    BodyTimeout {
        /// The limit in seconds.
        secs: u64,
    },
    /// The request itself is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Nothing under this key/route.
    #[error("{0} not found")]
    NotFound(String),
    /// The upstream model server could not be reached or broke the connection.
    #[error("upstream {url} failed: {reason}")]
    Upstream {
        /// The upstream URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The upstream did not answer within the per-request timeout.
    #[error("upstream did not answer within {secs} s (raise `upstream.timeout_secs` / --upstream-timeout)")]
    UpstreamTimeout {
        /// The timeout.
        secs: u64,
    },
    /// A chain call failed.
    #[error("chain call {op} failed: {source}")]
    Chain {
        /// What was being done.
        op: &'static str,
        /// The chain client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TEE backend failed.
    #[error("TEE backend failed: {0}")]
    Attestation(#[from] zg_attestation::Error),
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An adapter operation was refused, or a request named an adapter it may not use: `code` names the
    /// problem (`model_not_found`, `adapter_name_taken`, `adapter_limit`, `peer_attestation_refused`, `provider_nonce_unknown`,
    /// ...; see bins/provider/README.md "Adapters"), `status` is the HTTP status it maps to (403, 404, 400, 412,
    /// 413, 408, 503).
    #[error("{message}")]
    Adapter {
        /// Stable machine-readable code (HTTP `error.type`, gRPC `zg-error-type`).
        code: &'static str,
        /// HTTP status (gRPC: 403 PermissionDenied, 404 NotFound, 400/413 InvalidArgument, 412
        /// FailedPrecondition, 408 DeadlineExceeded, 503 Unavailable, 429 ResourceExhausted).
        status: StatusCode,
        /// What was wrong and what to do.
        message: String,
    },
    /// A configuration value is unusable.
    #[error("invalid config `{field}` = {value:?}: {fix}")]
    Config {
        /// Config key (and its flag / env var).
        field: &'static str,
        /// Its value.
        value: String,
        /// How to fix it.
        fix: String,
    },
}

impl Error {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        use zg_billing::Error as B;
        match self {
            Error::NoCredentials => StatusCode::UNAUTHORIZED,
            Error::Billing(e) => match e {
                B::TokenPrefix
                | B::TokenBase64(_)
                | B::TokenNoSeparator
                | B::TokenJson(_)
                | B::TokenWrongProvider { .. }
                | B::TokenExpired { .. }
                | B::TokenFutureDated { .. }
                | B::TokenLifetime { .. }
                | B::TokenWrongGeneration { .. }
                | B::TokenRevoked { .. }
                | B::TokenTooOld { .. }
                | B::BadSignature { .. }
                | B::SignatureFormat(_) => StatusCode::UNAUTHORIZED,
                B::InsufficientBalance { .. }
                | B::UnknownAccount { .. }
                | B::VoucherBehind { .. }
                | B::FeeCapBelowBound { .. } => StatusCode::PAYMENT_REQUIRED,
                B::TeeSignerNotAcknowledged { .. } => StatusCode::FORBIDDEN,
                B::NonceReplayed { .. } | B::NonceTooOld { .. } | B::VoucherRegressed { .. } => {
                    StatusCode::CONFLICT
                }
                e if e.is_client_fault() => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::Saturated { .. } | Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Chain { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Adapter { status, .. } => *status,
            Error::Attestation(_) | Error::Io { .. } | Error::Config { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Stable machine-readable code used in error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Billing(zg_billing::Error::FeeCapBelowBound { .. }) => return "fee_cap_too_low",
            Error::Billing(zg_billing::Error::TeeSignerNotAcknowledged { .. }) => {
                return "tee_signer_not_acknowledged";
            }
            Error::RateLimited { .. } => return "rate_limited",
            Error::Adapter { code, .. } => return code,
            Error::BodyTooLarge { .. } => return "body_too_large",
            Error::BodyTimeout { .. } => return "body_timeout",
            _ => {}
        }
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::PAYMENT_REQUIRED => "insufficient_balance",
            StatusCode::CONFLICT => "nonce_replayed",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::TOO_MANY_REQUESTS => "saturated",
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => "upstream_error",
            StatusCode::SERVICE_UNAVAILABLE => "chain_unavailable",
            _ => "internal",
        }
    }

    /// The message a client may see: the error itself for client faults, a generic text otherwise.
    pub fn public_message(&self) -> String {
        if self.status().is_server_error()
            && !matches!(self, Error::Upstream { .. } | Error::UpstreamTimeout { .. })
        {
            "internal error (logged by the provider)".to_owned()
        } else {
            self.to_string()
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let body = serde_json::json!({"error": {"message": self.public_message(), "type": self.code(), "code": status.as_u16()}});
        let mut resp = (status, axum::Json(body)).into_response();
        if let Error::Saturated { retry_after_secs, .. } | Error::RateLimited { retry_after_secs, .. } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match e.status() {
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::PAYMENT_REQUIRED | StatusCode::CONFLICT => Code::FailedPrecondition,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Code::InvalidArgument,
            StatusCode::PRECONDITION_FAILED => Code::FailedPrecondition,
            StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
            _ => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "gRPC request failed");
        }
        let mut status = tonic::Status::new(code, e.public_message());
        // The HTTP status and error type, so gRPC clients name a refusal exactly as HTTP clients do (402 and
        // 409 share FailedPrecondition). Both are ASCII, so the values always parse.
        let meta = status.metadata_mut();
        if let Ok(v) = e.status().as_u16().to_string().parse() {
            meta.insert("zg-http-status", v);
        }
        if let Ok(v) = e.code().parse() {
            meta.insert("zg-error-type", v);
        }
        status
    }
}
