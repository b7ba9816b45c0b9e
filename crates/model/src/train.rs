//! LoRA fine-tuning on the CPU: the base dequantized to f32 and frozen, A/B trained with AdamW on real gradients,
//! loss on the assistant's tokens only (supervised fine-tuning), deterministic for a seed.
//!
//! [`train_lora`] is synchronous and CPU-bound; it reports every step to a callback and asks a stop predicate before
//! every step, so a fine-tuning executor can run it on a blocking thread, stream its log, and stop it on cancel or
//! deadline (e.g. `&|| ctx.checkpoint().is_err()` with zg-finetune's `TrainContext`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::{D, DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::llama::Llama;
use crate::lora::{LoraAb, LoraAdapter, LoraConfig, LoraSet, Target, permute_rows};
use crate::model::Model;
use crate::sample::Rng;
use crate::template::ChatMessage;

/// Largest dataset accepted, in examples.
pub const MAX_EXAMPLES: usize = 1_000_000;

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainExample {
    /// A conversation ending with the `assistant` answer the loss is computed on (rendered with the chat template).
    Chat(Vec<ChatMessage>),
    /// Plain text, learned whole (no template; the end-of-sequence token is appended).
    Text(String),
}

/// Parses a JSONL dataset. Each non-empty line is one of:
/// - chat: `{"messages": [{"role": "user", "content": …}, …, {"role": "assistant", "content": …}]}`;
/// - instruction (Alpaca, as 0G's examples): `{"instruction": …, "input": …, "output": …}` (`input` optional);
/// - `{"prompt": …, "completion": …}`;
/// - `{"text": …}` (plain text).
pub fn parse_dataset(jsonl: &str) -> Result<Vec<TrainExample>> {
    #[derive(Deserialize)]
    struct Line {
        messages: Option<Vec<ChatMessage>>,
        instruction: Option<String>,
        input: Option<String>,
        output: Option<String>,
        prompt: Option<String>,
        completion: Option<String>,
        text: Option<String>,
    }
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if out.len() >= MAX_EXAMPLES {
            return Err(Error::Dataset {
                line: n,
                reason: format!("more than {MAX_EXAMPLES} examples"),
            });
        }
        let l: Line = serde_json::from_str(line).map_err(|e| Error::Dataset {
            line: n,
            reason: e.to_string(),
        })?;
        let messages = if let Some(m) = l.messages {
            m
        } else if let (Some(ins), Some(outp)) = (l.instruction, l.output.clone()) {
            let user = match l.input.as_deref().map(str::trim) {
                Some(inp) if !inp.is_empty() => format!("{ins}\n\n{inp}"),
                _ => ins,
            };
            vec![
                ChatMessage::new("user", user),
                ChatMessage::new("assistant", outp),
            ]
        } else if let (Some(p), Some(c)) = (l.prompt, l.completion) {
            vec![ChatMessage::new("user", p), ChatMessage::new("assistant", c)]
        } else if let Some(t) = l.text {
            if t.is_empty() {
                return Err(Error::Dataset {
                    line: n,
                    reason: "empty \"text\"".into(),
                });
            }
            out.push(TrainExample::Text(t));
            continue;
        } else {
            return Err(Error::Dataset {
                line: n,
                reason:
                    "expected \"messages\", \"instruction\"+\"output\", \"prompt\"+\"completion\" or \"text\""
                        .into(),
            });
        };
        match messages.last() {
            Some(m) if m.role == "assistant" && messages.len() >= 2 => {}
            _ => {
                return Err(Error::Dataset {
                    line: n,
                    reason: "a conversation needs a prompt and must end with an assistant message".into(),
                });
            }
        }
        out.push(TrainExample::Chat(messages));
    }
    if out.is_empty() {
        return Err(Error::Dataset {
            line: 0,
            reason: "no examples".into(),
        });
    }
    Ok(out)
}

fn nullable_steps<'de, De: serde::Deserializer<'de>>(d: De) -> std::result::Result<i64, De::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or(0))
}

fn default_rank() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Targets {
    Targets(vec![Target::Q, Target::V])
}
fn default_lr() -> f64 {
    2e-4
}
fn default_epochs() -> f64 {
    1.0
}
fn default_batch() -> usize {
    1
}
fn default_seed() -> u64 {
    42
}
fn default_seq() -> usize {
    256
}
fn default_eval() -> f64 {
    0.1
}

