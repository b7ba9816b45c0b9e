//! `lora`: real LoRA fine-tuning of a llama-family GGUF model (SmolLM2-135M-Instruct first) in process, on the
//! CPU, with zg-model's trainer: the base dequantized to f32 and frozen, LoRA A/B trained with AdamW on real
//! gradients, loss on the answer tokens, deterministic for a seed.
//!
//! Parameters (0G / Hugging Face names, bounds checked before anything runs, refused by name):
//! `lora_r` or `lora_rank` (1..=[`MAX_LORA_RANK`], default 8), `lora_alpha` (default 16), `target_modules`
//! (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj` or `all-linear`, a list or one
//! comma-separated string; default `q_proj,v_proj`), `learning_rate`, `num_train_epochs`, `max_steps`,
//! `per_device_train_batch_size` (≤ [`MAX_BATCH`]), `seed`, `validation_split` (the held-out share),
//! `max_seq_length` / `max_length` (8..=[`MAX_SEQ_LEN`], default 256), `weight_decay`, `eval_steps` (held-out loss
//! every this many steps; default five times a run, plus before the first and after the last step). Keys a CPU LoRA run does not
//! use (dropout, schedulers, NEFTune, …) are named in the log as ignored.
//!
//! The log shows, live: the base's held-out loss (step 0), then per step the training loss and tokens/s, and the
//! held-out loss at five points and the last step. Cancel and the task deadline are asked before every step (a
//! step is a fraction of a second to a few seconds on a 2-core machine), so a stop is prompt and writes nothing.
//!
//! Output: a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`, Hugging Face row order,
//! `base_model_name_or_path` = the base's name), which Hugging Face PEFT and zg-model's
//! [`Model::add_adapter`](zg_model::Model::add_adapter) both load.
//!
//! Who can reach it: any customer with a funded sub-account, through create-task. The worst they can do is pick
//! parameters that burn CPU: every knob that scales cost is bounded here, and the wall time by the task deadline.

use zg_model::{Model, Target, Targets, TrainExample, TrainParams, TrainProgress};

use super::{Executor, Job, Metric, TrainContext, TrainOutcome};
use crate::dataset::Tokenizer;
use crate::error::{Error, Result};
use crate::params::TrainingParams;

/// Largest LoRA rank this CPU trainer accepts.
pub const MAX_LORA_RANK: usize = 64;
/// Largest `per_device_train_batch_size` this CPU trainer accepts.
pub const MAX_BATCH: usize = 16;
/// Longest tokenized example (`max_seq_length`) this CPU trainer accepts.
pub const MAX_SEQ_LEN: usize = 1024;

/// Keys this trainer reads; any other accepted key is logged as ignored.
const USED: &[&str] = &[
    "lora_r",
    "lora_rank",
    "lora_alpha",
    "target_modules",
    "max_seq_length",
    "max_length",
    "weight_decay",
    "eval_steps",
];

