//! LoRA adapters in Hugging Face PEFT's on-disk layout: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Tensors are named and shaped as PEFT writes them for a llama model
//! (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, A `[r, in]`, B `[out, r]`), in Hugging Face
//! row order, so an adapter trained by PEFT on a GPU and one trained by [`crate::train_lora`] are interchangeable.
//! llama.cpp's converter permuted the GGUF's Q and K rows for interleaved RoPE; [`LoraSet`] applies the same
//! permutation to B of `q_proj`/`k_proj` when an adapter is attached, and the trainer undoes it when saving.
//!
//! Adapter files may come from a customer: parsing is bounded (file sizes, rank), every unsupported PEFT option is
//! refused by name, and every tensor's shape is checked against the base before use.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::llama::LlamaConfig;

/// File name of the PEFT adapter config.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File name of the PEFT adapter weights.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Largest `adapter_config.json` read (it is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest adapter weights file read. A rank-64 adapter on every module of SmolLM2-135M is about 40 MB.
pub const MAX_ADAPTER_BYTES: u64 = 512 << 20;
/// Largest LoRA rank accepted.
pub const MAX_RANK: usize = 1024;

/// A module LoRA can adapt, by its Hugging Face name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `self_attn.q_proj` (GGUF `attn_q`).
    Q,
    /// `self_attn.k_proj` (GGUF `attn_k`).
    K,
    /// `self_attn.v_proj` (GGUF `attn_v`).
    V,
    /// `self_attn.o_proj` (GGUF `attn_output`).
    O,
    /// `mlp.gate_proj` (GGUF `ffn_gate`).
    Gate,
    /// `mlp.up_proj` (GGUF `ffn_up`).
    Up,
    /// `mlp.down_proj` (GGUF `ffn_down`).
    Down,
}

impl Target {
    /// Every target, in layer order.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The Hugging Face module name (`q_proj`, ...), as in PEFT's `target_modules`.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// Parses a Hugging Face module name.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.hf_name() == name)
    }

    fn block(self) -> &'static str {
        match self {
            Self::Q | Self::K | Self::V | Self::O => "self_attn",
            Self::Gate | Self::Up | Self::Down => "mlp",
        }
    }

    /// PEFT tensor name of A or B for layer `layer`.
    pub fn peft_key(self, layer: usize, b: bool) -> String {
        format!(
            "base_model.model.model.layers.{layer}.{}.{}.lora_{}.weight",
            self.block(),
            self.hf_name(),
            if b { "B" } else { "A" }
        )
    }
}

