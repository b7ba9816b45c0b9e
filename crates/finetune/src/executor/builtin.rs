//! `builtin`: fine-tunes the demo n-gram family (zg-ngram) in process, on CPU, in milliseconds per epoch.
//!
//! Honest about what it is: training counts the n-grams of the dataset's target texts (assistant turns,
//! outputs, completions — what supervised fine-tuning learns) once (the "adapter"), epoch *e* applies them *e*
//! times to the base, and the loss it reports is the smoothed cross-entropy on the targets of records held
//! out with the seed — measured before training (epoch 0) and after every epoch. Parameters that mean nothing
//! to an n-gram model (learning rate, batch size, LoRA shape) are named in the log as ignored.
//!
//! Output: `adapter.ngram` (the dataset's counts, zg-ngram's text format), `adapter_config.json` (base model,
//! base fingerprint, times applied, seed, split), `metrics.json`.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use sha2::{Digest as _, Sha256};
use zg_ngram::NgramModel;

use super::{Executor, Job, Metric, TrainContext, TrainOutcome};
use crate::error::{Error, Result};

/// Format tag of `adapter_config.json`.
pub const ADAPTER_FORMAT: &str = "zg-ngram-adapter/1";

/// The built-in n-gram trainer over a base model.
#[derive(Debug, Clone)]
pub struct BuiltinExecutor {
    base: Arc<NgramModel>,
    base_name: String,
    base_sha256: String,
    epoch_pause: Duration,
}

impl BuiltinExecutor {
    /// A trainer for `base`, published as `base_name`.
    pub fn new(base: Arc<NgramModel>, base_name: impl Into<String>) -> Self {
        let base_sha256 = hex::encode(Sha256::digest(base.to_bytes()));
        Self {
            base,
            base_name: base_name.into(),
            base_sha256,
            epoch_pause: Duration::ZERO,
        }
    }

    /// Pauses this long after each epoch (still cancellable): lets a demo follow the log live and a crash
    /// test catch the task in `Training`. Zero by default.
    pub fn with_epoch_pause(mut self, pause: Duration) -> Self {
        self.epoch_pause = pause;
        self
    }

    /// sha256 of the base model's serialisation (recorded in every adapter, checked when applying one).
    pub fn base_sha256(&self) -> &str {
        &self.base_sha256
    }

    fn pause(&self, ctx: &TrainContext) -> Result<()> {
        let mut left = self.epoch_pause;
        while !left.is_zero() {
            ctx.checkpoint()?;
            let step = left.min(Duration::from_millis(50));
            std::thread::sleep(step);
            left -= step;
        }
        ctx.checkpoint()
    }
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io("write", path, e))
}