/// Target modules: a list of Hugging Face names or one comma-separated string (`"q_proj,v_proj"`, `"all-linear"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets(pub Vec<Target>);

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> std::result::Result<Self, De::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let names: Vec<String> = match Raw::deserialize(d)? {
            Raw::One(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            Raw::Many(v) => v,
        };
        let mut out = Vec::new();
        for n in names {
            if n == "all-linear" || n == "all_linear" {
                out.extend(Target::ALL);
                continue;
            }
            let t = Target::from_hf_name(&n).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown target module {n:?} (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear)"
                ))
            })?;
            out.push(t);
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(serde::de::Error::custom("target_modules is empty"));
        }
        Ok(Targets(out))
    }
}

/// Training parameters, named as 0G's fine-tuning configs and Hugging Face `TrainingArguments`/PEFT name them.
///
/// Parse them from the task's config text with [`TrainParams::from_json`]; keys this trainer does not use (for
/// example `neftune_noise_alpha`) are listed in [`TrainParams::ignored`] rather than refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainParams {
    /// LoRA rank (`lora_rank`, `lora_r` or `r`; default 8).
    #[serde(default = "default_rank", alias = "lora_r", alias = "r")]
    pub lora_rank: usize,
    /// LoRA alpha (default 16).
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// Adapted modules (`target_modules` or `lora_target_modules`; default `q_proj`, `v_proj` as PEFT's llama default).
    #[serde(default = "default_targets", alias = "lora_target_modules")]
    pub target_modules: Targets,
    /// AdamW learning rate (default 2e-4).
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Passes over the training split (default 1; fractional values train that share of an epoch).
    #[serde(default = "default_epochs")]
    pub num_train_epochs: f64,
    /// If positive, exactly this many optimizer steps (cycling the data as needed), overriding the epochs.
    /// `null`, 0 and -1 mean none.
    #[serde(default, deserialize_with = "nullable_steps")]
    pub max_steps: i64,
    /// Examples per optimizer step (`per_device_train_batch_size`; default 1).
    #[serde(default = "default_batch", alias = "per_device_train_batch_size")]
    pub batch_size: usize,
    /// Seed for the LoRA initialisation, the data order and the held-out split (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Longest tokenized example; longer ones are cut (`max_seq_length`, `cutoff_len`; default 256).
    #[serde(default = "default_seq", alias = "max_seq_length", alias = "cutoff_len")]
    pub max_seq_len: usize,
    /// Share of the examples held out to measure generalisation (default 0.1; at least one when there are two or more).
    #[serde(
        default = "default_eval",
        alias = "validation_split",
        alias = "val_set_size_ratio"
    )]
    pub eval_fraction: f64,
    /// Evaluate the held-out loss every this many steps (0 = five times per run, plus first and last).
    #[serde(default)]
    pub eval_steps: usize,
    /// AdamW weight decay (default 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// Keys present in the config that this trainer does not use.
    #[serde(skip)]
    pub ignored: Vec<String>,
}

impl Default for TrainParams {
    fn default() -> Self {
        // Infallible: every field has a default.
        serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("all fields have defaults"))
    }
}