fn bad(field: &str, reason: impl Into<String>) -> Error {
    Error::TrainingParams {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn model_err(e: zg_model::Error) -> Error {
    match e {
        zg_model::Error::InvalidParam { name, reason } => bad(name, reason),
        zg_model::Error::Dataset { line, reason } => Error::DatasetFormat {
            line: line as u64,
            reason,
        },
        other => Error::Training {
            executor: "lora",
            reason: other.to_string(),
        },
    }
}

impl LoraExecutor {
    /// The trainer's parameters for `p`, every bound checked (named errors), and the keys it will ignore.
    ///
    /// ```
    /// use zg_finetune::{LoraExecutor, TrainingParams};
    /// let p = TrainingParams::parse(r#"{"lora_r": 4, "target_modules": "q_proj,k_proj", "max_steps": 3}"#, 10)?;
    /// let (t, ignored) = LoraExecutor::train_params(&p)?;
    /// assert_eq!((t.lora_rank, t.max_steps, t.target_modules.0.len()), (4, 3, 2));
    /// assert!(ignored.is_empty());
    /// let p = TrainingParams::parse(r#"{"lora_r": 512}"#, 10)?;
    /// assert!(LoraExecutor::train_params(&p).unwrap_err().to_string().contains("lora_r"));
    /// # Ok::<(), zg_finetune::Error>(())
    /// ```
    pub fn train_params(p: &TrainingParams) -> Result<(TrainParams, Vec<String>)> {
        let mut t = TrainParams::default();
        let int = |k: &str| p.extra.get(k).and_then(serde_json::Value::as_u64);
        for k in ["lora_r", "lora_rank"] {
            if let Some(r) = int(k) {
                if r == 0 || r > MAX_LORA_RANK as u64 {
                    return Err(bad(
                        k,
                        format!("{r} is out of bounds 1..={MAX_LORA_RANK} for the CPU trainer"),
                    ));
                }
                t.lora_rank = r as usize;
            }
        }
        if let Some(a) = p.extra.get("lora_alpha").and_then(serde_json::Value::as_f64) {
            t.lora_alpha = a;
        }
        if let Some(v) = p.extra.get("target_modules") {
            t.target_modules = serde_json::from_value::<Targets>(v.clone())
                .map_err(|e| bad("target_modules", e.to_string()))?;
        }
        for k in ["max_seq_length", "max_length"] {
            if let Some(n) = int(k) {
                if !(8..=MAX_SEQ_LEN as u64).contains(&n) {
                    return Err(bad(
                        k,
                        format!("{n} is out of bounds 8..={MAX_SEQ_LEN} for the CPU trainer"),
                    ));
                }
                t.max_seq_len = n as usize;
            }
        }
        if let Some(n) = int("eval_steps") {
            t.eval_steps = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(w) = p.extra.get("weight_decay").and_then(serde_json::Value::as_f64) {
            t.weight_decay = w;
        }
        let bs = p.per_device_train_batch_size as usize;
        if bs > MAX_BATCH {
            return Err(bad(
                "per_device_train_batch_size",
                format!("{bs} is out of bounds 1..={MAX_BATCH} for the CPU trainer"),
            ));
        }
        t.batch_size = bs.max(1);
        t.learning_rate = p.learning_rate;
        t.num_train_epochs = f64::from(p.num_train_epochs);
        t.max_steps = p.max_steps.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        t.seed = p.seed;
        t.eval_fraction = p.validation_split;
        t.check().map_err(|e| match e {
            zg_model::Error::InvalidParam { name, reason } => bad(
                match name {
                    "eval_fraction" => "validation_split",
                    "max_seq_len" => "max_seq_length",
                    "lora_rank" => "lora_r",
                    n => n,
                },
                reason,
            ),
            other => model_err(other),
        })?;
        let ignored = p
            .extra
            .keys()
            .filter(|k| !USED.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok((t, ignored))
    }
}

/// The LoRA trainer over a loaded base model (shared with nothing that mutates it: training reads the base and
/// builds its own f32 copy per run).
#[derive(Debug, Clone)]
pub struct LoraExecutor {
    model: Model,
}

impl LoraExecutor {
    /// A trainer for `model` (e.g. `Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", …)`).
    pub fn new(model: Model) -> Self {
        Self { model }
    }

    /// The base model.
    pub fn model(&self) -> &Model {
        &self.model
    }
}

fn log_step(ctx: &TrainContext, s: &TrainProgress, metrics: &mut Vec<Metric>) {
    let mut push = |name: &str, value: f64| {
        let m = Metric {
            epoch: s.epoch.floor() as u32,
            step: Some(s.step as u64),
            name: name.into(),
            value,
        };
        ctx.metric(m.clone());
        metrics.push(m);
    };
    if s.step == 0 {
        if let Some(h) = s.held_out_loss {
            push("eval_loss", f64::from(h));
            ctx.log(format!("step 0/{}: base held-out loss {h:.4}", s.total_steps));
        }
        return;
    }
    push("train_loss", f64::from(s.loss));
    let held = match s.held_out_loss {
        Some(h) => {
            push("eval_loss", f64::from(h));
            format!(", held-out loss {h:.4}")
        }
        None => String::new(),
    };
    ctx.log(format!(
        "step {}/{} (epoch {:.2}): loss {:.4}, {:.0} tokens/s{held}",
        s.step, s.total_steps, s.epoch, s.loss, s.tokens_per_sec
    ));
    ctx.progress(s.step as f64 / s.total_steps.max(1) as f64);
}

impl Executor for LoraExecutor {
    fn kind(&self) -> &'static str {
        "lora"
    }

    fn check_params(&self, params: &TrainingParams) -> Result<()> {
        Self::train_params(params).map(|_| ())
    }

    fn train(&self, job: &Job, ctx: &TrainContext) -> Result<TrainOutcome> {
        let (params, ignored) = Self::train_params(&job.params)?;
        let ds = job.read_dataset()?;
        let jsonl = String::from_utf8(ds.to_jsonl()).map_err(|e| Error::DatasetFormat {
            line: 0,
            reason: e.to_string(),
        })?;
        let examples: Vec<TrainExample> = zg_model::parse_dataset(&jsonl).map_err(model_err)?;
        ctx.log(format!(
            "LoRA on {} (CPU, f32): {} examples, rank {}, alpha {}, modules {}, lr {}, {} epoch(s){}, batch {}, \
             seed {}, {:.0}% held out",
            self.model.name(),
            examples.len(),
            params.lora_rank,
            params.lora_alpha,
            params
                .target_modules
                .0
                .iter()
                .map(|t: &Target| t.hf_name())
                .collect::<Vec<_>>()
                .join(","),
            params.learning_rate,
            params.num_train_epochs,
            if params.max_steps > 0 {
                format!(" capped at {} steps", params.max_steps)
            } else {
                String::new()
            },
            params.batch_size,
            params.seed,
            params.eval_fraction * 100.0
        ));
        if !ignored.is_empty() {
            ctx.log(format!(
                "not used by the CPU LoRA trainer: {}",
                ignored.join(", ")
            ));
        }
        ctx.checkpoint()?;
        let mut metrics = Vec::new();
        let res = zg_model::train_lora(
            &self.model,
            &examples,
            &params,
            &mut |s| log_step(ctx, s, &mut metrics),
            &|| ctx.checkpoint().is_err(),
        );
        let out = match res {
            Ok(o) => o,
            // Stopped by the predicate: say which stop (cancel or deadline).
            Err(zg_model::Error::Cancelled) => {
                return Err(ctx.checkpoint().err().unwrap_or(Error::Cancelled));
            }
            Err(e) => return Err(model_err(e)),
        };
        ctx.checkpoint()?;
        out.adapter.save(&job.output_dir).map_err(|e| Error::Training {
            executor: "lora",
            reason: format!("saving the adapter: {e}"),
        })?;
        let secs = out.elapsed.as_secs_f64().max(1e-9);
        let summary = match (out.held_out_before, out.held_out_after) {
            (Some(b), Some(a)) => format!(
                "held-out loss {b:.4} → {a:.4} ({} steps, {} training / {} held-out examples, {:.0} tokens/s, {secs:.1} s)",
                out.steps,
                out.train_examples,
                out.held_out_examples,
                out.tokens as f64 / secs
            ),
            _ => format!(
                "{} steps on {} examples (no held-out split), {:.0} tokens/s, {secs:.1} s",
                out.steps,
                out.train_examples,
                out.tokens as f64 / secs
            ),
        };
        ctx.log(summary.clone());
        Ok(TrainOutcome { metrics, summary })
    }
}

/// Counts dataset tokens with the base model's own tokenizer, so the fee is exact for a real model.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    model: Model,
}

impl ModelTokenizer {
    /// The tokenizer of `model`.
    pub fn new(model: Model) -> Self {
        Self { model }
    }
}

impl Tokenizer for ModelTokenizer {
    fn name(&self) -> &str {
        self.model.name()
    }
    fn count(&self, text: &str) -> u64 {
        self.model.tokenizer().count(text) as u64
    }
}
