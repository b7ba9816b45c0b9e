//! The pipeline: admission, one driver per task through the lifecycle, cancellation, TEE dataset uploads and
//! deliverable downloads, and recovery after a crash.
//!
//! # Crash safety
//! Every step first reads what is durable (the task row, the chain) and only then acts:
//! - `SettingUp`, `Training`, `Trained`: local and deterministic; redone from the row.
//! - `Delivering`: the artifact (roots, wrapped key, path) is recorded before `deliver_sending` is set, and
//!   that before `addDeliverable` is sent. On restart, `getDeliverable` decides: present with our root →
//!   `Delivered`; absent → send (again). The contract refuses a second deliverable with the same id.
//! - Settlement: the signed payload is recorded before it is sent. On restart, `getDeliverable().settled`
//!   decides; the contract refuses to settle a deliverable twice. Nothing is ever paid or added twice.
//!
//! # Who can call what (threat model)
//! - `create_task`, `cancel_task`, `upload_dataset`, `deliverable_file`: anyone on the network; each needs
//!   the customer's signature (0G's digests, see [`crate::sig`]). The worst a stranger can do is submit
//!   garbage, which is refused with a 4xx before anything is stored; a replayed create is refused by its
//!   nonce, a replayed cancel is harmless (cancelling is idempotent and only the owner's signature passes),
//!   an upload or download signature expires after the window.
//! - The 0G create signature covers only (user, nonce, dataset): someone who sees a signed request before
//!   it arrives could submit it first with another model or config. The fee is still bounded by the
//!   customer's sub-account; native (gRPC) creates sign model, config and a maximum fee and are immune.
//! - Reads (`get`, `list`, `log`): 0G's client reads without authentication, so the broker shows only
//!   states, fees and trainer log lines — never dataset content, keys or the wrapped secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use k256::ecdsa::SigningKey;
use tokio::sync::{Semaphore, broadcast, watch};

use crate::chain::{FineTuningChain, Settlement, SubAccount, chain_err};
use crate::dataset::{Dataset, DatasetLimits, Tokenizer};
use crate::deliver::{ArtifactStore, hash_file, seal_output};
use crate::error::{ChainFailure, Error, Result};
use crate::executor::{CancelToken, Executor, Job, TrainContext, TrainEvent};
use crate::params::TrainingParams;
use crate::sig;
use crate::state::{TaskId, TaskState};
use crate::store::{NewTask, TaskRecord, TaskStore, Update, now_ms};

/// A model this broker fine-tunes.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name (what customers pass as `--model`).
    pub name: String,
    /// The hash 0G's client sends as `preTrainedModelHash` (for names in the SDK's `MODEL_HASH_MAP`, the
    /// map's value; otherwise what `GET /v1/model/{name}` returns).
    pub hash: String,
    /// One line for `list-models`.
    pub description: String,
    /// Counts the fee.
    pub tokenizer: Arc<dyn Tokenizer>,
    /// Trains.
    pub executor: Arc<dyn Executor>,
    /// Base model files handed to the executor.
    pub base_model_dir: Option<PathBuf>,
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Task directories, TEE dataset uploads and the task store live here.
    pub data_dir: PathBuf,
    /// Neuron per dataset token per epoch (the on-chain `pricePerToken`).
    pub price_per_token: U256,
    /// Trainings running at once (the service's quota).
    pub max_parallel: usize,
    /// Tasks in flight (not terminal) across customers.
    pub max_queue: u64,
    /// Tasks in flight per customer.
    pub max_tasks_per_user: u64,
    /// Bound on `num_train_epochs`.
    pub max_epochs: u32,
    /// Dataset bounds.
    pub dataset_limits: DatasetLimits,
    /// Wall time per training.
    pub train_timeout: Duration,
    /// How long a deliverable may wait for the customer's acknowledgement before the penalty settlement.
    pub ack_timeout: Duration,
    /// How often the chain is read while waiting (acknowledgements, retries).
    pub poll_interval: Duration,
    /// Accepted clock difference for signed timestamps (0G: 5 minutes).
    pub signature_window_secs: u64,
    /// Refuse tasks from customers who have not acknowledged this provider's TEE signer on chain (the
    /// official CLI acknowledges in `create-task`; settlement requires it under the signer rules).
    pub require_customer_ack: bool,
}

impl PipelineConfig {
    /// Defaults for `data_dir`: price 1 neuron, 2 parallel trainings, 1000 tasks, 32 per customer, 10
    /// epochs, 1 h training, 24 h acknowledgement, 2 s polling, 300 s signatures, acknowledgement required.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            price_per_token: U256::from(1),
            max_parallel: 2,
            max_queue: 1000,
            max_tasks_per_user: 32,
            max_epochs: 10,
            dataset_limits: DatasetLimits::default(),
            train_timeout: Duration::from_secs(3600),
            ack_timeout: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(2),
            signature_window_secs: 300,
            require_customer_ack: true,
        }
    }
}

/// A create-task request (0G's body, or the native one with `max_fee`).
#[derive(Debug, Clone)]
pub struct CreateTask {
    /// Customer (must equal the signer).
    pub user: Address,
    /// Dataset: a TEE upload's hash or a storage root.
    pub dataset_hash: String,
    /// Config text, verbatim.
    pub training_params: String,
    /// `preTrainedModelHash` (0G) or the model name (native).
    pub model: String,
    /// Nonce.
    pub nonce: U256,
    /// 0x hex signature.
    pub signature: String,
    /// 0G's `wait`.
    pub wait: bool,
    /// Native only: the most the customer pays; its signature binds everything
    /// ([`sig::native_create_digest`]).
    pub max_fee: Option<U256>,
}

