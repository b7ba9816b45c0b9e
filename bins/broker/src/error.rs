//! The crate's one error type and its two boundary mappings: HTTP (`IntoResponse`, 0G's `{"error": …}` body
//! plus a `code`) and gRPC (`Status`). Client faults say what was wrong; internal failures are logged with
//! their chain and answered with a generic message.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the broker can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline refused or failed (client faults carry a 4xx status and a code).
    #[error(transparent)]
    Task(#[from] zg_finetune::Error),
    /// A request is malformed at the transport level (path, body shape).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A configuration value is unusable; `fix` says what to change.
    #[error("config {field} = {value:?}: {fix}")]
    Config {
        /// The key.
        field: &'static str,
        /// The value given.
        value: String,
        /// The fix (names the flag and env var).
        fix: String,
    },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// Operation.
        op: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A chain call failed.
    #[error("chain: {op}: {source}")]
    Chain {
        /// Operation.
        op: &'static str,
        /// Cause.
        source: Box<zg_chain::Error>,
    },
    /// The TEE backend failed.
    #[error("TEE backend: {0}")]
    Tee(#[from] zg_attestation::Error),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] zg_storage::Error),
    /// A deploy authorization is not the customer's permission for this broker, now.
    #[error("deploy authorization refused: {0}")]
    DeployAuthorization(String),
    /// The task cannot be deployed (not acknowledged, not a LoRA adapter, nothing kept); `reason` says why and
    /// what to do.
    #[error("{reason}")]
    NotDeployable {
        /// The task id.
        task: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The inference provider is not one this broker can deploy to (no service on chain, no gRPC endpoint).
    #[error("inference provider {provider}: {reason}")]
    ProviderUnknown {
        /// Its address.
        provider: alloy_primitives::Address,
        /// Why.
        reason: String,
    },
    /// The inference provider failed the mutual attestation check: its evidence, its signer or its challenge
    /// signature. Nothing was sent to it.
    #[error("inference provider {provider} is not trusted: {reason}")]
    ProviderUntrusted {
        /// Its address.
        provider: alloy_primitives::Address,
        /// The failing check.
        reason: String,
    },
    /// The inference provider could not be reached, answered out of bounds (size, time) or refused the
    /// deployment.
    #[error("inference provider {provider} ({url}): {op}: {reason}")]
    ProviderFailed {
        /// Its address.
        provider: alloy_primitives::Address,
        /// The gRPC URL used.
        url: String,
        /// The step (`connect`, `Challenge`, `Deploy`).
        op: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Task(e) => e.status(),
            Self::BadRequest(_) => 400,
            Self::DeployAuthorization(_) | Self::ProviderUntrusted { .. } => 403,
            Self::ProviderUnknown { .. } => 404,
            Self::NotDeployable { .. } => 412,
            // A remote party's failure: said to the caller (it names no secret of ours).
            Self::ProviderFailed { .. } => 502,
            _ => 500,
        }
    }

    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Task(e) => e.code(),
            Self::BadRequest(_) => "invalid_request",
            Self::Config { .. } => "config",
            Self::Io { .. } => "io",
            Self::Chain { .. } => "chain",
            Self::Tee(_) => "tee",
            Self::Storage(_) => "storage",
            Self::DeployAuthorization(_) => "deploy_authorization",
            Self::NotDeployable { .. } => "not_deployable",
            Self::ProviderUnknown { .. } => "provider_unknown",
            Self::ProviderUntrusted { .. } => "provider_untrusted",
            Self::ProviderFailed { .. } => "provider_failed",
        }
    }

    /// The message a client sees: the error for client faults, a generic line otherwise.
    pub fn public_message(&self) -> String {
        if self.status() < 500 || matches!(self, Self::ProviderFailed { .. }) {
            self.to_string()
        } else {
            tracing::error!(error = %self, "internal error");
            format!(
                "internal error ({}); the operator's log has the details",
                self.code()
            )
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": self.public_message(), "code": self.code()});
        (status, axum::Json(body)).into_response()
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match e.status() {
            400 | 413 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            502 => Code::Unavailable,
            402 | 409 | 412 => Code::FailedPrecondition,
            404 => Code::NotFound,
            429 => Code::ResourceExhausted,
            503 => Code::Unavailable,
            _ => Code::Internal,
        };
        let mut st = tonic::Status::new(code, e.public_message());
        if let Ok(v) = e.code().parse() {
            st.metadata_mut().insert("zg-error-code", v);
        }
        st
    }
}
