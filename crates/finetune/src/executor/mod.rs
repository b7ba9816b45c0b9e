//! Executors train one task. They run on a blocking thread, report log lines, metrics and progress through
//! a [`TrainContext`], stop promptly when it says so (cancel or deadline), and leave their result in the
//! job's output directory — which the pipeline then packages, seals and delivers. Executors: `builtin` (the demo
//! n-gram family), `lora` (real LoRA on a GGUF base with zg-model, CPU), `command` and `docker` (any trainer).

mod builtin;
mod command;
mod docker;
mod lora;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use builtin::{ADAPTER_FORMAT, BuiltinExecutor, apply_adapter};
pub use command::{CommandExecutor, CommandSpec, MAX_LOG_LINE, ResourceLimits};
pub use docker::{ContainerRuntime, DockerExecutor};
pub use lora::{LoraExecutor, MAX_BATCH, MAX_LORA_RANK, MAX_SEQ_LEN, ModelTokenizer};

use crate::error::{Error, Result};
use crate::params::TrainingParams;

/// One metric sample (e.g. `eval_loss` after epoch 2).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    /// Epoch (0 = before training).
    pub epoch: u32,
    /// Optimizer step, when the trainer counts steps.
    pub step: Option<u64>,
    /// Name (`eval_loss`, `eval_perplexity`, `train_loss`, …).
    pub name: String,
    /// Value.
    pub value: f64,
}

/// What an executor reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// A log line for the customer (never dataset content or secrets).
    Log(String),
    /// A metric.
    Metric(Metric),
    /// Progress in [0, 1].
    Progress(f64),
}

/// A cancellation flag shared between the pipeline and a running executor: polled by blocking executors
/// ([`CancelToken::is_cancelled`]), awaited by async code ([`CancelToken::cancelled`]).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelToken {
    /// A fresh, not cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the executor to stop.
    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
    /// Whether cancellation was asked.
    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }
    /// Resolves once cancellation is asked.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The executor's view of its run: events out, cancellation and deadline in.
pub struct TrainContext {
    sink: Box<dyn Fn(TrainEvent) + Send + Sync>,
    cancel: CancelToken,
    deadline: Instant,
    limit: Duration,
}

impl std::fmt::Debug for TrainContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainContext")
            .field("cancelled", &self.cancel.is_cancelled())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl TrainContext {
    /// A context sending events to `sink`, cancelled by `cancel`, with `limit` of wall time from now.
    pub fn new(
        sink: impl Fn(TrainEvent) + Send + Sync + 'static,
        cancel: CancelToken,
        limit: Duration,
    ) -> Self {
        Self {
            sink: Box::new(sink),
            cancel,
            deadline: Instant::now() + limit,
            limit,
        }
    }

    /// Reports a log line.
    pub fn log(&self, line: impl Into<String>) {
        (self.sink)(TrainEvent::Log(line.into()));
    }

    /// Reports a metric (and logs it).
    pub fn metric(&self, m: Metric) {
        (self.sink)(TrainEvent::Metric(m));
    }

    /// Reports progress in [0, 1].
    pub fn progress(&self, p: f64) {
        (self.sink)(TrainEvent::Progress(p.clamp(0.0, 1.0)));
    }

    /// The token the pipeline cancels.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The wall-time limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// `Err(Cancelled)` or `Err(TimedOut)` when the run must stop: call between units of work.
    pub fn checkpoint(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(Error::TimedOut {
                secs: self.limit.as_secs(),
            });
        }
        Ok(())
    }
}

/// One training job. The directories are private to the task: nothing of another task is reachable from
/// them.
#[derive(Debug, Clone)]
pub struct Job {
    /// Task id.
    pub task_id: String,
    /// Model name as offered (`zg-demo-ngram`, `Qwen2.5-0.5B-Instruct`, …).
    pub model: String,
    /// Base model files, when the model has a local directory (the command and docker executors mount it).
    pub base_model_dir: Option<PathBuf>,
    /// Task input directory: `dataset.jsonl` (the validated records) and `params.json`.
    pub input_dir: PathBuf,
    /// Where the trainer writes its result; packaged and sealed afterwards.
    pub output_dir: PathBuf,
    /// The parsed parameters (`params.json` holds the same, defaults filled in).
    pub params: TrainingParams,
}

impl Job {
    /// `input_dir/dataset.jsonl`.
    pub fn dataset_path(&self) -> PathBuf {
        self.input_dir.join("dataset.jsonl")
    }
    /// `input_dir/params.json`.
    pub fn params_path(&self) -> PathBuf {
        self.input_dir.join("params.json")
    }

    /// The task's dataset (blocking read). The pipeline validated it under the broker's limits when the task was
    /// created; the in-process trainers read it again under the same record checks, without the size limits (the
    /// file is the pipeline's own copy).
    pub fn read_dataset(&self) -> Result<crate::dataset::Dataset> {
        let path = self.dataset_path();
        let raw = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let limits = crate::dataset::DatasetLimits {
            max_bytes: u64::MAX,
            max_unpacked_bytes: u64::MAX,
            ..crate::dataset::DatasetLimits::default()
        };
        crate::dataset::Dataset::from_jsonl(&raw, &limits)
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainOutcome {
    /// The final metrics (also sent as events while running).
    pub metrics: Vec<Metric>,
    /// One line for the log ("eval_loss 4.31 → 1.92 over 3 epochs").
    pub summary: String,
}

/// A trainer.
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// `builtin`, `command`, `docker`, …
    fn kind(&self) -> &'static str;

    /// Runs `job` to completion on the calling (blocking) thread. Must return `Err(Cancelled)` /
    /// `Err(TimedOut)` promptly once [`TrainContext::checkpoint`] says so, and must only write inside
    /// `job.output_dir`.
    fn train(&self, job: &Job, ctx: &TrainContext) -> Result<TrainOutcome>;

    /// Refuses parameters this executor cannot run (beyond the schema's bounds), by name, when the task is
    /// created: before any fee or training. Accepts everything by default.
    fn check_params(&self, params: &TrainingParams) -> Result<()> {
        let _ = params;
        Ok(())
    }
}
