//! The one fee rule the provider and the client both apply.
//!
//! - **Worst case** of a request ([`worst_case_fee`]): every byte of the body bounds one prompt token (every
//!   tokenizer we know spends at least one byte per token, and JSON adds more bytes than a chat template adds
//!   tokens), and `max_tokens` × choices × prompts bounds the completion. `max_tokens` is the larger of
//!   `max_tokens` and `max_completion_tokens` in any form an OpenAI-compatible server reads (a JSON integer,
//!   an integral float such as `4000.0` or `4e3`, or a decimal string such as `"4000"`), else the provider's
//!   default, which the provider then writes into the forwarded body so the upstream honours it. Choices are
//!   `max(n, best_of, 1)`; prompts are the entries of a completions `prompt` array of strings or token arrays.
//! - **Billed fee** ([`billed_fee`]): usage × prices as the upstream reported it, never above the request's cap
//!   (the customer's signed fee cap, or the session bound the provider reserved), and zero without usage.
//!
//! A provider refuses a native request whose signed cap is below the worst case (a smaller cap would be free
//! inference: nothing above the cap can be billed), so an honest request is always billed exactly what was
//! metered; a client signs the worst case as its cap and accepts a receipt only if its fee is the billed fee.
//!
//! The body is parsed once, top level only: values stay borrowed slices of the input ([`serde_json::value::RawValue`]),
//! so a 16 MiB body costs no tree of allocations. Duplicate top-level keys are refused (servers disagree on which
//! one wins), and so is a `stream` that is not a JSON boolean (vLLM reads `1` and `"true"` as streaming, which
//! would skip the usage report fees come from).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use alloy_primitives::U256;
use serde::Deserializer as _;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::meter::{Prices, Usage};

/// A billed OpenAI route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /chat/completions`.
    Chat,
    /// `POST /completions`.
    Completions,
    /// `POST /embeddings` (no completion tokens).
    Embeddings,
}

impl Endpoint {
    /// The `service` a native request for this route is signed for.
    pub fn service(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// What bounds a request's fee, read from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBound {
    /// Bytes of the body: the prompt-token bound.
    pub prompt_tokens: u64,
    /// Completion tokens per choice: the larger of `max_tokens` / `max_completion_tokens`, else the default.
    pub max_tokens: u64,
    /// Whether the body set a positive `max_tokens` / `max_completion_tokens` (else the default applies).
    pub max_tokens_set: bool,
    /// `max(n, best_of, 1)` × number of prompts (completions with a `prompt` array).
    pub choices: u64,
    /// Whether the request streams (`"stream": true`).
    pub stream: bool,
}

impl RequestBound {
    /// The most usage the request can report: `prompt_tokens` and `max_tokens × choices`.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            // Checked when the bound was read.
            completion_tokens: self.max_tokens.saturating_mul(self.choices),
        }
    }

    /// The worst-case fee at `prices`.
    pub fn fee(&self, prices: &Prices) -> Result<U256> {
        prices.fee(&self.usage())
    }
}

/// The body to forward upstream, with its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBody {
    /// The request's bound.
    pub bound: RequestBound,
    /// The body rewritten for the upstream (`stream_options.include_usage` forced on streams, the default
    /// `max_tokens` written when the request set none); `None` when the body goes as received.
    pub rewritten: Option<Vec<u8>>,
    /// The top-level `model` when it is a string (what the upstream is asked for; read by the same parse, so a
    /// caller deciding on it sees what is forwarded).
    pub model: Option<String>,
}

/// The worst-case bound of a request ([`RequestBound`]); `default_max_tokens` applies when the body sets no
/// positive `max_tokens` / `max_completion_tokens`.
pub fn request_bound(endpoint: Endpoint, body: &[u8], default_max_tokens: u64) -> Result<RequestBound> {
    Ok(upstream_body(endpoint, body, default_max_tokens)?.bound)
}

/// The worst-case fee of a request at `prices`: what a native request's signed fee cap must cover, and what a
/// session request reserves and can at most be billed.
pub fn worst_case_fee(
    prices: &Prices,
    endpoint: Endpoint,
    body: &[u8],
    default_max_tokens: u64,
) -> Result<U256> {
    request_bound(endpoint, body, default_max_tokens)?.fee(prices)
}

