//! Configuration: a TOML file (`zg-broker init` writes a commented one), overridden by `ZG_BROKER_*`
//! environment variables, overridden by flags. The wallet key never comes from argv: `ZG_BROKER_KEY`, a key
//! file, or an encrypted keystore.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tee::BackendChoice;

/// The commented config `zg-broker init` writes.
pub const CONFIG_TEMPLATE: &str = r#"# zg-broker configuration. Precedence: this file < ZG_BROKER_* env vars < command-line flags.
# The wallet key is never a flag: set ZG_BROKER_KEY, or chain.key_file, or chain.keystore (+ ZG_BROKER_KEYSTORE_PASSWORD).

# Task store, task directories, TEE dataset uploads, sealed models and (simulated TEE only) the signer key.
data_dir = "./zg-broker-data"

[server]
# 0G-compatible HTTP API, /metrics, /healthz (--http-addr, ZG_BROKER_HTTP_ADDR).
http_addr = "0.0.0.0:8090"
# Native gRPC API, zg.v1.FineTuning (--grpc-addr, ZG_BROKER_GRPC_ADDR).
grpc_addr = "0.0.0.0:50061"
# The URL customers reach the HTTP API at; registered on chain as the service URL (--public-url).
public_url = "http://127.0.0.1:8090"
# The gRPC URL clients are told (GET /v1/info; --public-grpc-url). Default: the public URL's host, gRPC port.
# public_grpc_url = "http://127.0.0.1:50061"
# The official 0G CLI reads tasks without authentication; turn this on when it does not need to, and reads
# then need the owner's `ZG-Read-Auth: <unix seconds>:<0x signature>` header.
require_read_auth = false

[service]
# Neuron per dataset token per epoch (on chain: pricePerToken) (--price-per-token).
price_per_token = "1000000000"
# Stake paid when the service is first registered, in 0G (--stake).
stake = "1"
# The machine offered (published on chain).
cpu_count = 8
node_memory = 64
gpu_count = 0
node_storage = 500
gpu_type = "cpu"

[tasks]
# Trainings at once (--max-parallel); more tasks wait in SettingUp/Training for a slot.
max_parallel = 2
# Tasks in flight across customers, and per customer.
max_queue = 1000
max_per_customer = 32
# Bound on num_train_epochs.
max_epochs = 10
# Wall time of one training.
train_timeout_secs = 3600
# A deliverable not acknowledged within this time is settled at the contract's penalty fee, without the key
# (--ack-timeout-secs).
ack_timeout_secs = 86400
# How often the chain is polled for acknowledgements and retries (--poll-interval-ms).
poll_interval_ms = 2000
# Refuse tasks from customers who have not acknowledged this broker's TEE signer on chain (the official CLI's
# create-task does it).
require_customer_ack = true

[dataset]
# 0G's TEE upload cap is 100 MiB.
max_bytes = 104857600
max_records = 1000000

# One [[models]] table per model offered. Executors: builtin (the demo n-gram family, in process; or, for a model
# named smollm2-135m-instruct, the same as lora), lora (real LoRA fine-tuning of a GGUF base in process, on the CPU,
# output a PEFT adapter), command (any program; see zg_finetune's `command` contract), docker / podman (the same in
# a container).
[[models]]
name = "zg-demo-ngram"
executor = "builtin"
description = "zg-compute's demo word n-gram model: fine-tunes in seconds on CPU (adapter = the dataset's n-grams)"
tokenizer = "zg-ngram"
# Builtin only: train the base on the *.md / *.txt files of this directory instead of the shipped corpus.
# corpus_dir = "./docs/corpus"
# Builtin only: pause after each epoch (demos and crash tests; --epoch-pause-ms).
# epoch_pause_ms = 0

# Real LoRA on SmolLM2-135M-Instruct (the GGUF `just setup` fetches), CPU, f32; the delivered model is a PEFT
# adapter (adapter_config.json + adapter_model.safetensors). Fees count the model's own tokens. Parameters:
# lora_r (≤ 64), lora_alpha, target_modules, learning_rate, num_train_epochs, max_steps,
# per_device_train_batch_size (≤ 16), max_seq_length (≤ 1024), validation_split, eval_steps, weight_decay, seed.
# A demo-sized task (examples/finetune, config.lora.json: 12 steps) takes 1-2 minutes on 2 busy cores.
# [[models]]
# name = "smollm2-135m-instruct"
# executor = "lora"
# model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

