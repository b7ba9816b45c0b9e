//! Quantized matrix products for CPU inference, run on the calling thread or on a pool of our own.
//!
//! candle's quantized CPU matmul runs on one process-wide, spin-waiting barrier pool behind one lock: concurrent
//! streams take turns on it, and on a machine with more runnable threads than cores it collapses (1.5 tokens/s
//! measured on the loaded 2-core machine, against 59 without the pool). So the inference path keeps the GGUF's 4-
//! and 8-bit weights in a layout of its own ([`QMatrix`]: nibbles or bytes, f32 scale and offset per block of 32),
//! quantizes activations to 8 bits per block ([`QActs`], llama.cpp's Q8_1), and computes integer dot products with
//! AVX2 through `pulp`'s safe intrinsics (a scalar path on other CPUs gives the same sums). [`Exec`] decides where
//! the work runs. Products of many rows (a prompt's prefill) dequantize the matrix once and use candle's f32 GEMM,
//! which is 4-5x faster per row there than dot products (see the crate README's bench).

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

/// Values per quantization block (Q4_0, Q4_1, Q8_0 and our activations).
pub(crate) const QK: usize = 32;

/// From this many rows on, a product dequantizes the matrix and runs the f32 GEMM instead of dot products.
pub(crate) const DENSE_MIN_ROWS: usize = 8;

/// A quantized weight matrix `[n, k]` (a row per output), in blocks of [`QK`] along `k`.
#[derive(Debug)]
pub(crate) struct QMatrix {
    n: usize,
    k: usize,
    data: QData,
}

#[derive(Debug)]
enum QData {
    /// 4 bits: `w = d·q + m`, `q` in 0..=15 (Q4_1; Q4_0 is `m = −8d`). 16 bytes a block: value `j` in the low
    /// nibble of byte `j`, value `j + 16` in its high nibble (GGUF's order).
    Q4 { qs: Vec<u8>, d: Vec<f32>, m: Vec<f32> },
    /// 8 bits: `w = d·q` (Q8_0).
    Q8 { qs: Vec<i8>, d: Vec<f32> },
}

