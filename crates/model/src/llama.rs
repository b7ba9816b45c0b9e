//! The llama architecture (SmolLM2 is one): weights from GGUF, one forward pass for inference and training.
//!
//! Inference keeps the GGUF's quantized matrices and a KV cache; training runs the same code on dequantized f32
//! weights with differentiable (slow-path) kernels, so the two cannot drift apart. Q and K rows are in GGUF order
//! (llama.cpp permutes them for interleaved RoPE at conversion); [`crate::lora`] converts adapters at the boundary.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::kv_cache::KvCache;

use crate::error::{Error, Result};
use crate::kernels::{DENSE_MIN_ROWS, Exec, QActs, QMatrix};
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
    /// A GGUF matrix on the CPU, run by [`crate::kernels`].
    Q(Arc<QMatrix>),
    /// candle: a GGUF matrix on a GPU or of a type our kernels lack, or a dense f32 matrix (training).
    Candle(QMatMul),
}

impl Lin {
    fn new(t: QTensor) -> Result<Self> {
        if matches!(t.device(), Device::Cpu) {
            let (n, k) = t.shape().dims2()?;
            if let Some(q) = QMatrix::from_ggml(t.dtype(), &t.data()?, n, k) {
                return Ok(Self::Q(Arc::new(q)));
            }
        }
        Ok(Self::Candle(QMatMul::from_qtensor(t)?))
    }

    fn forward(&self, x: &Tensor, exec: &Exec) -> Result<Tensor> {
        match self {
            Self::Candle(m) => Ok(m.forward(x)?),
            Self::Q(q) => {
                let rows = x.elem_count() / q.k();
                if rows >= DENSE_MIN_ROWS {
                    return dense_product(q, x, exec);
                }
                let acts = QActs::quantize(&x.flatten_all()?.to_vec1::<f32>()?, q.k());
                q_output(q, &acts, x, exec)
            }
        }
    }

    /// `lins` applied to the same `x`; few rows are quantized once for all of them.
    fn forward_shared(lins: &[&Self], x: &Tensor, exec: &Exec) -> Result<Vec<Tensor>> {
        let k = x.dims().last().copied().unwrap_or(0);
        let small = x.elem_count() / k.max(1) < DENSE_MIN_ROWS;
        let all_q = lins.iter().all(|l| matches!(l, Self::Q(q) if q.k() == k));
        if !(small && all_q) {
            return lins.iter().map(|l| l.forward(x, exec)).collect();
        }
        let acts = QActs::quantize(&x.flatten_all()?.to_vec1::<f32>()?, k);
        lins.iter()
            .map(|l| match l {
                Self::Q(q) => q_output(q, &acts, x, exec),
                Self::Candle(m) => Ok(m.forward(x)?),
            })
            .collect()
    }

    /// The same matrix dequantized to f32 (for training).
    fn dequantized(&self) -> Result<Self> {
        Ok(Self::Candle(QMatMul::Tensor(self.dense()?)))
    }

    /// The dense f32 matrix `[out, in]`.
    pub(crate) fn dense(&self) -> Result<Tensor> {
        match self {
            Self::Q(q) => Ok(Tensor::from_vec(
                q.dequantize(&Exec::Inline),
                (q.n(), q.k()),
                &Device::Cpu,
            )?),
            Self::Candle(QMatMul::QTensor(t)) => Ok(t.dequantize(&t.device())?),
            Self::Candle(QMatMul::Tensor(t)) => Ok(t.clone()),
            Self::Candle(QMatMul::TensorF16(t)) => Ok(t.to_dtype(DType::F32)?),
        }
    }
}

/// The output of an 8-bit-activation product in `x`'s shape with the last dimension `n`.
fn q_output(q: &QMatrix, acts: &QActs, x: &Tensor, exec: &Exec) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = q.n();
    }
    Ok(Tensor::from_vec(q.matmul_q8(acts, exec), dims, x.device())?)
}

/// Many rows (a prompt): dequantize the matrix once and run candle's f32 GEMM, whose rayon threads are `exec`'s
/// pool if it has one (else rayon's global pool).
fn dense_product(q: &QMatrix, x: &Tensor, exec: &Exec) -> Result<Tensor> {
    let w = Tensor::from_vec(q.dequantize(exec), (q.n(), q.k()), x.device())?;
    let mut dims = x.dims().to_vec();
    let rows = x.elem_count() / q.k();
    if let Some(last) = dims.last_mut() {
        *last = q.n();
    }
    let x2 = x.contiguous()?.reshape((rows, q.k()))?;
    let y = exec.install(|| x2.matmul(&w.t()?))?;
    Ok(y.reshape(dims)?)
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
    /// Rows dequantized on lookup; shared with the output projection when tied.
    Q(Arc<QMatrix>),
    /// candle's quantized embedding (GPU, other types).
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
    /// Where the quantized products run (inference).
    exec: Exec,
}

/// Where the tensors come from (a GGUF reader), so loading is testable apart from the file.
pub(crate) trait TensorSource {
    fn get(&mut self, name: &str) -> Result<QTensor>;
    fn has(&self, name: &str) -> bool;
    /// The error for a malformed model, naming the file.
    fn bad(&self, reason: String) -> Error;
}