/// The fee billed for a served request: `usage × prices`, at most `cap`, and zero without usage (a fee is
/// never estimated). The provider puts this in the receipt; the client accepts nothing else.
pub fn billed_fee(prices: &Prices, usage: Option<Usage>, cap: U256) -> Result<U256> {
    match usage {
        Some(u) => Ok(prices.fee(&u)?.min(cap)),
        None => Ok(U256::ZERO),
    }
}

/// Reads the body once: its bound, and the body to forward (see [`UpstreamBody::rewritten`]).
pub fn upstream_body(endpoint: Endpoint, body: &[u8], default_max_tokens: u64) -> Result<UpstreamBody> {
    let text = std::str::from_utf8(body).map_err(|e| Error::RequestJson(format!("not UTF-8: {e}")))?;
    let top: TopLevel<'_> = serde_json::from_str(text).map_err(|e| Error::RequestJson(e.to_string()))?;
    let get = |k: &str| top.fields.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    let stream = match get("stream") {
        None => false,
        Some(raw) => serde_json::from_str::<Option<bool>>(raw.get())
            .map_err(|_| Error::RequestField {
                field: "stream",
                reason: format!("must be true, false or null, got {}", excerpt(raw)),
            })?
            .unwrap_or(false),
    };
    let generates = endpoint != Endpoint::Embeddings;
    let limit = [
        count(get("max_tokens"), "max_tokens")?,
        count(get("max_completion_tokens"), "max_completion_tokens")?,
    ]
    .into_iter()
    .flatten()
    .max()
    .filter(|m| *m > 0);
    let n = count(get("n"), "n")?.unwrap_or(1);
    let best_of = count(get("best_of"), "best_of")?.unwrap_or(1);
    let prompts = match (endpoint, get("prompt")) {
        (Endpoint::Completions, Some(p)) => prompt_count(p)?,
        _ => 1,
    };
    let choices = n
        .max(best_of)
        .max(1)
        .checked_mul(prompts)
        .ok_or_else(|| Error::RequestField {
            field: "n",
            reason: "× prompts overflows".into(),
        })?;
    let max_tokens = if generates {
        limit.unwrap_or(default_max_tokens)
    } else {
        0
    };
    if max_tokens.checked_mul(choices).is_none() {
        return Err(Error::RequestField {
            field: "max_tokens",
            reason: format!("{max_tokens} × {choices} choices overflows"),
        });
    }
    let bound = RequestBound {
        prompt_tokens: body.len() as u64,
        max_tokens,
        max_tokens_set: limit.is_some(),
        choices,
        stream,
    };
    let force_usage = generates && stream && !include_usage_is_on(get("stream_options"));
    let write_default = generates && limit.is_none();
    let rewritten = if force_usage || write_default {
        Some(rewrite(
            &top,
            force_usage,
            write_default.then_some(default_max_tokens),
        )?)
    } else {
        None
    };
    let model = get("model").and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    Ok(UpstreamBody {
        bound,
        rewritten,
        model,
    })
}

/// A short, printable start of a raw JSON value for error messages.
fn excerpt(raw: &RawValue) -> String {
    let s = raw.get();
    match s.char_indices().nth(32) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// A count (`max_tokens`, `n`, `best_of`) in any form an OpenAI-compatible server accepts: a non-negative JSON
/// integer, an integral float, or a string of either; `null` is absent.
fn count(raw: Option<&RawValue>, field: &'static str) -> Result<Option<u64>> {
    let Some(raw) = raw else { return Ok(None) };
    let bad = || Error::RequestField {
        field,
        reason: format!("must be a non-negative integer, got {}", excerpt(raw)),
    };
    let v: serde_json::Value = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    let text = match &v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return Err(bad()),
    };
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Some(n));
    }
    match text.parse::<f64>() {
        // Integral and within u64 (checked here), so the cast is exact.
        Ok(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0 => {
            Ok(Some(f as u64))
        }
        _ => Err(bad()),
    }
}