/// IEEE half (little-endian bytes) to f32.
pub(crate) fn half_to_f32(b: [u8; 2]) -> f32 {
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

impl QMatrix {
    /// Reads GGML blocks (`bytes`, row-major `[n, k]`); `None` for a type these kernels do not run (the caller keeps
    /// candle's) or bytes that do not match the shape.
    pub(crate) fn from_ggml(dtype: GgmlDType, bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if k == 0 || !k.is_multiple_of(QK) {
            return None;
        }
        let blocks = n * (k / QK);
        let size = match dtype {
            GgmlDType::Q4_0 => 18,
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => return None,
        };
        if bytes.len() != blocks * size {
            return None;
        }
        let data = match dtype {
            GgmlDType::Q8_0 => {
                let mut qs = Vec::with_capacity(blocks * QK);
                let mut d = Vec::with_capacity(blocks);
                for b in bytes.chunks_exact(34) {
                    d.push(half_to_f32([b[0], b[1]]));
                    qs.extend(b[2..].iter().map(|&v| v as i8));
                }
                QData::Q8 { qs, d }
            }
            _ => {
                let q41 = dtype == GgmlDType::Q4_1;
                let mut qs = Vec::with_capacity(blocks * 16);
                let mut d = Vec::with_capacity(blocks);
                let mut m = Vec::with_capacity(blocks);
                for b in bytes.chunks_exact(size) {
                    let scale = half_to_f32([b[0], b[1]]);
                    d.push(scale);
                    if q41 {
                        m.push(half_to_f32([b[2], b[3]]));
                        qs.extend_from_slice(&b[4..20]);
                    } else {
                        m.push(-8.0 * scale);
                        qs.extend_from_slice(&b[2..18]);
                    }
                }
                QData::Q4 { qs, d, m }
            }
        };
        Some(Self { n, k, data })
    }

    /// Output size.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Input size.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Dequantizes rows `first..first + out.len() / k` into `out`.
    pub(crate) fn dequantize_rows(&self, first: usize, out: &mut [f32]) {
        let nb = self.k / QK;
        let b0 = first * nb;
        match &self.data {
            QData::Q4 { qs, d, m } => {
                for (i, o) in out.chunks_exact_mut(QK).enumerate() {
                    let b = b0 + i;
                    let (scale, min) = (d[b], m[b]);
                    let q = &qs[b * 16..b * 16 + 16];
                    let (lo, hi) = o.split_at_mut(16);
                    for j in 0..16 {
                        lo[j] = f32::from(q[j] & 0x0f) * scale + min;
                        hi[j] = f32::from(q[j] >> 4) * scale + min;
                    }
                }
            }
            QData::Q8 { qs, d } => {
                for (i, o) in out.chunks_exact_mut(QK).enumerate() {
                    let b = b0 + i;
                    let scale = d[b];
                    for (v, q) in o.iter_mut().zip(&qs[b * QK..b * QK + QK]) {
                        *v = f32::from(*q) * scale;
                    }
                }
            }
        }
    }

    /// The whole matrix in f32, `[n, k]` row-major, dequantized on `exec`'s threads.
    pub(crate) fn dequantize(&self, exec: &Exec) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        exec.for_rows(&mut out, self.k, |first, chunk| {
            self.dequantize_rows(first, chunk)
        });
        out
    }

    /// `y = x Wᵀ` for `x` of `m` rows (`[m, k]` row-major) with 8-bit activations: `[m, n]` row-major.
    pub(crate) fn matmul_q8(&self, acts: &QActs, exec: &Exec) -> Vec<f32> {
        let m = acts.m;
        // Computed as [n, m] (each chunk owns whole weight rows), then transposed.
        let mut out_t = vec![0f32; self.n * m];
        exec.for_rows(&mut out_t, m, |first, chunk| self.rows(acts, first, chunk));
        if m == 1 {
            return out_t;
        }
        let mut out = vec![0f32; m * self.n];
        for (r, row) in out_t.chunks_exact(m).enumerate() {
            for (a, v) in row.iter().enumerate() {
                out[a * self.n + r] = *v;
            }
        }
        out
    }

    /// Weight rows `first..`, all activation rows: `out[(r − first)·m + a]`.
    fn rows(&self, acts: &QActs, first: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            simd.vectorize(avx2::Rows {
                simd,
                w: self,
                acts,
                first,
                out,
            });
            return;
        }
        scalar_rows(self, acts, first, out);
    }
}

/// Activations quantized to 8 bits per block of [`QK`] (llama.cpp's Q8_1): `x ≈ d·q`, plus `s = d·Σq` per block
/// (what a 4-bit weight's offset multiplies).
#[derive(Debug)]
pub(crate) struct QActs {
    m: usize,
    nb: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl QActs {
    /// Quantizes `x` (`m` rows of `k`, `k` a multiple of [`QK`]).
    pub(crate) fn quantize(x: &[f32], k: usize) -> Self {
        let nb = k / QK;
        let m = x.len() / k;
        let mut qs = vec![0i8; m * k];
        let mut d = Vec::with_capacity(m * nb);
        let mut s = Vec::with_capacity(m * nb);
        for (xb, qb) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in qb.iter_mut().zip(xb) {
                // |v·inv| ≤ 127 by construction; the cast saturates anyway (NaN → 0).
                *q = (v * inv).round() as i8;
                sum += i32::from(*q);
            }
            d.push(scale);
            s.push(scale * sum as f32);
        }
        Self { m, nb, qs, d, s }
    }
}

