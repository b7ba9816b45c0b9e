//! [`Model`]: a loaded GGUF (weights, tokenizer, chat template), its LoRA adapters, and generation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::Exec;
use crate::llama::{Llama, LlamaConfig, TensorSource};
use crate::lora::{LoraAdapter, LoraConfig, LoraSet};
use crate::sample::{Rng, sample};
use crate::template::{ChatMessage, ChatTemplate};
use crate::tokenizer::{Tokenizer, TokenizerSpec};

/// Hugging Face id of the model `scripts/fetch-model.sh` fetches.
pub const SMOLLM2_135M_INSTRUCT: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
/// File name `scripts/fetch-model.sh` gives the SmolLM2 GGUF (in `models/`, or `$ZG_MODEL_DIR`).
pub const SMOLLM2_GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Largest number of stop strings per request.
pub const MAX_STOP: usize = 16;
/// Largest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// Where tensors live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceKind {
    /// The CPU (default; candle's quantized kernels use AVX2/NEON when present).
    #[default]
    Cpu,
    /// NVIDIA GPU `n` (needs the `cuda` feature).
    Cuda(usize),
}

/// Where a CPU model's matrix products run (the crate README's "Threads" has the measurements behind the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Threads {
    /// Each generation computes its tokens on the thread that calls [`Model::generate`]: one core per stream, no
    /// pool, nothing spin-waits, and concurrent streams run side by side on their own threads. Products over many
    /// rows (a prompt's prefill) use rayon's global pool (`RAYON_NUM_THREADS`, default one per core), whose idle
    /// threads sleep. The default: on a machine with more runnable threads than cores it is the fastest and it
    /// degrades gracefully, where a spinning pool collapses.
    #[default]
    PerStream,
    /// A pool of this many threads, owned by the model and shared by all its streams: every product is split across
    /// it. Lowers one stream's latency when cores are idle; concurrent streams queue for the pool.
    Pool(usize),
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The model's name: what requests call the base, and what adapters' `base_model_name_or_path` must match.
    /// Default: the file name without `.gguf` and a trailing quantization tag (`SmolLM2-135M-Instruct`).
    pub name: Option<String>,
    /// Where to run.
    pub device: DeviceKind,
    /// How the CPU kernels use threads.
    pub threads: Threads,
}

/// Sampling parameters of one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Most tokens to generate (≥ 1).
    pub max_tokens: usize,
    /// 0 = greedy; otherwise softmax temperature in (0, 2].
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    pub top_p: f32,
    /// Seed of the sampler: equal seeds and inputs give equal completions.
    pub seed: u64,
    /// Strings that end the completion (not included in it).
    pub stop: Vec<String>,
    /// Keep generating past the end-of-turn token until `max_tokens` (benchmarks; as vLLM's `ignore_eos`).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    fn check(&self) -> Result<()> {
        let bad = |name, reason: String| Err(Error::InvalidParam { name, reason });
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1".into());
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad("temperature", format!("{} is outside [0, 2]", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is outside (0, 1]", self.top_p));
        }
        if self.stop.len() > MAX_STOP {
            return bad(
                "stop",
                format!("{} stop strings, at most {MAX_STOP}", self.stop.len()),
            );
        }
        if self.stop.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES) {
            return bad("stop", format!("stop strings must be 1..={MAX_STOP_BYTES} bytes"));
        }
        Ok(())
    }
}

/// The input of a completion.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat messages, rendered with the model's chat template (with the generation prompt).
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized as is.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// One completion request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The base model's name or a loaded adapter's name; `None` is the base.
    pub model: Option<String>,
    /// What to complete.
    pub prompt: Prompt,
    /// How to sample.
    pub params: SamplingParams,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn, or a stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The token callback asked to stop (e.g. the client went away).
    Cancelled,
}

/// A finished completion and its exact usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text (stop string and end-of-turn token excluded).
    pub text: String,
    /// Every token sampled, including a final end-of-turn token.
    pub token_ids: Vec<u32>,
    /// Tokens of the prompt as the model saw it (after the chat template), counted by the model's tokenizer.
    pub prompt_tokens: usize,
    /// Tokens the model generated: `token_ids.len()`, the end-of-turn token included, since it was computed.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// From the call to the first sampled token (tokenization + prefill + one sample).
    pub time_to_first_token: Duration,
    /// The whole call.
    pub elapsed: Duration,
}

