//! Training parameters: the config file the customer sends (0G's CLI sends it verbatim, JSON, and checks
//! nothing else), parsed against the broker's schema with bounds. Unknown keys are refused with the nearest
//! known name, so a typo never silently trains with a default.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Largest config accepted (bytes).
pub const MAX_PARAMS_BYTES: usize = 16 * 1024;

/// The parsed parameters, defaults filled in. `extra` keeps the accepted keys this struct does not model
/// (LoRA shape, scheduler, …) for executors that understand them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingParams {
    /// Passes over the dataset; multiplies the fee.
    pub num_train_epochs: u32,
    /// Learning rate (the built-in n-gram family has none and says so in the log).
    pub learning_rate: f64,
    /// Batch size per device.
    pub per_device_train_batch_size: u32,
    /// Optional cap on optimizer steps (`None` = run every epoch).
    pub max_steps: Option<u64>,
    /// Seed of every random choice (held-out split, sampling, initialisation).
    pub seed: u64,
    /// Fraction of records held out to measure loss, in (0, 0.5].
    pub validation_split: f64,
    /// Other accepted keys, validated, passed through to the executor.
    pub extra: Map<String, Value>,
}

impl Default for TrainingParams {
    fn default() -> Self {
        Self {
            num_train_epochs: 1,
            learning_rate: 2e-4,
            per_device_train_batch_size: 1,
            max_steps: None,
            seed: 42,
            validation_split: 0.1,
            extra: Map::new(),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Integer in [min, max].
    Int(i64, i64),
    /// Finite number in [min, max] (`open_min`: strictly above min).
    Num(f64, f64, bool),
    /// One of these strings.
    Choice(&'static [&'static str]),
    Bool,
    /// A string or a list of strings, each a short identifier (`target_modules`).
    Names,
}

/// Every accepted key and its bounds. The modelled ones are re-read below; the rest go to `extra`.
const SCHEMA: &[(&str, Kind)] = &[
    ("num_train_epochs", Kind::Int(1, 1000)),
    ("learning_rate", Kind::Num(0.0, 1.0, true)),
    ("per_device_train_batch_size", Kind::Int(1, 1024)),
    ("max_steps", Kind::Int(1, 10_000_000)),
    ("seed", Kind::Int(0, i64::MAX)),
    ("validation_split", Kind::Num(0.0, 0.5, true)),
    ("gradient_accumulation_steps", Kind::Int(1, 1024)),
    ("warmup_steps", Kind::Int(0, 1_000_000)),
    ("warmup_ratio", Kind::Num(0.0, 1.0, false)),
    ("weight_decay", Kind::Num(0.0, 1.0, false)),
    ("lora_r", Kind::Int(1, 1024)),
    ("lora_rank", Kind::Int(1, 1024)),
    ("lora_alpha", Kind::Int(1, 4096)),
    ("lora_dropout", Kind::Num(0.0, 1.0, false)),
    ("max_seq_length", Kind::Int(8, 131_072)),
    ("max_length", Kind::Int(8, 131_072)),
    ("neftune_noise_alpha", Kind::Num(0.0, 100.0, false)),
    ("logging_steps", Kind::Int(1, 1_000_000)),
    ("eval_steps", Kind::Int(1, 1_000_000)),
    ("save_steps", Kind::Int(1, 1_000_000)),
    ("target_modules", Kind::Names),
    ("gradient_checkpointing", Kind::Bool),
    ("fp16", Kind::Bool),
    ("bf16", Kind::Bool),
    (
        "lr_scheduler_type",
        Kind::Choice(&[
            "linear",
            "cosine",
            "constant",
            "constant_with_warmup",
            "polynomial",
        ]),
    ),
];

fn bad(field: &str, reason: impl Into<String>) -> Error {
    Error::TrainingParams {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check(field: &str, kind: Kind, v: &Value) -> Result<()> {
    match kind {
        Kind::Int(min, max) => {
            let n = v
                .as_i64()
                .ok_or_else(|| bad(field, format!("must be an integer, got {v}")))?;
            if n < min || n > max {
                return Err(bad(field, format!("{n} is out of bounds {min}..={max}")));
            }
        }
        Kind::Num(min, max, open_min) => {
            let n = v
                .as_f64()
                .filter(|n| n.is_finite())
                .ok_or_else(|| bad(field, format!("must be a finite number, got {v}")))?;
            let low_ok = if open_min { n > min } else { n >= min };
            if !low_ok || n > max {
                let l = if open_min { "(" } else { "[" };
                return Err(bad(field, format!("{n} is out of bounds {l}{min}, {max}]")));
            }
        }
        Kind::Choice(options) => {
            let s = v.as_str().unwrap_or_default();
            if !options.contains(&s) {
                return Err(bad(field, format!("{v} is not one of {}", options.join(", "))));
            }
        }
        Kind::Bool => {
            if !v.is_boolean() {
                return Err(bad(field, format!("must be true or false, got {v}")));
            }
        }
        Kind::Names => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 256
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ',' | ' '))
            };
            let fine = match v {
                Value::String(s) => ok(s),
                Value::Array(a) => {
                    !a.is_empty() && a.len() <= 32 && a.iter().all(|x| x.as_str().is_some_and(ok))
                }
                _ => false,
            };
            if !fine {
                return Err(bad(
                    field,
                    format!(
                        "must be a module name, a comma-separated list or a list of names (≤ 32), got {v}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl TrainingParams {
    /// Parses the config text. `max_epochs` is the broker's bound on `num_train_epochs`.
    ///
    /// ```
    /// let p = zg_finetune::TrainingParams::parse(r#"{"num_train_epochs": 3, "lora_r": 8}"#, 10)?;
    /// assert_eq!(p.num_train_epochs, 3);
    /// assert!(zg_finetune::TrainingParams::parse(r#"{"num_train_epoch": 3}"#, 10).is_err()); // typo
    /// # Ok::<(), zg_finetune::Error>(())
    /// ```
    pub fn parse(text: &str, max_epochs: u32) -> Result<Self> {
        if text.len() > MAX_PARAMS_BYTES {
            return Err(bad(
                "(file)",
                format!("{} bytes exceeds the limit of {MAX_PARAMS_BYTES}", text.len()),
            ));
        }
        let v: Value = serde_json::from_str(text).map_err(|e| bad("(file)", format!("not JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(bad("(file)", "must be a JSON object"));
        };
        let mut p = TrainingParams::default();
        for (k, v) in &obj {
            let Some(&(_, kind)) = SCHEMA.iter().find(|(name, _)| name == k) else {
                let near = SCHEMA
                    .iter()
                    .map(|(n, _)| (distance(k, n), *n))
                    .min()
                    .filter(|(d, _)| *d <= 3)
                    .map(|(_, n)| format!("; did you mean {n:?}?"))
                    .unwrap_or_default();
                return Err(bad(k, format!("unknown parameter{near}")));
            };
            check(k, kind, v)?;
            // `check` proved each modelled value's type and bounds; the fallbacks below are unreachable.
            match k.as_str() {
                "num_train_epochs" => {
                    let n = v.as_u64().unwrap_or(1);
                    if n > u64::from(max_epochs) {
                        return Err(bad(k, format!("{n} exceeds this broker's limit of {max_epochs}")));
                    }
                    p.num_train_epochs = u32::try_from(n).unwrap_or(1);
                }
                "learning_rate" => p.learning_rate = v.as_f64().unwrap_or(p.learning_rate),
                "per_device_train_batch_size" => {
                    p.per_device_train_batch_size = u32::try_from(v.as_u64().unwrap_or(1)).unwrap_or(1)
                }
                "max_steps" => p.max_steps = v.as_u64(),
                "seed" => p.seed = v.as_u64().unwrap_or(p.seed),
                "validation_split" => p.validation_split = v.as_f64().unwrap_or(p.validation_split),
                _ => {
                    p.extra.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(p)
    }

    /// The parameters as the JSON document executors receive (`params.json`): every default filled in.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_g_example_config_parses() {
        let cfg = r#"{
  "neftune_noise_alpha": 5,
  "num_train_epochs": 1,
  "per_device_train_batch_size": 2,
  "learning_rate": 0.0002,
  "max_steps": 3
}
"#;
        let p = TrainingParams::parse(cfg, 10).unwrap();
        assert_eq!(p.num_train_epochs, 1);
        assert_eq!(p.per_device_train_batch_size, 2);
        assert_eq!(p.max_steps, Some(3));
        assert_eq!(p.extra["neftune_noise_alpha"], 5);
        assert_eq!(TrainingParams::parse("{}", 1).unwrap(), TrainingParams::default());
    }

    #[test]
    fn out_of_bounds_and_unknown_keys_are_named() {
        for (cfg, field, needle) in [
            (r#"{"num_train_epochs": 0}"#, "num_train_epochs", "out of bounds"),
            (r#"{"num_train_epochs": 11}"#, "num_train_epochs", "limit of 10"),
            (r#"{"num_train_epochs": 2.5}"#, "num_train_epochs", "integer"),
            (r#"{"learning_rate": 0}"#, "learning_rate", "out of bounds"),
            (r#"{"learning_rate": "fast"}"#, "learning_rate", "finite number"),
            (r#"{"lora_dropout": 1.5}"#, "lora_dropout", "out of bounds"),
            (
                r#"{"lr_scheduler_type": "magic"}"#,
                "lr_scheduler_type",
                "not one of",
            ),
            (r#"{"epochs": 3}"#, "epochs", "unknown parameter"),
            (
                r#"{"num_train_epoch": 3}"#,
                "num_train_epoch",
                "did you mean \"num_train_epochs\"",
            ),
            ("[1,2]", "(file)", "JSON object"),
            ("{", "(file)", "not JSON"),
        ] {
            match TrainingParams::parse(cfg, 10).unwrap_err() {
                Error::TrainingParams { field: f, reason } => {
                    assert_eq!(f, field, "{cfg}");
                    assert!(reason.contains(needle), "{cfg}: {reason}");
                }
                e => panic!("{cfg}: {e}"),
            }
        }
        let huge = format!("{{\"seed\": 1{}}}", " ".repeat(MAX_PARAMS_BYTES));
        assert!(TrainingParams::parse(&huge, 10).is_err());
    }
}
