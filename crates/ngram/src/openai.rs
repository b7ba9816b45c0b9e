//! The OpenAI-compatible wire of the demo model: `chat/completions`, `completions`, `embeddings` and
//! `models` bodies in and out, SSE events for streams, exact `usage` from the model's own tokenizer:
//! `prompt_tokens` = Σ over messages (1 role token + the tokens of its content); `completion_tokens` =
//! the tokens sampled (including the one that completed a stop sequence, as OpenAI counts them).

use std::fmt::Write as _;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::model::{NgramModel, Sampling};
use crate::tokenize::{count_tokens, prompt_tokens, tokenize};

/// Model id of the chat/completions model. The name says what it is.
pub const DEMO_MODEL_ID: &str = "zg-demo-ngram";
/// Model id of the hashed bag-of-words embedding.
pub const DEMO_EMBEDDING_ID: &str = "zg-demo-hash-embed";
/// Dimensions of the demo embedding.
pub const EMBEDDING_DIMS: usize = 256;
/// Largest `max_tokens` the demo model accepts.
pub const MAX_MAX_TOKENS: u64 = 4096;

/// The corpus shipped with the binary (`docs/corpus/`).
pub const SHIPPED_CORPUS: &str = include_str!("../../../docs/corpus/zg-compute.md");

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
        let prompt_tokens = count_tokens(&prompt);
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
        let tokens: u64 = inputs.iter().map(|i| count_tokens(i)).sum();
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
    use crate::tokenize::tokenize;

    fn model() -> NgramModel {
        NgramModel::train(SHIPPED_CORPUS)
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