# [[models]]
# name = "Qwen2.5-0.5B-Instruct"
# executor = "command"
# tokenizer = "bytes"
# base_model_dir = "/models/Qwen2.5-0.5B-Instruct"
# command = ["python3", "examples/finetune/train_lora.py", "--model-dir", "{model_dir}", "--dataset", "{dataset}",
#            "--params", "{params}", "--output", "{output}"]
# env = { HF_HUB_OFFLINE = "1" }
# cpu_secs = 36000
# memory_bytes = 68719476736
#
# [[models]]
# name = "Qwen2.5-0.5B-Instruct"
# executor = "docker"
# image = "ghcr.io/example/peft-lora@sha256:…"
# gpus = "all"

[storage]
# Local content-addressed store for datasets (by root) and sealed models (--storage-dir). Point customers'
# `zg upload` at the same store, or use 0G Storage nodes.
# dir = "./zg-broker-data/storage"
# nodes = ["http://127.0.0.1:5678"]

[chain]
# JSON-RPC endpoint (--rpc-url, ZG_BROKER_RPC_URL). Contract addresses default to the devnet ones.
rpc_url = "http://127.0.0.1:8545"
# ledger = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
# inference = "0x0165878A594ca255338adfa4d48449f69242Eb8F"
# fine_tuning = "0xA51c1fc2f0D1a1b8494Ed1FE312d7C3a78Ed91C0"
# key_file = "/run/secrets/broker-key"
# keystore = "/run/secrets/broker.keystore.json"

[adapters]
# Deploying a customer's LoRA adapter to an inference provider (gRPC FineTuning.DeployAdapter; the provider
# serves zg.v1.Adapters). The provider's fresh evidence must pass this attestation policy (TOML or JSON,
# zg_attestation::AttestationPolicy: measurement allow-list, TCB, GPU) with its bound signer equal to its
# on-chain InferenceServing teeSignerAddress.
# policy = "./provider-policy.toml"   (--adapters-policy)
# DCAP collateral for real TDX quotes (JSON).
# collateral = "./collateral.json"
# DANGEROUS (development and the devnet demo only): accept simulated evidence (no TEE at all), and any image
# when the policy's allow-list is empty (--adapters-dangerous-allow-simulated, --adapters-dangerous-any-image).
# dangerous_allow_simulated = false
# dangerous_any_image = false
# Wall time of one deployment (connect, challenge, upload, answer).
# timeout_secs = 120
# Largest adapter (config + weights) this broker deploys.
# max_package_bytes = 268435456
# Where to reach a provider's zg.v1.Adapters instead of the `grpc` URL its service advertises in
# additionalInfo (tests, private networks): address = URL.
# [adapters.grpc_urls]
# "0x…" = "http://10.0.0.5:50051"

