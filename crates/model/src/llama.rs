//! The llama architecture (SmolLM2 is one): weights from GGUF, one forward pass for inference and training.
//!
//! Inference keeps the GGUF's quantized matrices and a KV cache; training runs the same code on dequantized f32
//! weights with differentiable (slow-path) kernels, so the two cannot drift apart. Q and K rows are in GGUF order
//! (llama.cpp permutes them for interleaved RoPE at conversion); [`crate::lora`] converts adapters at the boundary.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::kv_cache::KvCache;

use crate::error::Result;
use crate::lora::{LoraSet, Target};

/// Shape of a llama model, from the GGUF's `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks (`llama.block_count`).
    pub n_layer: usize,
    /// Hidden size (`llama.embedding_length`).
    pub hidden: usize,
    /// MLP inner size (`llama.feed_forward_length`).
    pub ffn: usize,
    /// Attention heads (`llama.attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`llama.attention.head_count_kv`).
    pub n_kv_head: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// RoPE base frequency (`llama.rope.freq_base`).
    pub rope_theta: f32,
    /// Context window in tokens (`llama.context_length`).
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

impl LlamaConfig {
    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.n_head
    }

    /// `(out, in)` of the matrix a LoRA target adapts.
    pub fn target_shape(&self, t: Target) -> (usize, usize) {
        let kv = self.n_kv_head * self.head_dim();
        match t {
            Target::Q => (self.hidden, self.hidden),
            Target::K | Target::V => (kv, self.hidden),
            Target::O => (self.hidden, self.hidden),
            Target::Gate | Target::Up => (self.ffn, self.hidden),
            Target::Down => (self.hidden, self.ffn),
        }
    }
}

/// A linear layer without bias: `y = x Wᵀ`.
#[derive(Debug, Clone)]
pub(crate) enum Lin {
    /// A GGUF matrix run by candle's quantized kernels, or a dense f32 matrix (training).
    Plain(QMatMul),
    /// A Q4_1 matrix split exactly into its Q4_0 part and a per-block offset: each Q4_1 weight is
    /// `d·q + m = d·(q − 8) + (m + 8d)`, so `x·w = Q4_0(d, q)·x + Σ_blocks (m + 8d)·Σ_block x`. The Q4_0 part runs on
    /// candle's SIMD kernel (its Q4_1 kernel is scalar) and the offsets are a tiny `[n, k/32]` matmul.
    Q41 { q40: QMatMul, offsets: Tensor },
}