impl Llama {
    pub(crate) fn load(
        cfg: LlamaConfig,
        src: &mut dyn TensorSource,
        device: &Device,
        exec: Exec,
    ) -> Result<Self> {
        let dense = |t: QTensor| -> Result<Tensor> { Ok(t.dequantize(device)?) };
        let embed_q = src.get("token_embd.weight")?;
        let (embed, output) = match Lin::new(embed_q)? {
            Lin::Q(q) => {
                if q.n() < cfg.vocab || q.k() != cfg.hidden {
                    return Err(src.bad(format!(
                        "token_embd.weight is [{}, {}], the model needs [{}, {}]",
                        q.n(),
                        q.k(),
                        cfg.vocab,
                        cfg.hidden
                    )));
                }
                let output = if src.has("output.weight") {
                    Lin::new(src.get("output.weight")?)?
                } else {
                    // Tied embeddings (SmolLM2): the output projection is the embedding matrix, held once.
                    Lin::Q(q.clone())
                };
                (Embed::Q(q), output)
            }
            Lin::Candle(_) => {
                let output = if src.has("output.weight") {
                    Lin::new(src.get("output.weight")?)?
                } else {
                    Lin::new(src.get("token_embd.weight")?)?
                };
                (Embed::Quant(Arc::new(src.get("token_embd.weight")?)), output)
            }
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mut g = |n: &str| src.get(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: dense(g("attn_norm")?)?,
                q: Lin::new(g("attn_q")?)?,
                k: Lin::new(g("attn_k")?)?,
                v: Lin::new(g("attn_v")?)?,
                o: Lin::new(g("attn_output")?)?,
                ffn_norm: dense(g("ffn_norm")?)?,
                gate: Lin::new(g("ffn_gate")?)?,
                up: Lin::new(g("ffn_up")?)?,
                down: Lin::new(g("ffn_down")?)?,
            });
        }
        let norm = dense(src.get("output_norm.weight")?)?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            train: false,
            exec,
        })
    }

    /// A copy with every matrix dequantized to f32 and differentiable kernels, for LoRA training.
    pub(crate) fn dequantized(&self) -> Result<Self> {
        let embed = match &self.embed {
            Embed::Q(q) => Embed::Dense(Tensor::from_vec(
                q.dequantize(&self.exec),
                (q.n(), q.k()),
                self.device(),
            )?),
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
            (Embed::Dense(e), Lin::Q(q)) if matches!(&self.embed, Embed::Q(t) if Arc::ptr_eq(t, q)) => {
                Lin::Candle(QMatMul::Tensor(e.clone()))
            }
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
            exec: self.exec.clone(),
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
            Embed::Q(q) => {
                let (b, t) = ids.dims2()?;
                let h = q.k();
                let ids = ids.flatten_all()?.to_vec1::<u32>()?;
                let mut out = vec![0f32; ids.len() * h];
                for (id, row) in ids.iter().zip(out.chunks_exact_mut(h)) {
                    let id = *id as usize;
                    if id >= q.n() {
                        return Err(Error::InvalidParam {
                            name: "prompt",
                            reason: format!("token id {id} ≥ {} embeddings", q.n()),
                        });
                    }
                    q.dequantize_rows(id, row);
                }
                Ok(Tensor::from_vec(out, (b, t, h), self.device())?)
            }
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
        let base = self.layers[layer].lin(t).forward(x, &self.exec)?;
        match lora.and_then(|l| l.get(layer, t)) {
            Some(ab) => Ok((base + ab.delta(x)?)?),
            None => Ok(base),
        }
    }

    /// Several projections of the same `x` (Q/K/V, gate/up): few rows are quantized once for all of them.
    fn lins<const N: usize>(
        &self,
        layer: usize,
        ts: [Target; N],
        x: &Tensor,
        lora: Option<&LoraSet>,
    ) -> Result<[Tensor; N]> {
        let l = &self.layers[layer];
        let lins = ts.map(|t| l.lin(t));
        let mut out = Lin::forward_shared(&lins, x, &self.exec)?;
        for (y, t) in out.iter_mut().zip(ts) {
            if let Some(ab) = lora.and_then(|l| l.get(layer, t)) {
                *y = (&*y + ab.delta(x)?)?;
            }
        }
        out.try_into()
            .map_err(|_| Error::Backend(candle_core::Error::Msg("projection count".into())))
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
        self.output.forward(x, &self.exec)
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
            let [q, k, v] = self.lins(i, [Target::Q, Target::K, Target::V], &h, lora)?;
            let q = q.reshape((b, t, cfg.n_head, hd))?.transpose(1, 2)?;
            let k = k.reshape((b, t, cfg.n_kv_head, hd))?.transpose(1, 2)?;
            let v = v.reshape((b, t, cfg.n_kv_head, hd))?.transpose(1, 2)?;
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
            let [gate, up] = self.lins(i, [Target::Gate, Target::Up], &h, lora)?;
            let gate = candle_nn::ops::silu(&gate)?;
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
    use candle_core::quantized::GgmlDType;

    /// Our kernels (few rows: 8-bit activations; many rows: dequantized GEMM) agree with candle's quantized matmul
    /// on the same GGUF blocks, and the dense form is candle's dequantization.
    #[test]
    fn kernels_match_candle_quantized_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, 128), &dev).unwrap();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let want = q.dequantize(&dev).unwrap();
            let candle = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
            let ours = Lin::new(q).unwrap();
            assert!(matches!(ours, Lin::Q(_)));
            let diff = (ours.dense().unwrap() - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(diff, 0.0, "{dtype:?}: dequantized forms differ by {diff}");
            for rows in [1, 3, DENSE_MIN_ROWS + 1] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, 128), &dev).unwrap();
                let a = candle.forward(&x).unwrap();
                let b = ours.forward(&x, &Exec::Inline).unwrap();
                assert_eq!(a.dims(), b.dims());
                let rel = ((a.clone() - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap())
                    / a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(rel < 0.02, "{dtype:?}, {rows} rows: differs by {rel} (relative)");
            }
        }
    }
}