#[derive(Debug)]
struct Inner {
    name: String,
    path: PathBuf,
    llama: Llama,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    adapters: RwLock<BTreeMap<String, (Arc<LoraSet>, LoraConfig)>>,
    device: Device,
}

/// A loaded model: cheap to clone (shared), safe to use from many threads at once.
#[derive(Debug, Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

struct GgufSource<'a> {
    content: &'a Content,
    reader: BufReader<File>,
    device: Device,
    path: &'a Path,
}

impl TensorSource for GgufSource<'_> {
    fn get(&mut self, name: &str) -> Result<QTensor> {
        if !self.has(name) {
            return Err(Error::BadModel {
                path: self.path.to_path_buf(),
                reason: format!("no tensor {name}"),
            });
        }
        Ok(self.content.tensor(&mut self.reader, name, &self.device)?)
    }
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    fn bad(&self, reason: String) -> Error {
        Error::BadModel {
            path: self.path.to_path_buf(),
            reason,
        }
    }
}

fn default_name(path: &Path) -> String {
    let stem = path.file_name().and_then(|s| s.to_str()).unwrap_or("model");
    let stem = stem.strip_suffix(".gguf").unwrap_or(stem);
    // "SmolLM2-135M-Instruct.Q4_1" → "SmolLM2-135M-Instruct".
    match stem.rsplit_once('.') {
        Some((base, tag)) if tag.starts_with(['Q', 'q', 'F', 'f', 'B', 'b', 'I', 'i']) => base.to_string(),
        _ => stem.to_string(),
    }
}

