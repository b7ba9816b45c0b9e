//! The built-in demo model (`--upstream builtin`): a word-level trigram model with backoff, trained at
//! start-up on a shipped corpus, served in-process through the same OpenAI-compatible interface as a
//! real upstream.
//!
//! It is small and honest, not a stub: its output depends on the prompt (generation starts from the
//! prompt's last known words and prefers words that occur in the prompt), it honours `max_tokens`,
//! `temperature`, `seed` and `stop`, and its `usage` counts the tokens of its own tokenizer exactly:
//! `prompt_tokens` = Σ over messages (1 role token + the tokens of its content); `completion_tokens` =
//! the tokens sampled (including the one that completed a stop sequence, as OpenAI counts them).

use std::collections::HashMap;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Model id of the chat/completions model. The name says what it is.
pub const DEMO_MODEL_ID: &str = "zg-demo-ngram";
/// Model id of the hashed bag-of-words embedding.
pub const DEMO_EMBEDDING_ID: &str = "zg-demo-hash-embed";
/// Dimensions of the demo embedding.
pub const EMBEDDING_DIMS: usize = 256;
/// `max_tokens` when a request does not set one.
pub const DEFAULT_MAX_TOKENS: u64 = 128;
/// Largest `max_tokens` the demo model accepts.
pub(crate) const MAX_MAX_TOKENS: u64 = 4096;

/// The corpus shipped with the binary (`docs/corpus/`).
pub const SHIPPED_CORPUS: &str = include_str!("../../../docs/corpus/zg-compute.md");

const END: &str = "</s>";