impl TrainParams {
    /// Parses a 0G training config (JSON text) and checks the ranges.
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidParam {
            name: "trainingParams",
            reason,
        };
        let mut raw: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let obj = raw
            .as_object_mut()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        // zg-finetune's params.json keeps keys it does not model (LoRA shape, ...) under "extra".
        if let Some(serde_json::Value::Object(extra)) = obj.remove("extra") {
            for (k, v) in extra {
                obj.entry(k).or_insert(v);
            }
        }
        let obj = &*obj;
        let known = [
            "lora_rank",
            "lora_r",
            "r",
            "lora_alpha",
            "target_modules",
            "lora_target_modules",
            "learning_rate",
            "num_train_epochs",
            "max_steps",
            "batch_size",
            "per_device_train_batch_size",
            "seed",
            "max_seq_len",
            "max_seq_length",
            "cutoff_len",
            "eval_fraction",
            "validation_split",
            "val_set_size_ratio",
            "eval_steps",
            "weight_decay",
        ];
        let ignored = obj
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        let mut p: Self = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        p.ignored = ignored;
        p.check()?;
        Ok(p)
    }

    /// Checks every range, naming the parameter.
    pub fn check(&self) -> Result<()> {
        let bad = |name, reason: String| Err(Error::InvalidParam { name, reason });
        if self.lora_rank == 0 || self.lora_rank > 256 {
            return bad("lora_rank", format!("{} outside 1..=256", self.lora_rank));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return bad("lora_alpha", format!("{} must be positive", self.lora_alpha));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return bad("learning_rate", format!("{} outside (0, 1)", self.learning_rate));
        }
        if !(self.num_train_epochs.is_finite()
            && self.num_train_epochs > 0.0
            && self.num_train_epochs <= 1000.0)
        {
            return bad(
                "num_train_epochs",
                format!("{} outside (0, 1000]", self.num_train_epochs),
            );
        }
        if self.max_steps > 1_000_000 {
            return bad("max_steps", format!("{} > 1000000", self.max_steps));
        }
        if self.batch_size == 0 || self.batch_size > 64 {
            return bad(
                "per_device_train_batch_size",
                format!("{} outside 1..=64", self.batch_size),
            );
        }
        if self.max_seq_len < 8 || self.max_seq_len > 8192 {
            return bad("max_seq_len", format!("{} outside 8..=8192", self.max_seq_len));
        }
        if !(0.0..0.9).contains(&self.eval_fraction) {
            return bad(
                "eval_fraction",
                format!("{} outside [0, 0.9)", self.eval_fraction),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("{} must be ≥ 0", self.weight_decay));
        }
        Ok(())
    }
}

/// One step's report.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    /// 1-based optimizer step; 0 for the one report before training, which carries only the base's held-out loss
    /// (`loss` is NaN, `tokens_per_sec` 0), sent when there is a held-out split.
    pub step: usize,
    /// Steps in the run.
    pub total_steps: usize,
    /// Epoch (fractional: 1.5 = half-way through the second pass).
    pub epoch: f64,
    /// Training loss of this step's batch (mean over its answer tokens).
    pub loss: f32,
    /// Tokens (prompt + answer) processed per second in this step.
    pub tokens_per_sec: f64,
    /// Held-out loss, on the steps it is measured (first, every `eval_steps`, last).
    pub held_out_loss: Option<f32>,
    /// Since training started.
    pub elapsed: Duration,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The trained adapter (PEFT layout); [`LoraAdapter::save`] writes it.
    pub adapter: LoraAdapter,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Held-out loss of the base, before training (None without a held-out split).
    pub held_out_before: Option<f32>,
    /// Held-out loss after the last step.
    pub held_out_after: Option<f32>,
    /// Examples trained on / held out.
    pub train_examples: usize,
    /// Examples held out.
    pub held_out_examples: usize,
    /// Tokens processed in training steps.
    pub tokens: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// A tokenized example: ids and the index of the first answer token.
#[derive(Debug, Clone)]
struct Encoded {
    ids: Vec<u32>,
    answer_start: usize,
}

fn encode(model: &Model, ex: &TrainExample, max_len: usize) -> Result<Option<Encoded>> {
    let messages = match ex {
        TrainExample::Chat(m) => m,
        TrainExample::Text(t) => {
            let mut ids = model.tokenizer().encode(t);
            ids.push(model.tokenizer().eos_token_id());
            ids.truncate(max_len);
            return Ok((ids.len() >= 2).then_some(Encoded { ids, answer_start: 1 }));
        }
    };
    let (prompt_msgs, _) = messages.split_at(messages.len().saturating_sub(1));
    let prompt = model.render_chat(prompt_msgs, true)?;
    let full = model.render_chat(messages, false)?;
    let tok = model.tokenizer();
    let p = tok.encode(&prompt);
    let mut ids = tok.encode(&full);
    // The answer starts where the prompt's tokens stop matching (templates end prompts at a special token, so
    // this is the prompt length in practice).
    let answer_start = p.iter().zip(&ids).take_while(|(a, b)| a == b).count();
    ids.truncate(max_len);
    if answer_start + 1 >= ids.len() {
        return Ok(None); // nothing to learn after truncation
    }
    Ok(Some(Encoded { ids, answer_start }))
}

