//! `zg fine-tuning …` (0G's verb names): list and verify fine-tuning providers, count tokens, upload datasets,
//! create and follow tasks over the broker's gRPC (signed reads, live logs through WatchTask), download and
//! check the sealed model (root on chain + TEE tag signature) before acknowledging it, decrypt it, and try it.
//!
//! The chain is the trust anchor: the broker's URL, TEE signer and price come from FineTuningServing; what the
//! broker says is checked against them.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::{Value, json};
use zg_chain::{Address, Amount, Client, U256};
use zg_finetune::{Dataset, DatasetLimits, SigningKey, TaskId, TrainingParams, sig};
use zg_proto::v1 as pb;
use zg_proto::v1::fine_tuning_client::FineTuningClient;

use super::opts::{RpcOpts, WalletOpts};
use super::{GlobalOpts, sealing, storage};
use crate::output;

/// Fine-tuning as a customer: providers, tasks, deliverables.
#[derive(Debug, Subcommand)]
pub(crate) enum FineTuningCommand {
    /// Fine-tuning services registered on chain: URL, price per token, models, TEE signer.
    ListProviders(ListProvidersArgs),
    /// Models the providers fine-tune (asked from each provider's broker).
    ListModels(ListModelsArgs),
    /// Count a dataset's tokens offline with the model's tokenizer; with --provider and --config-path, the fee.
    ///
    /// Example: `zg fine-tuning calculate-token --model zg-demo-ngram --dataset-path data.jsonl`
    CalculateToken(CalculateTokenArgs),
    /// Store a dataset (local store or 0G Storage) and print its root, for `create-task --dataset`.
    Upload(storage::UploadArgs),
    /// Create a task: checks the broker against the chain, acknowledges its TEE signer if needed, signs the
    /// model, the config and the most you agree to pay.
    ///
    /// Example: `zg fine-tuning create-task --provider 0x… --model zg-demo-ngram --dataset-path data.jsonl
    /// --config-path config.json --follow`
    CreateTask(CreateTaskArgs),
    /// One task (default: your latest).
    GetTask(GetTaskArgs),
    /// Your tasks with a provider, newest first.
    ListTasks(BrokerArgs),
    /// A task's log (default: your latest task); --follow streams it live until the task ends.
    GetLog(GetLogArgs),
    /// Cancel a task before its deliverable is recorded on chain (nothing is charged).
    CancelTask(TaskArgs),
    /// Download the sealed model (storage, or the TEE), check it against the root on chain and the TEE's tag
    /// signature, then acknowledge it on chain so that settlement reveals your key.
    AcknowledgeModel(AcknowledgeModelArgs),
    /// Acknowledge a deliverable on chain without downloading it (nothing is checked).
    AcknowledgeDeliverable(TaskArgs),
    /// Decrypt a sealed model with the key revealed on chain (same as `zg decrypt-model`).
    DecryptModel(sealing::DecryptModelArgs),
    /// Verify a fine-tuning provider's TEE: fresh attestation bound to your nonce, signer = on-chain signer.
    Verify(VerifyArgs),
    /// Try a decrypted model locally: the base model's answer and the fine-tuned one to the same prompt (a LoRA
    /// adapter on its SmolLM2 base, greedy by default; or a zg-demo-ngram delta).
    Generate(GenerateArgs),
    /// Deploy your fine-tuned LoRA adapter to an inference provider, which then serves it to you only.
    ///
    /// You sign a deploy authorization (this task, this broker, that provider, valid 10 minutes); the broker
    /// checks the task is yours and acknowledged, verifies the provider's TEE (fresh attestation, on-chain
    /// signer) and hands the adapter over sealed to that TEE. Prints the adapter's model name.
    ///
    /// Example: `zg fine-tuning deploy-adapter --provider <INFERENCE provider> --broker <fine-tuning provider>
    /// --task-id <id>`
    DeployAdapter(DeployAdapterArgs),
    /// The model name a task's adapter is served as: `ft-<base model>-<first 12 characters of the task id>`
    /// (0G's rule; computed locally).
    ///
    /// Example: `zg fine-tuning get-adapter-name --model smollm2-135m-instruct --task-id <id>`
    GetAdapterName(GetAdapterNameArgs),
    /// Chat with your deployed adapter on an inference provider: a verified, billed request whose receipt
    /// must name the adapter.
    ///
    /// Example: `zg fine-tuning chat --provider <INFERENCE provider> --task-id <id> "How long do I bake it?"`
    Chat(AdapterChatArgs),
}

impl FineTuningCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        match self {
            Self::ListProviders(a) => a.run(g).await,
            Self::ListModels(a) => a.run(g).await,
            Self::CalculateToken(a) => a.run(g).await,
            Self::Upload(a) => a.run(g).await,
            Self::CreateTask(a) => a.run(g).await,
            Self::GetTask(a) => a.run(g).await,
            Self::ListTasks(a) => list_tasks(a, g).await,
            Self::GetLog(a) => a.run(g).await,
            Self::CancelTask(a) => cancel(a, g).await,
            Self::AcknowledgeModel(a) => a.run(g).await,
            Self::AcknowledgeDeliverable(a) => acknowledge_deliverable(a, g).await,
            Self::DecryptModel(a) => a.run(g).await,
            Self::Verify(a) => a.run(g).await,
            Self::Generate(a) => a.run(g).await,
            Self::DeployAdapter(a) => a.run(g).await,
            Self::GetAdapterName(a) => a.run(g),
            Self::Chat(a) => a.run(g).await,
        }
    }
}

// ------------------------------------------------------------------------------------------------ plumbing