/// Compares model names on their last path segment, case-insensitively
/// (`HuggingFaceTB/SmolLM2-135M-Instruct` = `smollm2-135m-instruct`).
pub fn same_model_name(a: &str, b: &str) -> bool {
    let last = |s: &str| {
        s.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    last(a) == last(b)
}

impl Model {
    /// Loads a llama-family GGUF: weights, tokenizer and chat template from its metadata.
    pub fn load(path: impl AsRef<Path>, opts: LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let device = match opts.device {
            DeviceKind::Cpu => Device::Cpu,
            DeviceKind::Cuda(n) => Device::new_cuda(n)?,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| Error::BadModel {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let meta = Meta {
            md: &content.metadata,
            path,
        };
        let arch = meta.string("general.architecture")?;
        if arch != "llama" {
            return Err(Error::BadModel {
                path: path.to_path_buf(),
                reason: format!("general.architecture = {arch:?}; supported: llama"),
            });
        }
        let spec = TokenizerSpec {
            model: meta.string("tokenizer.ggml.model")?,
            pre: meta.opt_string("tokenizer.ggml.pre"),
            tokens: meta.strings("tokenizer.ggml.tokens")?,
            token_types: meta.ints("tokenizer.ggml.token_type").unwrap_or_default(),
            merges: meta.strings("tokenizer.ggml.merges")?,
            bos: meta.opt_u32("tokenizer.ggml.bos_token_id"),
            eos: meta.u32("tokenizer.ggml.eos_token_id")?,
            add_bos: matches!(
                content.metadata.get("tokenizer.ggml.add_bos_token"),
                Some(Value::Bool(true))
            ),
        };
        let tokenizer = Tokenizer::from_spec(spec)?;
        let cfg = LlamaConfig {
            n_layer: meta.u32("llama.block_count")? as usize,
            hidden: meta.u32("llama.embedding_length")? as usize,
            ffn: meta.u32("llama.feed_forward_length")? as usize,
            n_head: meta.u32("llama.attention.head_count")? as usize,
            n_kv_head: meta
                .opt_u32("llama.attention.head_count_kv")
                .map_or(meta.u32("llama.attention.head_count")?, |v| v) as usize,
            rms_eps: f64::from(meta.f32("llama.attention.layer_norm_rms_epsilon")?),
            rope_theta: meta.opt_f32("llama.rope.freq_base").unwrap_or(10_000.0),
            context: meta.u32("llama.context_length")? as usize,
            vocab: tokenizer.vocab_size(),
        };
        let sane = cfg.n_layer > 0
            && cfg.n_head > 0
            && cfg.n_kv_head > 0
            && cfg.n_head.is_multiple_of(cfg.n_kv_head)
            && cfg.hidden.is_multiple_of(cfg.n_head)
            && cfg.head_dim().is_multiple_of(2)
            && cfg.context > 0
            && cfg.context <= 1 << 20;
        if !sane {
            return Err(Error::BadModel {
                path: path.to_path_buf(),
                reason: format!("inconsistent shape {cfg:?}"),
            });
        }
        let template = match meta.opt_string("tokenizer.chat_template") {
            Some(src) => {
                let tok = |id: Option<u32>| id.and_then(|i| tokenizer.token(i)).unwrap_or("").to_string();
                Some(ChatTemplate::new(
                    &src,
                    &tok(tokenizer.bos_token_id()),
                    &tok(Some(tokenizer.eos_token_id())),
                )?)
            }
            None => None,
        };
        let mut src = GgufSource {
            content: &content,
            reader,
            device: device.clone(),
            path,
        };
        let exec = match opts.threads {
            Threads::Pool(n) if n > 1 => Exec::Pool(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("zg-model-{i}"))
                    .build()
                    .map_err(|e| Error::Backend(candle_core::Error::Msg(format!("thread pool: {e}"))))?,
            )),
            _ => Exec::Inline,
        };
        let llama = Llama::load(cfg, &mut src, &device, exec)?;
        let name = opts.name.unwrap_or_else(|| default_name(path));
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                path: path.to_path_buf(),
                llama,
                tokenizer,
                template,
                adapters: RwLock::new(BTreeMap::new()),
                device,
            }),
        })
    }

    /// The base model's name (see [`LoadOptions::name`]).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The GGUF file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The architecture's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.inner.llama.cfg
    }

    /// The model's own tokenizer: the one usage is counted with.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    pub(crate) fn llama(&self) -> &Llama {
        &self.inner.llama
    }

    pub(crate) fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Renders `messages` with the model's chat template; with `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        match &self.inner.template {
            Some(t) => t.render(messages, add_generation_prompt),
            None => Err(Error::ChatTemplate(
                "the model has no tokenizer.chat_template".into(),
            )),
        }
    }

    /// The prompt tokens of `prompt` exactly as [`Model::generate`] feeds them to the model.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let ids = match prompt {
            Prompt::Chat(m) => self.inner.tokenizer.encode(&self.render_chat(m, true)?),
            Prompt::Text(t) => self.inner.tokenizer.encode(t),
            Prompt::Tokens(t) => t.clone(),
        };
        let vocab = self.inner.tokenizer.vocab_size();
        if let Some(bad) = ids.iter().find(|i| **i as usize >= vocab) {
            return Err(Error::InvalidParam {
                name: "prompt",
                reason: format!("token id {bad} ≥ vocabulary {vocab}"),
            });
        }
        Ok(ids)
    }

    /// Attaches `adapter` under `name` (the model name requests use), after checking it fits this base.
    ///
    /// Refused with [`Error::AdapterBaseMismatch`] if its `base_model_name_or_path` names another model, and with
    /// [`Error::AdapterShapeMismatch`] if any tensor's shape does not fit. Replaces an adapter of the same name.
    pub fn add_adapter(&self, name: &str, adapter: &LoraAdapter) -> Result<()> {
        if name.is_empty() || same_model_name(name, &self.inner.name) {
            return Err(Error::InvalidParam {
                name: "adapter name",
                reason: format!("{name:?} is the base's name"),
            });
        }
        match &adapter.config().base_model_name_or_path {
            Some(b) if same_model_name(b, &self.inner.name) => {}
            other => {
                return Err(Error::AdapterBaseMismatch {
                    adapter_base: other.clone().unwrap_or_else(|| "(none)".into()),
                    model: self.inner.name.clone(),
                });
            }
        }
        let set = LoraSet::prepare(adapter, &self.inner.llama.cfg, &self.inner.device)?;
        let mut map = self
            .inner
            .adapters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(name.to_string(), (Arc::new(set), adapter.config().clone()));
        Ok(())
    }

    /// Detaches adapter `name`; false if there was none.
    pub fn remove_adapter(&self, name: &str) -> bool {
        let mut map = self
            .inner
            .adapters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(name).is_some()
    }

    /// The names requests can use: the base's, then the adapters'.
    pub fn served_models(&self) -> Vec<String> {
        let map = self
            .inner
            .adapters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::iter::once(self.inner.name.clone())
            .chain(map.keys().cloned())
            .collect()
    }

    /// `None` = the base; `Some` = the named adapter.
    fn resolve(&self, model: Option<&str>) -> Result<Option<Arc<LoraSet>>> {
        let Some(m) = model else { return Ok(None) };
        if same_model_name(m, &self.inner.name) {
            return Ok(None);
        }
        let map = self
            .inner
            .adapters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(m) {
            Some((set, _)) => Ok(Some(set.clone())),
            None => Err(Error::UnknownModel {
                requested: m.to_string(),
                served: self.served_models().join(", "),
            }),
        }
    }

    /// The next-token logits after `ids`, with the named adapter (or the base). For tests and scoring.
    pub fn logits(&self, ids: &[u32], model: Option<&str>) -> Result<Vec<f32>> {
        let lora = self.resolve(model)?;
        if ids.is_empty() || ids.len() > self.config().context {
            return Err(Error::InvalidParam {
                name: "prompt",
                reason: format!("{} tokens", ids.len()),
            });
        }
        let mut caches = self.inner.llama.new_cache(ids.len());
        let input = Tensor::new(ids, &self.inner.device)?.unsqueeze(0)?;
        let logits = self
            .inner
            .llama
            .forward(&input, 0, Some(&mut caches), lora.as_deref())?;
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// The next-token logits after every prefix of `ids` (one forward pass; row `i` follows `ids[..=i]`).
    pub fn sequence_logits(&self, ids: &[u32], model: Option<&str>) -> Result<Vec<Vec<f32>>> {
        let lora = self.resolve(model)?;
        if ids.is_empty() || ids.len() > self.config().context {
            return Err(Error::InvalidParam {
                name: "prompt",
                reason: format!("{} tokens", ids.len()),
            });
        }
        let input = Tensor::new(ids, &self.inner.device)?.unsqueeze(0)?;
        let logits = self.inner.llama.forward(&input, 0, None, lora.as_deref())?;
        Ok(logits.squeeze(0)?.to_vec2::<f32>()?)
    }

    /// The next-token logits after `ids[..prefill]`, `ids[..prefill + 1]`, …, `ids[..]`, computed the way
    /// [`Model::generate`] computes them: the first `prefill` tokens in one pass into the KV cache, then one token
    /// at a time (so the single-row decode kernels run, where [`Model::sequence_logits`] runs the prompt kernels
    /// everywhere). For tests and scoring.
    pub fn incremental_logits(
        &self,
        ids: &[u32],
        prefill: usize,
        model: Option<&str>,
    ) -> Result<Vec<Vec<f32>>> {
        let lora = self.resolve(model)?;
        if prefill == 0 || prefill > ids.len() || ids.len() > self.config().context {
            return Err(Error::InvalidParam {
                name: "prompt",
                reason: format!("{} tokens, prefill {prefill}", ids.len()),
            });
        }
        let llama = &self.inner.llama;
        let mut caches = llama.new_cache(ids.len());
        let mut rows = Vec::with_capacity(ids.len() - prefill + 1);
        let mut start = 0;
        let mut end = prefill;
        while end <= ids.len() {
            let input = Tensor::new(&ids[start..end], &self.inner.device)?.unsqueeze(0)?;
            let logits = llama.forward(&input, start, Some(&mut caches), lora.as_deref())?;
            rows.push(logits.squeeze(0)?.to_vec1::<f32>()?);
            start = end;
            end += 1;
        }
        Ok(rows)
    }

    /// Generates a completion, calling `on_text` with each new piece of text as soon as it is final (stop strings
    /// are held back until they can no longer match). `on_text` returning `Break` ends the completion with
    /// [`FinishReason::Cancelled`]; the usage still counts every token computed.
    ///
    /// Blocking and CPU-bound: async callers run it on a blocking thread.
    pub fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion> {
        let start = Instant::now();
        req.params.check()?;
        let lora = self.resolve(req.model.as_deref())?;
        let prompt = self.prompt_tokens(&req.prompt)?;
        if prompt.is_empty() {
            return Err(Error::InvalidParam {
                name: "prompt",
                reason: "empty".into(),
            });
        }
        let context = self.config().context;
        let max_tokens = req.params.max_tokens;
        if prompt.len() + max_tokens > context {
            return Err(Error::ContextWindow {
                prompt_tokens: prompt.len(),
                max_tokens,
                context,
            });
        }
        let llama = &self.inner.llama;
        let tok = &self.inner.tokenizer;
        let mut caches = llama.new_cache(prompt.len() + max_tokens);
        let mut rng = Rng::new(req.params.seed);
        let mut out = TextOut::new(&req.params.stop);
        let mut ids: Vec<u32> = Vec::new();
        let mut ttft = Duration::ZERO;
        let mut input = Tensor::new(prompt.as_slice(), &self.inner.device)?.unsqueeze(0)?;
        let mut pos = 0;
        let finish = loop {
            let logits = llama.forward(&input, pos, Some(&mut caches), lora.as_deref())?;
            pos += input.dim(1)?;
            let logits = logits.squeeze(0)?.to_vec1::<f32>()?;
            let next = sample(&logits, req.params.temperature, req.params.top_p, &mut rng);
            if ids.is_empty() {
                ttft = start.elapsed();
            }
            ids.push(next);
            if !req.params.ignore_eos && (next == tok.eos_token_id() || tok.is_control(next)) {
                if out.finish(on_text).is_break() {
                    break FinishReason::Cancelled;
                }
                break FinishReason::Stop;
            }
            let bytes = if tok.is_control(next) {
                &[][..]
            } else {
                tok.token_bytes(next)
            };
            match out.push(bytes, on_text) {
                Push::More => {}
                Push::Stop => break FinishReason::Stop,
                Push::Cancelled => break FinishReason::Cancelled,
            }
            if ids.len() >= max_tokens {
                if out.finish(on_text).is_break() {
                    break FinishReason::Cancelled;
                }
                break FinishReason::Length;
            }
            input = Tensor::new(&[next], &self.inner.device)?.unsqueeze(0)?;
        };
        Ok(Completion {
            text: out.text,
            completion_tokens: ids.len(),
            token_ids: ids,
            prompt_tokens: prompt.len(),
            finish_reason: finish,
            time_to_first_token: ttft,
            elapsed: start.elapsed(),
        })
    }
}

