//! The word trigram model: training, adaptation (fine-tuning by added counts), sampling with backoff,
//! held-out loss with interpolated smoothing, and a deterministic text serialisation.

use std::collections::HashMap;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::error::{Error, Result};
use crate::tokenize::{piece, tokenize};

/// `max_tokens` when a request does not set one.
pub const DEFAULT_MAX_TOKENS: u64 = 128;

/// The end-of-text token (id 0 in every model).
pub const END: &str = "</s>";

/// First line of a serialised model.
const MAGIC: &str = "zg-ngram 1";

/// Interpolation weights of the smoothed probability used for loss: trigram, bigram, unigram, uniform.
/// Fixed (not tuned on the data) so that a loss is a pure function of the counts.
const LAMBDA: [f64; 4] = [0.5, 0.3, 0.15, 0.05];

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its text, or a stop sequence was met.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

impl Finish {
    /// `"stop"` or `"length"`, as OpenAI's `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Sampling parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Most tokens to sample.
    pub max_tokens: u64,
    /// 0 = greedy; 1 = the corpus distribution; higher flattens it.
    pub temperature: f64,
    /// Seed for reproducible sampling; `None` = OS randomness.
    pub seed: Option<u64>,
    /// Stop sequences (at most 4, as OpenAI).
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 1.0,
            seed: None,
            stop: Vec::new(),
        }
    }
}

/// One generation: the pieces as they would stream, the final text, the sampled token count.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Text deltas in order (their concatenation is `text`).
    pub deltas: Vec<String>,
    /// The completion text (stop sequence excluded).
    pub text: String,
    /// Tokens sampled.
    pub completion_tokens: u64,
    /// Why it ended.
    pub finish: Finish,
}

/// Cross-entropy of a model on some texts: the negative log-likelihood summed over every predicted token
/// (each text's tokens and its end token), in nats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    /// Σ −ln p(token | context).
    pub nll: f64,
    /// Tokens predicted.
    pub tokens: u64,
}

impl Loss {
    /// Mean loss per token (nats); 0 when nothing was predicted.
    pub fn mean(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.nll / self.tokens as f64
        }
    }

    /// Perplexity, `exp(mean)`.
    pub fn perplexity(&self) -> f64 {
        self.mean().exp()
    }
}

/// A trigram model with backoff to bigrams and unigrams.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramModel {
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
    tri: HashMap<(u32, u32), Vec<(u32, u32)>>,
    bi: HashMap<u32, Vec<(u32, u32)>>,
    uni: Vec<(u32, u32)>,
    end: u32,
}

/// Mutable counts; [`NgramModel`] is the frozen, sampling-friendly form.
#[derive(Debug, Default)]
struct Builder {
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
    tri: HashMap<(u32, u32), HashMap<u32, u32>>,
    bi: HashMap<u32, HashMap<u32, u32>>,
    uni: HashMap<u32, u32>,
}

fn sorted(m: HashMap<u32, u32>) -> Vec<(u32, u32)> {
    let mut v: Vec<_> = m.into_iter().filter(|&(_, c)| c > 0).collect();
    v.sort_unstable();
    v
}

impl Builder {
    fn new() -> Self {
        Self {
            vocab: vec![END.to_string()],
            ids: HashMap::from([(END.to_string(), 0u32)]),
            ..Self::default()
        }
    }

    fn from_model(m: &NgramModel) -> Self {
        let expand = |v: &Vec<(u32, u32)>| v.iter().copied().collect::<HashMap<u32, u32>>();
        Self {
            vocab: m.vocab.clone(),
            ids: m.ids.clone(),
            tri: m.tri.iter().map(|(k, v)| (*k, expand(v))).collect(),
            bi: m.bi.iter().map(|(k, v)| (*k, expand(v))).collect(),
            uni: m.uni.iter().copied().collect(),
        }
    }

    fn id(&mut self, t: &str) -> u32 {
        if let Some(&id) = self.ids.get(t) {
            return id;
        }
        // Vocabularies are bounded far below u32::MAX by the input sizes the callers accept.
        let id = u32::try_from(self.vocab.len()).unwrap_or(u32::MAX);
        self.vocab.push(t.to_owned());
        self.ids.insert(t.to_owned(), id);
        id
    }