/// The trainable A/B variables, in GGUF row order.
struct Vars {
    vars: BTreeMap<(usize, Target), (Var, Var)>,
    scale: f64,
}

impl Vars {
    fn set(&self, n_layer: usize, detach: bool) -> LoraSet {
        let mut set = LoraSet::empty(n_layer);
        for ((l, t), (a, b)) in &self.vars {
            let (a, b) = if detach {
                (a.as_tensor().detach(), b.as_tensor().detach())
            } else {
                (a.as_tensor().clone(), b.as_tensor().clone())
            };
            set.set(
                *l,
                *t,
                LoraAb {
                    a,
                    b,
                    scale: self.scale,
                },
            );
        }
        set
    }
}

/// Mean cross-entropy over answer tokens of `batch`, plus the token count.
fn batch_loss(llama: &Llama, batch: &[&Encoded], lora: &LoraSet, pad: u32) -> Result<(Tensor, usize)> {
    let dev = llama.device().clone();
    let t = batch.iter().map(|e| e.ids.len() - 1).max().unwrap_or(0);
    let b = batch.len();
    let mut input = Vec::with_capacity(b * t);
    let mut rows = Vec::new(); // flat positions whose next token is an answer token
    let mut targets = Vec::new();
    let mut tokens = 0;
    for (bi, e) in batch.iter().enumerate() {
        let n = e.ids.len() - 1;
        tokens += e.ids.len();
        for pos in 0..t {
            input.push(if pos < n { e.ids[pos] } else { pad });
            if pos < n && pos + 1 >= e.answer_start {
                rows.push((bi * t + pos) as u32);
                targets.push(e.ids[pos + 1]);
            }
        }
    }
    let ids = Tensor::from_vec(input, (b, t), &dev)?;
    let h = llama.hidden(&ids, 0, None, Some(lora))?;
    let hidden = h.dim(D::Minus1)?;
    let n = rows.len();
    let rows = Tensor::from_vec(rows, n, &dev)?;
    // Only answer positions go through the 49k-wide output projection.
    let h = h.reshape((b * t, hidden))?.index_select(&rows, 0)?;
    let logits = llama.head(&h)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::from_vec(targets, (n, 1), &dev)?;
    let picked = logp.gather(&targets, 1)?;
    let loss = (picked.sum_all()?.neg()? / n as f64)?;
    Ok((loss, tokens))
}

fn mean_loss(llama: &Llama, data: &[Encoded], lora: &LoraSet, pad: u32, batch: usize) -> Result<f32> {
    let mut total = 0.0f64;
    let mut n = 0usize;
    for chunk in data.chunks(batch.max(1)) {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let (loss, _) = batch_loss(llama, &refs, lora, pad)?;
        total += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
        n += chunk.len();
    }
    Ok(if n == 0 {
        f32::NAN
    } else {
        (total / n as f64) as f32
    })
}

/// Mean answer-token loss of `examples` under `model` with `adapter` (or the base). Used to measure training.
pub fn dataset_loss(
    model: &Model,
    examples: &[TrainExample],
    adapter: Option<&LoraAdapter>,
    max_seq_len: usize,
) -> Result<f32> {
    let llama = model.llama();
    let data: Vec<Encoded> = examples
        .iter()
        .filter_map(|e| encode(model, e, max_seq_len).transpose())
        .collect::<Result<_>>()?;
    let lora = match adapter {
        Some(a) => LoraSet::prepare(a, &llama.cfg, model.device())?,
        None => LoraSet::empty(llama.cfg.n_layer),
    };
    mean_loss(llama, &data, &lora, model.tokenizer().eos_token_id(), 4)
}

