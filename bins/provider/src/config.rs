//! Configuration: a TOML file (`zg-provider init` writes a commented one), overridden by
//! `ZG_PROVIDER_*` environment variables, overridden by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use serde::Deserialize;

use crate::core::Limits;
use crate::error::{Error, Result};
use crate::tee::{BackendChoice, GpuChoice};

/// The commented config `zg-provider init` writes.
pub const CONFIG_TEMPLATE: &str = r#"# zg-provider configuration. Precedence: this file < ZG_PROVIDER_* env vars < command-line flags.

# Where the fee ledger, the receipt store and (simulated TEE only) the signer keys live.
data_dir = "./zg-provider-data"

[server]
# OpenAI-compatible + 0G HTTP API (flag --http-addr, env ZG_PROVIDER_HTTP_ADDR).
http_addr = "0.0.0.0:8080"
# gRPC API (--grpc-addr, ZG_PROVIDER_GRPC_ADDR).
grpc_addr = "0.0.0.0:50051"
# The URL customers reach the HTTP API at; registered on chain as the service URL (--public-url).
public_url = "http://127.0.0.1:8080"
# The URL customers reach the gRPC API at (--grpc-public-url, ZG_PROVIDER_GRPC_PUBLIC_URL); published as "grpc" in
# the service's additionalInfo so zg clients send native requests over gRPC. Plaintext http:// only for now.
# grpc_public_url = "http://127.0.0.1:50051"
# Requests served at once; beyond this the provider answers 429 with Retry-After (--max-concurrency).
max_concurrency = 256
retry_after_secs = 1

[upstream]
# "builtin" = a model run in-process (see `model`); or an OpenAI-compatible root such as
# "http://127.0.0.1:8000/v1" (vLLM, SGLang, llama.cpp, TGI, Ollama) (--upstream, ZG_PROVIDER_UPSTREAM).
url = "builtin"
# Model id registered on chain and put into receipts; required for an HTTP upstream (--model). With "builtin":
# "zg-demo-ngram" (the default: the instant demo n-gram model, for tests) or "smollm2-135m-instruct" (a real LLM,
# SmolLM2-135M-Instruct on the CPU, from the GGUF at `model_path`).
# model = "meta-llama/Llama-3.1-8B-Instruct"
# Built-in SmolLM2 only: the GGUF (`just setup` fetches it) (--model-path, ZG_PROVIDER_MODEL_PATH).
# model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
# Built-in SmolLM2 only: generations run at once, one core each; 0 = one per core. Others wait up to
# timeout_secs for a turn, then get a 503 (--max-streams, ZG_PROVIDER_MAX_STREAMS).
# max_streams = 0
# Bearer key for the upstream, if it needs one (--upstream-api-key, ZG_PROVIDER_UPSTREAM_API_KEY).
# api_key = ""
# Per-request timeout: time to response headers, and the longest gap between stream chunks (--upstream-timeout).
timeout_secs = 300
# Built-in model only: train on the *.md / *.txt files of this directory instead of the shipped corpus.
# corpus_dir = "./docs"

[service]
service_type = "chatbot"
# Prices per token in neuron (1 0G = 10^18 neuron) (--input-price, --output-price).
input_price = "1000000000"
output_price = "2000000000"
# Stake paid when the service is first registered, in 0G (--stake).
stake = "1"
# Published as the service's additionalInfo (must be non-empty JSON for the official 0G SDK).
additional_info = '{"description":"zg-compute provider","attestation":"/v1/attestation"}'
# Completion tokens reserved for a 0G request that sets no max_tokens.
default_max_tokens = 1024

[chain]
# JSON-RPC endpoint (--rpc-url, ZG_PROVIDER_RPC_URL). Contract addresses default to the devnet ones.
rpc_url = "http://127.0.0.1:8545"
# ledger = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
# inference = "0x0165878A594ca255338adfa4d48449f69242Eb8F"
# fine_tuning = "0xA51c1fc2f0D1a1b8494Ed1FE312d7C3a78Ed91C0"
# The provider's wallet key, never on the command line: the env var ZG_PROVIDER_KEY, a file holding the hex key
# (--provider-key-file, ZG_PROVIDER_KEY_FILE), or an encrypted keystore (--provider-keystore, password in
# ZG_PROVIDER_KEYSTORE_PASSWORD or --provider-keystore-password-file).
# key_file = "/run/secrets/provider-key"
# keystore = "/run/secrets/provider-keystore.json"
# How long a customer's on-chain account (balance, token revocations) is trusted before it is re-read.
account_ttl_ms = 2000

[tee]
# auto | simulated | tdx | dstack (--tee). auto = dstack if its socket exists, else TDX, else SIMULATED.
backend = "auto"
# dstack_socket = "/var/run/dstack.sock"
# File measured into RTMR3 as the compose hash (simulated / bare TDX) and published as tcb_info.app_compose.
# app_compose = "./deploy/docker-compose.yml"
# NVIDIA GPU evidence (--gpu): auto | none | nvml | simulated. auto = the simulated GPU with the simulated TEE,
# else NVML when it loads and confidential computing is on, else none.
gpu = "auto"