/// How many prompts a completions `prompt` holds: an array of strings or of token arrays is one prompt per
/// entry; a string or one array of token ids is one.
fn prompt_count(raw: &RawValue) -> Result<u64> {
    struct Shape;
    impl<'de> Visitor<'de> for Shape {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, an array of strings, an array of token ids or an array of token arrays")
        }
        fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<u64, E> {
            Ok(1)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<u64, A::Error> {
            let Some(first) = seq.next_element::<Elem>()? else {
                return Ok(1);
            };
            let mut n: u64 = 1;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n = n.saturating_add(1);
            }
            Ok(if first.0 { 1 } else { n })
        }
    }
    /// An array entry: `true` when it is a number (a token id).
    struct Elem(bool);
    impl<'de> serde::Deserialize<'de> for Elem {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Elem;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a prompt entry")
                }
                fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Elem, E> {
                    Ok(Elem(true))
                }
                fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Elem, E> {
                    Ok(Elem(true))
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Elem, E> {
                    Ok(Elem(true))
                }
                fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Elem, E> {
                    Ok(Elem(false))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Elem, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Elem(false))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Elem, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Elem(false))
                }
                fn visit_unit<E: de::Error>(self) -> std::result::Result<Elem, E> {
                    Ok(Elem(false))
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Elem, E> {
                    Ok(Elem(false))
                }
            }
            d.deserialize_any(V)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    (&mut de).deserialize_any(Shape).map_err(|e| Error::RequestField {
        field: "prompt",
        reason: e.to_string(),
    })
}

fn include_usage_is_on(raw: Option<&RawValue>) -> bool {
    #[derive(serde::Deserialize)]
    struct Opts {
        #[serde(default)]
        include_usage: Option<serde_json::Value>,
    }
    raw.and_then(|r| serde_json::from_str::<Opts>(r.get()).ok())
        .and_then(|o| o.include_usage)
        .is_some_and(|v| v == serde_json::Value::Bool(true))
}

/// Writes the body back with `stream_options.include_usage = true` and/or `max_tokens` set.
fn rewrite(top: &TopLevel<'_>, force_usage: bool, max_tokens: Option<u64>) -> Result<Vec<u8>> {
    let json = |e: serde_json::Error| Error::RequestJson(e.to_string());
    let mut out = Vec::with_capacity(top.len.saturating_add(64));
    out.push(b'{');
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, key: &str, value: &str| -> Result<()> {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key).map_err(json)?;
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        Ok(())
    };
    let (mut wrote_options, mut wrote_max) = (false, false);
    for (key, raw) in &top.fields {
        match key.as_ref() {
            "stream_options" if force_usage => {
                let mut opts = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
                    .unwrap_or_default();
                opts.insert("include_usage".into(), serde_json::Value::Bool(true));
                put(&mut out, key, &serde_json::to_string(&opts).map_err(json)?)?;
                wrote_options = true;
            }
            "max_tokens" if max_tokens.is_some() => {
                put(&mut out, key, &max_tokens.unwrap_or_default().to_string())?;
                wrote_max = true;
            }
            _ => put(&mut out, key, raw.get())?,
        }
    }
    if force_usage && !wrote_options {
        put(&mut out, "stream_options", r#"{"include_usage":true}"#)?;
    }
    if let Some(m) = max_tokens
        && !wrote_max
    {
        put(&mut out, "max_tokens", &m.to_string())?;
    }
    out.push(b'}');
    Ok(out)
}

/// The top-level members of a JSON object, in order, values as borrowed raw slices; duplicate keys refused.
struct TopLevel<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    len: usize,
}