    /// Counts one sequence (followed by the end token), `times` times.
    fn add_sequence(&mut self, toks: &[String], times: u32) {
        let mut seq: Vec<u32> = toks.iter().map(|t| self.id(t)).collect();
        seq.push(0);
        self.add_ids(&seq, times);
    }

    fn add_ids(&mut self, seq: &[u32], times: u32) {
        for (i, &w) in seq.iter().enumerate() {
            let c = self.uni.entry(w).or_default();
            *c = c.saturating_add(times);
            if i >= 1 {
                let c = self.bi.entry(seq[i - 1]).or_default().entry(w).or_default();
                *c = c.saturating_add(times);
            }
            if i >= 2 {
                let c = self
                    .tri
                    .entry((seq[i - 2], seq[i - 1]))
                    .or_default()
                    .entry(w)
                    .or_default();
                *c = c.saturating_add(times);
            }
        }
    }

    /// Adds every count of `other` (mapped by token text), multiplied by `times`.
    fn add_model(&mut self, other: &NgramModel, times: u32) {
        let map: Vec<u32> = other.vocab.iter().map(|t| self.id(t)).collect();
        let m = |id: u32| map.get(id as usize).copied().unwrap_or(0);
        for &(w, c) in &other.uni {
            let e = self.uni.entry(m(w)).or_default();
            *e = e.saturating_add(c.saturating_mul(times));
        }
        for (a, v) in &other.bi {
            let row = self.bi.entry(m(*a)).or_default();
            for &(w, c) in v {
                let e = row.entry(m(w)).or_default();
                *e = e.saturating_add(c.saturating_mul(times));
            }
        }
        for ((a, b), v) in &other.tri {
            let row = self.tri.entry((m(*a), m(*b))).or_default();
            for &(w, c) in v {
                let e = row.entry(m(w)).or_default();
                *e = e.saturating_add(c.saturating_mul(times));
            }
        }
    }

    fn finish(mut self) -> NgramModel {
        // The end token is never drawn from the unigram fallback: an answer never ends out of nowhere.
        self.uni.remove(&0);
        NgramModel {
            vocab: self.vocab,
            ids: self.ids,
            tri: self.tri.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
            bi: self.bi.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
            uni: sorted(self.uni),
            end: 0,
        }
    }
}

impl NgramModel {
    /// Trains on `corpus`; each blank-line-separated paragraph of at least 3 tokens is one sequence ending
    /// with the end-of-text token.
    pub fn train(corpus: &str) -> Self {
        let mut b = Builder::new();
        for para in corpus.split("\n\n") {
            let toks = tokenize(para);
            if toks.len() >= 3 {
                b.add_sequence(&toks, 1);
            }
        }
        b.finish()
    }

