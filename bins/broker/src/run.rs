//! Lifecycle: `zg-broker init` and `zg-broker run` — TEE backend and key, chain registration, models and
//! executors, the task pipeline (resuming what a crash left open), HTTP and gRPC servers, graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, keccak256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zg_chain::{Amount, Client, FineTuningServiceParams};
use zg_finetune::{
    BuiltinExecutor, ByteTokenizer, CommandExecutor, CommandSpec, ContainerRuntime, DatasetLimits,
    DockerExecutor, Executor, LoraExecutor, ModelSpec, ModelTokenizer, Pipeline, PipelineConfig,
    ResourceLimits, TaskEvent, TaskStore, Tokenizer, WordTokenizer, sig,
};
use zg_ngram::NgramModel;
use zg_storage::LocalStore;

use crate::chain::{ChainAdapter, CrashPoints};
use crate::config::{CONFIG_TEMPLATE, ModelConfig, Settings};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::storage::BrokerStore;
use crate::tee::Tee;

/// The pipeline as the broker runs it.
pub type BrokerPipeline = Pipeline<ChainAdapter, BrokerStore>;

/// The `preTrainedModelHash` 0G's client sends for the names in its built-in `MODEL_HASH_MAP` (the mainnet list
/// on every chain, FINE_TUNING.md §1.1). A broker offering one of these names must answer to that hash.
pub const ZEROG_MODEL_HASHES: [(&str, &str); 2] = [
    (
        "Qwen2.5-0.5B-Instruct",
        "0xb4f76a886b8655c92bb021922d60b5e4d9271a5c9da98b6cb10937a06c2c75a7",
    ),
    (
        "Qwen3-32B",
        "0x2e6f9620c35bdcb2b753cc7aa34e78077a8ed133e36fa36008fd6bdfd29af3a5",
    ),
];

/// What the HTTP and gRPC handlers share.
#[derive(Debug, Clone)]
pub struct App {
    /// The pipeline.
    pub pipeline: BrokerPipeline,
    /// The TEE backend.
    pub tee: Arc<Tee>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// HTTP task reads need `ZG-Read-Auth`.
    pub require_read_auth: bool,
    /// Test crash points.
    pub crash: CrashPoints,
    /// Where uploads are spooled before they are checked.
    pub upload_dir: PathBuf,
    /// Largest dataset upload.
    pub max_upload_bytes: u64,
    /// The gRPC endpoint clients are told to use (`GET /v1/info`).
    pub public_grpc_url: String,
    /// Adapter deployment to inference providers (`FineTuning.DeployAdapter`).
    pub deployer: crate::adapters::Deployer,
}

impl App {
    /// Checks a read signature: fresh, and made by `user`.
    pub fn check_read(&self, user: Address, timestamp: i64, signature: &[u8; 65]) -> zg_finetune::Result<()> {
        sig::check_fresh(
            timestamp,
            zg_finetune::now_ms() / 1000,
            self.pipeline.config().signature_window_secs,
        )?;
        sig::verify_personal("read", &sig::read_digest(user, timestamp), signature, user)?;
        Ok(())
    }
}

/// Writes the commented config to `path` (refuses to overwrite unless `force`).
pub fn init(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::Config {
            field: "path",
            value: path.display().to_string(),
            fix: "the file exists; pass --force to overwrite it".into(),
        });
    }
    std::fs::write(path, CONFIG_TEMPLATE).map_err(|source| Error::Io {
        op: "write",
        path: path.to_owned(),
        source,
    })
}

fn read_corpus(dir: Option<&PathBuf>) -> Result<String> {
    let Some(dir) = dir else {
        return Ok(zg_ngram::SHIPPED_CORPUS.to_owned());
    };
    let io = |path: &Path, source| Error::Io {
        op: "read corpus",
        path: path.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "txt"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        out.push_str(&std::fs::read_to_string(&f).map_err(|e| io(&f, e))?);
        out.push_str("\n\n");
    }
    Ok(out)
}

fn model_err(m: &ModelConfig, fix: impl Into<String>) -> Error {
    Error::Config {
        field: "models",
        value: m.name.clone(),
        fix: fix.into(),
    }
}

/// The model name for which `executor = "builtin"` means the LoRA trainer (as the provider's built-in upstream
/// serves it).
pub const SMOLLM2_MODEL: &str = "smollm2-135m-instruct";

