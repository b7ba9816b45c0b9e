//! The crate's one error type.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while verifying a provider, paying for a request or checking its answer.
///
/// Verification failures ([`Error::is_verification_failure`]) mean the provider's answer or evidence
/// cannot be trusted: the client never hands such a response to its caller (fail closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A chain call failed (RPC unreachable, revert, ...).
    #[error("chain call {op} failed: {source}")]
    Chain {
        /// The call.
        op: &'static str,
        /// The chain error (boxed: it is large and this enum is returned on hot paths).
        #[source]
        source: Box<zg_chain::Error>,
    },
    /// The provider has no inference service registered on chain.
    #[error(
        "{provider} has no inference service on chain (check the address, or list them with `zg inference list-providers`)"
    )]
    UnknownProvider {
        /// The address asked for.
        provider: Address,
    },
    /// The customer has no sub-account with this provider and automatic top-up is off.
    #[error(
        "no sub-account with provider {provider}: fund one with `zg transfer-fund --provider {provider} --amount 1`"
    )]
    NoSubAccount {
        /// The provider.
        provider: Address,
    },
    /// The customer's ledger cannot cover the top-up the next request needs.
    #[error(
        "the sub-account with {provider} needs {needed} neuron more but the ledger has only {available} available: \
         add funds with `zg deposit --amount <0G>`"
    )]
    InsufficientFunds {
        /// The provider.
        provider: Address,
        /// What the top-up needs, neuron.
        needed: U256,
        /// Available in the customer's ledger, neuron.
        available: U256,
    },
    /// The chain client signs as another account than the request-signing key.
    #[error(
        "the chain client signs as {chain:?} but the request key is {key}; connect zg-chain with the same key"
    )]
    SignerMismatch {
        /// The chain client's signer (None: it has none).
        chain: Option<Address>,
        /// The request-signing key's address.
        key: Address,
    },
    /// HTTP transport failure talking to the provider.
    #[error("HTTP {op} {url} failed: {reason}")]
    Http {
        /// What was attempted.
        op: &'static str,
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// gRPC transport failure talking to the provider (connect, or the stream broke at the transport level).
    #[error("gRPC {op} {url} failed: {reason}")]
    Grpc {
        /// What was attempted.
        op: &'static str,
        /// The provider's gRPC URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// `transport = grpc` but the provider's service advertises no usable gRPC endpoint (a plaintext
    /// `http://` URL under `grpc` in its on-chain `additionalInfo`).
    #[error(
        "provider {provider} advertises no gRPC endpoint (no plaintext `grpc` URL in its additionalInfo); \
         use transport auto or http, or name one with --provider-grpc-url"
    )]
    NoGrpcEndpoint {
        /// The provider.
        provider: Address,
    },
    /// The provider refused the request (its status and error body).
    #[error("provider answered {status} ({kind}): {message}")]
    Provider {
        /// HTTP status (over gRPC: the provider's `zg-http-status` metadata, else the code's HTTP equivalent).
        status: u16,
        /// The provider's error type (`insufficient_balance`, `nonce_replayed`, `unauthenticated`, ...).
        kind: String,
        /// The provider's message.
        message: String,
    },
    /// The provider's attestation did not pass the policy; the report says which check failed.
    #[error("attestation of {provider} failed: {check}")]
    AttestationFailed {
        /// The provider.
        provider: Address,
        /// The first failed check (`name: expected …, found …`).
        check: String,
        /// The whole report.
        report: Box<zg_attestation::VerificationReport>,
    },
    /// The evidence came from the simulated backend and simulated TEEs were not explicitly allowed.
    #[error(
        "provider {provider} runs a SIMULATED TEE (no hardware protection); refusing it. \
         Pass --allow-simulated (ZG_ALLOW_SIMULATED=1) only for local development"
    )]
    SimulatedRefused {
        /// The provider.
        provider: Address,
    },
    /// The evidence could not be parsed.
    #[error("attestation evidence of {provider} is malformed: {reason}")]
    Evidence {
        /// The provider.
        provider: Address,
        /// Why.
        reason: String,
    },
    /// The provider has not been verified in this data dir (or its keys changed since).
    #[error("provider {provider} is not verified: run `zg inference verify --provider {provider}` first")]
    NotVerified {
        /// The provider.
        provider: Address,
    },
    /// A successful response came without a receipt.
    #[error("the provider's response carries no receipt (fail closed: the response is discarded)")]
    MissingReceipt,
    /// A receipt is malformed, signed by the wrong key, or does not cover the bytes received.
    #[error("receipt verification failed: {0}")]
    ReceiptInvalid(String),
    /// The receipt's fee is not what the on-chain prices give for its usage, or exceeds the signed cap.
    #[error(
        "receipt charges {charged} neuron, but {usage_prompt}+{usage_completion} tokens at the on-chain prices cost {expected}"
    )]
    FeeMismatch {
        /// Fee in the receipt.
        charged: U256,
        /// What the prices give.
        expected: U256,
        /// Prompt tokens in the receipt.
        usage_prompt: u64,
        /// Completion tokens in the receipt.
        usage_completion: u64,
    },
    /// The stream ended or broke before its receipt arrived.
    #[error("the response stream ended without a receipt: {0}")]
    StreamIncomplete(String),
    /// Local state (the per-provider ledger of vouchers and nonces) could not be read or written.
    #[error("client state {op} {path}: {reason}")]
    Store {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Signing failed (request, voucher or session token).
    #[error("signing failed: {0}")]
    Signing(#[from] zg_billing::Error),
    /// Bad input from the caller (body not JSON, bad argument).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The provider's on-chain `teeSignerAddress` is no longer the signer this data dir verified. Nothing is
    /// sent to it and no funds are moved until a fresh attestation binds the new signer.
    #[error(
        "provider {provider} changed its on-chain TEE signer from {verified} (verified) to {on_chain}: refusing to \
         send or top up until the new signer is verified; run `zg inference verify --provider {provider}` \
         (and `zg inference acknowledge-provider` before any TEE-batch settlement)"
    )]
    SignerChanged {
        /// The provider.
        provider: Address,
        /// The signer bound by the last attestation this data dir accepted.
        verified: Address,
        /// The signer registered on chain now.
        on_chain: Address,
    },
    /// A provider's body exceeded the size limit (a provider is anyone registered on chain).
    #[error(
        "the provider's {what} exceeds {limit} bytes; stopped reading (raise ClientConfig::max_response_bytes if it is legitimate)"
    )]
    ResponseTooLarge {
        /// Which body (`answer`, `attestation`, `stream`).
        what: &'static str,
        /// The limit, bytes.
        limit: u64,
    },
    /// A provider's body did not arrive in time (a slow drip holds a connection and the caller).
    #[error(
        "the provider's {what} did not complete within {} s; stopped reading (ClientConfig::timeout / stream_timeout)",
        after.as_secs_f64()
    )]
    ResponseTimeout {
        /// Which body (`answer`, `attestation`, `stream`).
        what: &'static str,
        /// The time bound that elapsed.
        after: std::time::Duration,
    },
    /// A local gateway refused a request before doing anything for it (see [`Refusal`]).
    #[error("request refused: {0}")]
    Refused(#[from] Refusal),
}

