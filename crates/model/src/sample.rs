//! Sampling: greedy, temperature and nucleus (top-p), from a seeded generator so a seed reproduces a completion.

/// SplitMix64: tiny, fast, and the same sequence on every platform (which is what "seed" promises).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Index of the largest logit (the first on ties).
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, v) in logits.iter().enumerate() {
        if *v > best_v {
            best_v = *v;
            best = i;
        }
    }
    best as u32
}

/// Draws a token: greedy at `temperature == 0`, else from `softmax(logits / temperature)` cut to the smallest set
/// of most likely tokens whose probability reaches `top_p`.
pub(crate) fn sample(logits: &[f32], temperature: f32, top_p: f32, rng: &mut Rng) -> u32 {
    if temperature <= 0.0 || logits.is_empty() {
        return argmax(logits);
    }
    let t = f64::from(temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u32, ((f64::from(*l) - max) / t).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if top_p < 1.0 {
        // Most likely first; equal probabilities by token id, so the order (and the draw) is deterministic.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let cut = f64::from(top_p) * total;
        let mut cum = 0.0;
        let mut keep = 0;
        for p in &probs {
            cum += p.1;
            keep += 1;
            if cum >= cut {
                break;
            }
        }
        probs.truncate(keep.max(1));
    }
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * mass;
    for (id, p) in &probs {
        if u < *p {
            return *id;
        }
        u -= p;
    }
    probs.last().map_or(0, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded() {
        let logits = [0.0, 3.0, 1.0, 3.0];
        assert_eq!(sample(&logits, 0.0, 1.0, &mut Rng::new(1)), 1);
        let draw = |seed| {
            (0..64)
                .map(|_| 0)
                .scan(Rng::new(seed), |r, _| Some(sample(&logits, 1.0, 1.0, r)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // top_p small keeps only the most likely tokens (ids 1 and 3 tie; the cut keeps id 1 alone).
        let mut r = Rng::new(3);
        assert!((0..100).all(|_| sample(&logits, 1.0, 0.1, &mut r) == 1));
    }
}