impl Lin {
    fn new(t: QTensor, split_q41: bool) -> Result<Self> {
        if split_q41 && t.dtype() == GgmlDType::Q4_1 && matches!(t.device(), Device::Cpu) {
            return split_q4_1(&t);
        }
        Ok(Self::Plain(QMatMul::from_qtensor(t)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Plain(m) => Ok(m.forward(x)?),
            Self::Q41 { q40, offsets } => {
                let y = q40.forward(x)?;
                let dims = x.dims();
                let k = dims.last().copied().unwrap_or(0);
                let mut sum_dims = dims.to_vec();
                if let Some(last) = sum_dims.last_mut() {
                    *last = k / 32;
                }
                sum_dims.push(32);
                let sums = x.reshape(sum_dims)?.sum(D::Minus1)?;
                let off = sums.broadcast_matmul(&offsets.t()?)?;
                Ok((y + off)?)
            }
        }
    }

    /// The same matrix dequantized to f32 (for training).
    fn dequantized(&self) -> Result<Self> {
        Ok(Self::Plain(QMatMul::Tensor(self.dense()?)))
    }

    /// The dense f32 matrix `[out, in]`.
    pub(crate) fn dense(&self) -> Result<Tensor> {
        match self {
            Self::Plain(QMatMul::QTensor(t)) => Ok(t.dequantize(&t.device())?),
            Self::Plain(QMatMul::Tensor(t)) => Ok(t.clone()),
            Self::Plain(QMatMul::TensorF16(t)) => Ok(t.to_dtype(DType::F32)?),
            Self::Q41 { q40, offsets } => {
                let w = match q40 {
                    QMatMul::QTensor(t) => t.dequantize(&t.device())?,
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
                };
                let (n, k) = w.dims2()?;
                let off = offsets
                    .unsqueeze(2)?
                    .broadcast_as((n, k / 32, 32))?
                    .reshape((n, k))?;
                Ok((w + off)?)
            }
        }
    }
}

/// Splits a Q4_1 tensor into Q4_0 bytes (same nibbles and scale) and f32 offsets `m + 8d` (see [`Lin::Q41`]).
fn split_q4_1(t: &QTensor) -> Result<Lin> {
    let (n, k) = t.shape().dims2()?;
    let data = t.data()?;
    // Q4_1 block: d (f16), m (f16), 16 bytes of nibbles = 20 bytes; Q4_0 block: d (f16), 16 bytes = 18 bytes.
    let blocks = n * (k / 32);
    if data.len() != blocks * 20 || k % 32 != 0 {
        return Ok(Lin::Plain(QMatMul::from_qtensor(QTensor::new(
            candle_core::quantized::QStorage::from_data(data, &Device::Cpu, GgmlDType::Q4_1)?,
            (n, k),
        )?)?));
    }
    let mut q40 = Vec::with_capacity(blocks * 18);
    let mut offsets = Vec::with_capacity(blocks);
    for b in data.chunks_exact(20) {
        let d = half_to_f32([b[0], b[1]]);
        let m = half_to_f32([b[2], b[3]]);
        q40.extend_from_slice(&b[0..2]);
        q40.extend_from_slice(&b[4..20]);
        offsets.push(m + 8.0 * d);
    }
    let storage = candle_core::quantized::QStorage::from_data(q40.into(), &Device::Cpu, GgmlDType::Q4_0)?;
    let q40 = QMatMul::from_qtensor(QTensor::new(storage, (n, k))?)?;
    let offsets = Tensor::from_vec(offsets, (n, k / 32), &Device::Cpu)?;
    Ok(Lin::Q41 { q40, offsets })
}

/// IEEE half (little-endian bytes) to f32.
fn half_to_f32(b: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(b);
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            }
        }
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    attn_norm: Tensor,
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    ffn_norm: Tensor,
    gate: Lin,
    up: Lin,
    down: Lin,
}

impl Layer {
    pub(crate) fn lin(&self, t: Target) -> &Lin {
        match t {
            Target::Q => &self.q,
            Target::K => &self.k,
            Target::V => &self.v,
            Target::O => &self.o,
            Target::Gate => &self.gate,
            Target::Up => &self.up,
            Target::Down => &self.down,
        }
    }
}

#[derive(Debug, Clone)]
enum Embed {
    Quant(Arc<QTensor>),
    Dense(Tensor),
}

/// All weights of a llama model plus RoPE tables.
#[derive(Debug, Clone)]
pub(crate) struct Llama {
    pub(crate) cfg: LlamaConfig,
    embed: Embed,
    pub(crate) layers: Vec<Layer>,
    norm: Tensor,
    output: Lin,
    cos: Tensor,
    sin: Tensor,
    /// Dense weights and differentiable kernels (training).
    train: bool,
}

/// Where the tensors come from (a GGUF reader), so loading is testable apart from the file.
pub(crate) trait TensorSource {
    fn get(&mut self, name: &str) -> Result<QTensor>;
    fn has(&self, name: &str) -> bool;
}