/// The GGUF a `lora` model trains when `model_path` is not set.
pub const DEFAULT_MODEL_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Builds the models and their executors from the config. Blocking: a `lora` model loads its GGUF (about 100 MB)
/// and hashes it; call it from a blocking thread in async code.
pub fn build_models(models: &[ModelConfig]) -> Result<Vec<ModelSpec>> {
    let mut out: Vec<ModelSpec> = Vec::new();
    for m in models {
        if out.iter().any(|o| o.name == m.name) {
            return Err(model_err(m, "two [[models]] have this name"));
        }
        let lora = m.executor == "lora" || (m.executor == "builtin" && m.name == SMOLLM2_MODEL);
        let builtin = m.executor == "builtin" && !lora;
        let base = if lora {
            let path = m
                .model_path
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_PATH));
            let model = zg_model::Model::load(&path, zg_model::LoadOptions::default()).map_err(|e| {
                model_err(
                    m,
                    format!(
                        "loading the base model {}: {e} (run `just setup` to fetch it, or set model_path)",
                        path.display()
                    ),
                )
            })?;
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                op: "read model",
                path: path.clone(),
                source,
            })?;
            Some((model, format!("{:#x}", keccak256(&bytes))))
        } else {
            None
        };
        let tokenizer: Arc<dyn Tokenizer> = match m.tokenizer.as_deref().unwrap_or(if builtin {
            "zg-ngram"
        } else if lora {
            "model"
        } else {
            "bytes"
        }) {
            "zg-ngram" => Arc::new(WordTokenizer),
            "bytes" => Arc::new(ByteTokenizer),
            "model" => match &base {
                Some((model, _)) => Arc::new(ModelTokenizer::new(model.clone())),
                None => return Err(model_err(m, "tokenizer \"model\" needs executor = \"lora\"")),
            },
            other => {
                return Err(model_err(
                    m,
                    format!("tokenizer {other:?}: use zg-ngram, bytes or (lora) model"),
                ));
            }
        };
        let known = ZEROG_MODEL_HASHES
            .iter()
            .find(|(n, _)| *n == m.name)
            .map(|(_, h)| h.to_string());
        let kind = if lora { "lora" } else { m.executor.as_str() };
        let (executor, default_hash, default_desc): (Arc<dyn Executor>, String, String) = match kind {
            "lora" => {
                let Some((model, hash)) = base else {
                    return Err(model_err(m, "internal: lora model not loaded"));
                };
                let desc = format!(
                    "{}: real LoRA fine-tuning on the CPU; the delivered model is a PEFT adapter",
                    model.name()
                );
                (Arc::new(LoraExecutor::new(model)), hash, desc)
            }
            "builtin" => {
                let base = NgramModel::train(&read_corpus(m.corpus_dir.as_ref())?);
                let hash = format!("{:#x}", keccak256(base.to_bytes()));
                let ex = BuiltinExecutor::new(Arc::new(base), m.name.clone())
                    .with_epoch_pause(Duration::from_millis(m.epoch_pause_ms.unwrap_or(0)));
                (
                    Arc::new(ex),
                    hash,
                    "demo word n-gram model: fine-tunes in seconds on CPU; the adapter is the dataset's n-grams".into(),
                )
            }
            "command" => {
                let argv = m
                    .command
                    .clone()
                    .ok_or_else(|| model_err(m, "a command model needs `command = [program, args…]`"))?;
                let ex = CommandExecutor::new(CommandSpec {
                    argv,
                    env: m.env.clone().unwrap_or_default(),
                    limits: ResourceLimits {
                        cpu_secs: m.cpu_secs,
                        memory_bytes: m.memory_bytes,
                    },
                    grace: Duration::from_secs(m.grace_secs.unwrap_or(10)),
                })?;
                (
                    Arc::new(ex),
                    format!("{:#x}", keccak256(m.name.as_bytes())),
                    format!("{} (command trainer)", m.name),
                )
            }
            "docker" | "podman" => {
                let runtime = if m.executor == "docker" {
                    ContainerRuntime::Docker
                } else {
                    ContainerRuntime::Podman
                };
                let image = m
                    .image
                    .clone()
                    .ok_or_else(|| model_err(m, "a container model needs `image`"))?;
                let mut ex = DockerExecutor::new(runtime, image);
                if let Some(b) = &m.runtime_binary {
                    ex.binary = b.clone();
                }
                ex.args = m.args.clone().unwrap_or_default();
                ex.gpus = m.gpus.clone();
                ex.memory_bytes = m.memory_bytes;
                ex.cpus = m.cpus;
                ex.env = m.env.clone().unwrap_or_default();
                ex.grace = Duration::from_secs(m.grace_secs.unwrap_or(10));
                (
                    Arc::new(ex),
                    format!("{:#x}", keccak256(m.name.as_bytes())),
                    format!("{} (container trainer)", m.name),
                )
            }
            other => {
                return Err(model_err(
                    m,
                    format!("executor {other:?}: use builtin, lora, command, docker or podman"),
                ));
            }
        };
        out.push(ModelSpec {
            name: m.name.clone(),
            hash: m.hash.clone().or(known).unwrap_or(default_hash),
            description: m.description.clone().unwrap_or(default_desc),
            tokenizer,
            executor,
            base_model_dir: m.base_model_dir.clone(),
        });
    }
    Ok(out)
}