/// A provider's broker, with the chain and your key.
#[derive(Debug, Clone, Args)]
pub(crate) struct BrokerArgs {
    /// The provider's address.
    #[arg(long, value_name = "ADDR")]
    provider: Address,
    /// Reach the broker's HTTP API here instead of the URL registered on chain (tunnels, tests).
    #[arg(long, env = "ZG_BROKER_URL", value_name = "URL", help_heading = "Broker")]
    broker_url: Option<String>,
    /// Reach the broker's gRPC API here instead of the one it advertises on `GET /v1/info`.
    #[arg(long, env = "ZG_BROKER_GRPC", value_name = "URL", help_heading = "Broker")]
    grpc: Option<String>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

struct Broker {
    chain: Client,
    sk: SigningKey,
    user: Address,
    provider: Address,
    url: String,
    tee_signer: Address,
    grpc: FineTuningClient<tonic::transport::Channel>,
    http: reqwest::Client,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap_or_default()
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let v: Value = r.json().await.with_context(|| format!("GET {url}: not JSON"))?;
    if !status.is_success() {
        anyhow::bail!("GET {url}: {status}: {}", v["error"].as_str().unwrap_or_default());
    }
    Ok(v)
}

fn grpc_err(e: tonic::Status) -> anyhow::Error {
    let code = e
        .metadata()
        .get("zg-error-code")
        .and_then(|v| v.to_str().ok())
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    anyhow::anyhow!("broker: {}{code}", e.message())
}

impl BrokerArgs {
    async fn connect(&self) -> anyhow::Result<Broker> {
        let signer = self.wallet.signer()?;
        let sk = SigningKey::from_slice(signer.to_bytes().as_slice())
            .context("the wallet key is not secp256k1")?;
        let chain = self.rpc.connect(Some(signer.clone())).await?;
        let service = chain
            .fine_tuning()
            .get_service(self.provider)
            .await?
            .with_context(|| {
                format!(
                    "{} has no fine-tuning service on chain (zg fine-tuning list-providers)",
                    self.provider
                )
            })?;
        let url = self
            .broker_url
            .clone()
            .unwrap_or_else(|| service.url.clone())
            .trim_end_matches('/')
            .to_owned();
        let http = http();
        let info = get_json(&http, &format!("{url}/v1/info")).await?;
        let advertised: Address = info["teeSigner"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .context("the broker's /v1/info has no teeSigner")?;
        if advertised != service.tee_signer {
            anyhow::bail!(
                "the broker at {url} says its TEE signer is {advertised}, but the chain says {}: refusing it",
                service.tee_signer
            );
        }
        let grpc_url = match &self.grpc {
            Some(g) => g.clone(),
            None => info["grpcUrl"]
                .as_str()
                .filter(|s| !s.is_empty())
                .context("the broker advertises no gRPC URL: pass --grpc")?
                .to_owned(),
        };
        let grpc = FineTuningClient::connect(grpc_url.clone())
            .await
            .with_context(|| {
                format!("connecting to the broker's gRPC at {grpc_url} (--grpc, ZG_BROKER_GRPC)")
            })?
            .max_decoding_message_size(8 << 20);
        Ok(Broker {
            user: signer.address(),
            chain,
            sk,
            provider: self.provider,
            url,
            tee_signer: service.tee_signer,
            grpc,
            http,
        })
    }
}

impl Broker {
    fn auth(&self) -> anyhow::Result<pb::ReadAuth> {
        let ts = zg_finetune::now_ms() / 1000;
        let s = sig::sign_personal(&self.sk, &sig::read_digest(self.user, ts))?;
        Ok(pb::ReadAuth {
            user: self.user.to_checksum(None),
            timestamp: ts,
            signature: s.to_vec(),
        })
    }