/// What happened to a task (broadcast to watchers and metrics).
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// A state change: `since_ms` is the time spent in `from`.
    State {
        /// Task.
        id: TaskId,
        /// Previous state.
        from: TaskState,
        /// New state.
        to: TaskState,
        /// Milliseconds spent in `from`.
        since_ms: i64,
    },
    /// New log lines or progress.
    Activity {
        /// Task.
        id: TaskId,
    },
}

impl TaskEvent {
    /// The task concerned.
    pub fn id(&self) -> &TaskId {
        match self {
            Self::State { id, .. } | Self::Activity { id } => id,
        }
    }
}

struct Inner<C, S> {
    cfg: PipelineConfig,
    store: TaskStore,
    chain: C,
    storage: S,
    models: Vec<ModelSpec>,
    tee: SigningKey,
    events: broadcast::Sender<TaskEvent>,
    running: Mutex<HashMap<TaskId, CancelToken>>,
    slots: Semaphore,
    /// Setups at once: a long queue waits in `Init` (cheap) instead of fetching and parsing every dataset at
    /// once while new customers are being admitted.
    setup_slots: Semaphore,
    settle_locks: Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
    /// Acknowledged tasks whose key reveal waits for a new acknowledgement (the customer was told once).
    reveal_waits: Mutex<std::collections::HashSet<TaskId>>,
    shutdown: watch::Sender<bool>,
}

/// The fine-tuning pipeline. Cheap to clone.
pub struct Pipeline<C, S> {
    inner: Arc<Inner<C, S>>,
}