/// The gRPC URL to advertise when none is configured: the public URL's host with the bound gRPC port.
fn default_grpc_url(public_url: &str, grpc: SocketAddr) -> String {
    let rest = public_url.split_once("://").map_or(public_url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("127.0.0.1");
    let host = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if host.contains(':') {
        format!("http://[{host}]:{}", grpc.port())
    } else {
        format!("http://{host}:{}", grpc.port())
    }
}

/// A running broker.
#[derive(Debug)]
pub struct Running {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// What the handlers share.
    pub app: App,
    /// Tasks resumed at start.
    pub resumed: usize,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn chain_err(op: &'static str) -> impl FnOnce(zg_chain::Error) -> Error {
    move |e| Error::Chain {
        op,
        source: Box::new(e),
    }
}

/// Starts everything and returns once both servers listen.
pub async fn start(s: Settings) -> Result<Running> {
    std::fs::create_dir_all(&s.data_dir).map_err(|source| Error::Io {
        op: "create",
        path: s.data_dir.clone(),
        source,
    })?;
    let configs = s.models.clone();
    let models = tokio::task::spawn_blocking(move || build_models(&configs))
        .await
        .map_err(|e| Error::Config {
            field: "models",
            value: String::new(),
            fix: format!("loading the models failed: {e}"),
        })??;
    let app_compose = match &s.app_compose {
        Some(p) => std::fs::read_to_string(p).map_err(|source| Error::Io {
            op: "read app compose",
            path: p.clone(),
            source,
        })?,
        None => serde_json::json!({
            "service": "zg-broker",
            "models": models.iter().map(|m| serde_json::json!({"name": m.name, "executor": m.executor.kind()})).collect::<Vec<_>>(),
            "price_per_token": s.price_per_token.to_string(),
        })
        .to_string(),
    };
    let tee = Arc::new(Tee::start(
        s.tee,
        &s.data_dir,
        s.dstack_socket.clone(),
        app_compose,
    )?);
    let deployer = crate::adapters::Deployer::new(&s.adapters)?;
    let wallet = s.load_key()?;
    let client = Client::connect(&s.rpc_url, s.contracts, Some(wallet))
        .await
        .map_err(chain_err("connect"))?;
    let crash = CrashPoints::from_env();
    let adapter = ChainAdapter::new(client.clone(), crash.clone())?;
    adapter.check_signer_binding(tee.signer()).await?;
    adapter.ensure_ledger_registration().await?;
    let stake: Amount = s.stake.parse().map_err(|e| Error::Config {
        field: "service.stake",
        value: s.stake.clone(),
        fix: format!("give an amount of 0G such as `1` or `0.5` ({e})"),
    })?;
    let params = FineTuningServiceParams {
        url: s.public_url.clone(),
        quota: s.quota.clone(),
        price_per_token: s.price_per_token,
        occupied: false,
        models: models.iter().map(|m| m.name.clone()).collect(),
        tee_signer: tee.signer(),
    };
    let service = adapter
        .register(&params, stake)
        .await
        .map_err(chain_err("addOrUpdateService"))?;
    if !service.tee_signer_acknowledged {
        tracing::warn!(
            signer = %tee.signer(),
            "the contract owner has not acknowledged this TEE signer yet: the official CLI hides unacknowledged services"
        );
    }
    let provider = client.signer_address().map_err(chain_err("wallet"))?;
    tracing::info!(%provider, signer = %tee.signer(), url = %s.public_url, "fine-tuning service registered");

    let storage = if s.storage_nodes.is_empty() {
        BrokerStore::Local(LocalStore::open(&s.storage_dir)?)
    } else {
        BrokerStore::Zgs(Box::new(zg_storage::ZgsStore::new(
            s.storage_nodes.clone(),
            None,
        )?))
    };
    let store = TaskStore::open(s.data_dir.join("tasks.sqlite"))?;
    let mut cfg = PipelineConfig::new(&s.data_dir);
    cfg.price_per_token = s.price_per_token;
    cfg.max_parallel = s.max_parallel;
    cfg.max_queue = s.max_queue;
    cfg.max_tasks_per_user = s.max_per_customer;
    cfg.max_epochs = s.max_epochs;
    cfg.dataset_limits = DatasetLimits {
        max_bytes: s.dataset_max_bytes,
        max_records: s.dataset_max_records,
        ..DatasetLimits::default()
    };
    cfg.train_timeout = s.train_timeout;
    cfg.ack_timeout = s.ack_timeout;
    cfg.poll_interval = s.poll_interval;
    cfg.require_customer_ack = s.require_customer_ack;
    let pipeline = Pipeline::new(cfg, store, adapter, storage, models, tee.key().clone())?;
    let metrics = Arc::new(Metrics::default());
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    {
        let mut events = pipeline.subscribe();
        let (metrics, crash, mut stop) = (Arc::clone(&metrics), crash.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(e) => {
                            if let TaskEvent::State { to, .. } = &e {
                                crash.hit(&format!("state:{to}"));
                            }
                            metrics.event(&e);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        }));
    }
    let resumed = pipeline.start().await?;
    if resumed > 0 {
        tracing::info!(tasks = resumed, "resumed open tasks from the task store");
    }
    let upload_dir = s.data_dir.join("uploads");
    let app = App {
        pipeline,
        tee: Arc::clone(&tee),
        metrics,
        require_read_auth: s.require_read_auth,
        crash,
        upload_dir,
        max_upload_bytes: s.dataset_max_bytes,
        public_grpc_url: String::new(),
        deployer,
    };
    let bind = |addr: SocketAddr, op: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Io {
                op,
                path: PathBuf::from(addr.to_string()),
                source,
            })
    };
    let http = bind(s.http_addr, "bind HTTP (--http-addr)").await?;
    let grpc = bind(s.grpc_addr, "bind gRPC (--grpc-addr)").await?;
    let local = |l: &tokio::net::TcpListener| {
        l.local_addr().map_err(|source| Error::Io {
            op: "local address",
            path: PathBuf::new(),
            source,
        })
    };
    let (http_addr, grpc_addr) = (local(&http)?, local(&grpc)?);
    let mut app = app;
    app.public_grpc_url = s
        .public_grpc_url
        .clone()
        .unwrap_or_else(|| default_grpc_url(&s.public_url, grpc_addr));
    let (a1, mut r1) = (app.clone(), rx.clone());
    tasks.push(tokio::spawn(async move {
        let stop = async move {
            let _ = r1.wait_for(|v| *v).await;
        };
        if let Err(e) = crate::http::serve(http, a1, stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    let (svc, mut r2) = (crate::grpc::grpc_service(app.clone()), rx.clone());
    tasks.push(tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
        let stop = async move {
            let _ = r2.wait_for(|v| *v).await;
        };
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, stop)
            .await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }));
    tracing::info!(%http_addr, %grpc_addr, backend = ?tee.backend(), "zg-broker listening");
    Ok(Running {
        http_addr,
        grpc_addr,
        app,
        resumed,
        shutdown,
        tasks,
    })
}