/// Splits text into the model's tokens: runs of letters/digits (with inner `'` or `-`), and every other
/// non-space character on its own. Lower-cased.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let joins = (c == '\'' || c == '-')
            && !word.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || c == '_' || joins {
            word.extend(c.to_lowercase());
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The text piece a token adds after `prev` (spacing and sentence capitalisation).
fn piece(prev: Option<&str>, tok: &str) -> String {
    let no_space_before = matches!(tok, "." | "," | ";" | ":" | "!" | "?" | ")" | "]" | "}" | "%");
    let no_space_after_prev = matches!(prev, None | Some("(" | "[" | "{" | "`" | "\"" | "/"));
    let capitalise = matches!(prev, None | Some("." | "!" | "?"));
    let mut s = String::new();
    if !no_space_before && !no_space_after_prev {
        s.push(' ');
    }
    let mut cs = tok.chars();
    if capitalise && let Some(f) = cs.next() {
        s.extend(f.to_uppercase());
        s.push_str(cs.as_str());
    } else {
        s.push_str(tok);
    }
    s
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its text, or a stop sequence was met.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

impl Finish {
    fn as_str(self) -> &'static str {
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

/// A trigram model with backoff to bigrams and unigrams.
#[derive(Debug, Clone)]
pub struct NgramModel {
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
    tri: HashMap<(u32, u32), Vec<(u32, u32)>>,
    bi: HashMap<u32, Vec<(u32, u32)>>,
    uni: Vec<(u32, u32)>,
    end: u32,
}

fn sorted(m: HashMap<u32, u32>) -> Vec<(u32, u32)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_unstable();
    v
}

impl NgramModel {
    /// Trains on `corpus`; each blank-line-separated paragraph ends with an end-of-text token.
    pub fn train(corpus: &str) -> Self {
        let mut vocab = vec![END.to_string()];
        let mut ids = HashMap::from([(END.to_string(), 0u32)]);
        let mut tri: HashMap<(u32, u32), HashMap<u32, u32>> = HashMap::new();
        let mut bi: HashMap<u32, HashMap<u32, u32>> = HashMap::new();
        let mut uni: HashMap<u32, u32> = HashMap::new();
        for para in corpus.split("\n\n") {
            let toks = tokenize(para);
            if toks.len() < 3 {
                continue;
            }
            let mut seq: Vec<u32> = Vec::with_capacity(toks.len() + 1);
            for t in toks {
                let next = vocab.len() as u32;
                let id = *ids.entry(t.clone()).or_insert_with(|| {
                    vocab.push(t);
                    next
                });
                seq.push(id);
            }
            seq.push(0);
            for (i, &w) in seq.iter().enumerate() {
                *uni.entry(w).or_default() += 1;
                if i >= 1 {
                    *bi.entry(seq[i - 1]).or_default().entry(w).or_default() += 1;
                }
                if i >= 2 {
                    *tri.entry((seq[i - 2], seq[i - 1]))
                        .or_default()
                        .entry(w)
                        .or_default() += 1;
                }
            }
        }
        uni.remove(&0);
        NgramModel {
            vocab,
            ids,
            tri: tri.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
            bi: bi.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
            uni: sorted(uni),
            end: 0,
        }
    }

    /// Number of distinct tokens learnt.
    pub fn vocab_len(&self) -> usize {
        self.vocab.len()
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
            let tok = &self.vocab[next as usize];
            text.push_str(&piece(prev.as_deref(), tok));
            prev = Some(tok.clone());
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
}

fn flush(text: &str, emitted: &mut usize, deltas: &mut Vec<String>, upto: usize) {
    if upto > *emitted {
        deltas.push(text[*emitted..upto].to_string());
        *emitted = upto;
    }
}

/// Tokens the demo model counts for a prompt made of these messages.
pub fn prompt_tokens<'a>(contents: impl IntoIterator<Item = &'a str>) -> u64 {
    contents.into_iter().map(|c| 1 + tokenize(c).len() as u64).sum()
}

/// The demo embedding: a signed feature-hashed bag of words, L2-normalised. Deterministic; similar
/// texts share words and so have a higher cosine. Not a semantic model.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; EMBEDDING_DIMS];
    for t in tokenize(text) {
        let h = Sha256::digest(t.as_bytes());
        let idx = u16::from_be_bytes([h[0], h[1]]) as usize % EMBEDDING_DIMS;
        v[idx] += if h[2] & 1 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// An OpenAI-style error from the demo model.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoError {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

impl DemoError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// `{"error":{"message","type","code"}}`.
    pub fn body(&self) -> Vec<u8> {
        json!({"error": {"message": self.message, "type": "invalid_request_error", "code": null}})
            .to_string()
            .into_bytes()
    }
}

/// What the demo model answers: a full JSON body, or the SSE events of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum DemoReply {
    /// `application/json`.
    Json(Vec<u8>),
    /// `text/event-stream`: each item is one complete `data: …\n\n` event.
    Events(Vec<Vec<u8>>),
}

fn sampling_of(req: &Value) -> Result<Sampling, DemoError> {
    let mut s = Sampling::default();
    let max = req.get("max_completion_tokens").or_else(|| req.get("max_tokens"));
    if let Some(m) = max.filter(|m| !m.is_null()) {
        let m = m
            .as_u64()
            .ok_or_else(|| DemoError::bad("max_tokens must be a positive integer"))?;
        if m == 0 || m > MAX_MAX_TOKENS {
            return Err(DemoError::bad(format!(
                "max_tokens must be in 1..={MAX_MAX_TOKENS}, got {m}"
            )));
        }
        s.max_tokens = m;
    }
    if let Some(t) = req.get("temperature").filter(|t| !t.is_null()) {
        let t = t
            .as_f64()
            .ok_or_else(|| DemoError::bad("temperature must be a number"))?;
        if !(0.0..=2.0).contains(&t) {
            return Err(DemoError::bad(format!("temperature must be in 0..=2, got {t}")));
        }
        s.temperature = t;
    }
    if let Some(seed) = req.get("seed").filter(|t| !t.is_null()) {
        s.seed = Some(
            seed.as_i64()
                .map(|x| x as u64)
                .ok_or_else(|| DemoError::bad("seed must be an integer"))?,
        );
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(x)) => s.stop = vec![x.clone()],
        Some(Value::Array(a)) if a.len() <= 4 => {
            for x in a {
                s.stop.push(
                    x.as_str()
                        .ok_or_else(|| DemoError::bad("stop must be strings"))?
                        .to_string(),
                );
            }
        }
        Some(_) => return Err(DemoError::bad("stop must be a string or up to 4 strings")),
    }
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(DemoError::bad("the demo model supports only n = 1"));
    }
    Ok(s)
}

fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn chunk_id(kind: &str, req: &[u8]) -> String {
    let h = Sha256::digest(req);
    let r: u64 = rand::random();
    format!("{kind}-{}{:016x}", hex::encode(&h[..8]), r)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sse(v: &Value) -> Vec<u8> {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "data: {v}\n\n");
    s.into_bytes()
}