impl<C, S> Clone for Pipeline<C, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, S> std::fmt::Debug for Pipeline<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("data_dir", &self.inner.cfg.data_dir)
            .field(
                "models",
                &self.inner.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn task_dir(cfg: &PipelineConfig, id: &TaskId) -> PathBuf {
    cfg.data_dir.join("tasks").join(id.as_str())
}

/// The folder of a task's directory where a PEFT adapter output is kept after delivery (inside the TEE, as
/// the dataset upload is), for the broker's adapter deployment to an inference provider.
pub const ADAPTER_DIR: &str = "adapter";

/// Copies a PEFT adapter (`adapter_config.json` + `adapter_model.safetensors` at the top of `output`) to
/// `keep`, replacing what was there; any other output (an n-gram model, a command trainer's files) is not
/// kept. The copy is the customer's plaintext weights: on Unix `keep` is `0700` and the files `0600`, whatever
/// the trainer's files were. Blocking.
fn keep_peft_adapter(output: &Path, keep: &Path) -> Result<()> {
    const FILES: [&str; 2] = ["adapter_config.json", "adapter_model.safetensors"];
    if !FILES.iter().all(|f| output.join(f).is_file()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(keep);
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(keep).map_err(|e| Error::io("create", keep, e))?;
    for f in FILES {
        let to = keep.join(f);
        // `copy` carries the source's mode over: tighten it before any byte lands.
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut dst = o.open(&to).map_err(|e| Error::io("create", &to, e))?;
        let mut src =
            std::fs::File::open(output.join(f)).map_err(|e| Error::io("read", output.join(f), e))?;
        std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("copy", &to, e))?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod keep_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Red team: the adapter kept for deployment is the customer's plaintext; another local user must not read it,
    /// even when the trainer wrote world-readable files.
    #[test]
    fn the_kept_adapter_is_private() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("output");
        std::fs::create_dir_all(&out).unwrap();
        for (f, bytes) in [
            ("adapter_config.json", &b"{}"[..]),
            ("adapter_model.safetensors", b"weights"),
        ] {
            std::fs::write(out.join(f), bytes).unwrap();
            std::fs::set_permissions(out.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let keep = d.path().join("adapter");
        keep_peft_adapter(&out, &keep).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keep), 0o700);
        assert_eq!(mode(&keep.join("adapter_config.json")), 0o600);
        assert_eq!(mode(&keep.join("adapter_model.safetensors")), 0o600);
        assert_eq!(
            std::fs::read(keep.join("adapter_model.safetensors")).unwrap(),
            b"weights"
        );
        // Kept again (a retried delivery): replaced, still private.
        keep_peft_adapter(&out, &keep).unwrap();
        assert_eq!(mode(&keep.join("adapter_model.safetensors")), 0o600);
    }
}

fn fail_note(e: &Error) -> String {
    format!("{}: {e}", e.code())
}

/// `max(task nonce, account nonce + 1)`: settlements of parallel tasks may land in any order.
fn settlement_nonce(task_nonce: U256, account: &SubAccount) -> U256 {
    task_nonce.max(account.nonce.saturating_add(U256::from(1)))
}

impl<C: FineTuningChain, S: ArtifactStore> Pipeline<C, S> {
    /// A pipeline over an opened store. Call [`Pipeline::start`] to resume open tasks.
    pub fn new(
        cfg: PipelineConfig,
        store: TaskStore,
        chain: C,
        storage: S,
        models: Vec<ModelSpec>,
        tee: SigningKey,
    ) -> Result<Self> {
        if models.is_empty() {
            return Err(Error::Config {
                field: "models".into(),
                reason: "configure at least one model".into(),
            });
        }
        for sub in ["tasks", "datasets", "uploads"] {
            let d = cfg.data_dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("create", &d, e))?;
        }
        let (events, _) = broadcast::channel(4096);
        let (shutdown, _) = watch::channel(false);
        let slots = Semaphore::new(cfg.max_parallel.max(1));
        let setup_slots = Semaphore::new(cfg.max_parallel.max(2));
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                chain,
                storage,
                models,
                tee,
                events,
                running: Mutex::new(HashMap::new()),
                slots,
                setup_slots,
                settle_locks: Mutex::new(HashMap::new()),
                reveal_waits: Mutex::new(std::collections::HashSet::new()),
                shutdown,
            }),
        })
    }

    /// Resumes every task that is not terminal (after a restart or a crash). Returns how many.
    pub async fn start(&self) -> Result<usize> {
        let open = self.inner.store.open_tasks().await?;
        let n = open.len();
        for t in open {
            self.spawn_driver(t.id);
        }
        Ok(n)
    }

    /// Stops the drivers (running trainers are stopped too; their tasks resume at the next start).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tokens: Vec<CancelToken> = self
            .inner
            .running
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        tokens.iter().for_each(CancelToken::cancel);
        for _ in 0..200 {
            if self.inner.running.lock().map(|r| r.is_empty()).unwrap_or(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The task store (reads).
    pub fn store(&self) -> &TaskStore {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.inner.cfg
    }

    /// The models offered.
    pub fn models(&self) -> &[ModelSpec] {
        &self.inner.models
    }

    /// The chain adapter.
    pub fn chain(&self) -> &C {
        &self.inner.chain
    }

    /// The TEE signer address (sealed files' tags and settlements recover to it).
    pub fn tee_signer(&self) -> Address {
        sig::address_of(&self.inner.tee)
    }

    /// Subscribes to task events.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.inner.events.subscribe()
    }

    /// A model by name or by hash.
    pub fn model(&self, name_or_hash: &str) -> Result<&ModelSpec> {
        self.inner
            .models
            .iter()
            .find(|m| m.name == name_or_hash || m.hash.eq_ignore_ascii_case(name_or_hash))
            .ok_or_else(|| Error::UnknownModel {
                name: name_or_hash.to_owned(),
                known: self.inner.models.iter().map(|m| m.name.clone()).collect(),
            })
    }

    /// Tasks waiting to be set up (0G's `GET /v1/task/pending`).
    pub async fn pending(&self) -> Result<u64> {
        let counts = self.inner.store.counts().await?;
        Ok(counts
            .iter()
            .filter(|(s, _)| matches!(s, TaskState::Init | TaskState::SettingUp))
            .map(|(_, n)| n)
            .sum())
    }

    /// Admits a task: every check that can fail on the request is done here, before anything is stored.
    pub async fn create_task(&self, req: CreateTask) -> Result<TaskRecord> {
        let inner = &self.inner;
        let sig_bytes = sig::parse_signature("create", &req.signature)?;
        let model = self.model(&req.model)?.clone();
        let digest = match req.max_fee {
            None => sig::create_digest(req.user, req.nonce, &req.dataset_hash),
            Some(max) => sig::native_create_digest(
                inner.chain.provider(),
                req.user,
                req.nonce,
                &req.dataset_hash,
                &req.model,
                &req.training_params,
                max,
            ),
        };
        let who = sig::verify_personal("create", &digest, &sig_bytes, req.user)?;
        let params = TrainingParams::parse(&req.training_params, inner.cfg.max_epochs)?;
        model.executor.check_params(&params)?;
        if req.dataset_hash.is_empty() || req.dataset_hash.len() > 200 {
            return Err(Error::InvalidField {
                field: "datasetHash",
                reason: "must be 1..=200 characters".into(),
            });
        }
        self.dataset_source(req.user, &req.dataset_hash).await?;
        let account = inner
            .chain
            .account(req.user)
            .await
            .map_err(chain_err("getAccount"))?
            .ok_or(Error::NoSubAccount {
                user: req.user,
                provider: inner.chain.provider(),
            })?;
        if req.nonce <= account.nonce {
            return Err(Error::NonceTooLow {
                nonce: req.nonce,
                account_nonce: account.nonce,
            });
        }
        if inner.cfg.require_customer_ack && !account.acknowledged {
            return Err(Error::SignerNotAcknowledged {
                user: req.user,
                provider: inner.chain.provider(),
            });
        }
        let open = inner.store.counts().await?;
        let in_flight: u64 = open
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        if in_flight >= inner.cfg.max_queue {
            return Err(Error::Busy {
                what: "broker queue",
                count: in_flight,
                max: inner.cfg.max_queue,
            });
        }
        let (mine, _) = inner.store.in_flight(req.user).await?;
        if mine >= inner.cfg.max_tasks_per_user {
            return Err(Error::Busy {
                what: "customer tasks",
                count: mine,
                max: inner.cfg.max_tasks_per_user,
            });
        }
        let t = inner
            .store
            .insert(NewTask {
                id: TaskId::random(),
                user: req.user,
                model: model.name.clone(),
                model_hash: model.hash.clone(),
                dataset_hash: req.dataset_hash,
                training_params: req.training_params,
                nonce: req.nonce,
                signature: req.signature,
                user_pubkey: who.public_key,
                wait: req.wait,
                native: req.max_fee.is_some(),
                max_fee: req.max_fee,
            })
            .await?;
        tracing::info!(task = %t.id, user = %t.user, model = %t.model, "task accepted");
        self.spawn_driver(t.id.clone());
        Ok(t)
    }

    /// Where a dataset comes from: the customer's own TEE upload, or storage. Errs when neither has it.
    async fn dataset_source(&self, user: Address, hash: &str) -> Result<DatasetSource> {
        if let Some(p) = self.inner.store.dataset(user, hash).await? {
            return Ok(DatasetSource::Upload(p));
        }
        let root = B256::from_str(hash.trim()).map_err(|_| Error::DatasetNotFound {
            hash: hash.to_owned(),
        })?;
        if self.inner.storage.exists(root).await? {
            Ok(DatasetSource::Storage(root))
        } else {
            Err(Error::DatasetNotFound {
                hash: hash.to_owned(),
            })
        }
    }

    /// Stores a dataset the customer uploads to the TEE (0G's `POST /v1/user/{addr}/dataset`) after checking
    /// the upload signature and the dataset itself; returns its hash (the file's 0G root). The temp file is
    /// consumed: kept when accepted, deleted otherwise.
    pub async fn upload_dataset(
        &self,
        user: Address,
        signature: &str,
        timestamp: i64,
        temp: PathBuf,
    ) -> Result<String> {
        let res = self.upload_dataset_inner(user, signature, timestamp, &temp).await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        res
    }

    async fn upload_dataset_inner(
        &self,
        user: Address,
        signature: &str,
        timestamp: i64,
        temp: &Path,
    ) -> Result<String> {
        let inner = &self.inner;
        sig::check_fresh(timestamp, now_ms() / 1000, inner.cfg.signature_window_secs)?;
        let sig_bytes = sig::parse_signature("dataset", signature)?;
        sig::verify_personal("dataset", &sig::dataset_digest(user, timestamp), &sig_bytes, user)?;
        let limits = inner.cfg.dataset_limits;
        let path = temp.to_owned();
        let root = tokio::task::spawn_blocking(move || -> Result<B256> {
            Dataset::load(&path, &limits)?;
            Ok(hash_file(&path)?.1)
        })
        .await
        .map_err(|e| Error::store("dataset check", e))??;
        let hash = format!("{root:#x}");
        let dir = inner.cfg.data_dir.join("datasets").join(format!("{user:#x}"));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io("create", &dir, e))?;
        let dest = dir.join(&hash);
        tokio::fs::rename(temp, &dest)
            .await
            .map_err(|e| Error::io("store dataset", &dest, e))?;
        let size = tokio::fs::metadata(&dest).await.map(|m| m.len()).unwrap_or(0);
        inner.store.put_dataset(user, hash.clone(), dest, size).await?;
        Ok(hash)
    }

    /// Cancels a task (0G's `cancelTask`: the signature is over the dashless id). Idempotent for a task
    /// already cancelled; refused once `addDeliverable` may have been sent.
    pub async fn cancel_task(&self, user: Address, id: &TaskId, signature: &str) -> Result<TaskRecord> {
        let sig_bytes = sig::parse_signature("cancel", signature)?;
        sig::verify_personal("cancel", &sig::cancel_digest(id), &sig_bytes, user)?;
        for _ in 0..8 {
            let t = self.inner.store.get_for(user, id).await?;
            if t.state == TaskState::Cancelled {
                return Ok(t);
            }
            if !t.state.is_cancellable() || t.deliver_sending {
                let hint = if t.state.is_terminal() {
                    ""
                } else {
                    ": the deliverable is (being) recorded on chain; acknowledge it, or let it settle at the penalty fee"
                };
                return Err(Error::NotCancellable {
                    id: id.to_string(),
                    state: t.state.to_string(),
                    hint,
                });
            }
            let won = self
                .inner
                .store
                .transition_if(
                    id,
                    t.state,
                    TaskState::Cancelled,
                    Update::new(),
                    "cancelled by the customer; nothing is charged".into(),
                    "deliver_sending = 0",
                )
                .await?;
            if won {
                self.emit_state(id, t.state, TaskState::Cancelled, t.updated_at);
                let token = self.inner.running.lock().ok().and_then(|r| r.get(id).cloned());
                if let Some(token) = token {
                    token.cancel();
                }
                if self
                    .inner
                    .running
                    .lock()
                    .map(|r| !r.contains_key(id))
                    .unwrap_or(true)
                {
                    self.cleanup(id, false).await;
                }
                return self.inner.store.get_for(user, id).await;
            }
        }
        Err(Error::store("cancel", "the task kept changing state; retry"))
    }

    /// The sealed model for a TEE download (0G's `POST …/task/{id}/lora`): signature over the dashless id and
    /// a fresh timestamp; only once the deliverable is on chain.
    pub async fn deliverable_file(
        &self,
        user: Address,
        id: &TaskId,
        signature: &str,
        timestamp: i64,
    ) -> Result<(PathBuf, u64)> {
        sig::check_fresh(timestamp, now_ms() / 1000, self.inner.cfg.signature_window_secs)?;
        let sig_bytes = sig::parse_signature("lora", signature)?;
        sig::verify_personal("lora", &sig::lora_digest(id, timestamp), &sig_bytes, user)?;
        let t = self.inner.store.get_for(user, id).await?;
        self.sealed_of(&t)
    }

    /// The PEFT adapter a delivered LoRA task's output is kept as (`<data_dir>/tasks/<id>/adapter`, holding
    /// `adapter_config.json` and `adapter_model.safetensors`); absent for other executors' outputs. For callers
    /// that authenticated the owner and checked the task's state themselves.
    pub fn adapter_dir(&self, id: &TaskId) -> PathBuf {
        task_dir(&self.inner.cfg, id).join(ADAPTER_DIR)
    }

    /// The sealed model of a delivered task (for callers that authenticated the owner themselves).
    pub fn sealed_of(&self, t: &TaskRecord) -> Result<(PathBuf, u64)> {
        let delivered = matches!(
            t.state,
            TaskState::Delivered
                | TaskState::UserAcknowledged
                | TaskState::Finished
                | TaskState::PenaltySettled
        );
        match (&t.sealed_path, t.sealed_len) {
            (Some(p), Some(len)) if delivered => Ok((PathBuf::from(p), len)),
            _ => Err(Error::NotDelivered {
                id: t.id.to_string(),
                state: t.state.to_string(),
            }),
        }
    }

    fn emit_state(&self, id: &TaskId, from: TaskState, to: TaskState, since: i64) {
        let _ = self.inner.events.send(TaskEvent::State {
            id: id.clone(),
            from,
            to,
            since_ms: now_ms().saturating_sub(since),
        });
    }

    fn emit_activity(&self, id: &TaskId) {
        let _ = self.inner.events.send(TaskEvent::Activity { id: id.clone() });
    }

    async fn log(&self, id: &TaskId, line: String) {
        if self.inner.store.append_log(id, vec![("log", line)]).await.is_ok() {
            self.emit_activity(id);
        }
    }

    /// `from → to` if still in `from`; emits the event. `Ok(false)` when another actor moved the task.
    async fn step(&self, t: &TaskRecord, to: TaskState, update: Update, note: String) -> Result<bool> {
        let won = self
            .inner
            .store
            .transition(&t.id, t.state, to, update, note)
            .await?;
        if won {
            self.emit_state(&t.id, t.state, to, t.updated_at);
        }
        Ok(won)
    }

    async fn fail(&self, t: &TaskRecord, e: &Error) -> Result<bool> {
        tracing::warn!(task = %t.id, error = %e, "task failed");
        let note = fail_note(e);
        self.step(
            t,
            TaskState::Failed,
            Update::new().text("fail_reason", note.clone()),
            note,
        )
        .await
    }

    fn spawn_driver(&self, id: TaskId) {
        let token = CancelToken::new();
        {
            let Ok(mut r) = self.inner.running.lock() else {
                return;
            };
            if r.contains_key(&id) {
                return;
            }
            r.insert(id.clone(), token.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let res = me.drive(&id, &token).await;
            if let Err(e) = &res {
                tracing::error!(task = %id, error = %e, "task driver stopped");
            }
            if let Ok(mut r) = me.inner.running.lock() {
                r.remove(&id);
            }
            if let Ok(Some(t)) = me.inner.store.get(&id).await
                && matches!(t.state, TaskState::Cancelled | TaskState::Failed)
            {
                me.cleanup(&id, false).await;
            }
        });
    }

    fn stopping(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Sleeps for the poll interval, or until shutdown. Returns `false` on shutdown.
    async fn nap(&self) -> bool {
        let mut rx = self.inner.shutdown.subscribe();
        if *rx.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.inner.cfg.poll_interval) => true,
            _ = rx.changed() => false,
        }
    }

    async fn drive(&self, id: &TaskId, token: &CancelToken) -> Result<()> {
        loop {
            if self.stopping() {
                return Ok(());
            }
            let Some(t) = self.inner.store.get(id).await? else {
                return Ok(());
            };
            let res = match t.state {
                s if s.is_terminal() => return Ok(()),
                TaskState::Init | TaskState::SettingUp => self.set_up(&t, token).await,
                TaskState::Training => self.train(&t, token).await,
                TaskState::Trained => self
                    .step(
                        &t,
                        TaskState::Delivering,
                        Update::new(),
                        "packaging and sealing the model".into(),
                    )
                    .await
                    .map(|_| ()),
                TaskState::Delivering => self.deliver(&t).await,
                TaskState::Delivered => self.await_ack(&t).await,
                TaskState::UserAcknowledged => self.settle(&t, true).await,
                _ => return Ok(()),
            };
            match res {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(task = %id, error = %e, "transient failure; retrying");
                    if !self.nap().await {
                        return Ok(());
                    }
                }
                Err(Error::Cancelled) => {
                    if self.stopping() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let t = self
                        .inner
                        .store
                        .get(id)
                        .await?
                        .ok_or_else(|| Error::TaskNotFound { id: id.to_string() })?;
                    if t.state.can_move_to(TaskState::Failed) && !t.deliver_sending {
                        self.fail(&t, &e).await?;
                    } else {
                        // Past the point of no return (on chain): keep retrying, loudly.
                        tracing::error!(task = %id, error = %e, state = %t.state, "step failed; retrying");
                        self.log(id, format!("{}: {e}; retrying", e.code())).await;
                        if !self.nap().await {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Waits for a setup slot in `Init`, then `Init → SettingUp` and the setup itself.
    async fn set_up(&self, t: &TaskRecord, token: &CancelToken) -> Result<()> {
        let _permit = tokio::select! {
            p = self.inner.setup_slots.acquire() => p.map_err(|_| Error::store("setup", "closed"))?,
            () = token.cancelled() => {
                return Err(Error::Cancelled);
            }
        };
        let t = if t.state == TaskState::Init {
            if !self
                .step(
                    t,
                    TaskState::SettingUp,
                    Update::new(),
                    "fetching and checking the dataset".into(),
                )
                .await?
            {
                return Ok(());
            }
            self.inner
                .store
                .get(&t.id)
                .await?
                .ok_or_else(|| Error::TaskNotFound { id: t.id.to_string() })?
        } else {
            t.clone()
        };
        self.setup(&t).await
    }

    async fn setup(&self, t: &TaskRecord) -> Result<()> {
        let inner = &self.inner;
        let model = self.model(&t.model)?.clone();
        let params = TrainingParams::parse(&t.training_params, inner.cfg.max_epochs)?;
        let dir = task_dir(&inner.cfg, &t.id);
        let input = dir.join("input");
        tokio::fs::create_dir_all(&input)
            .await
            .map_err(|e| Error::io("create", &input, e))?;
        let raw = match self.dataset_source(t.user, &t.dataset_hash).await? {
            DatasetSource::Upload(p) => p,
            DatasetSource::Storage(root) => {
                let out = input.join("dataset.raw");
                inner
                    .storage
                    .fetch(root, &out, inner.cfg.dataset_limits.max_bytes)
                    .await?
                    .ok_or_else(|| Error::DatasetNotFound {
                        hash: t.dataset_hash.clone(),
                    })?;
                out
            }
        };
        let limits = inner.cfg.dataset_limits;
        let tokenizer = Arc::clone(&model.tokenizer);
        let input2 = input.clone();
        let params_json = params.to_json();
        let (tokens, records, format) =
            tokio::task::spawn_blocking(move || -> Result<(u64, usize, &'static str)> {
                let ds = Dataset::load(&raw, &limits)?;
                let tokens = ds.token_count(tokenizer.as_ref());
                let p = input2.join("dataset.jsonl");
                std::fs::write(&p, ds.to_jsonl()).map_err(|e| Error::io("write", &p, e))?;
                let p = input2.join("params.json");
                std::fs::write(&p, params_json).map_err(|e| Error::io("write", &p, e))?;
                let _ = std::fs::remove_file(input2.join("dataset.raw"));
                Ok((tokens, ds.records.len(), ds.format.as_str()))
            })
            .await
            .map_err(|e| Error::store("dataset", e))??;
        let epochs = params.num_train_epochs;
        let price = inner.cfg.price_per_token;
        let fee = U256::from(tokens)
            .checked_mul(U256::from(epochs))
            .and_then(|x| x.checked_mul(price))
            .ok_or_else(|| Error::InvalidField {
                field: "fee",
                reason: "tokens × epochs × price overflows".into(),
            })?;
        if let Some(max) = t.max_fee
            && fee > max
        {
            return Err(Error::FeeAboveSignedMax { fee, max });
        }
        let account = inner
            .chain
            .account(t.user)
            .await
            .map_err(chain_err("getAccount"))?
            .ok_or(Error::NoSubAccount {
                user: t.user,
                provider: inner.chain.provider(),
            })?;
        let (_, others) = inner.store.in_flight(t.user).await?;
        let available = account
            .balance
            .saturating_sub(account.pending_refund)
            .saturating_sub(others);
        if fee > available {
            return Err(Error::InsufficientBalance { fee, available });
        }
        let note = format!(
            "{records} {format} records, {tokens} tokens ({}) × {epochs} epoch(s) × {price} neuron = fee {fee} neuron",
            model.tokenizer.name()
        );
        self.step(
            t,
            TaskState::Training,
            Update::new()
                .int("tokens", i64::try_from(tokens).unwrap_or(i64::MAX))
                .int("epochs", i64::from(epochs))
                .u256("price", price)
                .u256("fee", fee),
            note,
        )
        .await?;
        Ok(())
    }

    async fn train(&self, t: &TaskRecord, token: &CancelToken) -> Result<()> {
        let inner = &self.inner;
        let model = self.model(&t.model)?.clone();
        let params = TrainingParams::parse(&t.training_params, inner.cfg.max_epochs)?;
        let permit = tokio::select! {
            p = inner.slots.acquire() => p.map_err(|_| Error::store("train", "closed"))?,
            () = token.cancelled() => {
                return Err(Error::Cancelled);
            }
        };
        let dir = task_dir(&inner.cfg, &t.id);
        let output = dir.join("output");
        // A crash mid-training leaves a partial output: start clean.
        let _ = tokio::fs::remove_dir_all(&output).await;
        tokio::fs::create_dir_all(&output)
            .await
            .map_err(|e| Error::io("create", &output, e))?;
        let job = Job {
            task_id: t.id.to_string(),
            model: model.name.clone(),
            base_model_dir: model.base_model_dir.clone(),
            input_dir: dir.join("input"),
            output_dir: output,
            params,
        };
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<TrainEvent>();
        let ctx = TrainContext::new(
            move |e| drop(ev_tx.send(e)),
            token.clone(),
            inner.cfg.train_timeout,
        );
        let executor = Arc::clone(&model.executor);
        let handle = tokio::task::spawn_blocking(move || executor.train(&job, &ctx));
        // Persist what the trainer reports, in batches, while it runs.
        let me = self.clone();
        let id = t.id.clone();
        let pump = tokio::spawn(async move {
            while let Some(first) = ev_rx.recv().await {
                let mut batch = vec![first];
                while let Ok(e) = ev_rx.try_recv() {
                    batch.push(e);
                }
                let mut lines = Vec::new();
                let mut progress = None;
                for e in batch {
                    match e {
                        TrainEvent::Log(l) => lines.push(("log", l)),
                        TrainEvent::Metric(m) => {
                            lines.push(("metric", serde_json::to_string(&m).unwrap_or_default()));
                        }
                        TrainEvent::Progress(p) => progress = Some(p),
                    }
                }
                if !lines.is_empty() {
                    let _ = me.inner.store.append_log(&id, lines).await;
                }
                if let Some(p) = progress {
                    let _ = me
                        .inner
                        .store
                        .update(&id, TaskState::Training, Update::new().real("progress", p))
                        .await;
                }
                me.emit_activity(&id);
            }
        });
        let res = handle.await.map_err(|e| Error::Training {
            executor: "join",
            reason: e.to_string(),
        })?;
        let _ = pump.await;
        drop(permit);
        match res {
            Ok(outcome) => {
                self.step(
                    t,
                    TaskState::Trained,
                    Update::new().real("progress", 1.0),
                    outcome.summary,
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn deliver(&self, t: &TaskRecord) -> Result<()> {
        let inner = &self.inner;
        let dir = task_dir(&inner.cfg, &t.id);
        let mut t = t.clone();
        if t.model_root_hash.is_none() {
            let _ = tokio::fs::remove_dir_all(dir.join("input")).await;
            let (out, sealed) = (dir.join("output"), dir.join("model.sealed"));
            let (tee, pubkey) = (inner.tee.clone(), t.user_pubkey.clone());
            let adapter = dir.join(ADAPTER_DIR);
            let a = tokio::task::spawn_blocking(move || {
                keep_peft_adapter(&out, &adapter)?;
                seal_output(&out, &tee, &pubkey, &sealed)
            })
            .await
            .map_err(|e| Error::store("seal", e))??;
            inner.storage.put_sealed(&a.sealed_path, a.storage_root).await?;
            let note = format!(
                "sealed {} bytes (archive {} bytes): modelRootHash {:#x}, storage root {:#x}",
                a.sealed_len, a.plaintext_len, a.model_root_hash, a.storage_root
            );
            let recorded = inner
                .store
                .update(
                    &t.id,
                    TaskState::Delivering,
                    Update::new()
                        .text("model_root_hash", format!("{:#x}", a.model_root_hash))
                        .text("storage_root", format!("{:#x}", a.storage_root))
                        .int("sealed_len", i64::try_from(a.sealed_len).unwrap_or(i64::MAX))
                        .text("sealed_path", a.sealed_path.display().to_string())
                        .blob("encrypted_secret", a.encrypted_secret),
                )
                .await?;
            if !recorded {
                return Ok(()); // cancelled meanwhile
            }
            self.log(&t.id, note).await;
            let _ = tokio::fs::remove_dir_all(dir.join("output")).await;
            t = self
                .inner
                .store
                .get(&t.id)
                .await?
                .ok_or_else(|| Error::TaskNotFound { id: t.id.to_string() })?;
        }
        let root_hex = t.model_root_hash.clone().unwrap_or_default();
        let root = Bytes::from(
            B256::from_str(&root_hex)
                .map_err(|e| Error::store("model root", e))?
                .to_vec(),
        );
        if !t.deliver_sending {
            // From here on the customer can no longer cancel: the transaction may be on its way.
            let sending = inner
                .store
                .update(
                    &t.id,
                    TaskState::Delivering,
                    Update::new().int("deliver_sending", 1),
                )
                .await?;
            if !sending {
                return Ok(());
            }
        }
        let user = t.user;
        let id = t.id.to_string();
        let existing = inner
            .chain
            .deliverable(user, &id)
            .await
            .map_err(chain_err("getDeliverable"))?;
        let tx = match existing {
            Some(d) if d.model_root_hash == root => None,
            Some(d) => {
                return Err(Error::Chain {
                    op: "getDeliverable",
                    failure: ChainFailure::Other(format!(
                        "deliverable {id} is on chain with root {} but this task sealed {root}",
                        d.model_root_hash
                    )),
                });
            }
            None => match inner.chain.add_deliverable(user, &id, &root).await {
                Ok(tx) => Some(tx),
                Err(f) if f.is_revert("DeliverableAlreadyExists") => {
                    // Sent before a crash, or a concurrent retry: the read on the next pass decides.
                    return Err(Error::Chain {
                        op: "addDeliverable",
                        failure: ChainFailure::Transient(f.to_string()),
                    });
                }
                Err(f) => return Err(chain_err("addDeliverable")(f)),
            },
        };
        let mut up = Update::new().int("delivered_at", now_ms());
        if let Some(tx) = tx {
            up = up.text("deliver_tx", format!("{tx:#x}"));
        }
        let note = match tx {
            Some(tx) => format!("addDeliverable {tx:#x}: waiting for the customer's acknowledgement"),
            None => "the deliverable is already on chain: waiting for the customer's acknowledgement".into(),
        };
        self.step(&t, TaskState::Delivered, up, note).await?;
        Ok(())
    }

    async fn await_ack(&self, t: &TaskRecord) -> Result<()> {
        let inner = &self.inner;
        // A penalty settlement prepared before a crash resumes first.
        if t.settle_ack == Some(false) {
            return self.settle(t, false).await;
        }
        let id = t.id.to_string();
        let d = inner
            .chain
            .deliverable(t.user, &id)
            .await
            .map_err(chain_err("getDeliverable"))?
            .ok_or_else(|| Error::Chain {
                op: "getDeliverable",
                failure: ChainFailure::Other(format!("deliverable {id} vanished from the chain")),
            })?;
        if d.acknowledged {
            self.step(
                t,
                TaskState::UserAcknowledged,
                Update::new(),
                "the customer acknowledged the deliverable: settling and revealing the key".into(),
            )
            .await?;
            return Ok(());
        }
        if d.settled {
            return self.settle(t, false).await;
        }
        let since = t.delivered_at.unwrap_or(t.updated_at);
        let timeout = i64::try_from(inner.cfg.ack_timeout.as_millis()).unwrap_or(i64::MAX);
        if now_ms().saturating_sub(since) >= timeout {
            self.log(
                &t.id,
                format!(
                    "no acknowledgement within {} s: settling at the penalty fee; the key is never revealed",
                    inner.cfg.ack_timeout.as_secs()
                ),
            )
            .await;
            return self.settle(t, false).await;
        }
        if !self.nap().await {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    fn settle_lock(&self, user: Address) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .settle_locks
            .lock()
            .map(|mut m| Arc::clone(m.entry(user).or_default()))
            .unwrap_or_default()
    }

    /// Settles a delivered task: with the key when `acknowledged`, else at the penalty fee without it.
    async fn settle(&self, t: &TaskRecord, acknowledged: bool) -> Result<()> {
        let inner = &self.inner;
        let lock = self.settle_lock(t.user);
        let _guard = lock.lock().await;
        let t = inner
            .store
            .get(&t.id)
            .await?
            .ok_or_else(|| Error::TaskNotFound { id: t.id.to_string() })?;
        let id = t.id.to_string();
        let fee = t.fee.unwrap_or_default();
        let d = inner
            .chain
            .deliverable(t.user, &id)
            .await
            .map_err(chain_err("getDeliverable"))?
            .ok_or_else(|| Error::Chain {
                op: "getDeliverable",
                failure: ChainFailure::Other(format!("deliverable {id} vanished from the chain")),
            })?;
        let penalty = inner
            .chain
            .penalty_percentage()
            .await
            .map_err(chain_err("penaltyPercentage"))?;
        let penalty_fee = fee.saturating_mul(U256::from(penalty)) / U256::from(100);
        if d.settled {
            return self
                .finish_settled(&t, d.secret_revealed, fee, penalty_fee, None)
                .await;
        }
        if !acknowledged && d.acknowledged {
            // The customer acknowledged after all (before our penalty settlement landed): reveal and charge fully.
            self.step(
                &t,
                TaskState::UserAcknowledged,
                Update::new()
                    .null("settle_nonce")
                    .null("settle_ack")
                    .null("settle_signature"),
                "the customer acknowledged the deliverable: settling and revealing the key".into(),
            )
            .await?;
            return Ok(());
        }
        let account = inner
            .chain
            .account(t.user)
            .await
            .map_err(chain_err("getAccount"))?
            .ok_or(Error::NoSubAccount {
                user: t.user,
                provider: inner.chain.provider(),
            })?;
        let root = Bytes::from(
            B256::from_str(t.model_root_hash.as_deref().unwrap_or_default())
                .map_err(|e| Error::store("model root", e))?
                .to_vec(),
        );
        // Reuse the recorded payload while it is still valid; otherwise sign a new one and record it first.
        let reusable = t.settle_ack == Some(acknowledged)
            && t.settle_nonce.is_some_and(|n| n > account.nonce)
            && t.settle_signature.is_some();
        let mut s = Settlement {
            id: id.clone(),
            encrypted_secret: if acknowledged {
                Bytes::from(t.encrypted_secret.clone().unwrap_or_default())
            } else {
                Bytes::new()
            },
            model_root_hash: root,
            nonce: if reusable {
                t.settle_nonce.unwrap_or_default()
            } else {
                settlement_nonce(t.nonce, &account)
            },
            task_fee: fee,
            user: t.user,
            signature: Bytes::from(t.settle_signature.clone().unwrap_or_default()),
        };
        if acknowledged && s.encrypted_secret.is_empty() {
            return Err(Error::store(
                "settle",
                "the wrapped key of an acknowledged task is missing",
            ));
        }
        if !reusable {
            inner.chain.domain().sign(&inner.tee, &mut s)?;
            let recorded = inner
                .store
                .update(
                    &t.id,
                    t.state,
                    Update::new()
                        .u256("settle_nonce", s.nonce)
                        .int("settle_ack", i64::from(acknowledged))
                        .blob("settle_signature", s.signature.to_vec()),
                )
                .await?;
            if !recorded {
                return Ok(());
            }
        }
        match inner.chain.settle(&s).await {
            Ok(tx) => {
                if let Ok(mut w) = self.inner.reveal_waits.lock() {
                    w.remove(&t.id);
                }
                let charged = if acknowledged { fee } else { penalty_fee };
                self.finish_settled(&t, acknowledged, fee, charged, Some(tx))
                    .await
            }
            Err(ChainFailure::RevealWindowClosed(m)) => {
                // Not sent: outside the refund freeze the customer could front-run the reveal with a refund.
                // Tell the customer once; every later pass tries again, and succeeds once it re-acknowledges.
                let first = self
                    .inner
                    .reveal_waits
                    .lock()
                    .map(|mut w| w.insert(t.id.clone()))
                    .unwrap_or(false);
                if first {
                    self.log(
                        &t.id,
                        format!(
                            "the key is not sent yet: the refund freeze from your acknowledgement has ended or ends \
                             too soon for a settlement to be included, and outside it a refund could be processed \
                             first; acknowledge again (`zg fine-tuning acknowledge-deliverable --provider {} \
                             --task-id {id}`) and the broker settles at once",
                            inner.chain.provider()
                        ),
                    )
                    .await;
                }
                tracing::warn!(task = %id, reason = %m, "reveal window closed; waiting for a new acknowledgement");
                Err(Error::Chain {
                    op: "settleFees",
                    failure: ChainFailure::Transient(m),
                })
            }
            Err(f) if f.is_revert("DeliverableAlreadySettled") => Ok(()), // the next pass reads the chain
            Err(f) if f.is_revert("SecretShouldNotBeEmpty") || f.is_revert("InvalidVerifierInput") => {
                // Acknowledged meanwhile, or the nonce moved: re-read and re-sign on the next pass.
                let _ = inner
                    .store
                    .update(&t.id, t.state, Update::new().null("settle_signature"))
                    .await;
                Err(Error::Chain {
                    op: "settleFees",
                    failure: ChainFailure::Transient(f.to_string()),
                })
            }
            Err(f) => Err(chain_err("settleFees")(f)),
        }
    }

    async fn finish_settled(
        &self,
        t: &TaskRecord,
        revealed: bool,
        fee: U256,
        charged: U256,
        tx: Option<B256>,
    ) -> Result<()> {
        let to = if revealed {
            TaskState::Finished
        } else {
            TaskState::PenaltySettled
        };
        let charged = if revealed { fee } else { charged };
        let mut up = Update::new().int("settled_at", now_ms()).u256("charged", charged);
        if let Some(tx) = tx {
            up = up.text("settle_tx", format!("{tx:#x}"));
        }
        let note = match (revealed, tx) {
            (true, Some(tx)) => {
                format!("settleFees {tx:#x}: paid {charged} neuron, key revealed to the customer")
            }
            (false, Some(tx)) => {
                format!("settleFees {tx:#x}: penalty {charged} neuron charged, key not revealed")
            }
            (true, None) => format!("settled on chain: paid {charged} neuron, key revealed"),
            (false, None) => {
                format!("settled on chain at the penalty fee {charged} neuron, key not revealed")
            }
        };
        // From Delivered (penalty) or UserAcknowledged (revealed); `to` is valid from exactly one of them.
        let from_ok = t.state.can_move_to(to);
        if !from_ok {
            return Err(Error::store(
                "settle",
                format!(
                    "settled on chain (revealed: {revealed}) while the task is {}",
                    t.state
                ),
            ));
        }
        self.step(t, to, up, note).await?;
        Ok(())
    }

    async fn cleanup(&self, id: &TaskId, keep_sealed: bool) {
        let dir = task_dir(&self.inner.cfg, id);
        if keep_sealed {
            let _ = tokio::fs::remove_dir_all(dir.join("input")).await;
            let _ = tokio::fs::remove_dir_all(dir.join("output")).await;
        } else {
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
    }
}

enum DatasetSource {
    Upload(PathBuf),
    Storage(B256),
}