enum Push {
    More,
    Stop,
    Cancelled,
}

/// Incremental detokenization with stop strings: bytes become text once they are whole UTF-8 characters, and
/// text is released once no stop string can start in it.
struct TextOut<'a> {
    stop: &'a [String],
    bytes: Vec<u8>,
    /// Decoded, not yet released (may hold the start of a stop string).
    held: String,
    /// Released.
    text: String,
}

impl<'a> TextOut<'a> {
    fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            bytes: Vec::new(),
            held: String::new(),
            text: String::new(),
        }
    }

    fn push(&mut self, token: &[u8], on_text: &mut dyn FnMut(&str) -> ControlFlow<()>) -> Push {
        self.bytes.extend_from_slice(token);
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.bytes.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Infallible: the prefix up to valid_up_to is valid UTF-8.
                    self.held
                        .push_str(std::str::from_utf8(&self.bytes[..valid]).unwrap_or(""));
                    match e.error_len() {
                        Some(n) => {
                            self.held.push('\u{FFFD}');
                            self.bytes.drain(..valid + n);
                        }
                        None => {
                            self.bytes.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        // A stop string anywhere in the held text ends the completion before it.
        if let Some(at) = self.stop.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.held.truncate(at);
            let rest = std::mem::take(&mut self.held);
            return if self.release(&rest, on_text).is_break() {
                Push::Cancelled
            } else {
                Push::Stop
            };
        }
        // Keep back the longest suffix that could still grow into a stop string.
        let keep = self
            .stop
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|n| s.is_char_boundary(*n))
                    .map(move |n| &s[..n])
            })
            .filter(|p| self.held.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let ready: String = self.held.drain(..cut).collect();
        if self.release(&ready, on_text).is_break() {
            Push::Cancelled
        } else {
            Push::More
        }
    }

    fn release(&mut self, s: &str, on_text: &mut dyn FnMut(&str) -> ControlFlow<()>) -> ControlFlow<()> {
        if s.is_empty() {
            return ControlFlow::Continue(());
        }
        self.text.push_str(s);
        on_text(s)
    }

    fn finish(&mut self, on_text: &mut dyn FnMut(&str) -> ControlFlow<()>) -> ControlFlow<()> {
        let mut rest = std::mem::take(&mut self.held);
        rest.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.bytes)));
        self.release(&rest, on_text)
    }
}