impl Executor for BuiltinExecutor {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    fn train(&self, job: &Job, ctx: &TrainContext) -> Result<TrainOutcome> {
        let p = &job.params;
        let ds = job.read_dataset()?;
        let mut order: Vec<usize> = (0..ds.records.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(p.seed));
        let n = order.len();
        let held = ((n as f64 * p.validation_split).ceil() as usize).clamp(1, n.saturating_sub(1).max(1));
        let (held_idx, train_idx) = order.split_at(held);
        // As supervised fine-tuning does, learn (and measure the loss on) what the model should say: assistant
        // turns, outputs, completions.
        let texts =
            |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| ds.records[i].target_text()).collect() };
        let (held_texts, train_texts) = (texts(held_idx), texts(train_idx));
        ctx.log(format!(
            "builtin n-gram trainer on {}: {} training records, {} held out (seed {}), {} epoch(s)",
            self.base_name,
            train_texts.len(),
            held_texts.len(),
            p.seed,
            p.num_train_epochs
        ));
        let mut ignored: Vec<&str> = vec!["learning_rate", "per_device_train_batch_size"];
        if p.max_steps.is_some() {
            ignored.push("max_steps");
        }
        ignored.extend(p.extra.keys().map(String::as_str));
        ctx.log(format!(
            "an n-gram model has no gradient: {} ignored",
            ignored.join(", ")
        ));
        ctx.checkpoint()?;
        let held_refs: Vec<&str> = held_texts.iter().map(String::as_str).collect();
        let before = self.base.loss(held_refs.iter().copied());
        let mut metrics = Vec::new();
        let mut report = |ctx: &TrainContext, epoch: u32, loss: zg_ngram::Loss| {
            for (name, value) in [("eval_loss", loss.mean()), ("eval_perplexity", loss.perplexity())] {
                let m = Metric {
                    epoch,
                    step: None,
                    name: name.into(),
                    value,
                };
                ctx.metric(m.clone());
                metrics.push(m);
            }
            ctx.log(format!(
                "epoch {epoch}: held-out loss {:.4} nats/token, perplexity {:.2} ({} tokens)",
                loss.mean(),
                loss.perplexity(),
                loss.tokens
            ));
        };
        report(ctx, 0, before);
        let delta = NgramModel::from_texts(train_texts.iter().map(String::as_str));
        let mut last = before;
        for epoch in 1..=p.num_train_epochs {
            ctx.checkpoint()?;
            let tuned = self.base.merged(&delta, epoch);
            last = tuned.loss(held_refs.iter().copied());
            report(ctx, epoch, last);
            ctx.progress(f64::from(epoch) / f64::from(p.num_train_epochs));
            self.pause(ctx)?;
        }
        std::fs::create_dir_all(&job.output_dir).map_err(|e| Error::io("create", &job.output_dir, e))?;
        write(&job.output_dir.join("adapter.ngram"), &delta.to_bytes())?;
        let config = serde_json::json!({
            "format": ADAPTER_FORMAT,
            "base_model": self.base_name,
            "base_sha256": self.base_sha256,
            "times": p.num_train_epochs,
            "seed": p.seed,
            "train_records": train_texts.len(),
            "held_out_records": held_texts.len(),
        });
        write(
            &job.output_dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&config)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        write(
            &job.output_dir.join("metrics.json"),
            serde_json::to_string_pretty(&metrics)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let summary = format!(
            "held-out loss {:.4} → {:.4} nats/token (perplexity {:.2} → {:.2}) over {} epoch(s)",
            before.mean(),
            last.mean(),
            before.perplexity(),
            last.perplexity(),
            p.num_train_epochs
        );
        ctx.log(summary.clone());
        Ok(TrainOutcome { metrics, summary })
    }
}

/// Applies a delivered adapter directory (unpacked from the decrypted archive) to `base`: checks the format
/// and the base fingerprint, then merges the counts `times` times. This is what a customer runs to use the
/// fine-tuned model.
pub fn apply_adapter(base: &NgramModel, dir: &std::path::Path, max_bytes: usize) -> Result<NgramModel> {
    let cfg_path = dir.join("adapter_config.json");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).map_err(|e| Error::io("read", &cfg_path, e))?)
            .map_err(|e| Error::InvalidField {
                field: "adapter_config.json",
                reason: e.to_string(),
            })?;
    let bad = |reason: String| Error::InvalidField {
        field: "adapter_config.json",
        reason,
    };
    if cfg["format"] != ADAPTER_FORMAT {
        return Err(bad(format!(
            "format is {}, expected {ADAPTER_FORMAT}",
            cfg["format"]
        )));
    }
    let base_sha = hex::encode(Sha256::digest(base.to_bytes()));
    if cfg["base_sha256"] != base_sha.as_str() {
        return Err(bad(format!(
            "the adapter was trained on base {} but this base is {base_sha}",
            cfg["base_sha256"]
        )));
    }
    let times = cfg["times"]
        .as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| (1..=1000).contains(t))
        .ok_or_else(|| bad("times must be 1..=1000".into()))?;
    let path = dir.join("adapter.ngram");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let delta = NgramModel::from_bytes(&bytes, max_bytes).map_err(|e| bad(e.to_string()))?;
    Ok(base.merged(&delta, times))
}