/// `adapter_config.json`: the PEFT fields this crate reads and writes. Unknown fields are kept when re-saving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Must be `"LORA"`.
    pub peft_type: String,
    /// Rank.
    pub r: usize,
    /// Scale numerator: the update is `lora_alpha / r · B A` (or `/ √r` with `use_rslora`).
    pub lora_alpha: f64,
    /// Adapted modules by Hugging Face name (`q_proj`, `v_proj`, ...).
    pub target_modules: Vec<String>,
    /// The base the adapter was trained on (Hugging Face id or path).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Dropout used in training (ignored at inference).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Rank-stabilised scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// Other PEFT fields, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl LoraConfig {
    /// A config for rank `r`, `alpha` and `targets` on `base`, with PEFT's defaults for the rest.
    pub fn new(r: usize, lora_alpha: f64, targets: &[Target], base: &str) -> Self {
        let mut extra = BTreeMap::new();
        extra.insert("task_type".into(), "CAUSAL_LM".into());
        extra.insert("bias".into(), "none".into());
        extra.insert("fan_in_fan_out".into(), false.into());
        extra.insert("inference_mode".into(), true.into());
        extra.insert("init_lora_weights".into(), true.into());
        extra.insert("modules_to_save".into(), serde_json::Value::Null);
        extra.insert("use_dora".into(), false.into());
        Self {
            peft_type: "LORA".into(),
            r,
            lora_alpha,
            target_modules: targets.iter().map(|t| t.hf_name().to_string()).collect(),
            base_model_name_or_path: Some(base.to_string()),
            lora_dropout: 0.0,
            use_rslora: false,
            extra,
        }
    }

    /// The factor applied to `B A x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Refuses PEFT options this crate cannot apply, naming them.
    fn check(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::BadAdapter {
                path: path.to_path_buf(),
                reason,
            })
        };
        if self.peft_type != "LORA" {
            return bad(format!("peft_type {:?}: only LORA is supported", self.peft_type));
        }
        if self.r == 0 || self.r > MAX_RANK {
            return bad(format!("r = {} outside 1..={MAX_RANK}", self.r));
        }
        if !self.lora_alpha.is_finite() {
            return bad("lora_alpha is not finite".into());
        }
        for m in &self.target_modules {
            if Target::from_hf_name(m).is_none() {
                return bad(format!(
                    "target module {m:?} is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                ));
            }
        }
        let flag = |k: &str| {
            self.extra
                .get(k)
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        if flag("fan_in_fan_out") {
            return bad("fan_in_fan_out = true is not supported (llama weights are not Conv1D)".into());
        }
        if flag("use_dora") {
            return bad("use_dora = true (DoRA) is not supported".into());
        }
        if let Some(b) = self.extra.get("bias").and_then(serde_json::Value::as_str)
            && b != "none"
        {
            return bad(format!("bias = {b:?}: only \"none\" is supported"));
        }
        let nonempty = |k: &str| match self.extra.get(k) {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        for k in ["modules_to_save", "rank_pattern", "alpha_pattern"] {
            if nonempty(k) {
                return bad(format!(
                    "{k} is set; per-module ranks and saved modules are not supported"
                ));
            }
        }
        Ok(())
    }
}

/// A LoRA adapter as stored: config plus A/B matrices (f32, Hugging Face row order), keyed by (layer, target).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    config: LoraConfig,
    weights: BTreeMap<(usize, Target), (Tensor, Tensor)>,
}

impl LoraAdapter {
    /// An adapter from `config` and `(layer, target) → (A, B)` matrices (Hugging Face row order).
    pub fn new(config: LoraConfig, weights: BTreeMap<(usize, Target), (Tensor, Tensor)>) -> Self {
        Self { config, weights }
    }

    /// The adapter's PEFT config.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The `(A, B)` matrices of one module, if the adapter has it.
    pub fn weights(&self, layer: usize, target: Target) -> Option<(&Tensor, &Tensor)> {
        self.weights.get(&(layer, target)).map(|(a, b)| (a, b))
    }

    /// Number of adapted modules.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True if the adapter adapts nothing.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Reads a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
    ///
    /// Checks the format only; [`crate::Model::add_adapter`] checks it against the base.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let raw = read_bounded(&cfg_path, MAX_CONFIG_BYTES)?;
        let config: LoraConfig = serde_json::from_slice(&raw).map_err(|e| Error::BadAdapter {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
        config.check(&cfg_path)?;
        let w_path = dir.join(ADAPTER_WEIGHTS_FILE);
        let raw = read_bounded(&w_path, MAX_ADAPTER_BYTES)?;
        let bad = |reason: String| Error::BadAdapter {
            path: w_path.clone(),
            reason,
        };
        let tensors =
            candle_core::safetensors::load_buffer(&raw, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
        let mut halves: BTreeMap<(usize, Target), (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (name, t) in tensors {
            let (layer, target, is_b) = parse_key(&name).ok_or_else(|| {
                bad(format!(
                    "tensor {name:?} is not a LoRA A/B of a llama attention or MLP projection"
                ))
            })?;
            if !config.target_modules.iter().any(|m| m == target.hf_name()) {
                return Err(bad(format!(
                    "tensor {name:?} adapts {}, which target_modules omits",
                    target.hf_name()
                )));
            }
            if t.rank() != 2 {
                return Err(Error::AdapterShapeMismatch {
                    tensor: name,
                    got: t.dims().to_vec(),
                    want: vec![],
                });
            }
            let t = t.to_dtype(DType::F32)?;
            let slot = halves.entry((layer, target)).or_default();
            if is_b { slot.1 = Some(t) } else { slot.0 = Some(t) }
        }
        let mut weights = BTreeMap::new();
        for ((layer, target), pair) in halves {
            match pair {
                (Some(a), Some(b)) => {
                    weights.insert((layer, target), (a, b));
                }
                _ => {
                    return Err(bad(format!(
                        "layer {layer} {} has only one of lora_A/lora_B",
                        target.hf_name()
                    )));
                }
            }
        }
        if weights.is_empty() {
            return Err(bad("no LoRA tensors".into()));
        }
        Ok(Self { config, weights })
    }

    /// Writes the adapter as PEFT does: `adapter_config.json` and `adapter_model.safetensors` in `dir` (created).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg = serde_json::to_vec_pretty(&self.config).map_err(|e| Error::BadAdapter {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        std::fs::write(&cfg_path, cfg).map_err(|e| Error::io(&cfg_path, e))?;
        let mut map = HashMap::new();
        for ((layer, target), (a, b)) in &self.weights {
            map.insert(target.peft_key(*layer, false), a.contiguous()?);
            map.insert(target.peft_key(*layer, true), b.contiguous()?);
        }
        let w_path = dir.join(ADAPTER_WEIGHTS_FILE);
        candle_core::safetensors::save(&map, &w_path)?;
        Ok(())
    }
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > max {
        return Err(Error::BadAdapter {
            path: path.to_path_buf(),
            reason: format!("{} bytes > limit {max}", meta.len()),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// `base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}[.default].weight`.
fn parse_key(name: &str) -> Option<(usize, Target, bool)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (block, rest) = rest.split_once('.')?;
    let (module, rest) = rest.split_once('.')?;
    let target = Target::from_hf_name(module)?;
    if target.block() != block {
        return None;
    }
    let is_b = match rest {
        "lora_A.weight" | "lora_A.default.weight" => false,
        "lora_B.weight" | "lora_B.default.weight" => true,
        _ => return None,
    };
    Some((layer, target, is_b))
}

/// One adapted module, ready for the forward pass (B in GGUF row order).
#[derive(Debug, Clone)]
pub(crate) struct LoraAb {
    pub(crate) a: Tensor,
    pub(crate) b: Tensor,
    pub(crate) scale: f64,
}

impl LoraAb {
    /// `scale · B A x`.
    pub(crate) fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.broadcast_matmul(&self.a.t()?)?;
        Ok((h.broadcast_matmul(&self.b.t()?)? * self.scale)?)
    }
}

/// An adapter checked against a base and laid out for its forward pass.
#[derive(Debug, Clone)]
pub(crate) struct LoraSet {
    layers: Vec<[Option<LoraAb>; 7]>,
}

impl LoraSet {
    pub(crate) fn get(&self, layer: usize, t: Target) -> Option<&LoraAb> {
        self.layers.get(layer)?.get(t as usize)?.as_ref()
    }

    pub(crate) fn empty(n_layer: usize) -> Self {
        Self {
            layers: (0..n_layer).map(|_| Default::default()).collect(),
        }
    }

    pub(crate) fn set(&mut self, layer: usize, t: Target, ab: LoraAb) {
        if let Some(l) = self.layers.get_mut(layer) {
            l[t as usize] = Some(ab);
        }
    }

    /// Checks `adapter` against `cfg` and converts B of Q/K to GGUF row order.
    pub(crate) fn prepare(adapter: &LoraAdapter, cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let mut set = Self::empty(cfg.n_layer);
        let scale = adapter.config.scale();
        let r = adapter.config.r;
        for ((layer, target), (a, b)) in &adapter.weights {
            let (out, inp) = cfg.target_shape(*target);
            let check = |t: &Tensor, is_b: bool, want: [usize; 2]| -> Result<()> {
                if *layer >= cfg.n_layer || t.dims() != want {
                    let want = if *layer >= cfg.n_layer {
                        vec![]
                    } else {
                        want.to_vec()
                    };
                    return Err(Error::AdapterShapeMismatch {
                        tensor: target.peft_key(*layer, is_b),
                        got: t.dims().to_vec(),
                        want,
                    });
                }
                Ok(())
            };
            check(a, false, [r, inp])?;
            check(b, true, [out, r])?;
            let b = match target {
                Target::Q => permute_rows(b, cfg.n_head, false)?,
                Target::K => permute_rows(b, cfg.n_kv_head, false)?,
                _ => b.clone(),
            };
            set.set(
                *layer,
                *target,
                LoraAb {
                    a: a.to_device(device)?,
                    b: b.to_device(device)?,
                    scale,
                },
            );
        }
        Ok(set)
    }
}

/// Converts rows between Hugging Face order and the GGUF order llama.cpp's converter makes for Q and K
/// (per head, HF row `i·hd/2 + j` is GGUF row `2j + i`). `to_hf` inverts it.
pub(crate) fn permute_rows(t: &Tensor, n_head: usize, to_hf: bool) -> Result<Tensor> {
    let rows = t.dim(0)?;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut idx = vec![0u32; rows];
    for h in 0..n_head {
        for j in 0..half {
            for i in 0..2 {
                let gguf = h * hd + 2 * j + i;
                let hf = h * hd + i * half + j;
                if to_hf {
                    idx[hf] = gguf as u32;
                } else {
                    idx[gguf] = hf as u32;
                }
            }
        }
    }
    let idx = Tensor::from_vec(idx, rows, t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for t in Target::ALL {
            for b in [false, true] {
                assert_eq!(parse_key(&t.peft_key(7, b)), Some((7, t, b)));
            }
        }
        assert_eq!(
            parse_key("base_model.model.model.layers.3.self_attn.v_proj.lora_B.default.weight"),
            Some((3, Target::V, true))
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.3.mlp.q_proj.lora_A.weight"),
            None
        );
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight"), None);
    }

    #[test]
    fn permutation_inverts() {
        let t = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((12, 2))
            .unwrap();
        let g = permute_rows(&t, 2, false).unwrap();
        assert_ne!(g.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
        // Head 0 (rows 0..6, hd 6, half 3): GGUF rows are HF rows 0,3,1,4,2,5.
        assert_eq!(g.get(1).unwrap().to_vec1::<f32>().unwrap(), vec![6.0, 7.0]);
        let back = permute_rows(&g, 2, true).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn unsupported_peft_options_are_named() {
        let mut c = LoraConfig::new(4, 8.0, &[Target::Q], "b");
        c.check(Path::new("x")).unwrap();
        c.extra.insert("use_dora".into(), true.into());
        let e = c.check(Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("use_dora"), "{e}");
        let mut c = LoraConfig::new(4, 8.0, &[Target::Q], "b");
        c.target_modules.push("lm_head".into());
        assert!(
            c.check(Path::new("x"))
                .unwrap_err()
                .to_string()
                .contains("lm_head")
        );
    }
}