/// The portable kernel (and the reference the SIMD one is tested against).
fn scalar_rows(w: &QMatrix, acts: &QActs, first: usize, out: &mut [f32]) {
    let nb = acts.nb;
    let m = acts.m;
    for (i, o) in out.chunks_exact_mut(m).enumerate() {
        let r = first + i;
        for (a, v) in o.iter_mut().enumerate() {
            let yq = &acts.qs[a * nb * QK..(a + 1) * nb * QK];
            let yd = &acts.d[a * nb..(a + 1) * nb];
            let mut acc = 0f32;
            match &w.data {
                QData::Q4 { qs, d, m } => {
                    let ys = &acts.s[a * nb..(a + 1) * nb];
                    let mut mins = 0f32;
                    for b in 0..nb {
                        let q = &qs[(r * nb + b) * 16..(r * nb + b) * 16 + 16];
                        let y = &yq[b * QK..b * QK + QK];
                        let mut isum = 0i32;
                        for j in 0..16 {
                            isum += i32::from(q[j] & 0x0f) * i32::from(y[j]);
                            isum += i32::from(q[j] >> 4) * i32::from(y[j + 16]);
                        }
                        acc += d[r * nb + b] * yd[b] * isum as f32;
                        mins += m[r * nb + b] * ys[b];
                    }
                    acc += mins;
                }
                QData::Q8 { qs, d } => {
                    for b in 0..nb {
                        let q = &qs[(r * nb + b) * QK..(r * nb + b) * QK + QK];
                        let y = &yq[b * QK..b * QK + QK];
                        let isum: i32 = q.iter().zip(y).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
                        acc += d[r * nb + b] * yd[b] * isum as f32;
                    }
                }
            }
            *v = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA through `pulp`'s safe intrinsics: four weight rows per pass share each activation block.

    use core::arch::x86_64::{__m128i, __m256, __m256i};

    use pulp::x86::V3;

    use super::{QActs, QData, QK, QMatrix};

    pub(super) struct Rows<'a> {
        pub(super) simd: V3,
        pub(super) w: &'a QMatrix,
        pub(super) acts: &'a QActs,
        pub(super) first: usize,
        pub(super) out: &'a mut [f32],
    }

    /// The 32 values of a 4-bit block as bytes 0..=15, in order.
    #[inline(always)]
    fn nibbles(simd: V3, raw: [u8; 16]) -> __m256i {
        let raw: __m128i = pulp::cast(raw);
        let mask = simd.sse2._mm_set1_epi8(0x0f);
        let lo = simd.sse2._mm_and_si128(raw, mask);
        let hi = simd.sse2._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(raw), mask);
        simd.avx._mm256_set_m128i(hi, lo)
    }

    /// Σ x·y over 32 unsigned × signed bytes, as 8 f32 partial sums. `maddubs` saturates a pair sum at i16: callers
    /// keep x ≤ 128 and |y| ≤ 127 (2·128·127 < 2¹⁵).
    #[inline(always)]
    fn dot_u8_i8(simd: V3, x: __m256i, y: __m256i) -> __m256 {
        let p16 = simd.avx2._mm256_maddubs_epi16(x, y);
        let p32 = simd.avx2._mm256_madd_epi16(p16, simd.avx._mm256_set1_epi16(1));
        simd.avx._mm256_cvtepi32_ps(p32)
    }

    /// Sums the 8 lanes in a fixed order (deterministic results whatever the thread split).
    #[inline(always)]
    fn hsum(v: __m256) -> f32 {
        let a: [f32; 8] = pulp::cast(v);
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }

    impl pulp::NullaryFnOnce for Rows<'_> {
        type Output = ();

        #[inline(always)]
        fn call(self) {
            let Self {
                simd,
                w,
                acts,
                first,
                out,
            } = self;
            let nb = acts.nb;
            let m = acts.m;
            let rows = out.len() / m;
            let (yq_all, _) = acts.qs.as_chunks::<QK>();
            let mut r = 0;
            while r < rows {
                let quad = rows - r >= 4;
                let count = if quad { 4 } else { 1 };
                for a in 0..m {
                    let yq = &yq_all[a * nb..(a + 1) * nb];
                    let yd = &acts.d[a * nb..(a + 1) * nb];
                    let res = match &w.data {
                        QData::Q4 { qs, d, m: mins } => {
                            let ys = &acts.s[a * nb..(a + 1) * nb];
                            let (qb, _) = qs.as_chunks::<16>();
                            if quad {
                                q4_dot::<4>(simd, qb, d, mins, first + r, nb, yq, yd, ys)
                            } else {
                                let [v] = q4_dot::<1>(simd, qb, d, mins, first + r, nb, yq, yd, ys);
                                [v, 0.0, 0.0, 0.0]
                            }
                        }
                        QData::Q8 { qs, d } => {
                            let (qb, _) = qs.as_chunks::<QK>();
                            if quad {
                                q8_dot::<4>(simd, qb, d, first + r, nb, yq, yd)
                            } else {
                                let [v] = q8_dot::<1>(simd, qb, d, first + r, nb, yq, yd);
                                [v, 0.0, 0.0, 0.0]
                            }
                        }
                    };
                    for (i, v) in res.iter().take(count).enumerate() {
                        out[(r + i) * m + a] = *v;
                    }
                }
                r += count;
            }
        }
    }

    /// Rows `r..r + R` of a 4-bit matrix against one activation row.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn q4_dot<const R: usize>(
        simd: V3,
        qs: &[[u8; 16]],
        d: &[f32],
        m: &[f32],
        r: usize,
        nb: usize,
        yq: &[[i8; QK]],
        yd: &[f32],
        ys: &[f32],
    ) -> [f32; R] {
        let mut acc = [simd.avx._mm256_setzero_ps(); R];
        let (yq, yd, ys) = (&yq[..nb], &yd[..nb], &ys[..nb]);
        let rows: [(&[[u8; 16]], &[f32]); R] = std::array::from_fn(|i| {
            let o = (r + i) * nb;
            (&qs[o..o + nb], &d[o..o + nb])
        });
        for b in 0..nb {
            let y: __m256i = pulp::cast(yq[b]);
            for i in 0..R {
                let x = nibbles(simd, rows[i].0[b]);
                let scale = simd.avx._mm256_set1_ps(rows[i].1[b] * yd[b]);
                acc[i] = simd.fma._mm256_fmadd_ps(scale, dot_u8_i8(simd, x, y), acc[i]);
            }
        }
        std::array::from_fn(|i| {
            let o = (r + i) * nb;
            let mins: f32 = m[o..o + nb].iter().zip(ys).map(|(a, b)| a * b).sum();
            hsum(acc[i]) + mins
        })
    }

    /// Rows `r..r + R` of an 8-bit matrix against one activation row.
    #[inline(always)]
    fn q8_dot<const R: usize>(
        simd: V3,
        qs: &[[i8; QK]],
        d: &[f32],
        r: usize,
        nb: usize,
        yq: &[[i8; QK]],
        yd: &[f32],
    ) -> [f32; R] {
        let mut acc = [simd.avx._mm256_setzero_ps(); R];
        let (yq, yd) = (&yq[..nb], &yd[..nb]);
        let rows: [(&[[i8; QK]], &[f32]); R] = std::array::from_fn(|i| {
            let o = (r + i) * nb;
            (&qs[o..o + nb], &d[o..o + nb])
        });
        for b in 0..nb {
            let y: __m256i = pulp::cast(yq[b]);
            for i in 0..R {
                let x: __m256i = pulp::cast(rows[i].0[b]);
                // |x| · (y with x's sign): unsigned × signed, |x| ≤ 128 (−128 never occurs in Q8_0 from GGUF
                // quantizers, which clamp to ±127; if it did, the pair sum 2·128·127 still fits i16).
                let ax = simd.avx2._mm256_sign_epi8(x, x);
                let sy = simd.avx2._mm256_sign_epi8(y, x);
                let scale = simd.avx._mm256_set1_ps(rows[i].1[b] * yd[b]);
                acc[i] = simd.fma._mm256_fmadd_ps(scale, dot_u8_i8(simd, ax, sy), acc[i]);
            }
        }
        std::array::from_fn(|i| hsum(acc[i]))
    }
}