[settlement]
# Seconds between settlement rounds (--settle-interval); 0 disables the loop.
interval_secs = 60
# Settle a customer once its unsettled fees reach this many neuron.
threshold = "1000000000000000"

[limits]
# What a peer can make the provider hold. Connections open at once (more wait in the listen backlog).
max_connections = 4096
# Seconds to send request headers; to send a body once the credentials were accepted; that a response write may
# make no progress (a client that stopped reading) before the connection is dropped.
header_timeout_secs = 30
body_timeout_secs = 30
write_timeout_secs = 30
# Seconds the provider keeps reading a stream whose client left, to bill the usage the upstream reports.
drain_timeout_secs = 60
# How long an address without a sub-account is remembered (one chain read per address per this many ms).
unknown_account_ttl_ms = 2000
# Chain reads of customers' accounts in flight at once.
max_account_lookups = 32
# Fresh attestation quotes (/v1/attestation, GetAttestation) per client IP: a burst, then this many per minute.
quote_burst = 4
quotes_per_minute = 12
# Never-expiring 0G session tokens (API keys, expiresAt = 0) older than this are refused: 0G tokens carry no
# chain id, so an old one is the most likely to be replayed from another deployment.
max_unexpiring_token_age_days = 90

[adapters]
# LoRA adapters handed over by fine-tuning brokers (gRPC zg.v1.Adapters, served to their owner as "ft-…" models).
# A broker must show TEE evidence that passes this policy, bound to the provider's nonce, whose signer is its
# FineTuningServing teeSignerAddress. The default policy accepts nobody: configure an allow-list (images,
# allowed_compose_hashes, allowed_app_ids) and DCAP collateral, inline below or in a file.
# policy_file = "./broker-policy.toml"      (--adapters-policy, ZG_PROVIDER_ADAPTERS_POLICY)
# collateral_file = "./collateral.json"     (--adapters-collateral, ZG_PROVIDER_ADAPTERS_COLLATERAL)
# Largest adapter package in bytes (--adapters-max-bytes); a rank-64 adapter of a 7B model is ~160 MiB.
max_package_bytes = 268435456
# Longest one deployment may take (head to answer).
deploy_timeout_secs = 300
# Most adapters served to one customer, and in all (each is held in memory by the built-in model and on disk;
# a redeployment of a served adapter does not count). Beyond them a deployment is refused with `adapter_limit`.
max_per_owner = 8
max_adapters = 64
# DEVNET / DEMO ONLY: accept brokers running the SIMULATED TEE (no hardware attests them) and any image.
# (--adapters-dangerous-allow-simulated, --adapters-dangerous-any-image; logged loudly at start.)
# dangerous_allow_simulated = false
# dangerous_any_image = false
# [adapters.policy]                         (inline instead of policy_file; zg-attestation's policy keys)
# allowed_compose_hashes = ["…"]
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    server: ServerFile,
    upstream: UpstreamFile,
    service: ServiceFile,
    chain: ChainFile,
    tee: TeeFile,
    settlement: SettlementFile,
    limits: LimitsFile,
    adapters: AdaptersFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdaptersFile {
    policy_file: Option<PathBuf>,
    policy: Option<zg_attestation::AttestationPolicy>,
    collateral_file: Option<PathBuf>,
    max_package_bytes: Option<u64>,
    deploy_timeout_secs: Option<u64>,
    max_per_owner: Option<usize>,
    max_adapters: Option<usize>,
    dangerous_allow_simulated: Option<bool>,
    dangerous_any_image: Option<bool>,
}