    async fn task(&mut self, id: Option<&str>) -> anyhow::Result<pb::Task> {
        match id {
            Some(id) => Ok(self
                .grpc
                .get_task(pb::GetTaskRequest {
                    auth: Some(self.auth()?),
                    id: id.to_owned(),
                })
                .await
                .map_err(grpc_err)?
                .into_inner()),
            None => self
                .grpc
                .list_tasks(pb::ListTasksRequest {
                    auth: Some(self.auth()?),
                    limit: 1,
                })
                .await
                .map_err(grpc_err)?
                .into_inner()
                .tasks
                .into_iter()
                .next()
                .with_context(|| format!("you have no task with {}", self.provider)),
        }
    }
}

/// A task with a provider.
#[derive(Debug, Clone, Args)]
pub(crate) struct TaskArgs {
    /// The task id.
    #[arg(long = "task", alias = "task-id", value_name = "ID")]
    task: String,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Debug, Serialize)]
struct TaskView {
    id: String,
    state: String,
    model: String,
    dataset: String,
    created_at: String,
    tokens: u64,
    epochs: u32,
    price_per_token: String,
    fee: String,
    fee_0g: String,
    progress: f64,
    fail_reason: String,
    model_root_hash: String,
    storage_root: String,
    deliver_tx: String,
    settle_tx: String,
    charged: String,
    ack_deadline: String,
}

fn ms_time(ms: i64) -> String {
    if ms == 0 {
        return String::new();
    }
    let secs = ms / 1000;
    format!("{secs} (unix seconds)")
}

fn view(t: &pb::Task) -> TaskView {
    let fee_0g = t
        .fee
        .parse::<U256>()
        .map(|f| Amount(f).to_string())
        .unwrap_or_default();
    TaskView {
        id: t.id.clone(),
        state: t.state.clone(),
        model: t.model.clone(),
        dataset: t.dataset_hash.clone(),
        created_at: ms_time(t.created_at_ms),
        tokens: t.tokens,
        epochs: t.epochs,
        price_per_token: t.price_per_token.clone(),
        fee: t.fee.clone(),
        fee_0g,
        progress: t.progress,
        fail_reason: t.fail_reason.clone(),
        model_root_hash: t.model_root_hash.clone(),
        storage_root: t.storage_root.clone(),
        deliver_tx: t.deliver_tx.clone(),
        settle_tx: t.settle_tx.clone(),
        charged: t.charged.clone(),
        ack_deadline: ms_time(t.ack_deadline_ms),
    }
}

fn print_task(g: &GlobalOpts, t: &pb::Task) -> anyhow::Result<()> {
    let v = view(t);
    if g.json {
        return output::json(&v);
    }
    let mut s = format!(
        "task {}  {}  model {}\n  dataset {}",
        v.id, v.state, v.model, v.dataset
    );
    if !v.fee.is_empty() {
        s.push_str(&format!(
            "\n  fee {} neuron ({}) = {} tokens × {} epoch(s) × {} neuron",
            v.fee, v.fee_0g, v.tokens, v.epochs, v.price_per_token
        ));
    }
    if v.state == "Training" {
        s.push_str(&format!("\n  progress {:.0}%", v.progress * 100.0));
    }
    for (k, val) in [
        ("failed", &v.fail_reason),
        ("modelRootHash", &v.model_root_hash),
        ("storage root", &v.storage_root),
        ("addDeliverable", &v.deliver_tx),
        ("settleFees", &v.settle_tx),
        ("charged (neuron)", &v.charged),
    ] {
        if !val.is_empty() {
            s.push_str(&format!("\n  {k} {val}"));
        }
    }
    output::text(s)
}

// ------------------------------------------------------------------------------------------------ providers

/// `list-providers`.
#[derive(Debug, Args)]
pub(crate) struct ListProvidersArgs {
    /// Also list services whose TEE signer the contract owner has not acknowledged (the official CLI hides them).
    #[arg(long)]
    include_invalid: bool,
    #[command(flatten)]
    rpc: RpcOpts,
}

impl ListProvidersArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let chain = self.rpc.connect(None).await?;
        let services: Vec<_> = chain
            .fine_tuning()
            .list_services()
            .await?
            .into_iter()
            .filter(|s| self.include_invalid || s.tee_signer_acknowledged)
            .collect();
        if g.json {
            output::json(&services)?;
        } else if services.is_empty() {
            output::text(
                "no fine-tuning services (with an acknowledged TEE signer; --include-invalid lists all)",
            )?;
        } else {
            for s in &services {
                output::text(format!(
                    "{}  {}{}\n  price {} neuron per dataset token per epoch ({})\n  models {}\n  TEE signer {}{}\n  machine: {} CPU, {} GPU ({}), memory {}, storage {}",
                    s.provider,
                    s.url,
                    if s.occupied { "  (occupied)" } else { "" },
                    s.price_per_token,
                    Amount(s.price_per_token),
                    s.models.join(", "),
                    s.tee_signer,
                    if s.tee_signer_acknowledged {
                        " (acknowledged by the contract owner)"
                    } else {
                        " (NOT acknowledged)"
                    },
                    s.quota.cpu_count,
                    s.quota.gpu_count,
                    s.quota.gpu_type,
                    s.quota.node_memory,
                    s.quota.node_storage,
                ))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `list-models`.
#[derive(Debug, Args)]
pub(crate) struct ListModelsArgs {
    /// Only this provider.
    #[arg(long, value_name = "ADDR")]
    provider: Option<Address>,
    #[command(flatten)]
    rpc: RpcOpts,
}

impl ListModelsArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let chain = self.rpc.connect(None).await?;
        let http = http();
        let mut rows = Vec::new();
        for s in chain.fine_tuning().list_services().await? {
            if self.provider.is_some_and(|p| p != s.provider) || s.models.is_empty() {
                continue;
            }
            let url = format!("{}/v1/model", s.url.trim_end_matches('/'));
            match get_json(&http, &url).await {
                Ok(Value::Array(models)) => {
                    for m in models {
                        let name = m["name"].as_str().unwrap_or_default().to_owned();
                        let detail = get_json(&http, &format!("{url}/{name}"))
                            .await
                            .unwrap_or(Value::Null);
                        rows.push(json!({
                            "provider": s.provider,
                            "name": name,
                            "description": m["description"],
                            "tokenizer": detail["tokenizer"],
                            "hash": detail["hash"],
                            "pricePerToken": s.price_per_token.to_string(),
                        }));
                    }
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(provider = %s.provider, %url, "cannot list this provider's models")
                }
            }
        }
        if g.json {
            output::json(&rows)?;
        } else if rows.is_empty() {
            output::text("no models")?;
        } else {
            for r in &rows {
                output::text(format!(
                    "{}  (provider {}, tokenizer {})\n  {}",
                    r["name"].as_str().unwrap_or_default(),
                    r["provider"].as_str().unwrap_or_default(),
                    r["tokenizer"].as_str().unwrap_or("?"),
                    r["description"].as_str().unwrap_or_default()
                ))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

// ------------------------------------------------------------------------------------------------ tokens

/// `calculate-token`.
#[derive(Debug, Args)]
pub(crate) struct CalculateTokenArgs {
    /// The base model (its tokenizer counts).
    #[arg(long)]
    model: String,
    /// The dataset (JSONL, or a zip of JSONL files).
    #[arg(long, value_name = "FILE")]
    dataset_path: PathBuf,
    /// Training config: its num_train_epochs multiplies the fee.
    #[arg(long, value_name = "FILE")]
    config_path: Option<PathBuf>,
    /// Ask this provider for the model's tokenizer and price (otherwise only built-in model families are known).
    #[arg(long, value_name = "ADDR")]
    provider: Option<Address>,
    /// A real model's GGUF whose tokenizer counts (SmolLM2: what the broker's `lora` executor bills with).
    #[arg(long, env = "ZG_MODEL_PATH", value_name = "FILE", default_value = DEFAULT_MODEL_PATH)]
    model_path: PathBuf,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// The model id whose tokenizer is SmolLM2's (the provider's and the broker's built-in real model).
const SMOLLM2_MODEL: &str = "smollm2-135m-instruct";
/// Where `just setup` puts SmolLM2's GGUF.
const DEFAULT_MODEL_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The tokenizer a broker names (`zg-ngram`, `bytes`, or a real model's name, e.g. `SmolLM2-135M-Instruct`, whose
/// tokenizer is read from the GGUF at `model_path`, on a blocking thread: it is about 100 MB).
async fn tokenizer_named(name: &str, model_path: &Path) -> anyhow::Result<Box<dyn zg_finetune::Tokenizer>> {
    match name {
        "zg-ngram" => Ok(Box::new(zg_finetune::WordTokenizer)),
        "bytes" => Ok(Box::new(zg_finetune::ByteTokenizer)),
        wanted => {
            let path = model_path.to_owned();
            let model = tokio::task::spawn_blocking(move || zg_model::Model::load(&path, zg_model::LoadOptions::default()))
                .await?
                .with_context(|| {
                    format!(
                        "the tokenizer {wanted:?} is a real model's: loading {} (run `just setup` to fetch SmolLM2, \
                         or pass --model-path FILE)",
                        model_path.display()
                    )
                })?;
            anyhow::ensure!(
                model.name() == wanted,
                "the broker counts with {wanted:?} but {} holds {:?}: pass --model-path with that model's GGUF",
                model_path.display(),
                model.name()
            );
            Ok(Box::new(zg_finetune::ModelTokenizer::new(model)))
        }
    }
}

impl CalculateTokenArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let (tokenizer, price) = match self.provider {
            Some(p) => {
                let chain = self.rpc.connect(None).await?;
                let s = chain
                    .fine_tuning()
                    .get_service(p)
                    .await?
                    .with_context(|| format!("{p} has no fine-tuning service"))?;
                let m = get_json(
                    &http(),
                    &format!("{}/v1/model/{}", s.url.trim_end_matches('/'), self.model),
                )
                .await?;
                (
                    m["tokenizer"].as_str().unwrap_or("bytes").to_owned(),
                    Some(s.price_per_token),
                )
            }
            None if self.model == zg_ngram::DEMO_MODEL_ID => ("zg-ngram".to_owned(), None),
            None if self.model == SMOLLM2_MODEL => ("SmolLM2-135M-Instruct".to_owned(), None),
            None => anyhow::bail!(
                "the tokenizer of {:?} is not built in: pass --provider to ask its broker",
                self.model
            ),
        };
        let tok = tokenizer_named(&tokenizer, &self.model_path).await?;
        let epochs = match &self.config_path {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                TrainingParams::parse(&text, u32::MAX)?.num_train_epochs
            }
            None => 1,
        };
        let path = self.dataset_path.clone();
        let ds =
            tokio::task::spawn_blocking(move || Dataset::load(&path, &DatasetLimits::default())).await??;
        let tokens = ds.token_count(tok.as_ref());
        let fee = price.map(|p| U256::from(tokens) * U256::from(epochs) * p);
        if g.json {
            output::json(&json!({
                "model": self.model, "tokenizer": tokenizer, "records": ds.records.len(), "format": ds.format,
                "tokens": tokens, "epochs": epochs, "pricePerToken": price.map(|p| p.to_string()),
                "fee": fee.map(|f| f.to_string()),
            }))?;
        } else {
            output::text(format!(
                "{tokens} tokens ({tokenizer}) in {} {} records",
                ds.records.len(),
                ds.format.as_str()
            ))?;
            if let (Some(fee), Some(price)) = (fee, price) {
                output::text(format!(
                    "fee {fee} neuron ({}) = {tokens} × {epochs} epoch(s) × {price} neuron",
                    Amount(fee)
                ))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

// ------------------------------------------------------------------------------------------------ tasks

/// `create-task`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("data").required(true).args(["dataset", "dataset_path"])))]
pub(crate) struct CreateTaskArgs {
    /// Base model name (see list-models).
    #[arg(long)]
    model: String,
    /// A dataset already in storage: its root (from `zg fine-tuning upload`).
    #[arg(long, value_name = "ROOT")]
    dataset: Option<String>,
    /// A dataset file: uploaded to the broker's TEE directly (signed), never to public storage.
    #[arg(long, value_name = "FILE")]
    dataset_path: Option<PathBuf>,
    /// Training config (JSON; e.g. {"num_train_epochs": 2}).
    #[arg(long, value_name = "FILE")]
    config_path: PathBuf,
    /// The most you agree to pay (0G or neuron); default: what the sub-account holds. Signed: the task fails
    /// before training if the fee is higher.
    #[arg(long, value_name = "AMOUNT", value_parser = amount)]
    max_fee: Option<Amount>,
    /// Follow the log until the model is delivered (or the task ends).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn amount(s: &str) -> Result<Amount, String> {
    s.parse::<Amount>().map_err(|e| e.to_string())
}

async fn upload_to_tee(b: &Broker, path: &Path) -> anyhow::Result<String> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let ts = zg_finetune::now_ms() / 1000;
    let s = sig::sign_personal(&b.sk, &sig::dataset_digest(b.user, ts))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str("application/octet-stream")?,
        )
        .text("signature", format!("0x{}", hex::encode(s)))
        .text("timestamp", ts.to_string());
    let url = format!("{}/v1/user/{}/dataset", b.url, b.user.to_checksum(None));
    let r = b
        .http
        .post(&url)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "the broker refused the dataset ({status}): {}",
            v["error"].as_str().unwrap_or_default()
        );
    }
    v["datasetHash"]
        .as_str()
        .map(str::to_owned)
        .context("the broker answered without a datasetHash")
}

impl CreateTaskArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let mut b = self.broker.connect().await?;
        let config = std::fs::read_to_string(&self.config_path)
            .with_context(|| format!("reading --config-path {}", self.config_path.display()))?;
        TrainingParams::parse(&config, u32::MAX).context("--config-path")?;
        let ft = b.chain.fine_tuning();
        let account = ft.get_account(b.user, b.provider).await?.with_context(|| {
            format!(
                "you have no fine-tuning sub-account with {}: zg transfer-fund --provider {} --service fine-tuning --amount 2",
                b.provider, b.provider
            )
        })?;
        if !account.acknowledged {
            // Pin the signer the broker's /v1/info and the chain agreed on: a signer swapped in meanwhile is not
            // acknowledged by mistake (`TEESignerChanged`).
            let tx = ft
                .acknowledge_tee_signer_address(b.provider, b.tee_signer)
                .await?;
            tracing::info!(tx = %tx.tx, signer = %b.tee_signer, "acknowledged the provider's TEE signer");
        }
        let available = account.balance.0.saturating_sub(account.pending_refund.0);
        let max_fee = self.max_fee.map(|a| a.0).unwrap_or(available);
        let dataset = match (&self.dataset, &self.dataset_path) {
            (Some(root), _) => root.clone(),
            (None, Some(p)) => upload_to_tee(&b, p).await?,
            (None, None) => anyhow::bail!("give --dataset ROOT or --dataset-path FILE"),
        };
        let nonce = U256::from(u64::try_from(zg_finetune::now_ms()).unwrap_or(0)) * U256::from(10_000)
            + U256::from(40);
        let digest =
            sig::native_create_digest(b.provider, b.user, nonce, &dataset, &self.model, &config, max_fee);
        let signature = sig::sign_personal(&b.sk, &digest)?;
        let t = b
            .grpc
            .create_task(pb::CreateTaskRequest {
                user: b.user.to_checksum(None),
                dataset_hash: dataset,
                training_params: config,
                model: self.model.clone(),
                nonce: nonce.to_string(),
                signature: signature.to_vec(),
                max_fee: max_fee.to_string(),
            })
            .await
            .map_err(grpc_err)?
            .into_inner();
        if !self.follow {
            print_task(g, &t)?;
            return Ok(ExitCode::SUCCESS);
        }
        eprintln_task(&t);
        let last = follow(&mut b, &t.id, 0, false, false, |s| s == "Delivered").await?;
        print_task(g, &last)?;
        Ok(if last.state == "Failed" {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

fn eprintln_task(t: &pb::Task) {
    tracing::info!(task = %t.id, state = %t.state, "task created");
}

/// Streams a task's log. Log lines go to stdout when `to_stdout` (they are the result of `get-log`), else to
/// stderr. Returns the task as it was when the stream ended (terminal, or `stop_at` reached).
async fn follow(
    b: &mut Broker,
    id: &str,
    after: u64,
    to_stdout: bool,
    json_lines: bool,
    stop_at: impl Fn(&str) -> bool,
) -> anyhow::Result<pb::Task> {
    let mut stream = b
        .grpc
        .watch_task(pb::WatchTaskRequest {
            auth: Some(b.auth()?),
            id: id.to_owned(),
            after_seq: after,
        })
        .await
        .map_err(grpc_err)?
        .into_inner();
    let mut last: Option<pb::Task> = None;
    while let Some(u) = stream.message().await.map_err(grpc_err)? {
        match u.update {
            Some(pb::task_update::Update::Task(t)) => {
                let stop = stop_at(&t.state);
                last = Some(t);
                if stop {
                    break;
                }
            }
            // A live human view shows log lines; metrics repeat them as JSON (`get-log` and `--json` keep them).
            Some(pb::task_update::Update::Log(l)) if !json_lines && l.kind == "metric" => {}
            Some(pb::task_update::Update::Log(l)) => {
                let line = if json_lines {
                    serde_json::to_string(
                        &json!({"seq": l.seq, "at_ms": l.at_ms, "kind": l.kind, "line": l.line}),
                    )?
                } else if l.kind == "log" {
                    l.line
                } else {
                    format!("{}: {}", l.kind, l.line)
                };
                if to_stdout {
                    output::text(line)?;
                } else {
                    output::progress(line);
                }
            }
            None => {}
        }
    }
    last.context("the broker closed the stream without a task")
}

/// `get-task`.
#[derive(Debug, Args)]
pub(crate) struct GetTaskArgs {
    /// The task id (default: your latest task).
    #[arg(long = "task", alias = "task-id", value_name = "ID")]
    task: Option<String>,
    #[command(flatten)]
    broker: BrokerArgs,
}

impl GetTaskArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let mut b = self.broker.connect().await?;
        let t = b.task(self.task.as_deref()).await?;
        print_task(g, &t)?;
        Ok(ExitCode::SUCCESS)
    }
}

async fn list_tasks(a: BrokerArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let mut b = a.connect().await?;
    let tasks = b
        .grpc
        .list_tasks(pb::ListTasksRequest {
            auth: Some(b.auth()?),
            limit: 500,
        })
        .await
        .map_err(grpc_err)?
        .into_inner()
        .tasks;
    if g.json {
        output::json(&tasks.iter().map(view).collect::<Vec<_>>())?;
    } else if tasks.is_empty() {
        output::text(format!("no tasks with {}", b.provider))?;
    } else {
        for t in &tasks {
            output::text(format!("{}  {:<16} {}  fee {}", t.id, t.state, t.model, t.fee))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `get-log`.
#[derive(Debug, Args)]
pub(crate) struct GetLogArgs {
    /// The task id (default: your latest task).
    #[arg(long = "task", alias = "task-id", value_name = "ID")]
    task: Option<String>,
    /// Keep streaming new lines until the task ends (gRPC WatchTask).
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

impl GetLogArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let mut b = self.broker.connect().await?;
        let t = b.task(self.task.as_deref()).await?;
        if self.follow {
            follow(&mut b, &t.id, 0, true, g.json, |_| false).await?;
            return Ok(ExitCode::SUCCESS);
        }
        // Not following: the log so far, then stop at the first task update after it.
        let mut stream = b
            .grpc
            .watch_task(pb::WatchTaskRequest {
                auth: Some(b.auth()?),
                id: t.id.clone(),
                after_seq: 0,
            })
            .await
            .map_err(grpc_err)?
            .into_inner();
        let mut seen_task = false;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
            match next {
                Ok(Ok(Some(u))) => match u.update {
                    Some(pb::task_update::Update::Log(l)) => {
                        if g.json {
                            output::text(serde_json::to_string(
                                &json!({"seq": l.seq, "at_ms": l.at_ms, "kind": l.kind, "line": l.line}),
                            )?)?;
                        } else if l.kind == "log" {
                            output::text(l.line)?;
                        } else {
                            output::text(format!("{}: {}", l.kind, l.line))?;
                        }
                    }
                    Some(pb::task_update::Update::Task(_)) if seen_task => break,
                    _ => seen_task = true,
                },
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(e)) => return Err(grpc_err(e)),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn cancel(a: TaskArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let mut b = a.broker.connect().await?;
    let id = TaskId::parse(&a.task)?;
    let s = sig::sign_personal(&b.sk, &sig::cancel_digest(&id))?;
    let t = b
        .grpc
        .cancel_task(pb::CancelTaskRequest {
            user: b.user.to_checksum(None),
            id: id.to_string(),
            signature: s.to_vec(),
        })
        .await
        .map_err(grpc_err)?
        .into_inner();
    print_task(g, &t)?;
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------------ deliverables

/// Where `acknowledge-model` downloads from.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub(crate) enum DownloadMethod {
    /// Storage first, then the TEE.
    #[default]
    Auto,
    /// The storage backend only.
    Storage,
    /// The broker's TEE only (gRPC GetDeliverable).
    Tee,
}

/// `acknowledge-model`.
#[derive(Debug, Args)]
pub(crate) struct AcknowledgeModelArgs {
    /// The task id.
    #[arg(long = "task-id", alias = "task", value_name = "ID")]
    task_id: String,
    /// Where to save the sealed model.
    #[arg(long, value_name = "FILE")]
    data_path: PathBuf,
    /// Where to download from.
    #[arg(long, value_enum, default_value_t)]
    download_method: DownloadMethod,
    /// Local content-addressed store (the storage backend) [default: ~/.zg/storage].
    #[arg(long, env = "ZG_STORAGE_DIR", value_name = "DIR")]
    store_dir: Option<PathBuf>,
    #[command(flatten)]
    broker: BrokerArgs,
}

async fn download_tee(b: &mut Broker, id: &str, out: &Path) -> anyhow::Result<u64> {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = b
        .grpc
        .get_deliverable(pb::GetDeliverableRequest {
            auth: Some(b.auth()?),
            id: id.to_owned(),
        })
        .await
        .map_err(grpc_err)?
        .into_inner();
    let tmp = out.with_extension("part");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut n = 0u64;
    let mut size = None;
    while let Some(c) = stream.message().await.map_err(grpc_err)? {
        match c.chunk {
            Some(pb::deliverable_chunk::Chunk::Info(i)) => size = Some(i.size),
            Some(pb::deliverable_chunk::Chunk::Data(d)) => {
                n += d.len() as u64;
                if size.is_some_and(|s| n > s) {
                    anyhow::bail!("the broker sent more bytes than it announced");
                }
                f.write_all(&d).await?;
            }
            None => {}
        }
    }
    f.sync_all().await?;
    drop(f);
    if size != Some(n) {
        anyhow::bail!("the download ended after {n} bytes of {size:?}");
    }
    tokio::fs::rename(&tmp, out).await?;
    Ok(n)
}

fn default_store_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".zg")
        .join("storage")
}

impl AcknowledgeModelArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let mut b = self.broker.connect().await?;
        let id = TaskId::parse(&self.task_id)?.to_string();
        let d = b
            .chain
            .fine_tuning()
            .get_deliverable(b.user, b.provider, &id)
            .await?;
        let t = b.task(Some(&id)).await?;
        let out = self.data_path.clone();
        let from_storage = async {
            let root: zg_finetune::B256 = t.storage_root.parse().context("the task names no storage root")?;
            let store =
                zg_storage::LocalStore::open(self.store_dir.clone().unwrap_or_else(default_store_dir))?;
            let out = out.clone();
            let n = tokio::task::spawn_blocking(move || store.get_file_blocking(root, &out)).await??;
            anyhow::Ok(n)
        };
        let (bytes, source) = match self.download_method {
            DownloadMethod::Storage => (from_storage.await?, "storage"),
            DownloadMethod::Tee => (download_tee(&mut b, &id, &out).await?, "tee"),
            DownloadMethod::Auto => match from_storage.await {
                Ok(n) => (n, "storage"),
                Err(e) => {
                    tracing::warn!(error = %e, "storage download failed; downloading from the TEE");
                    (download_tee(&mut b, &id, &out).await?, "tee")
                }
            },
        };
        // Fail closed: the file must be the one recorded on chain, sealed by the registered TEE signer.
        let path = out.clone();
        let signer = b.tee_signer;
        let (hash, recovered) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (keccak, _, _) = zg_finetune::hash_file(&path)?;
            let mut f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len();
            // The tag signature check reads only the tags; the key is not needed for it.
            let dummy = zg_sealing::SealingKey::from_bytes([0u8; 32]);
            let r = zg_sealing::Unsealer::new(&dummy, signer).verify_signature(&mut f, len)?;
            Ok((keccak, r))
        })
        .await??;
        if d.model_root_hash.as_ref() != hash.as_slice() {
            anyhow::bail!(
                "the downloaded model hashes to {hash} but the deliverable on chain records {}: NOT acknowledged",
                d.model_root_hash
            );
        }
        let tx = if d.acknowledged {
            None
        } else {
            Some(
                b.chain
                    .fine_tuning()
                    .acknowledge_deliverable(b.provider, &id)
                    .await?,
            )
        };
        let report = json!({
            "task": id, "dataPath": self.data_path, "bytes": bytes, "source": source,
            "modelRootHash": format!("{hash:#x}"), "teeSigner": recovered, "acknowledgeTx": tx.map(|t| t.tx),
        });
        if g.json {
            output::json(&report)?;
        } else {
            output::text(format!(
                "downloaded {} bytes from {source} to {}\nkeccak256 {hash:#x} = modelRootHash on chain\ntags signed by {recovered} = the provider's TEE signer\n{}",
                bytes,
                self.data_path.display(),
                match tx {
                    Some(t) => format!(
                        "acknowledged on chain (tx {}); the key is revealed when the provider settles",
                        t.tx
                    ),
                    None => "already acknowledged".into(),
                }
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn acknowledge_deliverable(a: TaskArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let signer = a.broker.wallet.signer()?;
    let user = signer.address();
    let chain = a.broker.rpc.connect(Some(signer)).await?;
    let d = chain
        .fine_tuning()
        .get_deliverable(user, a.broker.provider, &a.task)
        .await?;
    let tx = if d.acknowledged {
        None
    } else {
        Some(
            chain
                .fine_tuning()
                .acknowledge_deliverable(a.broker.provider, &a.task)
                .await?,
        )
    };
    if g.json {
        output::json(&json!({"task": a.task, "acknowledgeTx": tx.map(|t| t.tx), "verified": false}))?;
    } else {
        output::text(match tx {
            Some(t) => format!(
                "acknowledged task {} (tx {}); nothing was verified by this command",
                a.task, t.tx
            ),
            None => format!("task {} was already acknowledged", a.task),
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------------ verify

/// `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The provider's address.
    #[arg(long, value_name = "ADDR")]
    provider: Address,
    /// DANGEROUS: accept a SIMULATED TEE (no hardware protection). Local development only.
    #[arg(long, env = "ZG_ALLOW_SIMULATED", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    allow_simulated: bool,
    /// Attestation policy (TOML or JSON).
    #[arg(long, env = "ZG_ATTESTATION_POLICY", value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Intel collateral JSON for real TDX quotes.
    #[arg(long, env = "ZG_COLLATERAL", value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// Reach the broker here instead of the URL on chain.
    #[arg(long, env = "ZG_BROKER_URL", value_name = "URL")]
    broker_url: Option<String>,
    #[command(flatten)]
    rpc: RpcOpts,
}

impl VerifyArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        use zg_attestation::{AttestationPolicy, Collateral, Evidence, Timestamp, Verifier};
        let chain = self.rpc.connect(None).await?;
        let s = chain
            .fine_tuning()
            .get_service(self.provider)
            .await?
            .with_context(|| format!("{} has no fine-tuning service on chain", self.provider))?;
        let url = self
            .broker_url
            .clone()
            .unwrap_or(s.url.clone())
            .trim_end_matches('/')
            .to_owned();
        let nonce: [u8; 32] = rand::random();
        let http = http();
        let doc = http
            .get(format!("{url}/v1/attestation?nonce={}", hex::encode(nonce)))
            .send()
            .await?
            .bytes()
            .await?;
        let evidence = Evidence::from_document(&doc).context("the broker's attestation does not parse")?;
        let mut policy = match &self.policy {
            Some(p) => {
                AttestationPolicy::from_file(p).with_context(|| format!("--policy {}", p.display()))?
            }
            None => AttestationPolicy::default(),
        };
        policy.dangerous_allow_simulated = self.allow_simulated;
        let mut policy = policy.with_nonce(nonce);
        policy.expected_signer = Some(s.tee_signer);
        let collateral = match &self.collateral {
            Some(c) => {
                Some(Collateral::from_file(c).with_context(|| format!("--collateral {}", c.display()))?)
            }
            None => None,
        };
        let report = Verifier::new_prod().verify(&evidence, &policy, collateral.as_ref(), Timestamp::now());
        // 0G's layout too (what the official CLI checks): report_data = the signer address.
        let quote = get_json(&http, &format!("{url}/v1/quote")).await?;
        let rd = base64_decode(quote["report_data"].as_str().unwrap_or_default());
        let rd_text = String::from_utf8_lossy(&rd).trim_end_matches('\0').to_owned();
        let zerog_ok = rd_text.eq_ignore_ascii_case(&s.tee_signer.to_checksum(None));
        let bound = report.binding.as_ref().map(|b| b.signer_address);
        let passed = report.passed() && bound == Some(s.tee_signer) && zerog_ok;
        if g.json {
            output::json(
                &json!({"provider": self.provider, "teeSigner": s.tee_signer, "passed": passed,
                                 "zeroGReportData": rd_text, "report": &*report}),
            )?;
        } else {
            if report.simulated {
                output::text(format!("!!  {}  !!", zg_attestation::SIMULATED_BANNER))?;
            }
            output::text(format!(
                "fine-tuning provider {}  {url}\non-chain TEE signer {}\nquote binds {} (fresh nonce {})\n0G report_data {}",
                self.provider,
                s.tee_signer,
                bound.map(|b| b.to_string()).unwrap_or_else(|| "nothing".into()),
                hex::encode(nonce),
                rd_text
            ))?;
            output::text(&*report)?;
        }
        if !passed {
            anyhow::bail!("provider {} failed verification", self.provider);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------ generate

/// `generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The decrypted model (the archive `decrypt-model` wrote): an n-gram delta or a PEFT LoRA adapter.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The prompt (for a LoRA adapter: the user message, answered with the base's chat template).
    #[arg(long)]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 24)]
    max_tokens: u64,
    /// Sampling seed: the same seed gives the same text.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Sampling temperature (default: 0.7 for an n-gram model, which loops when greedy; 0, greedy, for LoRA).
    #[arg(long)]
    temperature: Option<f64>,
    /// LoRA adapters: a system message sent before the prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// LoRA adapters: the base model's GGUF the adapter was trained on (what `just setup` fetched).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_MODEL_PATH)]
    model_path: PathBuf,
}

/// The base's and the fine-tuned model's answers to one prompt.
struct Answers {
    kind: &'static str,
    base: String,
    tuned: String,
}

impl GenerateArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let dir = tempfile_dir()?;
        let args = self;
        let (args, answers, files) = tokio::task::spawn_blocking(move || {
            let r = (|| -> anyhow::Result<(Answers, Vec<String>)> {
                let mut archive = Vec::new();
                std::fs::File::open(&args.model)
                    .with_context(|| format!("opening {}", args.model.display()))?
                    .take(1 << 30)
                    .read_to_end(&mut archive)?;
                let files = zg_finetune::unpack(&mut archive.as_slice(), &dir, 1 << 30)?;
                // PEFT weights decide: the n-gram delta writes an adapter_config.json too.
                let answers = if dir.join(zg_adapters::WEIGHTS_FILE).is_file() {
                    args.lora(&dir)?
                } else {
                    args.ngram(&dir)?
                };
                Ok((answers, files))
            })();
            let _ = std::fs::remove_dir_all(&dir);
            r.map(|(a, f)| (args, a, f))
        })
        .await??;
        if g.json {
            output::json(
                &json!({"prompt": args.prompt, "kind": answers.kind, "base": answers.base,
                "fineTuned": answers.tuned, "files": files}),
            )?;
        } else {
            output::text(format!(
                "prompt:      {}\nbase model:  {}\nfine-tuned:  {}",
                args.prompt, answers.base, answers.tuned
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// An n-gram delta applied to the shipped base.
    fn ngram(&self, dir: &Path) -> anyhow::Result<Answers> {
        let base = zg_ngram::NgramModel::train(zg_ngram::SHIPPED_CORPUS);
        let tuned = zg_finetune::apply_adapter(&base, dir, 1 << 28)?;
        let s = zg_ngram::Sampling {
            max_tokens: self.max_tokens,
            temperature: self.temperature.unwrap_or(0.7),
            seed: Some(self.seed),
            stop: Vec::new(),
        };
        Ok(Answers {
            kind: "ngram",
            base: base.generate(&self.prompt, &s).text,
            tuned: tuned.generate(&self.prompt, &s).text,
        })
    }

    /// A PEFT LoRA adapter on its GGUF base (zg-model refuses an adapter of another base or shape by name).
    fn lora(&self, dir: &Path) -> anyhow::Result<Answers> {
        let model =
            zg_model::Model::load(&self.model_path, zg_model::LoadOptions::default()).with_context(|| {
                format!(
                    "loading the base model {} (pass --model-path, or run `just setup` to fetch SmolLM2)",
                    self.model_path.display()
                )
            })?;
        let adapter = zg_model::LoraAdapter::load(dir).context("the archive's LoRA adapter")?;
        model
            .add_adapter("fine-tuned", &adapter)
            .context("the adapter does not fit this base model")?;
        let mut messages = Vec::new();
        if let Some(sys) = &self.system {
            messages.push(zg_model::ChatMessage::new("system", sys));
        }
        messages.push(zg_model::ChatMessage::new("user", &self.prompt));
        let answer = |name: Option<&str>| -> anyhow::Result<String> {
            let req = zg_model::GenerateRequest {
                model: name.map(str::to_owned),
                prompt: zg_model::Prompt::Chat(messages.clone()),
                params: zg_model::SamplingParams {
                    max_tokens: usize::try_from(self.max_tokens).unwrap_or(usize::MAX),
                    temperature: self.temperature.unwrap_or(0.0) as f32,
                    seed: self.seed,
                    ..zg_model::SamplingParams::default()
                },
            };
            Ok(model
                .generate(&req, &mut |_| std::ops::ControlFlow::Continue(()))?
                .text)
        };
        Ok(Answers {
            kind: "lora",
            base: answer(None)?,
            tuned: answer(Some("fine-tuned"))?,
        })
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("zg-generate-{}", TaskId::random()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

// ------------------------------------------------------------------------------------------------ adapters

/// `deploy-adapter`.
#[derive(Debug, Args)]
pub(crate) struct DeployAdapterArgs {
    /// The INFERENCE provider to deploy to (it must serve the task's base model).
    #[arg(long, value_name = "ADDR")]
    provider: Address,
    /// The fine-tuning task whose adapter to deploy (yours, delivered and acknowledged).
    #[arg(long = "task-id", alias = "task", value_name = "ID")]
    task_id: String,
    /// The fine-tuning provider (broker) that trained it. Default: the one holding your deliverable for this
    /// task on chain.
    #[arg(long, value_name = "ADDR")]
    broker: Option<Address>,
    /// The base model the task trained (checked against the broker's answer; optional).
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Seconds the authorization you sign stays valid (at most 3600).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    expires_in: u64,
    /// Accepted for the official CLI's flag: the deployment is always finished when this returns.
    #[arg(long, hide = true)]
    wait: bool,
    /// Accepted for the official CLI's flag (the broker bounds the deployment itself).
    #[arg(long, hide = true, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Reach the broker's HTTP API here instead of the URL registered on chain (tunnels, tests).
    #[arg(long, env = "ZG_BROKER_URL", value_name = "URL", help_heading = "Broker")]
    broker_url: Option<String>,
    /// Reach the broker's gRPC API here instead of the one it advertises on `GET /v1/info`.
    #[arg(long, env = "ZG_BROKER_GRPC", value_name = "URL", help_heading = "Broker")]
    grpc: Option<String>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

#[derive(Debug, Serialize)]
struct DeployedView {
    adapter: String,
    state: String,
    base_model: String,
    owner: String,
    task_id: String,
    provider: Address,
    broker: Address,
    provider_grpc_url: String,
    provider_simulated: bool,
}

impl DeployAdapterArgs {
    /// The broker holding the caller's deliverable for the task.
    async fn find_broker(&self, chain: &Client, user: Address) -> anyhow::Result<Address> {
        for s in chain.fine_tuning().list_services().await? {
            if let Ok(d) = chain
                .fine_tuning()
                .get_deliverable(user, s.provider, &self.task_id)
                .await
                && d.id == self.task_id
            {
                return Ok(s.provider);
            }
        }
        anyhow::bail!(
            "no fine-tuning provider holds a deliverable of task {} for {user}: pass --broker <fine-tuning provider>",
            self.task_id
        )
    }

    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        if self.expires_in == 0 || self.expires_in > zg_adapters::MAX_AUTHORIZATION_SECS {
            anyhow::bail!(
                "--expires-in {}: give 1 to {} seconds",
                self.expires_in,
                zg_adapters::MAX_AUTHORIZATION_SECS
            );
        }
        let broker = match self.broker {
            Some(b) => b,
            None => {
                let signer = self.wallet.signer()?;
                let chain = self.rpc.connect(None).await?;
                self.find_broker(&chain, signer.address()).await?
            }
        };
        let mut b = BrokerArgs {
            provider: broker,
            broker_url: self.broker_url.clone(),
            grpc: self.grpc.clone(),
            rpc: self.rpc.clone(),
            wallet: self.wallet.clone(),
        }
        .connect()
        .await?;
        let now = u64::try_from(zg_finetune::now_ms() / 1000).unwrap_or(0);
        let auth = zg_adapters::DeployAuthorization {
            chain_id: b.chain.chain_id(),
            user: b.user,
            broker,
            provider: self.provider,
            task_id: self.task_id.clone(),
            expires_at: now + self.expires_in,
        }
        .sign(&b.sk)?;
        let a = &auth.authorization;
        let r = b
            .grpc
            .deploy_adapter(pb::DeployAdapterRequest {
                authorization: Some(pb::DeployAuthorization {
                    chain_id: a.chain_id,
                    user: a.user.to_checksum(None),
                    broker: a.broker.to_checksum(None),
                    provider: a.provider.to_checksum(None),
                    task_id: a.task_id.clone(),
                    expires_at: a.expires_at,
                    signature: auth.signature.to_vec(),
                }),
            })
            .await
            .map_err(grpc_err)?
            .into_inner();
        let info = r.adapter.context("the broker's answer holds no adapter")?;
        if let Some(m) = &self.model {
            let expected = zg_adapters::adapter_name(m, &self.task_id);
            if info.name != expected {
                anyhow::bail!(
                    "deployed as {}, but --model {m} names {expected}: the task trained {}",
                    info.name,
                    info.base_model
                );
            }
        }
        let v = DeployedView {
            adapter: info.name,
            state: info.state,
            base_model: info.base_model,
            owner: info.owner,
            task_id: info.task_id,
            provider: self.provider,
            broker,
            provider_grpc_url: r.provider_grpc_url,
            provider_simulated: r.provider_simulated,
        };
        if g.json {
            return output::json(&v).map(|()| ExitCode::SUCCESS);
        }
        if v.provider_simulated {
            tracing::warn!(
                provider = %v.provider,
                "the inference provider runs a SIMULATED TEE (accepted by the broker's dangerous policy)"
            );
        }
        output::text(format!(
            "{}  {}\n  base {}  task {}  owner {}\n  served by {} ({}); chat with it: zg fine-tuning chat --provider {} --adapter-name {} MESSAGE",
            v.adapter,
            v.state,
            v.base_model,
            v.task_id,
            v.owner,
            v.provider,
            v.provider_grpc_url,
            v.provider,
            v.adapter
        ))?;
        Ok(ExitCode::SUCCESS)
    }
}

/// `get-adapter-name`.
#[derive(Debug, Args)]
pub(crate) struct GetAdapterNameArgs {
    /// The base model the task trained (e.g. smollm2-135m-instruct).
    #[arg(long, value_name = "NAME")]
    model: String,
    /// The fine-tuning task id.
    #[arg(long = "task-id", alias = "task", value_name = "ID")]
    task_id: String,
}

impl GetAdapterNameArgs {
    fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let name = zg_adapters::adapter_name(&self.model, &self.task_id);
        if g.json {
            output::json(&json!({"model": self.model, "task_id": self.task_id, "adapter_name": name}))?;
        } else {
            output::text(name)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `chat` (fine-tuning): chat with a deployed adapter.
#[derive(Debug, Args)]
pub(crate) struct AdapterChatArgs {
    /// The INFERENCE provider serving your adapter.
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDR")]
    provider: Address,
    /// The fine-tuning task whose adapter to ask (with --model, or the provider's service model as the base).
    #[arg(
        long = "task-id",
        alias = "task",
        value_name = "ID",
        conflicts_with = "adapter_name"
    )]
    task_id: Option<String>,
    /// The base model the task trained (default: the provider's service model).
    #[arg(long, value_name = "NAME", requires = "task_id")]
    model: Option<String>,
    /// The adapter's model name (`ft-…`), instead of --task-id.
    #[arg(long, value_name = "NAME")]
    adapter_name: Option<String>,
    /// A system message sent before yours.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Most completion tokens to generate (bounds the fee cap you sign).
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_tokens: u64,
    /// Sampling temperature (0 = deterministic).
    #[arg(long, value_name = "T")]
    temperature: Option<f64>,
    /// Stream the answer (live on stderr; the verified answer on stdout at the end).
    #[arg(long)]
    stream: bool,
    /// Your message (or the positional MESSAGE).
    #[arg(long = "message", value_name = "TEXT", conflicts_with = "text")]
    message: Option<String>,
    /// Your message.
    #[arg(value_name = "MESSAGE")]
    text: Option<String>,
    #[command(flatten)]
    client: super::inference::ClientOpts,
}

impl AdapterChatArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let message = self
            .message
            .or(self.text)
            .context("give your message: zg fine-tuning chat --provider … --task-id … \"MESSAGE\"")?;
        let model = match (self.adapter_name, self.task_id) {
            (Some(n), _) => n,
            (None, Some(task)) => {
                let base = match self.model {
                    Some(m) => m,
                    None => {
                        let chain = self.client.rpc.connect(None).await?;
                        chain
                            .inference()
                            .get_service(self.provider)
                            .await?
                            .with_context(|| format!("{} has no inference service on chain", self.provider))?
                            .model
                    }
                };
                zg_adapters::adapter_name(&base, &task)
            }
            (None, None) => {
                anyhow::bail!("say which adapter: --task-id <id> (and --model <base>) or --adapter-name ft-…")
            }
        };
        zg_adapters::check_name(&model).context("not an adapter name")?;
        super::inference::ChatArgs {
            provider: self.provider,
            model: Some(model),
            stream: self.stream,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            system: self.system,
            message,
            client: self.client,
        }
        .run(g)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_view_shows_fees_in_both_units() {
        let t = pb::Task {
            id: "x".into(),
            state: "Training".into(),
            fee: "2000000000000000000".into(),
            ..Default::default()
        };
        let v = view(&t);
        assert_eq!(
            v.fee_0g,
            Amount(U256::from(2_000_000_000_000_000_000u128)).to_string()
        );
    }

    #[tokio::test]
    async fn tokenizers_by_name_and_a_real_models_from_its_gguf() {
        let nowhere = Path::new("/nonexistent/model.gguf");
        assert!(tokenizer_named("zg-ngram", nowhere).await.is_ok());
        let e = tokenizer_named("gpt2", nowhere).await.err().unwrap();
        assert!(format!("{e:#}").contains("just setup"), "{e:#}");
        // The broker's `lora` executor bills with SmolLM2's own tokenizer: calculate-token counts the same.
        let gguf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../")
            .join(DEFAULT_MODEL_PATH);
        let tok = tokenizer_named("SmolLM2-135M-Instruct", &gguf).await.unwrap();
        let text = "The capital of France is Paris.";
        let model = zg_model::Model::load(&gguf, zg_model::LoadOptions::default()).unwrap();
        assert_eq!(tok.count(text), model.tokenizer().count(text) as u64);
        assert!(tok.count(text) > 3);
        // A GGUF of another model than the broker names is refused by name.
        let e = tokenizer_named("Llama-3-8B", &gguf).await.err().unwrap();
        assert!(format!("{e:#}").contains("Llama-3-8B"), "{e:#}");
    }
}