/// Where the products of one forward pass run.
#[derive(Debug, Clone)]
pub(crate) enum Exec {
    /// On the calling thread.
    Inline,
    /// Split over a pool of our own (shared by every stream).
    Pool(Arc<rayon::ThreadPool>),
}

impl Exec {
    /// Calls `f(first_row, rows)` over `out` (rows of `width` values): once on the calling thread, or in chunks over
    /// the pool (a multiple of 4 rows each, so the 4-row kernels stay whole).
    pub(crate) fn for_rows(&self, out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
        match self {
            Self::Inline => f(0, out),
            Self::Pool(pool) => {
                let rows = out.len() / width.max(1);
                let chunks = pool.current_num_threads() * 4;
                let per = rows.div_ceil(chunks).next_multiple_of(4).max(16);
                pool.install(|| {
                    out.par_chunks_mut(per * width)
                        .enumerate()
                        .for_each(|(i, c)| f(i * per, c));
                });
            }
        }
    }

    /// Runs `f` so that rayon-parallel code inside it (candle's GEMM) uses the pool, if there is one.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Self::Inline => f(),
            Self::Pool(pool) => pool.install(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    fn matrix(dtype: GgmlDType, n: usize, k: usize) -> (QMatrix, Vec<f32>) {
        let w = Tensor::from_vec(random(n * k, 3), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (
            QMatrix::from_ggml(dtype, &q.data().unwrap(), n, k).unwrap(),
            dense,
        )
    }

    /// Our layout dequantizes to exactly candle's dequantization of the same GGML blocks.
    #[test]
    fn layout_dequantizes_like_candle() {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (q, dense) = matrix(dtype, 13, 96);
            assert_eq!(q.dequantize(&Exec::Inline), dense, "{dtype:?}");
        }
        assert!(QMatrix::from_ggml(GgmlDType::Q4_1, &[0; 19], 1, 32).is_none());
        assert!(QMatrix::from_ggml(GgmlDType::Q4K, &[0; 144], 1, 256).is_none());
    }

    /// The SIMD kernel, the scalar kernel and a pool split agree (bit for bit: same sums in the same order for the
    /// integer part), and all are within activation-quantization error of the f32 product.
    #[test]
    fn kernels_agree_and_match_f32() {
        let pool = Exec::Pool(Arc::new(
            rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap(),
        ));
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            // 67 rows: quads plus a tail of 3.
            let (n, k, m) = (67, 160, 3);
            let (q, dense) = matrix(dtype, n, k);
            let x = random(m * k, 9);
            let acts = QActs::quantize(&x, k);
            let simd = q.matmul_q8(&acts, &Exec::Inline);
            let pooled = q.matmul_q8(&acts, &pool);
            assert_eq!(simd, pooled, "{dtype:?}: the pool split changes nothing");
            let mut scalar_t = vec![0f32; n * m];
            scalar_rows(&q, &acts, 0, &mut scalar_t);
            for a in 0..m {
                for r in 0..n {
                    let s = scalar_t[r * m + a];
                    let v = simd[a * n + r];
                    assert!(
                        (s - v).abs() <= 1e-4 * (1.0 + s.abs()),
                        "{dtype:?} [{a},{r}] {s} vs {v}"
                    );
                    let exact: f32 = (0..k).map(|j| x[a * k + j] * dense[r * k + j]).sum();
                    // 8-bit activations: error ≤ Σ|w|·d/2 ≈ k·0.5·(1/127)/2 for |x|,|w| ≤ 1.
                    assert!((exact - v).abs() < 0.2, "{dtype:?} [{a},{r}] {exact} vs {v}");
                }
            }
        }
    }

    #[test]
    fn half_conversion() {
        assert_eq!(half_to_f32(0x3c00u16.to_le_bytes()), 1.0);
        assert_eq!(half_to_f32(0xc000u16.to_le_bytes()), -2.0);
        assert_eq!(half_to_f32(0x0001u16.to_le_bytes()), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x7bffu16.to_le_bytes()), 65504.0);
    }
}