impl Running {
    /// Graceful shutdown: stop accepting, stop the drivers (open tasks resume at the next start), close the
    /// task store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.app.pipeline.shutdown().await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.app.pipeline.store().close();
        tracing::info!("zg-broker stopped");
    }
}

/// `zg-broker run`: starts, then waits for Ctrl-C / SIGTERM and shuts down gracefully.
pub async fn run(s: Settings) -> Result<()> {
    let running = start(s).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `executor = "lora"`, and `builtin` for the SmolLM2 name, load the GGUF and train with LoRA, counting fees
    /// with the model's tokenizer; a missing GGUF is refused naming the fix.
    #[test]
    fn lora_models_load_the_gguf_or_name_the_fix() {
        let gguf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../")
            .join(DEFAULT_MODEL_PATH);
        assert!(gguf.is_file(), "{} is missing: run `just setup`", gguf.display());
        let cfg = |name: &str, executor: &str, path: &Path| ModelConfig {
            name: name.into(),
            executor: executor.into(),
            model_path: Some(path.to_owned()),
            ..ModelConfig::default()
        };
        let models =
            build_models(&[cfg("tuned", "lora", &gguf), cfg(SMOLLM2_MODEL, "builtin", &gguf)]).unwrap();
        for m in &models {
            assert_eq!(m.executor.kind(), "lora", "{}", m.name);
            assert_eq!(m.tokenizer.name(), "SmolLM2-135M-Instruct");
            assert_eq!(m.tokenizer.count("Hello, world"), 3);
            assert!(m.hash.starts_with("0x") && m.hash.len() == 66, "{}", m.hash);
        }
        let e = build_models(&[cfg("tuned", "lora", Path::new("/nonexistent.gguf"))]).unwrap_err();
        assert!(e.to_string().contains("just setup"), "{e}");
        let e = build_models(&[ModelConfig {
            tokenizer: Some("model".into()),
            ..cfg("x", "command", &gguf)
        }])
        .unwrap_err();
        assert!(e.to_string().contains("lora"), "{e}");
    }
}