[tee]
# auto | simulated | tdx | dstack (--tee). auto = dstack if its socket exists, else TDX, else SIMULATED.
backend = "auto"
# dstack_socket = "/var/run/dstack.sock"
# File measured into RTMR3 as the compose hash and published as tcb_info.app_compose.
# app_compose = "./deploy/docker-compose.yml"
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    server: ServerFile,
    service: ServiceFile,
    tasks: TasksFile,
    dataset: DatasetFile,
    models: Vec<ModelConfig>,
    storage: StorageFile,
    chain: ChainFile,
    tee: TeeFile,
    adapters: AdaptersFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdaptersFile {
    policy: Option<PathBuf>,
    collateral: Option<PathBuf>,
    dangerous_allow_simulated: Option<bool>,
    dangerous_any_image: Option<bool>,
    timeout_secs: Option<u64>,
    max_package_bytes: Option<u64>,
    grpc_urls: BTreeMap<Address, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerFile {
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    public_url: Option<String>,
    public_grpc_url: Option<String>,
    require_read_auth: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServiceFile {
    price_per_token: Option<String>,
    stake: Option<String>,
    cpu_count: Option<u64>,
    node_memory: Option<u64>,
    gpu_count: Option<u64>,
    node_storage: Option<u64>,
    gpu_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TasksFile {
    max_parallel: Option<usize>,
    max_queue: Option<u64>,
    max_per_customer: Option<u64>,
    max_epochs: Option<u32>,
    train_timeout_secs: Option<u64>,
    ack_timeout_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
    require_customer_ack: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DatasetFile {
    max_bytes: Option<u64>,
    max_records: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StorageFile {
    dir: Option<PathBuf>,
    nodes: Option<Vec<String>>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TeeFile {
    backend: Option<BackendChoice>,
    dstack_socket: Option<PathBuf>,
    app_compose: Option<PathBuf>,
}

/// One `[[models]]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Name customers pass as `--model`.
    pub name: String,
    /// `builtin`, `lora`, `command`, `docker` or `podman`.
    pub executor: String,
    /// One line for `list-models`.
    pub description: Option<String>,
    /// `preTrainedModelHash` (default: keccak256 of the base model for builtin, of the name otherwise).
    pub hash: Option<String>,
    /// `zg-ngram`, `bytes` or (lora) `model`: the base's own tokenizer, the default for lora.
    pub tokenizer: Option<String>,
    /// Base model files (command/docker).
    pub base_model_dir: Option<PathBuf>,
    /// builtin: the base corpus directory.
    pub corpus_dir: Option<PathBuf>,
    /// builtin: pause after each epoch.
    pub epoch_pause_ms: Option<u64>,
    /// lora: the base GGUF (default `models/SmolLM2-135M-Instruct.Q4_1.gguf`).
    pub model_path: Option<PathBuf>,
    /// command: argv.
    pub command: Option<Vec<String>>,
    /// command/docker: extra environment.
    pub env: Option<BTreeMap<String, String>>,
    /// command: CPU seconds.
    pub cpu_secs: Option<u64>,
    /// command/docker: memory bytes.
    pub memory_bytes: Option<u64>,
    /// command/docker: seconds between TERM and KILL.
    pub grace_secs: Option<u64>,
    /// docker: image.
    pub image: Option<String>,
    /// docker: arguments after the image.
    pub args: Option<Vec<String>>,
    /// docker: GPUs (`all`, `0,1`).
    pub gpus: Option<String>,
    /// docker: CPUs.
    pub cpus: Option<f64>,
    /// docker: the runtime binary (default `docker` / `podman`).
    pub runtime_binary: Option<String>,
}

/// `zg-broker run` flags. Every flag also reads `ZG_BROKER_<NAME>` and the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML config file (see `zg-broker init`).
    #[arg(long, short, env = "ZG_BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: task store, task files, uploads, sealed models, simulated TEE key.
    #[arg(long, env = "ZG_BROKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address (0G-compatible API, /metrics, /healthz).
    #[arg(long, env = "ZG_BROKER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address.
    #[arg(long, env = "ZG_BROKER_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Public base URL of the HTTP API, registered on chain.
    #[arg(long, env = "ZG_BROKER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Public gRPC URL advertised on `GET /v1/info`.
    #[arg(long, env = "ZG_BROKER_PUBLIC_GRPC_URL")]
    pub public_grpc_url: Option<String>,
    /// Chain JSON-RPC URL.
    #[arg(long, env = "ZG_BROKER_RPC_URL")]
    pub rpc_url: Option<String>,
    /// TEE backend.
    #[arg(long, value_enum, env = "ZG_BROKER_TEE")]
    pub tee: Option<BackendChoice>,
    /// Neuron per dataset token per epoch.
    #[arg(long, env = "ZG_BROKER_PRICE_PER_TOKEN")]
    pub price_per_token: Option<String>,
    /// Stake paid when first registering, in 0G.
    #[arg(long, env = "ZG_BROKER_STAKE")]
    pub stake: Option<String>,
    /// Local storage directory (datasets by root, sealed models).
    #[arg(long, env = "ZG_BROKER_STORAGE_DIR")]
    pub storage_dir: Option<PathBuf>,
    /// Seconds a deliverable waits for the acknowledgement before the penalty settlement.
    #[arg(long, env = "ZG_BROKER_ACK_TIMEOUT_SECS")]
    pub ack_timeout_secs: Option<u64>,
    /// Trainings at once.
    #[arg(long, env = "ZG_BROKER_MAX_PARALLEL")]
    pub max_parallel: Option<usize>,
    /// Chain polling interval (ms).
    #[arg(long, env = "ZG_BROKER_POLL_INTERVAL_MS")]
    pub poll_interval_ms: Option<u64>,
    /// Pause after each epoch of the builtin trainer (ms; demos and crash tests).
    #[arg(long, env = "ZG_BROKER_EPOCH_PAUSE_MS")]
    pub epoch_pause_ms: Option<u64>,
    /// Require the owner's signature on HTTP task reads.
    #[arg(long, env = "ZG_BROKER_REQUIRE_READ_AUTH")]
    pub require_read_auth: Option<bool>,
    /// File holding the wallet's private key (hex). Or set ZG_BROKER_KEY.
    #[arg(long, env = "ZG_BROKER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Encrypted keystore holding the wallet key; its password comes from ZG_BROKER_KEYSTORE_PASSWORD.
    #[arg(long, env = "ZG_BROKER_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// LedgerManager address (default: the devnet address).
    #[arg(long, env = "ZG_BROKER_LEDGER_CA")]
    pub ledger_ca: Option<Address>,
    /// InferenceServing address (default: the devnet address).
    #[arg(long, env = "ZG_BROKER_INFERENCE_CA")]
    pub inference_ca: Option<Address>,
    /// FineTuningServing address (default: the devnet address).
    #[arg(long, env = "ZG_BROKER_FINE_TUNING_CA")]
    pub fine_tuning_ca: Option<Address>,
    /// Attestation policy (TOML or JSON) inference providers must pass to receive adapters (`[adapters] policy`).
    #[arg(long, env = "ZG_BROKER_ADAPTERS_POLICY")]
    pub adapters_policy: Option<PathBuf>,
    /// DANGEROUS, development only: accept an inference provider's SIMULATED evidence (no TEE at all) when
    /// deploying adapters to it.
    #[arg(long, env = "ZG_BROKER_ADAPTERS_DANGEROUS_ALLOW_SIMULATED")]
    pub adapters_dangerous_allow_simulated: bool,
    /// DANGEROUS, development only: accept any provider image when the adapters policy's allow-list is empty.
    #[arg(long, env = "ZG_BROKER_ADAPTERS_DANGEROUS_ANY_IMAGE")]
    pub adapters_dangerous_any_image: bool,
}

/// `[adapters]`: how the broker judges the inference providers it deploys adapters to.
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    /// The attestation policy (nonce and signer are set per deployment).
    pub policy: zg_attestation::AttestationPolicy,
    /// DCAP collateral file for real TDX quotes.
    pub collateral: Option<PathBuf>,
    /// Wall time of one deployment.
    pub timeout: Duration,
    /// Largest adapter deployed.
    pub max_package_bytes: u64,
    /// Per-provider gRPC URL overrides.
    pub grpc_urls: BTreeMap<Address, String>,
}

/// Where the wallet key comes from (the key itself is read at start, never logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `ZG_BROKER_KEY` (hex).
    Env,
    /// A file holding the hex key.
    File(PathBuf),
    /// An encrypted keystore (password from `ZG_BROKER_KEYSTORE_PASSWORD`).
    Keystore(PathBuf),
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Public URL.
    pub public_url: String,
    /// Public gRPC URL (default derived from the public URL).
    pub public_grpc_url: Option<String>,
    /// Authenticated HTTP reads.
    pub require_read_auth: bool,
    /// Price per token.
    pub price_per_token: U256,
    /// Stake (0G text).
    pub stake: String,
    /// Quota published on chain.
    pub quota: zg_chain::FineTuningQuota,
    /// Pipeline knobs.
    pub max_parallel: usize,
    /// Queue bound.
    pub max_queue: u64,
    /// Per-customer bound.
    pub max_per_customer: u64,
    /// Epoch bound.
    pub max_epochs: u32,
    /// Training wall time.
    pub train_timeout: Duration,
    /// Acknowledgement timeout.
    pub ack_timeout: Duration,
    /// Chain polling.
    pub poll_interval: Duration,
    /// Require the customer's signer acknowledgement at admission.
    pub require_customer_ack: bool,
    /// Dataset bytes.
    pub dataset_max_bytes: u64,
    /// Dataset records.
    pub dataset_max_records: u64,
    /// Models.
    pub models: Vec<ModelConfig>,
    /// Local store directory.
    pub storage_dir: PathBuf,
    /// 0G Storage nodes (empty = local store).
    pub storage_nodes: Vec<String>,
    /// RPC URL.
    pub rpc_url: String,
    /// Contracts.
    pub contracts: zg_chain::ContractAddresses,
    /// Key source.
    pub key: KeySource,
    /// TEE backend.
    pub tee: BackendChoice,
    /// dstack socket.
    pub dstack_socket: Option<PathBuf>,
    /// App compose file.
    pub app_compose: Option<PathBuf>,
    /// Adapter deployment.
    pub adapters: AdapterSettings,
}

fn neuron(field: &'static str, v: &str) -> Result<U256> {
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
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./zg-broker-data"));
        let mut models = if file.models.is_empty() {
            vec![ModelConfig {
                name: zg_ngram::DEMO_MODEL_ID.into(),
                executor: "builtin".into(),
                tokenizer: Some("zg-ngram".into()),
                ..ModelConfig::default()
            }]
        } else {
            file.models
        };
        if let Some(ms) = args.epoch_pause_ms {
            for m in models.iter_mut().filter(|m| m.executor == "builtin") {
                m.epoch_pause_ms = Some(ms);
            }
        }
        for m in &models {
            if !matches!(
                m.executor.as_str(),
                "builtin" | "lora" | "command" | "docker" | "podman"
            ) {
                return Err(Error::Config {
                    field: "models.executor",
                    value: m.executor.clone(),
                    fix: "use builtin, lora, command, docker or podman".into(),
                });
            }
            if m.name.is_empty() || m.name.len() > 128 || m.name.contains(['/', '\\', ' ']) {
                return Err(Error::Config {
                    field: "models.name",
                    value: m.name.clone(),
                    fix: "1..=128 characters without slashes or spaces".into(),
                });
            }
        }
        let key = match (
            args.keystore.or(file.chain.keystore),
            args.key_file.or(file.chain.key_file),
        ) {
            (Some(k), _) => KeySource::Keystore(k),
            (None, Some(f)) => KeySource::File(f),
            (None, None) => KeySource::Env,
        };
        let d = zg_chain::ContractAddresses::DEVNET;
        let max_parallel = args.max_parallel.or(file.tasks.max_parallel).unwrap_or(2);
        if max_parallel == 0 {
            return Err(Error::Config {
                field: "tasks.max_parallel",
                value: "0".into(),
                fix: "use at least 1 (--max-parallel, ZG_BROKER_MAX_PARALLEL)".into(),
            });
        }
        let mut adapters_file = file.adapters;
        if let Some(p) = args.adapters_policy {
            adapters_file.policy = Some(p);
        }
        let adapters = adapter_settings(
            adapters_file,
            args.adapters_dangerous_allow_simulated,
            args.adapters_dangerous_any_image,
        )?;
        let storage_dir = args
            .storage_dir
            .or(file.storage.dir)
            .unwrap_or_else(|| data_dir.join("storage"));
        Ok(Settings {
            http_addr: args
                .http_addr
                .or(file.server.http_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8090))),
            grpc_addr: args
                .grpc_addr
                .or(file.server.grpc_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 50061))),
            public_url: args
                .public_url
                .or(file.server.public_url)
                .unwrap_or_else(|| "http://127.0.0.1:8090".into()),
            public_grpc_url: args.public_grpc_url.or(file.server.public_grpc_url),
            require_read_auth: args
                .require_read_auth
                .or(file.server.require_read_auth)
                .unwrap_or(false),
            price_per_token: neuron(
                "service.price_per_token",
                &args
                    .price_per_token
                    .or(file.service.price_per_token)
                    .unwrap_or_else(|| "1000000000".into()),
            )?,
            stake: args.stake.or(file.service.stake).unwrap_or_else(|| "1".into()),
            quota: zg_chain::FineTuningQuota {
                cpu_count: U256::from(file.service.cpu_count.unwrap_or(8)),
                node_memory: U256::from(file.service.node_memory.unwrap_or(64)),
                gpu_count: U256::from(file.service.gpu_count.unwrap_or(0)),
                node_storage: U256::from(file.service.node_storage.unwrap_or(500)),
                gpu_type: file.service.gpu_type.unwrap_or_else(|| "cpu".into()),
            },
            max_parallel,
            max_queue: file.tasks.max_queue.unwrap_or(1000),
            max_per_customer: file.tasks.max_per_customer.unwrap_or(32),
            max_epochs: file.tasks.max_epochs.unwrap_or(10),
            train_timeout: Duration::from_secs(file.tasks.train_timeout_secs.unwrap_or(3600)),
            ack_timeout: Duration::from_secs(
                args.ack_timeout_secs
                    .or(file.tasks.ack_timeout_secs)
                    .unwrap_or(86_400),
            ),
            poll_interval: Duration::from_millis(
                args.poll_interval_ms
                    .or(file.tasks.poll_interval_ms)
                    .unwrap_or(2000)
                    .max(10),
            ),
            require_customer_ack: file.tasks.require_customer_ack.unwrap_or(true),
            dataset_max_bytes: file.dataset.max_bytes.unwrap_or(100 << 20),
            dataset_max_records: file.dataset.max_records.unwrap_or(1_000_000),
            models,
            storage_dir,
            storage_nodes: file.storage.nodes.unwrap_or_default(),
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
            key,
            tee: args.tee.or(file.tee.backend).unwrap_or(BackendChoice::Auto),
            dstack_socket: file.tee.dstack_socket,
            app_compose: file.tee.app_compose,
            adapters,
            data_dir,
        })
    }

    /// Reads the wallet key from its source.
    pub fn load_key(&self) -> Result<zg_chain::PrivateKeySigner> {
        let bad = |fix: String| Error::Config {
            field: "chain.key",
            value: "<hidden>".into(),
            fix,
        };
        match &self.key {
            KeySource::Env => {
                let k = std::env::var("ZG_BROKER_KEY").map_err(|_| {
                    bad("give the broker wallet key: env ZG_BROKER_KEY, --key-file / chain.key_file, or --keystore".into())
                })?;
                zg_chain::signer_from_hex(k.trim())
                    .map_err(|e| bad(format!("ZG_BROKER_KEY is not a hex private key ({e})")))
            }
            KeySource::File(p) => {
                let k = std::fs::read_to_string(p).map_err(|source| Error::Io {
                    op: "read key file",
                    path: p.clone(),
                    source,
                })?;
                zg_chain::signer_from_hex(k.trim())
                    .map_err(|e| bad(format!("{} is not a hex private key ({e})", p.display())))
            }
            KeySource::Keystore(p) => {
                let pw = std::env::var("ZG_BROKER_KEYSTORE_PASSWORD")
                    .map_err(|_| bad("set ZG_BROKER_KEYSTORE_PASSWORD to open the keystore".into()))?;
                zg_chain::load_keystore(p, &pw).map_err(|e| Error::Chain {
                    op: "open keystore",
                    source: Box::new(e),
                })
            }
        }
    }
}