/// Why a local gateway ([`crate::LocalGuard`]) refused a request. Each has a stable [`Refusal::kind`] name
/// that the gateway returns as the OpenAI error `type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No `Host` header (HTTP/1.1 requires one; browsers always send it).
    #[error("the request has no Host header")]
    MissingHost,
    /// The `Host` is not the address the gateway is bound to: a DNS-rebinding page, or a proxy.
    #[error("Host {host:?} is not this gateway's address ({allowed}); DNS-rebinding protection")]
    ForeignHost {
        /// The Host received.
        host: String,
        /// The Hosts accepted, comma-separated.
        allowed: String,
    },
    /// A browser sent the request from another origin (a web page spending your funds).
    #[error("Origin {origin:?} is not this gateway's origin ({allowed}); cross-origin requests are refused")]
    ForeignOrigin {
        /// The Origin received.
        origin: String,
        /// The origins accepted, comma-separated.
        allowed: String,
    },
    /// A browser marked the request as coming from another site (`Sec-Fetch-Site`).
    #[error("Sec-Fetch-Site {site:?}: requests from other sites are refused")]
    CrossSite {
        /// The header's value.
        site: String,
    },
    /// A POST whose body is not declared JSON (HTML forms and no-cors fetches can only send
    /// `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`).
    #[error("Content-Type {content_type:?} is not application/json")]
    UnsupportedMediaType {
        /// The Content-Type received (empty when absent).
        content_type: String,
    },
    /// The gateway requires an API key and none was sent.
    #[error(
        "no API key: send `Authorization: Bearer <key>` (the key `zg serve` printed at start, e.g. OPENAI_API_KEY)"
    )]
    MissingApiKey,
    /// The API key sent is not the gateway's.
    #[error("wrong API key (use the key `zg serve` printed at start, or the one in ZG_SERVE_API_KEY)")]
    InvalidApiKey,
    /// A CORS preflight (`OPTIONS`) to an endpoint that grants none ([`crate::LocalGuard::refuse_preflights`]).
    #[error("CORS preflight refused: this endpoint lets no other origin call it")]
    Preflight,
}

impl Refusal {
    /// The stable name of the refusal (the OpenAI error `type` the gateway answers with).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::MissingHost | Refusal::ForeignHost { .. } => "forbidden_host",
            Refusal::ForeignOrigin { .. } => "forbidden_origin",
            Refusal::CrossSite { .. } => "forbidden_cross_site",
            Refusal::UnsupportedMediaType { .. } => "unsupported_media_type",
            Refusal::MissingApiKey => "missing_api_key",
            Refusal::InvalidApiKey => "invalid_api_key",
            Refusal::Preflight => "forbidden_preflight",
        }
    }

    /// The HTTP status to answer with: 401 for keys, 415 for the media type, 403 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MissingApiKey | Refusal::InvalidApiKey => 401,
            Refusal::UnsupportedMediaType { .. } => 415,
            _ => 403,
        }
    }
}

impl Error {
    /// Whether the provider's evidence or answer failed verification (never retry blindly; report it).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::AttestationFailed { .. }
                | Error::SimulatedRefused { .. }
                | Error::Evidence { .. }
                | Error::MissingReceipt
                | Error::ReceiptInvalid(_)
                | Error::FeeMismatch { .. }
        )
    }

    /// Whether the provider said the account lacks funds (top up and retry).
    pub fn is_insufficient_balance(&self) -> bool {
        matches!(self, Error::InsufficientFunds { .. } | Error::NoSubAccount { .. })
            || matches!(self, Error::Provider { kind, .. } if kind == "insufficient_balance")
    }

    /// Whether retrying the same call later may succeed (transport errors, saturation).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Http { .. })
            || matches!(self, Error::Provider { status, .. } if *status == 429 || *status == 503)
    }

    pub(crate) fn chain(op: &'static str) -> impl FnOnce(zg_chain::Error) -> Error {
        move |source| Error::Chain {
            op,
            source: Box::new(source),
        }
    }

    pub(crate) fn store(op: &'static str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
        Error::Store {
            op,
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }
}
