//! What a [`crate::Client`] is told: where it keeps its state, whom it trusts, how it funds, and the bounds
//! on everything it reads from a provider.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::U256;
use zg_attestation::{AttestationPolicy, Collateral};
use zg_chain::Amount;

/// When and how much the client moves from the ledger into a provider's sub-account.
///
/// Before each request the client makes sure that the sub-account's balance, minus pending refunds and
/// minus what it already owes (`owed − paid on chain`), covers the request's fee cap plus `min_headroom`;
/// when it does not, it transfers `refill` (or the shortfall, if larger). The official 0G SDK does the
/// same with "unsettled fee + 2 0G". Nothing is transferred to a provider whose on-chain TEE signer is not
/// the one this client verified ([`crate::Error::SignerChanged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUpPolicy {
    /// Top up automatically (off: a short sub-account is an error naming `zg transfer-fund`).
    pub enabled: bool,
    /// Headroom kept above the next request's fee cap, neuron.
    pub min_headroom: U256,
    /// Amount moved per top-up, neuron.
    pub refill: U256,
}

impl Default for TopUpPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            min_headroom: Amount::from_zg(1).0 / U256::from(10u64),
            refill: Amount::from_zg(2).0,
        }
    }
}

/// How native (signed, receipted) requests reach a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// gRPC (`zg.v1.Provider/Chat`) when the service advertises a plaintext `grpc` URL in its on-chain
    /// `additionalInfo` (or [`ClientConfig::grpc_url_override`] names one), HTTP otherwise.
    #[default]
    Auto,
    /// Always the HTTP API (`/v1/proxy/...`).
    Http,
    /// Always gRPC; a service without a gRPC endpoint is an error ([`crate::Error::NoGrpcEndpoint`]).
    Grpc,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Transport::Auto),
            "http" => Ok(Transport::Http),
            "grpc" => Ok(Transport::Grpc),
            other => Err(format!("transport {other:?}: use auto, http or grpc")),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Auto => "auto",
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        })
    }
}

/// Settings of a [`crate::Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where nonces, vouchers, verified keys and receipts are kept (one directory per customer).
    pub data_dir: PathBuf,
    /// Attestation policy; the nonce and expected signer are filled in per verification.
    pub policy: AttestationPolicy,
    /// Intel collateral for real TDX quotes (not needed for simulated evidence).
    pub collateral: Option<Arc<Collateral>>,
    /// Funding policy.
    pub top_up: TopUpPolicy,
    /// Completion tokens assumed for the fee cap when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Per-request HTTP timeout: connecting and the response head, and then the whole body of a
    /// non-streamed answer, an attestation document or an error.
    pub timeout: Duration,
    /// A streamed answer must end (with its receipt) within this.
    pub stream_timeout: Duration,
    /// Largest body read from a provider: an answer, a whole stream, an attestation document. A provider is
    /// anyone registered on chain, so nothing it sends is read without a bound.
    pub max_response_bytes: u64,
    /// How often the on-chain `teeSignerAddress` of a provider in use is read again (also after every
    /// answer that fails verification). When it changed, nothing is sent or topped up until a fresh
    /// attestation binds the new signer.
    pub signer_check_interval: Duration,
    /// Use this base URL instead of the registered service URL (tests, SSH tunnels). The attestation is
    /// still checked against the on-chain signer, so a wrong URL cannot impersonate a provider.
    pub url_override: Option<String>,
    /// Which API carries native requests (default [`Transport::Auto`]). Attestation always uses HTTP.
    pub transport: Transport,
    /// Use this gRPC URL (`http://host:port`) instead of the one the service advertises (tests, tunnels).
    pub grpc_url_override: Option<String>,
}

impl ClientConfig {
    /// Defaults for `data_dir`: production policy, top-up on, 1024 tokens, 120 s per request, 10 min per
    /// stream, transport auto, 64 MiB per body, the on-chain signer re-read every 30 s.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            policy: AttestationPolicy::default(),
            collateral: None,
            top_up: TopUpPolicy::default(),
            default_max_tokens: 1024,
            timeout: Duration::from_secs(120),
            stream_timeout: Duration::from_secs(600),
            max_response_bytes: 64 * 1024 * 1024,
            signer_check_interval: Duration::from_secs(30),
            url_override: None,
            transport: Transport::Auto,
            grpc_url_override: None,
        }
    }

    /// DANGEROUS: accept providers on the simulated TEE backend (local development only). Every
    /// verification of such a provider logs a loud warning and its report says SIMULATED.
    pub fn dangerous_allow_simulated(mut self, allow: bool) -> Self {
        self.policy.dangerous_allow_simulated = allow;
        self
    }
}