/// Trains a LoRA adapter for `model` on `examples` (see [`TrainParams`] for every knob).
///
/// Deterministic: the same model, examples, params and seed give the same adapter bit for bit on one machine.
/// `on_progress` is called once before the first step with the base's held-out loss (step 0, when there is a
/// held-out split) and after every step; `should_stop` is asked before every step and ends the run with
/// [`Error::Cancelled`] when it says true (a cancel flag, a deadline).
pub fn train_lora(
    model: &Model,
    examples: &[TrainExample],
    params: &TrainParams,
    on_progress: &mut dyn FnMut(&TrainProgress),
    should_stop: &dyn Fn() -> bool,
) -> Result<TrainOutcome> {
    params.check()?;
    let start = Instant::now();
    let mut rng = Rng::new(params.seed);
    let mut data = Vec::with_capacity(examples.len());
    for ex in examples {
        if let Some(e) = encode(model, ex, params.max_seq_len)? {
            data.push(e);
        }
    }
    if data.is_empty() {
        return Err(Error::Dataset {
            line: 0,
            reason: "no example has answer tokens within max_seq_len".into(),
        });
    }
    // Held-out split: a seeded shuffle, then the first share.
    shuffle(&mut data, &mut rng);
    let n_eval = if data.len() >= 2 && params.eval_fraction > 0.0 {
        ((data.len() as f64 * params.eval_fraction).round() as usize).clamp(1, data.len() - 1)
    } else {
        0
    };
    let eval: Vec<Encoded> = data.drain(..n_eval).collect();
    let mut train = data;

    // Asked before the dequantized copy (hundreds of MB, a second of CPU) too: a cancelled run stops at once.
    if should_stop() {
        return Err(Error::Cancelled);
    }
    let base = model.llama().dequantized()?;
    let cfg = base.cfg.clone();
    let dev = model.device().clone();
    let targets = &params.target_modules.0;
    let r = params.lora_rank;
    let mut vars = Vars {
        vars: BTreeMap::new(),
        scale: params.lora_alpha / r as f64,
    };
    for layer in 0..cfg.n_layer {
        for t in targets {
            let (out, inp) = cfg.target_shape(*t);
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..r * inp)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &dev)?)?;
            let b = Var::zeros((out, r), DType::F32, &dev)?;
            vars.vars.insert((layer, *t), (a, b));
        }
    }
    let all: Vec<Var> = vars
        .vars
        .values()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let mut opt = AdamW::new(
        all,
        ParamsAdamW {
            lr: params.learning_rate,
            weight_decay: params.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;

    let bs = params.batch_size.min(train.len());
    let steps_per_epoch = train.len().div_ceil(bs);
    let total = if params.max_steps > 0 {
        params.max_steps as usize
    } else {
        ((steps_per_epoch as f64 * params.num_train_epochs).ceil() as usize).max(1)
    };
    let eval_every = if params.eval_steps > 0 {
        params.eval_steps
    } else {
        total.div_ceil(5).max(1)
    };
    let pad = model.tokenizer().eos_token_id();
    let held_out_before = if eval.is_empty() {
        None
    } else {
        Some(mean_loss(&base, &eval, &vars.set(cfg.n_layer, true), pad, bs)?)
    };
    let mut held_out_after = held_out_before;
    if let Some(l) = held_out_before {
        // Step 0: the base's held-out loss, reported before the first step so a log shows it live.
        on_progress(&TrainProgress {
            step: 0,
            total_steps: total,
            epoch: 0.0,
            loss: f32::NAN,
            tokens_per_sec: 0.0,
            held_out_loss: Some(l),
            elapsed: start.elapsed(),
        });
    }
    let mut tokens_total = 0;
    let mut cursor = steps_per_epoch; // forces a shuffle before the first step
    for step in 1..=total {
        if should_stop() {
            return Err(Error::Cancelled);
        }
        if cursor >= steps_per_epoch {
            shuffle(&mut train, &mut rng);
            cursor = 0;
        }
        let t0 = Instant::now();
        let batch: Vec<&Encoded> = train.iter().skip(cursor * bs).take(bs).collect();
        cursor += 1;
        let (loss, tokens) = batch_loss(&base, &batch, &vars.set(cfg.n_layer, false), pad)?;
        opt.backward_step(&loss)?;
        let loss = loss.to_scalar::<f32>()?;
        tokens_total += tokens;
        let dt = t0.elapsed();
        let held_out_loss = if !eval.is_empty() && (step % eval_every == 0 || step == total) {
            let l = mean_loss(&base, &eval, &vars.set(cfg.n_layer, true), pad, bs)?;
            held_out_after = Some(l);
            Some(l)
        } else {
            None
        };
        on_progress(&TrainProgress {
            step,
            total_steps: total,
            epoch: step as f64 / steps_per_epoch as f64,
            loss,
            tokens_per_sec: tokens as f64 / dt.as_secs_f64().max(1e-9),
            held_out_loss,
            elapsed: start.elapsed(),
        });
    }

    // Save in Hugging Face row order (PEFT's), undoing the GGUF Q/K permutation.
    let mut weights = BTreeMap::new();
    for ((l, t), (a, b)) in &vars.vars {
        let b = match t {
            Target::Q => permute_rows(b.as_tensor(), cfg.n_head, true)?,
            Target::K => permute_rows(b.as_tensor(), cfg.n_kv_head, true)?,
            _ => b.as_tensor().clone(),
        };
        weights.insert((*l, *t), (a.as_tensor().detach(), b.detach()));
    }
    let config = LoraConfig::new(r, params.lora_alpha, targets, model.name());
    Ok(TrainOutcome {
        adapter: LoraAdapter::new(config, weights),
        steps: total,
        held_out_before,
        held_out_after,
        train_examples: train.len(),
        held_out_examples: eval.len(),
        tokens: tokens_total,
        elapsed: start.elapsed(),
    })
}

/// Fisher-Yates with the run's seeded generator.
fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_formats_and_errors() {
        let d = parse_dataset(concat!(
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n",
            "\n",
            "{\"instruction\":\"add\",\"input\":\"1 1\",\"output\":\"2\"}\n",
            "{\"prompt\":\"p\",\"completion\":\"c\"}\n",
        ))
        .unwrap();
        assert_eq!(d.len(), 3);
        assert!(matches!(&d[1], TrainExample::Chat(m) if m[0].content == "add\n\n1 1"));
        assert_eq!(
            parse_dataset("{\"text\":\"t\"}").unwrap(),
            vec![TrainExample::Text("t".into())]
        );
        let e = parse_dataset("{\"instruction\":\"x\",\"output\":\"y\"}\n{\"data\":\"t\"}\n").unwrap_err();
        assert!(matches!(e, Error::Dataset { line: 2, .. }), "{e}");
        let e = parse_dataset("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}").unwrap_err();
        assert!(matches!(e, Error::Dataset { line: 1, .. }), "{e}");
        assert!(matches!(parse_dataset("\n"), Err(Error::Dataset { line: 0, .. })));
    }

    #[test]
    fn params_use_0g_names_and_list_the_rest() {
        let p = TrainParams::from_json(
            r#"{"neftune_noise_alpha":5,"num_train_epochs":2,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":3,"lora_r":4,"target_modules":"q_proj,k_proj"}"#,
        )
        .unwrap();
        assert_eq!(
            (p.batch_size, p.max_steps, p.lora_rank, p.num_train_epochs),
            (2, 3, 4, 2.0)
        );
        assert_eq!(p.target_modules.0, vec![Target::Q, Target::K]);
        assert_eq!(p.ignored, vec!["neftune_noise_alpha".to_string()]);
        let e = TrainParams::from_json(r#"{"learning_rate": 5}"#).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParam {
                    name: "learning_rate",
                    ..
                }
            ),
            "{e}"
        );
        let e = TrainParams::from_json(r#"{"target_modules": ["lm_head"]}"#).unwrap_err();
        assert!(e.to_string().contains("lm_head"), "{e}");
        assert_eq!(TrainParams::default().lora_rank, 8);
        // zg-finetune's params.json shape: nullable max_steps, validation_split, extras nested.
        let p = TrainParams::from_json(
            r#"{"num_train_epochs":1,"learning_rate":0.0002,"per_device_train_batch_size":2,"max_steps":null,"seed":1,"validation_split":0.2,"extra":{"lora_rank":4,"neftune_noise_alpha":5}}"#,
        )
        .unwrap();
        assert_eq!((p.max_steps, p.eval_fraction, p.lora_rank), (0, 0.2, 4));
        assert_eq!(p.ignored, vec!["neftune_noise_alpha".to_string()]);
    }
}