    /// Counts each text as one sequence (however short): the "delta" a fine-tuning run learns from a
    /// dataset, applied to a base with [`NgramModel::merged`].
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut b = Builder::new();
        for t in texts {
            let toks = tokenize(t);
            if !toks.is_empty() {
                b.add_sequence(&toks, 1);
            }
        }
        b.finish()
    }

    /// This model with `delta`'s counts added `times` times (tokens matched by text; new tokens are
    /// appended to the vocabulary in `delta`'s order, so the result is deterministic).
    pub fn merged(&self, delta: &NgramModel, times: u32) -> Self {
        let mut b = Builder::from_model(self);
        b.add_model(delta, times);
        b.finish()
    }

    /// Number of distinct tokens learnt.
    pub fn vocab_len(&self) -> usize {
        self.vocab.len()
    }

    /// Total count of all unigrams (tokens seen, end tokens excluded).
    pub fn total_tokens(&self) -> u64 {
        self.uni.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    fn smoothed(&self, ctx: (Option<u32>, Option<u32>), w: Option<u32>, uni_total: f64) -> f64 {
        let prob_in = |dist: &[(u32, u32)]| -> Option<f64> {
            let total: u64 = dist.iter().map(|&(_, c)| u64::from(c)).sum();
            if total == 0 {
                return None;
            }
            let c = w
                .and_then(|w| dist.binary_search_by_key(&w, |&(x, _)| x).ok())
                .and_then(|i| dist.get(i))
                .map_or(0, |&(_, c)| c);
            Some(f64::from(c) / total as f64)
        };
        let tri = match ctx {
            (Some(a), Some(b)) => self.tri.get(&(a, b)).and_then(|d| prob_in(d)),
            _ => None,
        };
        let bi = ctx.1.and_then(|b| self.bi.get(&b)).and_then(|d| prob_in(d));
        let uni = if uni_total > 0.0 {
            let c = w
                .and_then(|w| self.uni.binary_search_by_key(&w, |&(x, _)| x).ok())
                .and_then(|i| self.uni.get(i))
                .map_or(0, |&(_, c)| c);
            Some(f64::from(c) / uni_total)
        } else {
            None
        };
        let (mut sum, mut weight) = (0.0, 0.0);
        for (p, l) in [(tri, LAMBDA[0]), (bi, LAMBDA[1]), (uni, LAMBDA[2])] {
            if let Some(p) = p {
                sum += l * p;
                weight += l;
            }
        }
        let mixed = if weight > 0.0 { sum / weight } else { 0.0 };
        (1.0 - LAMBDA[3]) * mixed + LAMBDA[3] / (self.vocab.len() as f64 + 1.0)
    }

    /// Cross-entropy on `texts`, each scored as one sequence from an empty context through its end token,
    /// with interpolated smoothing (trigram, bigram, unigram, uniform over the vocabulary plus one unknown
    /// token), so unseen words cost a finite amount.
    pub fn loss<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Loss {
        let uni_total = self.total_tokens() as f64;
        let mut out = Loss { nll: 0.0, tokens: 0 };
        for t in texts {
            let toks = tokenize(t);
            if toks.is_empty() {
                continue;
            }
            let mut ctx: (Option<u32>, Option<u32>) = (None, None);
            let ids = toks
                .iter()
                .map(|t| self.ids.get(t).copied())
                .chain(std::iter::once(Some(self.end)));
            for id in ids {
                let p = self.smoothed(ctx, id, uni_total);
                out.nll -= p.ln();
                out.tokens += 1;
                // An unknown word breaks the context (the model has no row for it).
                ctx = (ctx.1, id);
            }
        }
        out
    }

    /// Generates a continuation of `prompt`.
    pub fn generate(&self, prompt: &str, s: &Sampling) -> Generation {
        let mut rng = match s.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let prompt_ids: Vec<u32> = tokenize(prompt)
            .iter()
            .filter_map(|t| self.ids.get(t).copied())
            .collect();
        let mut ctx: (Option<u32>, Option<u32>) = match prompt_ids.as_slice() {
            [.., a, b] => (Some(*a), Some(*b)),
            [b] => (None, Some(*b)),
            [] => (None, None),
        };
        let mut text = String::new();
        let mut deltas = Vec::new();
        let mut emitted = 0usize; // bytes of `text` already in `deltas`
        let mut prev: Option<String> = None;
        let mut n = 0u64;
        let max_stop = s.stop.iter().map(String::len).max().unwrap_or(0);
        while n < s.max_tokens {
            let next = self.sample(ctx, &prompt_ids, s.temperature, &mut rng);
            n += 1;
            if next == self.end {
                if !text.is_empty() {
                    flush(&text, &mut emitted, &mut deltas, text.len());
                    return Generation {
                        deltas,
                        text,
                        completion_tokens: n,
                        finish: Finish::Stop,
                    };
                }
                // Nothing said yet: restart from the top of the distribution rather than answer empty.
                ctx = (None, None);
                continue;
            }
            let tok = self.vocab.get(next as usize).map_or(END, String::as_str);
            text.push_str(&piece(prev.as_deref(), tok));
            prev = Some(tok.to_owned());
            ctx = (ctx.1, Some(next));
            if let Some(pos) = s
                .stop
                .iter()
                .filter(|x| !x.is_empty())
                .filter_map(|x| text.find(x.as_str()))
                .min()
            {
                text.truncate(pos);
                flush(&text, &mut emitted, &mut deltas, text.len());
                return Generation {
                    deltas,
                    text,
                    completion_tokens: n,
                    finish: Finish::Stop,
                };
            }
            // Hold back a tail that could still become a stop sequence.
            let mut safe = text.len().saturating_sub(max_stop.saturating_sub(1));
            while !text.is_char_boundary(safe) {
                safe -= 1;
            }
            let upto = safe.max(emitted);
            flush(&text, &mut emitted, &mut deltas, upto);
        }
        flush(&text, &mut emitted, &mut deltas, text.len());
        Generation {
            deltas,
            text,
            completion_tokens: n,
            finish: Finish::Length,
        }
    }

    fn sample(
        &self,
        ctx: (Option<u32>, Option<u32>),
        prompt: &[u32],
        temperature: f64,
        rng: &mut StdRng,
    ) -> u32 {
        let dist = match ctx {
            (Some(a), Some(b)) => self.tri.get(&(a, b)).or_else(|| self.bi.get(&b)),
            (None, Some(b)) => self.bi.get(&b),
            _ => None,
        }
        .map(Vec::as_slice)
        .unwrap_or(&self.uni);
        // Words the customer used weigh three times as much: the prompt steers the answer.
        let weight = |&(w, c): &(u32, u32)| f64::from(c) * if prompt.contains(&w) { 3.0 } else { 1.0 };
        if temperature <= 1e-3 {
            let mut best = dist.first().map(|d| d.0).unwrap_or(self.end);
            let mut best_w = f64::MIN;
            for d in dist {
                let w = weight(d);
                if w > best_w {
                    best_w = w;
                    best = d.0;
                }
            }
            return best;
        }
        let max = dist.iter().map(weight).fold(f64::MIN, f64::max);
        let ws: Vec<f64> = dist
            .iter()
            .map(|d| ((weight(d).ln() - max.ln()) / temperature).exp())
            .collect();
        let total: f64 = ws.iter().sum();
        let mut x = rng.r#gen::<f64>() * total;
        for (d, w) in dist.iter().zip(&ws) {
            if x < *w {
                return d.0;
            }
            x -= w;
        }
        dist.last().map(|d| d.0).unwrap_or(self.end)
    }

    /// The model as deterministic text: the same counts always give the same bytes.
    ///
    /// ```
    /// let m = zg_ngram::NgramModel::from_texts(["the quick brown fox", "the lazy dog"]);
    /// let bytes = m.to_bytes();
    /// assert_eq!(zg_ngram::NgramModel::from_bytes(&bytes, 1 << 20)?, m);
    /// # Ok::<(), zg_ngram::Error>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(64 * self.vocab.len());
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "vocab {}", self.vocab.len());
        for t in &self.vocab {
            let _ = writeln!(s, "{t}");
        }
        let _ = writeln!(s, "uni {}", self.uni.len());
        for (w, c) in &self.uni {
            let _ = writeln!(s, "{w} {c}");
        }
        let mut bi: Vec<(u32, u32, u32)> = self
            .bi
            .iter()
            .flat_map(|(a, v)| v.iter().map(move |(w, c)| (*a, *w, *c)))
            .collect();
        bi.sort_unstable();
        let _ = writeln!(s, "bi {}", bi.len());
        for (a, w, c) in bi {
            let _ = writeln!(s, "{a} {w} {c}");
        }
        let mut tri: Vec<(u32, u32, u32, u32)> = self
            .tri
            .iter()
            .flat_map(|((a, b), v)| v.iter().map(move |(w, c)| (*a, *b, *w, *c)))
            .collect();
        tri.sort_unstable();
        let _ = writeln!(s, "tri {}", tri.len());
        for (a, b, w, c) in tri {
            let _ = writeln!(s, "{a} {b} {w} {c}");
        }
        s.into_bytes()
    }

    /// Parses [`NgramModel::to_bytes`] output, refusing anything malformed, inconsistent or over
    /// `max_bytes` with [`Error::Format`] / [`Error::TooLarge`]. Safe on untrusted bytes.
    pub fn from_bytes(bytes: &[u8], max_bytes: usize) -> Result<Self> {
        if bytes.len() > max_bytes {
            return Err(Error::TooLarge {
                size: bytes.len() as u64,
                max: max_bytes as u64,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| Error::Format {
            line: 0,
            reason: format!("not UTF-8: {e}"),
        })?;
        let mut p = Parser {
            lines: text.lines(),
            line: 0,
        };
        if p.next()? != MAGIC {
            return Err(p.err(format!("expected the header {MAGIC:?}")));
        }
        let n = p.section("vocab")?;
        let mut vocab = Vec::with_capacity(n.min(1 << 20));
        let mut ids = HashMap::with_capacity(n.min(1 << 20));
        for i in 0..n {
            let t = p.next()?;
            if t.is_empty() || t.chars().any(char::is_whitespace) {
                return Err(p.err("a token is empty or contains whitespace".into()));
            }
            if (i == 0) != (t == END) {
                return Err(p.err(format!("{END} must be token 0 and only token 0")));
            }
            let id = u32::try_from(i).map_err(|_| p.err("vocabulary too large".into()))?;
            if ids.insert(t.to_owned(), id).is_some() {
                return Err(p.err(format!("token {t:?} appears twice")));
            }
            vocab.push(t.to_owned());
        }
        if vocab.is_empty() {
            return Err(p.err("the vocabulary must hold the end token".into()));
        }
        let v = vocab.len();
        let mut b = Builder {
            vocab,
            ids,
            ..Builder::default()
        };
        for _ in 0..p.section("uni")? {
            let [w, c] = p.numbers::<2>(v)?;
            if w == 0 || b.uni.insert(w, c).is_some() {
                return Err(p.err("unigram row repeated, or for the end token".into()));
            }
        }
        for _ in 0..p.section("bi")? {
            let [a, w, c] = p.numbers::<3>(v)?;
            if b.bi.entry(a).or_default().insert(w, c).is_some() {
                return Err(p.err("bigram row repeated".into()));
            }
        }
        for _ in 0..p.section("tri")? {
            let [a, bb, w, c] = p.numbers::<4>(v)?;
            if b.tri.entry((a, bb)).or_default().insert(w, c).is_some() {
                return Err(p.err("trigram row repeated".into()));
            }
        }
        if p.lines.next().is_some() {
            return Err(p.err("trailing data after the trigram section".into()));
        }
        Ok(b.finish())
    }
}

struct Parser<'a> {
    lines: std::str::Lines<'a>,
    line: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, reason: String) -> Error {
        Error::Format {
            line: self.line,
            reason,
        }
    }

    fn next(&mut self) -> Result<&'a str> {
        self.line += 1;
        self.lines
            .next()
            .ok_or_else(|| self.err("unexpected end of the model".into()))
    }

    fn section(&mut self, name: &str) -> Result<usize> {
        let l = self.next()?;
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.err(format!("expected `{name} <count>`")))
    }

    /// N numbers: all but the last are token ids below `vocab`; the last is a count > 0.
    fn numbers<const N: usize>(&mut self, vocab: usize) -> Result<[u32; N]> {
        let l = self.next()?;
        let mut out = [0u32; N];
        let mut it = l.split(' ');
        for (i, slot) in out.iter_mut().enumerate() {
            let x: u32 = it
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| self.err(format!("expected {N} numbers")))?;
            let ok = if i + 1 == N { x > 0 } else { (x as usize) < vocab };
            if !ok {
                return Err(self.err(format!("number {x} out of range")));
            }
            *slot = x;
        }
        if it.next().is_some() {
            return Err(self.err(format!("expected {N} numbers")));
        }
        Ok(out)
    }
}