impl NgramModel {
    /// `POST /chat/completions`.
    pub fn chat(&self, body: &[u8]) -> Result<DemoReply, DemoError> {
        let req: Value =
            serde_json::from_slice(body).map_err(|e| DemoError::bad(format!("body is not JSON: {e}")))?;
        let msgs = req
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| DemoError::bad("messages must be a non-empty array"))?;
        let contents: Vec<String> = msgs
            .iter()
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
            .collect();
        let prompt_tokens = prompt_tokens(contents.iter().map(String::as_str));
        let last_user = msgs
            .iter()
            .zip(&contents)
            .rev()
            .find(|(m, _)| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| contents.join(" "));
        let s = sampling_of(&req)?;
        let g = self.generate(&last_user, &s);
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": g.completion_tokens,
            "total_tokens": prompt_tokens + g.completion_tokens,
        });
        let (id, created) = (chunk_id("chatcmpl", body), now_secs());
        if req.get("stream").and_then(Value::as_bool) != Some(true) {
            let v = json!({
                "id": id, "object": "chat.completion", "created": created, "model": DEMO_MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                             "logprobs": null, "finish_reason": g.finish.as_str()}],
                "usage": usage,
            });
            return Ok(DemoReply::Json(v.to_string().into_bytes()));
        }
        let chunk = |delta: Value, finish: Value| {
            sse(
                &json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": DEMO_MODEL_ID,
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
            )
        };
        let mut ev = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        ev.extend(g.deltas.iter().map(|d| chunk(json!({"content": d}), Value::Null)));
        ev.push(chunk(json!({}), json!(g.finish.as_str())));
        if include_usage(&req) {
            ev.push(sse(
                &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                                "model": DEMO_MODEL_ID, "choices": [], "usage": usage}),
            ));
        }
        ev.push(b"data: [DONE]\n\n".to_vec());
        Ok(DemoReply::Events(ev))
    }

    /// `POST /completions`.
    pub fn completion(&self, body: &[u8]) -> Result<DemoReply, DemoError> {
        let req: Value =
            serde_json::from_slice(body).map_err(|e| DemoError::bad(format!("body is not JSON: {e}")))?;
        let prompt = match req.get("prompt") {
            Some(Value::String(p)) => p.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_string()
            }
            _ => return Err(DemoError::bad("prompt must be a string")),
        };
        let prompt_tokens = tokenize(&prompt).len() as u64;
        let s = sampling_of(&req)?;
        let g = self.generate(&prompt, &s);
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": g.completion_tokens,
                           "total_tokens": prompt_tokens + g.completion_tokens});
        let (id, created) = (chunk_id("cmpl", body), now_secs());
        if req.get("stream").and_then(Value::as_bool) != Some(true) {
            let v = json!({"id": id, "object": "text_completion", "created": created, "model": DEMO_MODEL_ID,
                           "choices": [{"index": 0, "text": g.text, "logprobs": null,
                                        "finish_reason": g.finish.as_str()}],
                           "usage": usage});
            return Ok(DemoReply::Json(v.to_string().into_bytes()));
        }
        let chunk = |text: &str, finish: Value| {
            sse(
                &json!({"id": id, "object": "text_completion", "created": created, "model": DEMO_MODEL_ID,
                        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]}),
            )
        };
        let mut ev: Vec<Vec<u8>> = g.deltas.iter().map(|d| chunk(d, Value::Null)).collect();
        ev.push(chunk("", json!(g.finish.as_str())));
        if include_usage(&req) {
            ev.push(sse(
                &json!({"id": id, "object": "text_completion", "created": created,
                                "model": DEMO_MODEL_ID, "choices": [], "usage": usage}),
            ));
        }
        ev.push(b"data: [DONE]\n\n".to_vec());
        Ok(DemoReply::Events(ev))
    }

    /// `POST /embeddings`.
    pub fn embeddings(&self, body: &[u8]) -> Result<DemoReply, DemoError> {
        let req: Value =
            serde_json::from_slice(body).map_err(|e| DemoError::bad(format!("body is not JSON: {e}")))?;
        let inputs: Vec<String> = match req.get("input") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
                a.iter().filter_map(Value::as_str).map(str::to_string).collect()
            }
            _ => {
                return Err(DemoError::bad(
                    "input must be a string or a non-empty array of strings",
                ));
            }
        };
        let tokens: u64 = inputs.iter().map(|i| tokenize(i).len() as u64).sum();
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t)}))
            .collect();
        let v = json!({"object": "list", "data": data, "model": DEMO_EMBEDDING_ID,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
        Ok(DemoReply::Json(v.to_string().into_bytes()))
    }

    /// `GET /models`.
    pub fn models(&self) -> Vec<u8> {
        json!({"object": "list", "data": [
            {"id": DEMO_MODEL_ID, "object": "model", "created": 0, "owned_by": "zg-compute (demo n-gram model)"},
            {"id": DEMO_EMBEDDING_ID, "object": "model", "created": 0, "owned_by": "zg-compute (demo hashed embedding)"},
        ]})
        .to_string()
        .into_bytes()
    }
}