/// Typed access to GGUF metadata, with errors naming the key.
struct Meta<'a> {
    md: &'a std::collections::HashMap<String, Value>,
    path: &'a Path,
}

impl Meta<'_> {
    fn err(&self, key: &str, what: &str) -> Error {
        Error::BadModel {
            path: self.path.to_path_buf(),
            reason: format!("metadata {key}: {what}"),
        }
    }
    fn get(&self, key: &str) -> Result<&Value> {
        self.md.get(key).ok_or_else(|| self.err(key, "missing"))
    }
    fn string(&self, key: &str) -> Result<String> {
        self.get(key)?
            .to_string()
            .cloned()
            .map_err(|_| self.err(key, "not a string"))
    }
    fn opt_string(&self, key: &str) -> Option<String> {
        self.md.get(key).and_then(|v| v.to_string().ok().cloned())
    }
    fn u32(&self, key: &str) -> Result<u32> {
        let v = self.get(key)?;
        v.to_u32()
            .or_else(|_| v.to_u64().map(|x| x.min(u64::from(u32::MAX)) as u32))
            .or_else(|_| v.to_i32().map(|x| x.max(0) as u32))
            .map_err(|_| self.err(key, "not an unsigned integer"))
    }
    fn opt_u32(&self, key: &str) -> Option<u32> {
        self.md.contains_key(key).then(|| self.u32(key).ok()).flatten()
    }
    fn f32(&self, key: &str) -> Result<f32> {
        let v = self.get(key)?;
        v.to_f32()
            .or_else(|_| v.to_f64().map(|x| x as f32))
            .map_err(|_| self.err(key, "not a float"))
    }
    fn opt_f32(&self, key: &str) -> Option<f32> {
        self.md.contains_key(key).then(|| self.f32(key).ok()).flatten()
    }
    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let arr = self
            .get(key)?
            .to_vec()
            .map_err(|_| self.err(key, "not an array"))?;
        arr.iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|_| self.err(key, "not an array of strings"))
            })
            .collect()
    }
    fn ints(&self, key: &str) -> Result<Vec<i32>> {
        let arr = self
            .get(key)?
            .to_vec()
            .map_err(|_| self.err(key, "not an array"))?;
        arr.iter()
            .map(|v| v.to_i32().map_err(|_| self.err(key, "not an array of i32")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], tokens: &[&[u8]]) -> (String, Vec<String>, bool) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut out = TextOut::new(&stop);
        let mut pieces = Vec::new();
        let mut stopped = false;
        for t in tokens {
            if let Push::Stop = out.push(t, &mut |s| {
                pieces.push(s.to_string());
                ControlFlow::Continue(())
            }) {
                stopped = true;
                break;
            }
        }
        if !stopped {
            let _ = out.finish(&mut |s| {
                pieces.push(s.to_string());
                ControlFlow::Continue(())
            });
        }
        (out.text, pieces, stopped)
    }

    #[test]
    fn stop_strings_across_tokens_and_split_utf8() {
        let (text, pieces, stopped) = run(&["END"], &[b"hello E", b"N", b"D more"]);
        assert_eq!(text, "hello ");
        assert!(stopped);
        assert_eq!(pieces.concat(), "hello ");
        // A false start is released once it cannot match.
        let (text, _, stopped) = run(&["END"], &[b"EN", b"x"]);
        assert_eq!((text.as_str(), stopped), ("ENx", false));
        // "é" split over two tokens is released whole.
        let (text, pieces, _) = run(&[], &[b"a\xc3", b"\xa9b"]);
        assert_eq!(text, "aéb");
        assert_eq!(pieces, vec!["a", "éb"]);
    }

    #[test]
    fn names_compare_on_last_segment() {
        assert!(same_model_name(SMOLLM2_135M_INSTRUCT, "smollm2-135m-instruct"));
        assert!(!same_model_name(
            SMOLLM2_135M_INSTRUCT,
            "HuggingFaceTB/SmolLM2-135M"
        ));
        assert_eq!(
            default_name(Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
            "SmolLM2-135M-Instruct"
        );
    }
}