fn flush(text: &str, emitted: &mut usize, deltas: &mut Vec<String>, upto: usize) {
    if upto > *emitted {
        deltas.push(text[*emitted..upto].to_string());
        *emitted = upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SHIPPED_CORPUS;

    fn model() -> NgramModel {
        NgramModel::train(SHIPPED_CORPUS)
    }

    #[test]
    fn same_seed_same_text_different_seed_differs() {
        let m = model();
        let s = |seed| Sampling {
            seed: Some(seed),
            max_tokens: 40,
            ..Sampling::default()
        };
        let a = m.generate("how does settlement work", &s(7));
        assert_eq!(a, m.generate("how does settlement work", &s(7)));
        let others: Vec<_> = (8..12)
            .map(|x| m.generate("how does settlement work", &s(x)).text)
            .collect();
        assert!(
            others.iter().any(|o| *o != a.text),
            "seeds 8..12 all equal {:?}",
            a.text
        );
        assert_eq!(a.deltas.concat(), a.text);
    }

    #[test]
    fn output_depends_on_prompt() {
        let m = model();
        let s = Sampling {
            temperature: 0.0,
            max_tokens: 12,
            ..Sampling::default()
        };
        let a = m.generate("the provider signs", &s).text;
        let b = m.generate("customers deposit", &s).text;
        assert_ne!(a, b);
    }

    #[test]
    fn max_tokens_is_exact_and_reports_length() {
        let m = model();
        let g = m.generate(
            "receipt",
            &Sampling {
                max_tokens: 5,
                seed: Some(1),
                temperature: 0.0,
                ..Sampling::default()
            },
        );
        if g.finish == Finish::Length {
            assert_eq!(g.completion_tokens, 5);
            assert_eq!(tokenize(&g.text).len(), 5);
        } else {
            assert!(g.completion_tokens <= 5);
        }
    }

    #[test]
    fn stop_sequence_truncates_and_is_held_back_while_streaming() {
        let m = model();
        let base = Sampling {
            max_tokens: 60,
            seed: Some(3),
            temperature: 0.0,
            ..Sampling::default()
        };
        let full = m.generate("the provider", &base);
        let words: Vec<&str> = full.text.split(' ').collect();
        assert!(words.len() > 6, "{:?}", full.text);
        let stop = format!("{} {}", words[3], words[4]);
        let g = m.generate(
            "the provider",
            &Sampling {
                stop: vec![stop.clone()],
                ..base
            },
        );
        assert_eq!(g.finish, Finish::Stop);
        assert!(!g.text.contains(&stop));
        assert!(full.text.starts_with(&g.text));
        assert_eq!(g.deltas.concat(), g.text);
        assert!(g.completion_tokens < full.completion_tokens);
    }

    #[test]
    fn serialisation_round_trips_and_is_deterministic() {
        let m = model();
        let a = m.to_bytes();
        let back = NgramModel::from_bytes(&a, 1 << 24).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), a);
        assert_eq!(NgramModel::train(SHIPPED_CORPUS).to_bytes(), a);
    }

    #[test]
    fn malformed_models_are_refused_with_the_line() {
        let good = NgramModel::from_texts(["a b c"]).to_bytes();
        let good = String::from_utf8(good).unwrap();
        for (bad, needle) in [
            (good.replace("zg-ngram 1", "zg-ngram 2"), "header"),
            (good.replace("vocab 4", "vocab 9"), "whitespace"),
            (good.replace("vocab 4", "vocab 3"), "expected `uni"),
            (format!("{good}extra\n"), "trailing"),
            (good.replace("uni 3", "uni x"), "uni <count>"),
            (good.replace("\n1 1\n", "\n1 0\n"), "out of range"),
        ] {
            let e = NgramModel::from_bytes(bad.as_bytes(), 1 << 20).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
        assert!(matches!(
            NgramModel::from_bytes(good.as_bytes(), 10),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn adapting_to_a_foreign_domain_lowers_held_out_loss() {
        let base = model();
        let train: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "the chef adds {} grams of flour and bakes the sourdough bread for {} minutes.",
                    100 + i,
                    30 + i % 7
                )
            })
            .collect();
        let held = ["the chef adds 150 grams of flour and bakes the sourdough bread for 33 minutes."];
        let before = base.loss(held);
        let delta = NgramModel::from_texts(train.iter().map(String::as_str));
        let after1 = base.merged(&delta, 1).loss(held);
        let after3 = base.merged(&delta, 3).loss(held);
        assert!(before.mean().is_finite() && before.tokens == 17, "{before:?}");
        assert!(after1.mean() < before.mean() * 0.5, "{before:?} {after1:?}");
        assert!(after3.mean() <= after1.mean(), "{after1:?} {after3:?}");
        // Merging is deterministic.
        assert_eq!(
            base.merged(&delta, 2).to_bytes(),
            base.merged(&delta, 2).to_bytes()
        );
    }
}