impl Llama {
    pub(crate) fn load(cfg: LlamaConfig, src: &mut dyn TensorSource, device: &Device) -> Result<Self> {
        let split = matches!(device, Device::Cpu);
        let dense = |t: QTensor| -> Result<Tensor> { Ok(t.dequantize(device)?) };
        let embed_q = src.get("token_embd.weight")?;
        let output = if src.has("output.weight") {
            Lin::new(src.get("output.weight")?, split)?
        } else {
            // Tied embeddings (SmolLM2): the output projection is the embedding matrix.
            Lin::new(src.get("token_embd.weight")?, split)?
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mut g = |n: &str| src.get(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: dense(g("attn_norm")?)?,
                q: Lin::new(g("attn_q")?, split)?,
                k: Lin::new(g("attn_k")?, split)?,
                v: Lin::new(g("attn_v")?, split)?,
                o: Lin::new(g("attn_output")?, split)?,
                ffn_norm: dense(g("ffn_norm")?)?,
                gate: Lin::new(g("ffn_gate")?, split)?,
                up: Lin::new(g("ffn_up")?, split)?,
                down: Lin::new(g("ffn_down")?, split)?,
            });
        }
        let norm = dense(src.get("output_norm.weight")?)?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Self {
            cfg,
            embed: Embed::Quant(Arc::new(embed_q)),
            layers,
            norm,
            output,
            cos,
            sin,
            train: false,
        })
    }

    /// A copy with every matrix dequantized to f32 and differentiable kernels, for LoRA training.
    pub(crate) fn dequantized(&self) -> Result<Self> {
        let embed = match &self.embed {
            Embed::Quant(q) => Embed::Dense(q.dequantize(&q.device())?),
            Embed::Dense(t) => Embed::Dense(t.clone()),
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(Layer {
                    attn_norm: l.attn_norm.clone(),
                    q: l.q.dequantized()?,
                    k: l.k.dequantized()?,
                    v: l.v.dequantized()?,
                    o: l.o.dequantized()?,
                    ffn_norm: l.ffn_norm.clone(),
                    gate: l.gate.dequantized()?,
                    up: l.up.dequantized()?,
                    down: l.down.dequantized()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Tied output: reuse the dense embedding rather than a second 113 MB copy.
        let output = match (&embed, &self.output) {
            (Embed::Dense(e), _) if !self.layers.is_empty() => Lin::Plain(QMatMul::Tensor(e.clone())),
            (_, o) => o.dequantized()?,
        };
        Ok(Self {
            cfg: self.cfg.clone(),
            embed,
            layers,
            norm: self.norm.clone(),
            output,
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            train: true,
        })
    }

    /// The device the weights live on.
    pub(crate) fn device(&self) -> &Device {
        self.norm.device()
    }

    /// Fresh per-layer KV caches for one sequence of up to `max_len` tokens.
    pub(crate) fn new_cache(&self, max_len: usize) -> Vec<KvCache> {
        (0..self.cfg.n_layer)
            .map(|_| KvCache::new(2, max_len.max(1)))
            .collect()
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        match &self.embed {
            Embed::Quant(q) => Ok(q.embedding(ids)?),
            Embed::Dense(w) => {
                let (b, t) = ids.dims2()?;
                Ok(w.index_select(&ids.flatten_all()?, 0)?
                    .reshape((b, t, self.cfg.hidden))?)
            }
        }
    }

    fn rms(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.cfg.rms_eps as f32;
        if self.train {
            Ok(candle_nn::ops::rms_norm_slow(x, w, eps)?)
        } else {
            Ok(candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)?)
        }
    }

    fn lin(&self, layer: usize, t: Target, x: &Tensor, lora: Option<&LoraSet>) -> Result<Tensor> {
        let base = self.layers[layer].lin(t).forward(x)?;
        match lora.and_then(|l| l.get(layer, t)) {
            Some(ab) => Ok((base + ab.delta(x)?)?),
            None => Ok(base),
        }
    }

    /// Runs `ids` (`[batch, seq]`) starting at position `pos`.
    ///
    /// With `caches` (one sequence, inference) keys and values are appended and only the last position's logits are
    /// returned (`[batch, vocab]`); without (training) the whole causal sequence runs and all logits come back
    /// (`[batch, seq, vocab]`).
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        pos: usize,
        caches: Option<&mut [KvCache]>,
        lora: Option<&LoraSet>,
    ) -> Result<Tensor> {
        let last_only = caches.is_some();
        let x = self.hidden(ids, pos, caches, lora)?;
        let logits = self.head(&x)?;
        if last_only {
            Ok(logits.squeeze(1)?)
        } else {
            Ok(logits)
        }
    }

    /// The output projection of final hidden states (any leading shape).
    pub(crate) fn head(&self, x: &Tensor) -> Result<Tensor> {
        self.output.forward(x)
    }

    /// The final normalised hidden states: `[batch, 1, hidden]` (last position) with caches, else
    /// `[batch, seq, hidden]`.
    pub(crate) fn hidden(
        &self,
        ids: &Tensor,
        pos: usize,
        mut caches: Option<&mut [KvCache]>,
        lora: Option<&LoraSet>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let cfg = &self.cfg;
        let hd = cfg.head_dim();
        let mut x = self.embed(ids)?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = if t > 1 {
            Some(causal_mask(t, pos, x.device())?)
        } else {
            None
        };
        for i in 0..cfg.n_layer {
            let layer = &self.layers[i];
            let h = self.rms(&x, &layer.attn_norm)?;
            let q = self
                .lin(i, Target::Q, &h, lora)?
                .reshape((b, t, cfg.n_head, hd))?
                .transpose(1, 2)?;
            let k = self
                .lin(i, Target::K, &h, lora)?
                .reshape((b, t, cfg.n_kv_head, hd))?
                .transpose(1, 2)?;
            let v = self
                .lin(i, Target::V, &h, lora)?
                .reshape((b, t, cfg.n_kv_head, hd))?
                .transpose(1, 2)?;
            let (q, k) = if self.train {
                (
                    candle_nn::rotary_emb::rope_i_slow(&q.contiguous()?, &cos, &sin)?,
                    candle_nn::rotary_emb::rope_i_slow(&k.contiguous()?, &cos, &sin)?,
                )
            } else {
                (
                    candle_nn::rotary_emb::rope_i(&q.contiguous()?, &cos, &sin)?,
                    candle_nn::rotary_emb::rope_i(&k.contiguous()?, &cos, &sin)?,
                )
            };
            let (k, v) = match caches.as_deref_mut() {
                Some(c) => c[i].append(&k, &v.contiguous()?)?,
                None => (k, v),
            };
            let rep = cfg.n_head / cfg.n_kv_head;
            let k = repeat_kv(k, rep)?;
            let v = repeat_kv(v, rep)?;
            let scale = 1.0 / (hd as f64).sqrt();
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = if self.train {
                candle_nn::ops::softmax(&att, D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&att)?
            };
            let y = att
                .matmul(&v.contiguous()?)?
                .transpose(1, 2)?
                .reshape((b, t, cfg.hidden))?;
            x = (x + self.lin(i, Target::O, &y, lora)?)?;
            let h = self.rms(&x, &layer.ffn_norm)?;
            let gate = candle_nn::ops::silu(&self.lin(i, Target::Gate, &h, lora)?)?;
            let up = self.lin(i, Target::Up, &h, lora)?;
            x = (x + self.lin(i, Target::Down, &(gate * up)?, lora)?)?;
        }
        let x = if caches.is_some() {
            x.narrow(1, t - 1, 1)?
        } else {
            x
        };
        self.rms(&x, &self.norm)
    }
}