fn include_usage(req: &Value) -> bool {
    req.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> NgramModel {
        NgramModel::train(SHIPPED_CORPUS)
    }

    #[test]
    fn tokenizer_splits_words_and_punctuation() {
        assert_eq!(
            tokenize("Hello, world! It's a TEE-signed receipt."),
            [
                "hello",
                ",",
                "world",
                "!",
                "it's",
                "a",
                "tee-signed",
                "receipt",
                "."
            ]
        );
        assert_eq!(prompt_tokens(["Hi there", ""]), 4);
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
        // Pick a stop that spans the middle of the text.
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
    fn chat_usage_is_exact() {
        let m = model();
        let body = br#"{"model":"zg-demo-ngram","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is a receipt?"}],"max_tokens":9,"temperature":0}"#;
        let DemoReply::Json(out) = m.chat(body).unwrap() else {
            panic!("json")
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        // system: 1 + 3 ("be", "brief", "."), user: 1 + 5 ("what", "is", "a", "receipt", "?")
        assert_eq!(v["usage"]["prompt_tokens"], 10);
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(completion <= 9);
        if v["choices"][0]["finish_reason"] == "length" {
            assert_eq!(tokenize(text).len() as u64, completion);
        }
        assert_eq!(v["usage"]["total_tokens"].as_u64().unwrap(), 10 + completion);
    }

    #[test]
    fn stream_ends_with_usage_then_done_and_matches_plain() {
        let m = model();
        let plain =
            br#"{"messages":[{"role":"user","content":"verify the quote"}],"seed":5,"max_tokens":20}"#;
        let stream = br#"{"messages":[{"role":"user","content":"verify the quote"}],"seed":5,"max_tokens":20,"stream":true,"stream_options":{"include_usage":true}}"#;
        let DemoReply::Json(p) = m.chat(plain).unwrap() else {
            panic!()
        };
        let DemoReply::Events(ev) = m.chat(stream).unwrap() else {
            panic!()
        };
        let p: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(ev.last().unwrap(), b"data: [DONE]\n\n");
        let usage_ev: Value = serde_json::from_slice(&ev[ev.len() - 2][6..]).unwrap();
        assert_eq!(usage_ev["usage"], p["usage"]);
        let text: String = ev[..ev.len() - 2]
            .iter()
            .map(|e| serde_json::from_slice::<Value>(&e[6..]).unwrap())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, p["choices"][0]["message"]["content"].as_str().unwrap());
        // Without include_usage there is no usage chunk.
        let no_usage = br#"{"messages":[{"role":"user","content":"x"}],"stream":true,"seed":1}"#;
        let DemoReply::Events(ev) = m.chat(no_usage).unwrap() else {
            panic!()
        };
        assert!(
            !ev.iter()
                .any(|e| String::from_utf8_lossy(e).contains("\"usage\""))
        );
    }

    #[test]
    fn bad_requests_are_400_with_a_reason() {
        let m = model();
        for (body, needle) in [
            (&br#"{"messages":[]}"#[..], "messages"),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"temperature":9}"#,
                "temperature",
            ),
            (br#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n = 1"),
            (b"not json", "JSON"),
        ] {
            let e = m.chat(body).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{} lacks {needle}", e.message);
        }
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let m = model();
        let DemoReply::Json(out) = m
            .embeddings(br#"{"input":["a provider signs receipts","a provider signs receipts","gpu"]}"#)
            .unwrap()
        else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["prompt_tokens"], 9);
        let e0: Vec<f64> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
        let e1: Vec<f64> = serde_json::from_value(v["data"][1]["embedding"].clone()).unwrap();
        assert_eq!(e0.len(), EMBEDDING_DIMS);
        assert_eq!(e0, e1);
        let norm: f64 = e0.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