fn adapter_settings(args: &RunArgs, file: AdaptersFile) -> Result<crate::adapters::AdapterSettings> {
    let policy_file = args.adapters_policy.clone().or(file.policy_file);
    let mut policy = match (policy_file, file.policy) {
        (Some(p), Some(_)) => {
            return Err(Error::Config {
                field: "adapters.policy",
                value: p.display().to_string(),
                fix: "give the brokers' policy either as adapters.policy_file (--adapters-policy) or inline as \
                      [adapters.policy], not both"
                    .into(),
            });
        }
        (Some(p), None) => zg_attestation::AttestationPolicy::from_file(&p).map_err(|e| Error::Config {
            field: "adapters.policy_file",
            value: p.display().to_string(),
            fix: format!("{e}"),
        })?,
        (None, Some(inline)) => inline,
        (None, None) => zg_attestation::AttestationPolicy::default(),
    };
    if args.adapters_dangerous_allow_simulated || file.dangerous_allow_simulated == Some(true) {
        policy.dangerous_allow_simulated = true;
    }
    if args.adapters_dangerous_any_image || file.dangerous_any_image == Some(true) {
        policy.dangerous_any_image = true;
    }
    let collateral = match args.adapters_collateral.clone().or(file.collateral_file) {
        Some(p) => Some(
            zg_attestation::Collateral::from_file(&p).map_err(|e| Error::Config {
                field: "adapters.collateral_file",
                value: p.display().to_string(),
                fix: format!("{e}"),
            })?,
        ),
        None => None,
    };
    let d = crate::adapters::AdapterSettings::default();
    let max_package_bytes = args
        .adapters_max_bytes
        .or(file.max_package_bytes)
        .unwrap_or(d.max_package_bytes);
    if max_package_bytes == 0 {
        return Err(Error::Config {
            field: "adapters.max_package_bytes",
            value: "0".into(),
            fix: "use at least a few MiB (--adapters-max-bytes); 0 would refuse every adapter".into(),
        });
    }
    Ok(crate::adapters::AdapterSettings {
        policy: zg_adapters::PeerPolicy { policy, collateral },
        max_package_bytes,
        deploy_timeout: file
            .deploy_timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(d.deploy_timeout),
        max_per_owner: file.max_per_owner.unwrap_or(d.max_per_owner),
        max_adapters: file.max_adapters.unwrap_or(d.max_adapters),
        max_outstanding_challenges: d.max_outstanding_challenges,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitsFile {
    max_connections: Option<usize>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    write_timeout_secs: Option<u64>,
    drain_timeout_secs: Option<u64>,
    unknown_account_ttl_ms: Option<u64>,
    max_account_lookups: Option<usize>,
    quote_burst: Option<u32>,
    quotes_per_minute: Option<u32>,
    max_unexpiring_token_age_days: Option<u64>,
}

impl LimitsFile {
    fn resolve(self) -> Result<Limits> {
        let d = Limits::default();
        let secs = |v: Option<u64>, d: Duration| v.map(Duration::from_secs).unwrap_or(d);
        let limits = Limits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_timeout: secs(self.header_timeout_secs, d.header_timeout),
            body_timeout: secs(self.body_timeout_secs, d.body_timeout),
            write_timeout: secs(self.write_timeout_secs, d.write_timeout),
            drain_timeout: secs(self.drain_timeout_secs, d.drain_timeout),
            unknown_account_ttl: self
                .unknown_account_ttl_ms
                .map(Duration::from_millis)
                .unwrap_or(d.unknown_account_ttl),
            max_account_lookups: self.max_account_lookups.unwrap_or(d.max_account_lookups),
            quote_burst: self.quote_burst.unwrap_or(d.quote_burst),
            quotes_per_minute: self.quotes_per_minute.unwrap_or(d.quotes_per_minute),
            max_unexpiring_token_age_ms: self
                .max_unexpiring_token_age_days
                .map(|days| days.saturating_mul(86_400_000))
                .unwrap_or(d.max_unexpiring_token_age_ms),
        };
        for (field, zero) in [
            ("limits.max_connections", limits.max_connections == 0),
            ("limits.header_timeout_secs", limits.header_timeout.is_zero()),
            ("limits.body_timeout_secs", limits.body_timeout.is_zero()),
            ("limits.write_timeout_secs", limits.write_timeout.is_zero()),
            ("limits.max_account_lookups", limits.max_account_lookups == 0),
        ] {
            if zero {
                return Err(Error::Config {
                    field,
                    value: "0".into(),
                    fix: "use at least 1 (0 would refuse or drop every connection)".into(),
                });
            }
        }
        Ok(limits)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerFile {
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    public_url: Option<String>,
    #[serde(alias = "public_grpc_url")]
    grpc_public_url: Option<String>,
    max_concurrency: Option<usize>,
    retry_after_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct UpstreamFile {
    url: Option<String>,
    model: Option<String>,
    api_key: Option<String>,
    timeout_secs: Option<u64>,
    corpus_dir: Option<PathBuf>,
    model_path: Option<PathBuf>,
    max_streams: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServiceFile {
    service_type: Option<String>,
    input_price: Option<String>,
    output_price: Option<String>,
    stake: Option<String>,
    additional_info: Option<String>,
    default_max_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ChainFile {
    rpc_url: Option<String>,
    ledger: Option<Address>,
    inference: Option<Address>,
    fine_tuning: Option<Address>,
    key_file: Option<PathBuf>,
    keystore: Option<PathBuf>,
    account_ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TeeFile {
    backend: Option<BackendChoice>,
    dstack_socket: Option<PathBuf>,
    app_compose: Option<PathBuf>,
    gpu: Option<GpuChoice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SettlementFile {
    interval_secs: Option<u64>,
    threshold: Option<String>,
}

/// `zg-provider run` flags. Every flag also reads `ZG_PROVIDER_<NAME>` and the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML config file (see `zg-provider init`).
    #[arg(long, short, env = "ZG_PROVIDER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: fee ledger, receipt store, simulated TEE keys.
    #[arg(long, env = "ZG_PROVIDER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address (OpenAI-compatible + 0G API, /metrics, /healthz).
    #[arg(long, env = "ZG_PROVIDER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address.
    #[arg(long, env = "ZG_PROVIDER_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Public base URL of the HTTP API, registered on chain.
    #[arg(long, env = "ZG_PROVIDER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Public URL of the gRPC API (`http://host:port`), published as `grpc` in the on-chain additionalInfo.
    #[arg(long, env = "ZG_PROVIDER_GRPC_PUBLIC_URL", alias = "public-grpc-url")]
    pub grpc_public_url: Option<String>,
    /// `builtin` (a model in-process, see --model) or an OpenAI-compatible root URL, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, env = "ZG_PROVIDER_UPSTREAM")]
    pub upstream: Option<String>,
    /// Model id served (registered on chain; required with an HTTP upstream). With `builtin`: `zg-demo-ngram`
    /// (default, the demo n-gram model) or `smollm2-135m-instruct` (SmolLM2 on the CPU).
    #[arg(long, env = "ZG_PROVIDER_MODEL")]
    pub model: Option<String>,
    /// Built-in SmolLM2: the GGUF file (default models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long, env = "ZG_PROVIDER_MODEL_PATH")]
    pub model_path: Option<PathBuf>,
    /// Built-in SmolLM2: generations at once (0 = one per core).
    #[arg(long, env = "ZG_PROVIDER_MAX_STREAMS")]
    pub max_streams: Option<usize>,
    /// Bearer key for the upstream.
    #[arg(long, env = "ZG_PROVIDER_UPSTREAM_API_KEY", hide_env_values = true)]
    pub upstream_api_key: Option<String>,
    /// Upstream timeout in seconds (to headers; and max gap between stream chunks).
    #[arg(long, env = "ZG_PROVIDER_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<u64>,
    /// Requests served at once before answering 429.
    #[arg(long, env = "ZG_PROVIDER_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,
    /// Price per prompt token, neuron.
    #[arg(long, env = "ZG_PROVIDER_INPUT_PRICE")]
    pub input_price: Option<String>,
    /// Price per completion token, neuron.
    #[arg(long, env = "ZG_PROVIDER_OUTPUT_PRICE")]
    pub output_price: Option<String>,
    /// Stake paid when first registering, in 0G (e.g. `1` or `0.5`).
    #[arg(long, env = "ZG_PROVIDER_STAKE")]
    pub stake: Option<String>,
    /// Chain JSON-RPC URL.
    #[arg(long, env = "ZG_PROVIDER_RPC_URL")]
    pub rpc_url: Option<String>,
    /// The provider wallet's private key (hex), for callers that build these settings in code. Not a flag: a
    /// key on the command line is readable by every local user (`ps`, `/proc/*/cmdline`); the binary reads it
    /// from the env var `ZG_PROVIDER_KEY`, a key file or a keystore.
    #[arg(skip)]
    pub provider_key: Option<String>,
    /// File holding the provider wallet's private key (hex).
    #[arg(long, env = "ZG_PROVIDER_KEY_FILE")]
    pub provider_key_file: Option<PathBuf>,
    /// Encrypted keystore (JSON, as `zg key new` writes) holding the provider wallet's key; its password comes
    /// from `ZG_PROVIDER_KEYSTORE_PASSWORD` or `--provider-keystore-password-file`.
    #[arg(long, env = "ZG_PROVIDER_KEYSTORE")]
    pub provider_keystore: Option<PathBuf>,
    /// File holding the keystore's password.
    #[arg(long, env = "ZG_PROVIDER_KEYSTORE_PASSWORD_FILE")]
    pub provider_keystore_password_file: Option<PathBuf>,
    /// InferenceServing address (default: the devnet address).
    #[arg(long, env = "ZG_PROVIDER_INFERENCE_CA")]
    pub inference_ca: Option<Address>,
    /// LedgerManager address (default: the devnet address).
    #[arg(long, env = "ZG_PROVIDER_LEDGER_CA")]
    pub ledger_ca: Option<Address>,
    /// FineTuningServing address (default: the devnet address).
    #[arg(long, env = "ZG_PROVIDER_FINE_TUNING_CA")]
    pub fine_tuning_ca: Option<Address>,
    /// TEE backend.
    #[arg(long, value_enum, env = "ZG_PROVIDER_TEE")]
    pub tee: Option<BackendChoice>,
    /// NVIDIA GPU evidence source (auto, none, nvml, simulated).
    #[arg(long, value_enum, env = "ZG_PROVIDER_GPU")]
    pub gpu: Option<GpuChoice>,
    /// Seconds between settlement rounds; 0 disables the loop.
    #[arg(long, env = "ZG_PROVIDER_SETTLE_INTERVAL")]
    pub settle_interval: Option<u64>,
    /// Seconds a customer's on-chain account is cached (milliseconds precision via the config file).
    #[arg(long, env = "ZG_PROVIDER_ACCOUNT_TTL_MS")]
    pub account_ttl_ms: Option<u64>,
    /// Attestation policy (TOML or JSON, zg-attestation's keys) fine-tuning brokers must pass to deploy adapters.
    #[arg(long, env = "ZG_PROVIDER_ADAPTERS_POLICY")]
    pub adapters_policy: Option<PathBuf>,
    /// DCAP collateral (JSON) to verify brokers' TDX quotes with.
    #[arg(long, env = "ZG_PROVIDER_ADAPTERS_COLLATERAL")]
    pub adapters_collateral: Option<PathBuf>,
    /// Largest adapter package accepted, in bytes (default 256 MiB).
    #[arg(long, env = "ZG_PROVIDER_ADAPTERS_MAX_BYTES")]
    pub adapters_max_bytes: Option<u64>,
    /// DEVNET / DEMO ONLY: accept adapters from brokers running the SIMULATED TEE (no hardware attests them).
    #[arg(long, env = "ZG_PROVIDER_ADAPTERS_DANGEROUS_ALLOW_SIMULATED")]
    pub adapters_dangerous_allow_simulated: bool,
    /// DEVNET / DEMO ONLY: accept brokers whatever image and application they run (no allow-list).
    #[arg(long, env = "ZG_PROVIDER_ADAPTERS_DANGEROUS_ANY_IMAGE")]
    pub adapters_dangerous_any_image: bool,
}

/// Fully resolved settings. `Debug` prints `<redacted>` for the provider key and the upstream key.
#[derive(Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Public URL.
    pub public_url: String,
    /// Public gRPC URL (published in `additionalInfo` as `grpc`).
    pub grpc_public_url: Option<String>,
    /// `builtin` or a URL.
    pub upstream: String,
    /// Model id.
    pub model: String,
    /// Upstream key.
    pub upstream_api_key: Option<String>,
    /// Upstream timeout.
    pub upstream_timeout: Duration,
    /// Demo corpus directory.
    pub corpus_dir: Option<PathBuf>,
    /// Built-in SmolLM2's GGUF.
    pub model_path: PathBuf,
    /// Built-in SmolLM2's concurrent generations (0 = one per core).
    pub max_streams: usize,
    /// Concurrency limit.
    pub max_concurrency: usize,
    /// Retry-After.
    pub retry_after_secs: u64,
    /// `serviceType`.
    pub service_type: String,
    /// Input price.
    pub input_price: U256,
    /// Output price.
    pub output_price: U256,
    /// Stake, in 0G text.
    pub stake: String,
    /// `additionalInfo`.
    pub additional_info: String,
    /// Default max tokens reserved.
    pub default_max_tokens: u64,
    /// RPC URL.
    pub rpc_url: String,
    /// Contract addresses.
    pub contracts: zg_chain::ContractAddresses,
    /// Wallet key (hex). Secret.
    pub provider_key: Option<String>,
    /// Account cache TTL.
    pub account_ttl: Duration,
    /// TEE backend.
    pub tee: BackendChoice,
    /// dstack socket.
    pub dstack_socket: Option<PathBuf>,
    /// App compose file.
    pub app_compose: Option<PathBuf>,
    /// GPU evidence source.
    pub gpu: GpuChoice,
    /// Settlement interval (0 = off).
    pub settle_interval: Duration,
    /// Settlement threshold.
    pub settle_threshold: U256,
    /// Connection, time and rate limits.
    pub limits: Limits,
    /// Adapter deployment: the brokers' attestation policy and the bounds.
    pub adapters: crate::adapters::AdapterSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .field("public_url", &self.public_url)
            .field("grpc_public_url", &self.grpc_public_url)
            .field("upstream", &self.upstream)
            .field("model", &self.model)
            .field("upstream_api_key", &redacted(&self.upstream_api_key))
            .field("upstream_timeout", &self.upstream_timeout)
            .field("corpus_dir", &self.corpus_dir)
            .field("model_path", &self.model_path)
            .field("max_streams", &self.max_streams)
            .field("max_concurrency", &self.max_concurrency)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("service_type", &self.service_type)
            .field("input_price", &self.input_price)
            .field("output_price", &self.output_price)
            .field("stake", &self.stake)
            .field("additional_info", &self.additional_info)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("rpc_url", &self.rpc_url)
            .field("contracts", &self.contracts)
            .field("provider_key", &redacted(&self.provider_key))
            .field("account_ttl", &self.account_ttl)
            .field("tee", &self.tee)
            .field("dstack_socket", &self.dstack_socket)
            .field("app_compose", &self.app_compose)
            .field("settle_interval", &self.settle_interval)
            .field("settle_threshold", &self.settle_threshold)
            .field("limits", &self.limits)
            .field("adapters", &self.adapters)
            .finish()
    }
}

/// The provider key from (in order) the settings built in code, the env var `ZG_PROVIDER_KEY`, a key file, or an
/// encrypted keystore.
fn provider_key(args: &RunArgs, file: &ChainFile) -> Result<Option<String>> {
    if let Some(k) = &args.provider_key {
        return Ok(Some(k.clone()));
    }
    if let Some(k) = std::env::var("ZG_PROVIDER_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        return Ok(Some(k));
    }
    let read = |op: &'static str, path: &Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|source| Error::Io {
                op,
                path: path.to_owned(),
                source,
            })
    };
    if let Some(path) = args.provider_key_file.as_ref().or(file.key_file.as_ref()) {
        return read("read provider key", path).map(Some);
    }
    let Some(keystore) = args.provider_keystore.as_ref().or(file.keystore.as_ref()) else {
        return Ok(None);
    };
    let password = match (
        std::env::var("ZG_PROVIDER_KEYSTORE_PASSWORD").ok(),
        &args.provider_keystore_password_file,
    ) {
        (Some(p), _) => p,
        (None, Some(path)) => read("read keystore password", path)?,
        (None, None) => {
            return Err(Error::Config {
                field: "chain.keystore",
                value: keystore.display().to_string(),
                fix:
                    "give its password in ZG_PROVIDER_KEYSTORE_PASSWORD or --provider-keystore-password-file"
                        .into(),
            });
        }
    };
    let signer = zg_chain::load_keystore(keystore, &password).map_err(|e| Error::Config {
        field: "chain.keystore",
        value: keystore.display().to_string(),
        fix: format!("cannot decrypt the provider keystore: {e}"),
    })?;
    Ok(Some(format!("0x{}", hex::encode(signer.to_bytes()))))
}

fn price(field: &'static str, v: &str) -> Result<U256> {
    v.trim().parse::<U256>().map_err(|e| Error::Config {
        field,
        value: v.to_owned(),
        fix: format!("give an integer amount of neuron, e.g. 1000000000 ({e})"),
    })
}

impl Settings {
    /// Merges defaults < config file < env < flags (clap already merged env and flags).
    pub fn resolve(args: RunArgs) -> Result<Self> {
        let file = match &args.config {
            Some(p) => load(p)?,
            None => FileConfig::default(),
        };
        let key = provider_key(&args, &file.chain)?;
        let adapters = adapter_settings(&args, file.adapters)?;
        let upstream = args
            .upstream
            .or(file.upstream.url)
            .unwrap_or_else(|| "builtin".into());
        let model = match args.model.or(file.upstream.model) {
            Some(m) => m,
            None if upstream == "builtin" => crate::demo::DEMO_MODEL_ID.to_owned(),
            None => {
                return Err(Error::Config {
                    field: "upstream.model",
                    value: String::new(),
                    fix: "name the model the upstream serves (--model, ZG_PROVIDER_MODEL or upstream.model)"
                        .into(),
                });
            }
        };
        if upstream == "builtin"
            && model != crate::demo::DEMO_MODEL_ID
            && !model.eq_ignore_ascii_case(crate::llm::SMOLLM2_MODEL_ID)
        {
            return Err(Error::Config {
                field: "upstream.model",
                value: model,
                fix: format!(
                    "the built-in upstream serves `{}` (demo n-gram) or `{}` (SmolLM2); for another model run a \
                     model server and give its URL as --upstream",
                    crate::demo::DEMO_MODEL_ID,
                    crate::llm::SMOLLM2_MODEL_ID
                ),
            });
        }
        let d = zg_chain::ContractAddresses::DEVNET;
        let additional_info = file.service.additional_info.unwrap_or_else(|| {
            r#"{"description":"zg-compute provider","attestation":"/v1/attestation"}"#.into()
        });
        let Ok(mut info) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&additional_info)
        else {
            return Err(Error::Config {
                field: "service.additional_info",
                value: additional_info,
                fix: "must be a non-empty JSON object (the official 0G SDK refuses services without one)"
                    .into(),
            });
        };
        let grpc_public_url = args
            .grpc_public_url
            .or(file.server.grpc_public_url)
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        let additional_info = match &grpc_public_url {
            Some(u) if !u.starts_with("http://") && !u.starts_with("https://") => {
                return Err(Error::Config {
                    field: "server.grpc_public_url",
                    value: u.clone(),
                    fix: "give a URL such as http://provider.example:50051".into(),
                });
            }
            Some(u) => {
                // Added next to the fields the official SDK reads, which stay as they are.
                info.insert("grpc".into(), serde_json::Value::String(u.clone()));
                serde_json::Value::Object(info).to_string()
            }
            None => additional_info,
        };
        let max_concurrency = args
            .max_concurrency
            .or(file.server.max_concurrency)
            .unwrap_or(256);
        if max_concurrency == 0 {
            return Err(Error::Config {
                field: "server.max_concurrency",
                value: "0".into(),
                fix: "use at least 1 (--max-concurrency)".into(),
            });
        }
        Ok(Settings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./zg-provider-data")),
            http_addr: args
                .http_addr
                .or(file.server.http_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080))),
            grpc_addr: args
                .grpc_addr
                .or(file.server.grpc_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 50051))),
            public_url: args
                .public_url
                .or(file.server.public_url)
                .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            grpc_public_url,
            upstream,
            model,
            upstream_api_key: args
                .upstream_api_key
                .or(file.upstream.api_key)
                .filter(|k| !k.is_empty()),
            upstream_timeout: Duration::from_secs(
                args.upstream_timeout
                    .or(file.upstream.timeout_secs)
                    .unwrap_or(300),
            ),
            corpus_dir: file.upstream.corpus_dir,
            model_path: args
                .model_path
                .or(file.upstream.model_path)
                .unwrap_or_else(|| PathBuf::from(crate::llm::DEFAULT_MODEL_PATH)),
            max_streams: args.max_streams.or(file.upstream.max_streams).unwrap_or(0),
            max_concurrency,
            retry_after_secs: file.server.retry_after_secs.unwrap_or(1),
            service_type: file.service.service_type.unwrap_or_else(|| "chatbot".into()),
            input_price: price(
                "service.input_price",
                &args
                    .input_price
                    .or(file.service.input_price)
                    .unwrap_or_else(|| "1000000000".into()),
            )?,
            output_price: price(
                "service.output_price",
                &args
                    .output_price
                    .or(file.service.output_price)
                    .unwrap_or_else(|| "2000000000".into()),
            )?,
            stake: args.stake.or(file.service.stake).unwrap_or_else(|| "1".into()),
            additional_info,
            default_max_tokens: file.service.default_max_tokens.unwrap_or(1024),
            rpc_url: args
                .rpc_url
                .or(file.chain.rpc_url)
                .unwrap_or_else(|| "http://127.0.0.1:8545".into()),
            contracts: zg_chain::ContractAddresses {
                ledger: args.ledger_ca.or(file.chain.ledger).unwrap_or(d.ledger),
                inference: args.inference_ca.or(file.chain.inference).unwrap_or(d.inference),
                fine_tuning: args
                    .fine_tuning_ca
                    .or(file.chain.fine_tuning)
                    .unwrap_or(d.fine_tuning),
            },
            provider_key: key,
            account_ttl: Duration::from_millis(
                args.account_ttl_ms.or(file.chain.account_ttl_ms).unwrap_or(2000),
            ),
            tee: args.tee.or(file.tee.backend).unwrap_or(BackendChoice::Auto),
            dstack_socket: file.tee.dstack_socket,
            app_compose: file.tee.app_compose,
            gpu: args.gpu.or(file.tee.gpu).unwrap_or(GpuChoice::Auto),
            settle_interval: Duration::from_secs(
                args.settle_interval
                    .or(file.settlement.interval_secs)
                    .unwrap_or(60),
            ),
            settle_threshold: price(
                "settlement.threshold",
                &file
                    .settlement
                    .threshold
                    .unwrap_or_else(|| "1000000000000000".into()),
            )?,
            limits: file.limits.resolve()?,
            adapters,
        })
    }
}

fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: "read config",
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::Config {
        field: "config",
        value: path.display().to_string(),
        fix: format!("fix the TOML ({e}); `zg-provider init --force` writes a fresh commented file"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_flags_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, CONFIG_TEMPLATE).unwrap();
        let s = Settings::resolve(RunArgs {
            config: Some(p.clone()),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.model, crate::demo::DEMO_MODEL_ID);
        assert_eq!(s.input_price, U256::from(1_000_000_000u64));
        assert_eq!(s.http_addr.port(), 8080);
        let s = Settings::resolve(RunArgs {
            config: Some(p),
            http_addr: Some("127.0.0.1:9999".parse().unwrap()),
            input_price: Some("7".into()),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.http_addr.port(), 9999);
        assert_eq!(s.input_price, U256::from(7));
    }

    #[test]
    fn errors_name_the_fix() {
        let e = Settings::resolve(RunArgs {
            upstream: Some("http://x/v1".into()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--model"), "{e}");
        let e = Settings::resolve(RunArgs {
            input_price: Some("1.5".into()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("neuron"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[server]\nhttp_adr = \"x\"\n").unwrap();
        let e = Settings::resolve(RunArgs {
            config: Some(p),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("http_adr"), "{e}");
    }

    /// `builtin` serves the demo n-gram (default) or SmolLM2 (from `model_path`); any other id is refused by name.
    #[test]
    fn builtin_serves_the_ngram_or_smollm2_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[upstream]\nurl = \"builtin\"\nmodel = \"smollm2-135m-instruct\"\nmodel_path = \"/m/s.gguf\"\n\
             max_streams = 3\n",
        )
        .unwrap();
        let s = Settings::resolve(RunArgs {
            config: Some(p.clone()),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(
            (s.model.as_str(), s.model_path.to_str(), s.max_streams),
            ("smollm2-135m-instruct", Some("/m/s.gguf"), 3)
        );
        let s = Settings::resolve(RunArgs {
            config: Some(p),
            max_streams: Some(1),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.max_streams, 1);
        let s = Settings::resolve(RunArgs::default()).unwrap();
        assert_eq!(
            (s.model.as_str(), s.model_path.to_str()),
            (crate::demo::DEMO_MODEL_ID, Some(crate::llm::DEFAULT_MODEL_PATH))
        );
        let e = Settings::resolve(RunArgs {
            model: Some("gpt-4".into()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("smollm2-135m-instruct") && e.to_string().contains("gpt-4"),
            "{e}"
        );
    }

    /// `--grpc-public-url` is published as `grpc` in additionalInfo, next to the configured fields (which the
    /// official 0G SDK reads) left as they are; the broker's spelling works in the file; a non-URL is refused.
    #[test]
    fn grpc_public_url_is_added_to_additional_info() {
        let s = Settings::resolve(RunArgs::default()).unwrap();
        assert_eq!(s.grpc_public_url, None);
        assert!(!s.additional_info.contains("grpc"), "{}", s.additional_info);
        let s = Settings::resolve(RunArgs {
            grpc_public_url: Some("http://p.example:50051/".into()),
            ..RunArgs::default()
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.additional_info).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"description": "zg-compute provider", "attestation": "/v1/attestation",
                "grpc": "http://p.example:50051"})
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[server]\npublic_grpc_url = \"http://q:1\"\n[service]\nadditional_info = '{\"x\":1}'\n",
        )
        .unwrap();
        let s = Settings::resolve(RunArgs {
            config: Some(p),
            ..RunArgs::default()
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.additional_info).unwrap();
        assert_eq!(v, serde_json::json!({"x": 1, "grpc": "http://q:1"}));
        let e = Settings::resolve(RunArgs {
            grpc_public_url: Some("p.example:50051".into()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("grpc_public_url"), "{e}");
    }

    /// `[adapters]`: the brokers' policy inline or from a file (not both), the dangerous opt-ins from the file or
    /// the flags, the package bound; the default accepts no broker.
    #[test]
    fn adapters_policy_and_bounds_resolve() {
        let s = Settings::resolve(RunArgs::default()).unwrap();
        let p = &s.adapters.policy.policy;
        assert!(!p.dangerous_allow_simulated && !p.dangerous_any_image && !p.has_allowlist());
        assert_eq!(
            s.adapters.max_package_bytes,
            zg_adapters::DEFAULT_MAX_PACKAGE_BYTES
        );
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c.toml");
        std::fs::write(
            &c,
            "[adapters]\nmax_package_bytes = 1048576\ndangerous_allow_simulated = true\n\
             max_per_owner = 3\nmax_adapters = 5\n\
             [adapters.policy]\nallowed_compose_hashes = [\"ab\"]\n",
        )
        .unwrap();
        let s = Settings::resolve(RunArgs {
            config: Some(c.clone()),
            adapters_dangerous_any_image: true,
            ..RunArgs::default()
        })
        .unwrap();
        let p = &s.adapters.policy.policy;
        assert!(p.dangerous_allow_simulated && p.dangerous_any_image);
        assert_eq!(p.allowed_compose_hashes, vec!["ab".to_owned()]);
        assert_eq!(s.adapters.max_package_bytes, 1 << 20);
        assert_eq!((s.adapters.max_per_owner, s.adapters.max_adapters), (3, 5));
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "allowed_app_ids = [\"01\"]\n").unwrap();
        let e = Settings::resolve(RunArgs {
            config: Some(c),
            adapters_policy: Some(f.clone()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let s = Settings::resolve(RunArgs {
            adapters_policy: Some(f),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.adapters.policy.policy.allowed_app_ids, vec!["01".to_owned()]);
        let e = Settings::resolve(RunArgs {
            adapters_max_bytes: Some(0),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("max_package_bytes"), "{e}");
    }

    #[test]
    fn debug_never_prints_the_secrets() {
        let mut s = Settings::resolve(RunArgs::default()).unwrap();
        s.provider_key = Some("0xfeedfacefeedface".into());
        s.upstream_api_key = Some("sk-upstream-secret".into());
        let d = format!("{s:?}");
        assert!(
            !d.contains("feedface") && !d.contains("sk-upstream-secret"),
            "{d}"
        );
        assert!(d.contains("<redacted>"), "{d}");
    }
}