impl<'de> serde::Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Key<'a>(Cow<'a, str>);
        impl<'de> serde::Deserialize<'de> for Key<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_borrowed_str<E: de::Error>(
                        self,
                        s: &'de str,
                    ) -> std::result::Result<Key<'de>, E> {
                        Ok(Key(Cow::Borrowed(s)))
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Key<'de>, E> {
                        Ok(Key(Cow::Owned(s.to_owned())))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<TopLevel<'de>, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
                let mut len = 2usize;
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate key `{k}` (servers disagree on which one wins)"
                        )));
                    }
                    let v: &'de RawValue = map.next_value()?;
                    len = len
                        .saturating_add(k.len())
                        .saturating_add(v.get().len())
                        .saturating_add(4);
                    fields.push((k, v));
                }
                Ok(TopLevel { fields, len })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn value(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn max_tokens_in_every_form_and_the_default() {
        for (body, want) in [
            (r#"{"max_tokens":4000}"#, 4000),
            (r#"{"max_tokens":4000.0}"#, 4000),
            (r#"{"max_tokens":4e3}"#, 4000),
            (r#"{"max_tokens":"4000"}"#, 4000),
            (r#"{"max_tokens":" 4000 "}"#, 4000),
            (r#"{"max_tokens":"4e3"}"#, 4000),
            (r#"{"max_completion_tokens":50,"max_tokens":4000}"#, 4000),
            (r#"{"max_completion_tokens":5000,"max_tokens":4000}"#, 5000),
            (r#"{"max_tokens":null}"#, 1024),
            (r#"{"max_tokens":0}"#, 1024),
            (r#"{}"#, 1024),
        ] {
            let b = request_bound(Endpoint::Chat, body.as_bytes(), 1024).unwrap();
            assert_eq!(b.max_tokens, want, "{body}");
            assert_eq!(b.prompt_tokens, body.len() as u64);
        }
        for body in [
            r#"{"max_tokens":"lots"}"#,
            r#"{"max_tokens":10.5}"#,
            r#"{"max_tokens":-1}"#,
            r#"{"max_tokens":true}"#,
            r#"{"max_tokens":[1]}"#,
            r#"{"max_tokens":1e30}"#,
        ] {
            assert!(
                matches!(
                    request_bound(Endpoint::Chat, body.as_bytes(), 1024),
                    Err(Error::RequestField {
                        field: "max_tokens",
                        ..
                    })
                ),
                "{body}"
            );
        }
        // Embeddings generate nothing.
        let b = request_bound(Endpoint::Embeddings, br#"{"input":"x","max_tokens":9}"#, 1024).unwrap();
        assert_eq!(b.usage().completion_tokens, 0);
    }

    #[test]
    fn choices_multiply_the_completion_bound() {
        let c = |body: &str, e| {
            request_bound(e, body.as_bytes(), 10)
                .unwrap()
                .usage()
                .completion_tokens
        };
        assert_eq!(c(r#"{"max_tokens":100,"n":3}"#, Endpoint::Chat), 300);
        assert_eq!(
            c(r#"{"max_tokens":100,"n":"2","best_of":5}"#, Endpoint::Completions),
            500
        );
        assert_eq!(c(r#"{"max_tokens":100,"n":0}"#, Endpoint::Chat), 100);
        assert_eq!(
            c(
                r#"{"max_tokens":100,"prompt":["a","b","c"],"n":2}"#,
                Endpoint::Completions
            ),
            600
        );
        assert_eq!(
            c(r#"{"max_tokens":100,"prompt":[1,2,3]}"#, Endpoint::Completions),
            100
        );
        assert_eq!(
            c(
                r#"{"max_tokens":100,"prompt":[[1,2],[3]]}"#,
                Endpoint::Completions
            ),
            200
        );
        assert_eq!(
            c(r#"{"max_tokens":100,"prompt":"abc"}"#, Endpoint::Completions),
            100
        );
        // A chat body's `prompt` is not the completions API's.
        assert_eq!(c(r#"{"max_tokens":100,"prompt":["a","b"]}"#, Endpoint::Chat), 100);
        assert!(request_bound(Endpoint::Chat, br#"{"max_tokens":18446744073709551615,"n":2}"#, 1).is_err());
    }

    #[test]
    fn stream_must_be_a_boolean_and_streams_report_usage() {
        for flag in ["1", "\"true\"", "\"yes\"", "0", "{}"] {
            let body = format!(r#"{{"stream":{flag}}}"#);
            assert!(
                matches!(
                    upstream_body(Endpoint::Chat, body.as_bytes(), 8),
                    Err(Error::RequestField { field: "stream", .. })
                ),
                "{flag}"
            );
        }
        let u = upstream_body(
            Endpoint::Chat,
            br#"{"model":"m","stream":true,"max_tokens":5}"#,
            8,
        )
        .unwrap();
        assert!(u.bound.stream);
        let v = value(&u.rewritten.unwrap());
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(
            (v["model"].as_str(), v["max_tokens"].as_u64()),
            (Some("m"), Some(5))
        );
        let u = upstream_body(
            Endpoint::Chat,
            br#"{"stream":true,"stream_options":{"include_usage":false,"x":1},"max_tokens":5}"#,
            8,
        )
        .unwrap();
        assert_eq!(
            value(&u.rewritten.unwrap())["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
        // Nothing to change: forwarded as received.
        let body = br#"{"stream":true,"stream_options":{"include_usage":true},"max_tokens":5}"#;
        assert_eq!(upstream_body(Endpoint::Chat, body, 8).unwrap().rewritten, None);
        let body = br#"{"stream":false,"max_tokens":5}"#;
        assert_eq!(upstream_body(Endpoint::Chat, body, 8).unwrap().rewritten, None);
        let body = br#"{"stream":null,"max_tokens":5}"#;
        assert!(!upstream_body(Endpoint::Chat, body, 8).unwrap().bound.stream);
    }

    #[test]
    fn the_default_limit_is_written_for_the_upstream() {
        let u = upstream_body(Endpoint::Chat, br#"{"model":"m","messages":[]}"#, 77).unwrap();
        let v = value(&u.rewritten.unwrap());
        assert_eq!(v["max_tokens"], 77);
        assert_eq!(v["messages"], serde_json::json!([]));
        // max_completion_tokens: 0 means "the server's default" to vLLM: max_tokens is written beside it.
        let u = upstream_body(Endpoint::Chat, br#"{"max_completion_tokens":0}"#, 77).unwrap();
        let v = value(&u.rewritten.unwrap());
        assert_eq!(
            (v["max_tokens"].as_u64(), v["max_completion_tokens"].as_u64()),
            (Some(77), Some(0))
        );
        let u = upstream_body(Endpoint::Chat, br#"{"max_tokens":0}"#, 77).unwrap();
        assert_eq!(u.rewritten.unwrap(), br#"{"max_tokens":77}"#);
        assert_eq!(
            upstream_body(Endpoint::Embeddings, br#"{"input":"x"}"#, 77)
                .unwrap()
                .rewritten,
            None
        );
    }

    #[test]
    fn malformed_bodies_are_refused_by_name() {
        assert!(matches!(
            upstream_body(Endpoint::Chat, b"[1]", 8),
            Err(Error::RequestJson(_))
        ));
        assert!(matches!(
            upstream_body(Endpoint::Chat, b"{", 8),
            Err(Error::RequestJson(_))
        ));
        assert!(matches!(
            upstream_body(Endpoint::Chat, b"\xff", 8),
            Err(Error::RequestJson(_))
        ));
        let dup = br#"{"stream":false,"stream":true}"#;
        match upstream_body(Endpoint::Chat, dup, 8) {
            Err(Error::RequestJson(m)) => assert!(m.contains("duplicate key `stream`"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Escaped keys are compared decoded.
        let dup = br#"{"stream":false,"str\u0065am":true}"#;
        assert!(upstream_body(Endpoint::Chat, dup, 8).is_err());
    }

    #[test]
    fn billed_fee_is_metered_and_never_above_the_cap() {
        let p = Prices {
            input: U256::from(1),
            output: U256::from(2),
        };
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 100,
        };
        assert_eq!(
            billed_fee(&p, Some(u), U256::from(1000)).unwrap(),
            U256::from(210)
        );
        assert_eq!(billed_fee(&p, Some(u), U256::from(150)).unwrap(), U256::from(150));
        assert_eq!(billed_fee(&p, None, U256::from(150)).unwrap(), U256::ZERO);
        let body = br#"{"max_tokens":100,"n":2}"#;
        assert_eq!(
            worst_case_fee(&p, Endpoint::Chat, body, 8).unwrap(),
            U256::from(body.len() as u64 + 400)
        );
    }
}