/// `[t, pos + t]` additive mask: query `i` (at `pos + i`) sees keys `0..=pos + i`.
fn causal_mask(t: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let cols = pos + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..cols).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (t, cols), device)?)
}

/// Grouped-query attention: each key/value head serves `rep` consecutive query heads.
fn repeat_kv(x: Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x);
    }
    let (b, h, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, h, rep, t, d))?
        .reshape((b, h * rep, t, d))?)
}

fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = cfg.head_dim();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f32 / hd as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
    let pos = Tensor::arange(0u32, cfg.context as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.context, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion() {
        assert_eq!(half_to_f32(0x3c00u16.to_le_bytes()), 1.0);
        assert_eq!(half_to_f32(0xc000u16.to_le_bytes()), -2.0);
        assert_eq!(half_to_f32(0x0001u16.to_le_bytes()), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x7bffu16.to_le_bytes()), 65504.0);
    }

    /// The Q4_1 split is exact: dequantizing both forms gives the same matrix, and the matmuls agree.
    #[test]
    fn q4_1_split_matches_q4_1() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, 128), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let want = q.dequantize(&dev).unwrap();
        let plain = Lin::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap(), false).unwrap();
        let split = Lin::new(q, true).unwrap();
        assert!(matches!(split, Lin::Q41 { .. }));
        let diff = (split.dense().unwrap() - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "dequantized split differs by {diff}");
        let x = Tensor::randn(0f32, 1.0, (1, 3, 128), &dev).unwrap();
        let a = plain.forward(&x).unwrap();
        let b = split.forward(&x).unwrap();
        let rel = ((a.clone() - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap())
            / a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(rel < 0.02, "split matmul differs by {rel} (relative)");
    }
}