fn adapter_settings(f: AdaptersFile, allow_simulated: bool, any_image: bool) -> Result<AdapterSettings> {
    let mut policy = match &f.policy {
        Some(p) => zg_attestation::AttestationPolicy::from_file(p).map_err(|e| Error::Config {
            field: "adapters.policy",
            value: p.display().to_string(),
            fix: format!("give a valid attestation policy file, TOML or JSON ({e})"),
        })?,
        None => zg_attestation::AttestationPolicy::default(),
    };
    if allow_simulated || f.dangerous_allow_simulated == Some(true) {
        tracing::warn!(
            "\n!!  ADAPTERS: DANGEROUS — inference providers with SIMULATED evidence (no TEE at all) receive  !!\n\
             !!  customers' adapters (adapters.dangerous_allow_simulated). Development and devnet only.     !!"
        );
        policy.dangerous_allow_simulated = true;
    }
    if any_image || f.dangerous_any_image == Some(true) {
        tracing::warn!(
            "ADAPTERS: DANGEROUS — any provider image passes when the policy's allow-list is empty (adapters.dangerous_any_image)"
        );
        policy.dangerous_any_image = true;
    }
    for (provider, url) in &f.grpc_urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config {
                field: "adapters.grpc_urls",
                value: format!("{provider} = {url}"),
                fix: "give an http:// or https:// URL".into(),
            });
        }
    }
    Ok(AdapterSettings {
        policy,
        collateral: f.collateral,
        timeout: Duration::from_secs(f.timeout_secs.unwrap_or(120).max(1)),
        max_package_bytes: f
            .max_package_bytes
            .unwrap_or(zg_adapters::DEFAULT_MAX_PACKAGE_BYTES),
        grpc_urls: f.grpc_urls,
    })
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
        fix: format!("fix the TOML ({e}); `zg-broker init --force` writes a fresh commented file"),
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
        assert_eq!(s.models.len(), 1);
        assert_eq!(s.models[0].executor, "builtin");
        assert_eq!(s.price_per_token, U256::from(1_000_000_000u64));
        assert_eq!(s.http_addr.port(), 8090);
        assert_eq!(s.key, KeySource::Env);
        let s = Settings::resolve(RunArgs {
            config: Some(p),
            http_addr: Some("127.0.0.1:9999".parse().unwrap()),
            price_per_token: Some("7".into()),
            epoch_pause_ms: Some(5),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.http_addr.port(), 9999);
        assert_eq!(s.price_per_token, U256::from(7));
        assert_eq!(s.models[0].epoch_pause_ms, Some(5));
    }

    /// `[adapters]`: the strict default refuses simulated providers; the dangerous switches come from the file
    /// or the flags; a URL override that is not http(s) and an unreadable policy are refused by name.
    #[test]
    fn adapters_section_defaults_strict_and_opts_in_loudly() {
        let s = Settings::resolve(RunArgs::default()).unwrap();
        assert!(!s.adapters.policy.dangerous_allow_simulated);
        assert!(!s.adapters.policy.dangerous_any_image);
        assert_eq!(s.adapters.timeout, Duration::from_secs(120));
        assert_eq!(
            s.adapters.max_package_bytes,
            zg_adapters::DEFAULT_MAX_PACKAGE_BYTES
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[adapters]\ndangerous_allow_simulated = true\ntimeout_secs = 7\n\
             [adapters.grpc_urls]\n\"0x00000000000000000000000000000000000000c1\" = \"http://10.0.0.5:50051\"\n",
        )
        .unwrap();
        let s = Settings::resolve(RunArgs {
            config: Some(p.clone()),
            adapters_dangerous_any_image: true,
            ..RunArgs::default()
        })
        .unwrap();
        assert!(s.adapters.policy.dangerous_allow_simulated);
        assert!(s.adapters.policy.dangerous_any_image);
        assert_eq!(s.adapters.timeout, Duration::from_secs(7));
        let mut c1 = [0u8; 20];
        c1[19] = 0xc1;
        assert_eq!(
            s.adapters.grpc_urls.get(&Address::from(c1)).map(String::as_str),
            Some("http://10.0.0.5:50051")
        );
        std::fs::write(
            &p,
            "[adapters.grpc_urls]\n\"0x00000000000000000000000000000000000000c1\" = \"file:///x\"\n",
        )
        .unwrap();
        let e = Settings::resolve(RunArgs {
            config: Some(p.clone()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("adapters.grpc_urls"), "{e}");
        std::fs::write(&p, "[adapters]\npolicy = \"/nonexistent/policy.toml\"\n").unwrap();
        let e = Settings::resolve(RunArgs {
            config: Some(p),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("adapters.policy"), "{e}");
    }

    #[test]
    fn errors_name_the_fix() {
        let e = Settings::resolve(RunArgs {
            price_per_token: Some("1.5".into()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("neuron"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[tasks]\nmax_paralel = 3\n").unwrap();
        let e = Settings::resolve(RunArgs {
            config: Some(p.clone()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("max_paralel"), "{e}");
        std::fs::write(&p, "[[models]]\nname = \"x\"\nexecutor = \"magic\"\n").unwrap();
        let e = Settings::resolve(RunArgs {
            config: Some(p),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("builtin, lora, command, docker or podman"),
            "{e}"
        );
    }
}
