//! Datasets are untrusted: customer bytes parsed with bounds on every dimension. Accepted: JSONL in one of
//! 0G's formats (chat `messages`, `instruction`/`input`/`output`, `prompt`/`completion`, `text`), bare or in
//! a zip (0G's packaging: the `.jsonl` files, conventionally under `data/`). Archives are read in memory,
//! never extracted; still, any entry that could escape a directory (absolute path, `..`, a link, a device),
//! an encrypted entry, or an entry that inflates more than the allowed ratio refuses the whole dataset.

use std::io::{BufRead, Read};
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Bounds on a dataset. Defaults: 100 MiB (0G's upload cap), 1 GiB unpacked, 1 M records, 1 MiB per line,
/// 10,000 archive entries, 100:1 compression ratio, at least 2 records (one is held out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetLimits {
    /// Bytes of the file as uploaded or stored.
    pub max_bytes: u64,
    /// Bytes of all JSONL once unpacked from an archive.
    pub max_unpacked_bytes: u64,
    /// Records (non-empty lines).
    pub max_records: u64,
    /// Bytes of one line.
    pub max_line_bytes: u64,
    /// Entries in an archive.
    pub max_entries: u64,
    /// Largest uncompressed : compressed ratio of one archive entry.
    pub max_ratio: u64,
    /// Fewest records.
    pub min_records: u64,
}

impl Default for DatasetLimits {
    fn default() -> Self {
        Self {
            max_bytes: 100 << 20,
            max_unpacked_bytes: 1 << 30,
            max_records: 1_000_000,
            max_line_bytes: 1 << 20,
            max_entries: 10_000,
            max_ratio: 100,
            min_records: 2,
        }
    }
}

/// The JSONL layout of a dataset (all lines share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// `{"messages": [{"role", "content"}, …]}`.
    Chat,
    /// `{"instruction", "input"?, "output"}`.
    Instruction,
    /// `{"prompt", "completion"}`.
    PromptCompletion,
    /// `{"text"}`.
    Text,
}

impl DatasetFormat {
    /// Name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Instruction => "instruction",
            Self::PromptCompletion => "prompt_completion",
            Self::Text => "text",
        }
    }
}

/// One training example: the original JSON line and the texts a trainer learns from, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The line as received (handed to external trainers unchanged).
    pub line: String,
    /// The text fields (message contents; instruction, input, output; prompt, completion; text).
    pub parts: Vec<String>,
    /// Which parts are what the model should learn to produce (assistant turns, `output`, `completion`,
    /// `text`), as supervised fine-tuning computes its loss on them.
    pub targets: Vec<bool>,
}

impl Record {
    /// The record's whole text: its parts joined by newlines.
    pub fn text(&self) -> String {
        self.parts.join("\n")
    }

    /// The target parts joined by newlines (all parts when none is marked).
    pub fn target_text(&self) -> String {
        let t: Vec<&str> = self
            .parts
            .iter()
            .zip(&self.targets)
            .filter(|(_, t)| **t)
            .map(|(p, _)| p.as_str())
            .collect();
        if t.is_empty() { self.text() } else { t.join("\n") }
    }
}

/// A counted tokenizer: how a model family measures text. The fee is the token count of a dataset under
/// the base model's tokenizer.
pub trait Tokenizer: Send + Sync + std::fmt::Debug {
    /// Name shown to customers (`zg-ngram`, `bytes`, a Hugging Face tokenizer id).
    fn name(&self) -> &str;
    /// Tokens in `text`.
    fn count(&self, text: &str) -> u64;
}

/// The built-in n-gram family's tokenizer (words and punctuation marks).
#[derive(Debug, Clone, Copy, Default)]
pub struct WordTokenizer;

impl Tokenizer for WordTokenizer {
    fn name(&self) -> &str {
        "zg-ngram"
    }
    fn count(&self, text: &str) -> u64 {
        zg_ngram::count_tokens(text)
    }
}

/// One token per UTF-8 byte: what 0G's CLI labels its price ("Price Per Byte in Dataset").
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    fn name(&self) -> &str {
        "bytes"
    }
    fn count(&self, text: &str) -> u64 {
        text.len() as u64
    }
}

/// A parsed, validated dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The layout every record uses.
    pub format: DatasetFormat,
    /// The records, in file order (archive entries in name order).
    pub records: Vec<Record>,
    /// Bytes of the JSONL the records came from.
    pub jsonl_bytes: u64,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

impl Dataset {
    /// Reads and checks a dataset file (JSONL, or a zip of JSONL files), detected by content.
    pub fn load(path: &Path, limits: &DatasetLimits) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("read dataset", path, e))?;
        if meta.len() > limits.max_bytes {
            return Err(Error::DatasetTooLarge {
                what: "bytes",
                size: meta.len(),
                max: limits.max_bytes,
            });
        }
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("open dataset", path, e))?;
        let mut head = [0u8; 4];
        let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io("read dataset", path, e))?;
        let head = head.get(..n).unwrap_or_default();
        drop(f);
        if head.starts_with(ZIP_MAGIC) || head.starts_with(EMPTY_ZIP_MAGIC) {
            return Self::from_zip(path, limits);
        }
        if head.starts_with(GZIP_MAGIC) {
            return Err(Error::DatasetFormat {
                line: 0,
                reason: "gzip/tar archives are not accepted: send JSONL or a zip of JSONL files".into(),
            });
        }
        let f = std::fs::File::open(path).map_err(|e| Error::io("open dataset", path, e))?;
        let mut p = JsonlParser::new(limits);
        p.feed(std::io::BufReader::new(f.take(limits.max_bytes)))?;
        p.finish()
    }

    /// Parses JSONL bytes.
    pub fn from_jsonl(bytes: &[u8], limits: &DatasetLimits) -> Result<Self> {
        if bytes.len() as u64 > limits.max_bytes {
            return Err(Error::DatasetTooLarge {
                what: "bytes",
                size: bytes.len() as u64,
                max: limits.max_bytes,
            });
        }
        let mut p = JsonlParser::new(limits);
        p.feed(bytes)?;
        p.finish()
    }

    fn from_zip(path: &Path, limits: &DatasetLimits) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io("open dataset", path, e))?;
        let zip_err = |e: zip::result::ZipError| Error::DatasetFormat {
            line: 0,
            reason: format!("not a readable zip archive: {e}"),
        };
        let mut zip = zip::ZipArchive::new(f).map_err(zip_err)?;
        if zip.len() as u64 > limits.max_entries {
            return Err(Error::DatasetTooLarge {
                what: "entries",
                size: zip.len() as u64,
                max: limits.max_entries,
            });
        }
        // Check every entry first: one hostile entry refuses the whole archive.
        let mut jsonl: Vec<(String, usize)> = Vec::new();
        for i in 0..zip.len() {
            let e = zip.by_index_raw(i).map_err(zip_err)?;
            let name = String::from_utf8_lossy(e.name_raw()).into_owned();
            check_entry_name(&name)?;
            let refuse = |reason: &str| Error::Archive {
                entry: name.clone(),
                reason: reason.to_owned(),
            };
            if e.encrypted() {
                return Err(refuse("encrypted entries are not accepted"));
            }
            if let Some(mode) = e.unix_mode() {
                let kind = mode & 0o170_000;
                if kind != 0 && kind != 0o100_000 && kind != 0o040_000 {
                    return Err(refuse("links and special files are not accepted"));
                }
            }
            if e.is_dir() {
                continue;
            }
            if name.to_ascii_lowercase().ends_with(".jsonl") {
                jsonl.push((name, i));
            }
        }
        if jsonl.is_empty() {
            return Err(Error::DatasetFormat {
                line: 0,
                reason: "the zip holds no .jsonl file (0G's layout: data/*.jsonl)".into(),
            });
        }
        jsonl.sort();
        let mut p = JsonlParser::new(limits);
        let mut unpacked = 0u64;
        for (name, i) in jsonl {
            let e = zip.by_index(i).map_err(zip_err)?;
            let compressed = e.compressed_size().max(1);
            let budget = limits.max_unpacked_bytes.saturating_sub(unpacked);
            let ratio_cap = compressed.saturating_mul(limits.max_ratio).max(4096);
            let cap = budget.min(ratio_cap);
            let mut counted = Counted {
                inner: e.take(cap.saturating_add(1)),
                n: 0,
            };
            let fed = p.feed(std::io::BufReader::new(&mut counted));
            // Reading stopped at the cap (the cut may also have broken the last line): name the limit.
            if counted.n > cap {
                if cap == ratio_cap && ratio_cap < budget {
                    return Err(Error::Archive {
                        entry: name,
                        reason: format!(
                            "inflates more than {}:1 from {compressed} compressed bytes (a compression bomb)",
                            limits.max_ratio
                        ),
                    });
                }
                return Err(Error::DatasetTooLarge {
                    what: "unpacked bytes",
                    size: unpacked.saturating_add(counted.n),
                    max: limits.max_unpacked_bytes,
                });
            }
            fed?;
            unpacked = unpacked.saturating_add(counted.n);
        }
        p.finish()
    }

    /// Tokens of the whole dataset under `tokenizer`: the sum over records of the tokens of each part.
    pub fn token_count(&self, tokenizer: &dyn Tokenizer) -> u64 {
        self.records
            .iter()
            .flat_map(|r| r.parts.iter())
            .map(|p| tokenizer.count(p))
            .sum()
    }

    /// The records as JSONL (the original lines), what external trainers receive as `dataset.jsonl`.
    pub fn to_jsonl(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.jsonl_bytes).unwrap_or(0));
        for r in &self.records {
            out.extend_from_slice(r.line.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

fn check_entry_name(name: &str) -> Result<()> {
    let refuse = |reason: &str| Error::Archive {
        entry: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.contains('\0') {
        return Err(refuse("empty name or NUL byte"));
    }
    let norm = name.replace('\\', "/");
    if norm.starts_with('/') || norm.as_bytes().get(1) == Some(&b':') {
        return Err(refuse("absolute path (path traversal)"));
    }
    if norm.split('/').any(|c| c == "..") {
        return Err(refuse("`..` component (path traversal)"));
    }
    Ok(())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n = self.n.saturating_add(n as u64);
        Ok(n)
    }
}

struct JsonlParser<'l> {
    limits: &'l DatasetLimits,
    format: Option<(DatasetFormat, u64)>,
    records: Vec<Record>,
    line: u64,
    bytes: u64,
}

fn text_of(v: &Value, line: u64, field: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        // OpenAI-style content parts: keep the text parts.
        Value::Array(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("text").and_then(Value::as_str) {
                    Some(t) => out.push(t),
                    None => {
                        return Err(Error::DatasetFormat {
                            line,
                            reason: format!(
                                "{field}: content parts must be {{\"type\":\"text\",\"text\":…}}"
                            ),
                        });
                    }
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(Error::DatasetFormat {
            line,
            reason: format!("{field} must be a string"),
        }),
    }
}

type Parsed = (DatasetFormat, Vec<String>, Vec<bool>);

fn parse_record(obj: &serde_json::Map<String, Value>, line: u64) -> Result<Parsed> {
    let s = |k: &str| -> Result<String> { text_of(obj.get(k).unwrap_or(&Value::Null), line, k) };
    if let Some(msgs) = obj.get("messages") {
        let msgs = msgs.as_array().ok_or_else(|| Error::DatasetFormat {
            line,
            reason: "messages must be an array".into(),
        })?;
        if msgs.is_empty() || msgs.len() > 10_000 {
            return Err(Error::DatasetFormat {
                line,
                reason: format!("messages must hold 1..=10000 entries, got {}", msgs.len()),
            });
        }
        let mut parts = Vec::with_capacity(msgs.len());
        let mut targets = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            if !matches!(role, "system" | "user" | "assistant" | "tool") {
                return Err(Error::DatasetFormat {
                    line,
                    reason: format!("messages[{i}].role must be system, user, assistant or tool"),
                });
            }
            parts.push(text_of(
                m.get("content").unwrap_or(&Value::Null),
                line,
                "content",
            )?);
            targets.push(role == "assistant");
        }
        return Ok((DatasetFormat::Chat, parts, targets));
    }
    if obj.contains_key("instruction") && obj.contains_key("output") {
        let mut parts = vec![s("instruction")?];
        if obj.get("input").is_some_and(|v| !v.is_null()) {
            parts.push(s("input")?);
        }
        parts.push(s("output")?);
        let mut targets = vec![false; parts.len()];
        if let Some(last) = targets.last_mut() {
            *last = true;
        }
        return Ok((DatasetFormat::Instruction, parts, targets));
    }
    if obj.contains_key("prompt") && obj.contains_key("completion") {
        return Ok((
            DatasetFormat::PromptCompletion,
            vec![s("prompt")?, s("completion")?],
            vec![false, true],
        ));
    }
    if obj.contains_key("text") {
        return Ok((DatasetFormat::Text, vec![s("text")?], vec![true]));
    }
    Err(Error::DatasetFormat {
        line,
        reason: "no known format: expected \"messages\", \"instruction\"+\"output\", \"prompt\"+\"completion\" or \"text\"".into(),
    })
}

impl<'l> JsonlParser<'l> {
    fn new(limits: &'l DatasetLimits) -> Self {
        Self {
            limits,
            format: None,
            records: Vec::new(),
            line: 0,
            bytes: 0,
        }
    }

    fn feed(&mut self, mut r: impl BufRead) -> Result<()> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let max = self.limits.max_line_bytes;
            let n = (&mut r)
                .take(max.saturating_add(1))
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::DatasetFormat {
                    line: self.line.saturating_add(1),
                    reason: format!("cannot read: {e}"),
                })?;
            if n == 0 {
                return Ok(());
            }
            self.line += 1;
            self.bytes = self.bytes.saturating_add(n as u64);
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body.len() as u64 > max {
                return Err(Error::DatasetTooLarge {
                    what: "line bytes",
                    size: body.len() as u64,
                    max,
                });
            }
            if body.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = std::str::from_utf8(body).map_err(|_| Error::DatasetFormat {
                line: self.line,
                reason: "not UTF-8".into(),
            })?;
            let v: Value = serde_json::from_str(text).map_err(|e| Error::DatasetFormat {
                line: self.line,
                reason: format!("not JSON: {e}"),
            })?;
            let Value::Object(obj) = v else {
                return Err(Error::DatasetFormat {
                    line: self.line,
                    reason: "each line must be a JSON object".into(),
                });
            };
            let (format, parts, targets) = parse_record(&obj, self.line)?;
            match self.format {
                None => self.format = Some((format, self.line)),
                Some((f, first)) if f != format => {
                    return Err(Error::DatasetFormat {
                        line: self.line,
                        reason: format!(
                            "{} record, but line {first} was {}: one format per dataset",
                            format.as_str(),
                            f.as_str()
                        ),
                    });
                }
                Some(_) => {}
            }
            if parts.iter().all(|p| p.trim().is_empty()) {
                return Err(Error::DatasetFormat {
                    line: self.line,
                    reason: "the record has no text".into(),
                });
            }
            if self.records.len() as u64 >= self.limits.max_records {
                return Err(Error::DatasetTooLarge {
                    what: "records",
                    size: self.records.len() as u64 + 1,
                    max: self.limits.max_records,
                });
            }
            self.records.push(Record {
                line: text.to_owned(),
                parts,
                targets,
            });
        }
    }

    fn finish(self) -> Result<Dataset> {
        let Some((format, _)) = self.format else {
            return Err(Error::DatasetFormat {
                line: 0,
                reason: "the dataset is empty".into(),
            });
        };
        if (self.records.len() as u64) < self.limits.min_records {
            return Err(Error::DatasetFormat {
                line: 0,
                reason: format!(
                    "{} record(s); at least {} are needed (one is held out to measure the loss)",
                    self.records.len(),
                    self.limits.min_records
                ),
            });
        }
        Ok(Dataset {
            format,
            records: self.records,
            jsonl_bytes: self.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> DatasetLimits {
        DatasetLimits::default()
    }

    #[test]
    fn each_format_parses_and_counts() {
        let chat =
            br#"{"messages":[{"role":"user","content":"Hi there"},{"role":"assistant","content":"Hello!"}]}
{"messages":[{"role":"user","content":[{"type":"text","text":"two words"}]}]}
"#;
        let d = Dataset::from_jsonl(chat, &lim()).unwrap();
        assert_eq!(d.format, DatasetFormat::Chat);
        assert_eq!(d.records.len(), 2);
        // "hi there" 2 + "hello !" 2 + "two words" 2
        assert_eq!(d.token_count(&WordTokenizer), 6);
        assert_eq!(d.token_count(&ByteTokenizer), 8 + 6 + 9);
        let inst = b"{\"instruction\":\"add\",\"input\":\"1 2\",\"output\":\"3\"}\n\n{\"instruction\":\"say hi\",\"output\":\"hi\"}";
        let d = Dataset::from_jsonl(inst, &lim()).unwrap();
        assert_eq!(d.format, DatasetFormat::Instruction);
        assert_eq!(d.records[0].parts, ["add", "1 2", "3"]);
        assert_eq!(d.records[1].text(), "say hi\nhi");
        assert_eq!(d.records[1].target_text(), "hi");
        assert_eq!(d.to_jsonl().split(|b| *b == b'\n').count(), 3);
        let pc = b"{\"prompt\":\"a\",\"completion\":\"b\"}\r\n{\"prompt\":\"c\",\"completion\":\"d\"}\r\n";
        assert_eq!(
            Dataset::from_jsonl(pc, &lim()).unwrap().format,
            DatasetFormat::PromptCompletion
        );
        let t = b"{\"text\":\"a\"}\n{\"text\":\"b\"}\n";
        assert_eq!(
            Dataset::from_jsonl(t, &lim()).unwrap().format,
            DatasetFormat::Text
        );
    }

    #[test]
    fn malformed_lines_are_named() {
        for (data, needle) in [
            (&b"not json\n"[..], "line 1: not JSON"),
            (
                b"{\"text\":\"a\"}\n[1]\n",
                "line 2: each line must be a JSON object",
            ),
            (b"{\"text\":\"a\"}\n{\"foo\":1}\n", "line 2: no known format"),
            (
                b"{\"text\":\"a\"}\n{\"prompt\":\"a\",\"completion\":\"b\"}\n",
                "line 2: prompt_completion record, but line 1 was text",
            ),
            (
                b"{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}\n",
                "role must be",
            ),
            (b"{\"text\":\"  \"}\n", "no text"),
            (b"{\"text\":\"a\"}\n", "at least 2"),
            (b"", "empty"),
            (b"{\"text\":5}\n", "text must be a string"),
            (b"\xff\xfe\n", "UTF-8"),
        ] {
            let e = Dataset::from_jsonl(data, &lim()).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert_eq!(e.status(), 400, "{e}");
        }
        let small = DatasetLimits {
            max_line_bytes: 10,
            max_records: 2,
            max_bytes: 1000,
            ..lim()
        };
        let e = Dataset::from_jsonl(b"{\"text\":\"aaaaaaaaaaaa\"}\n", &small).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DatasetTooLarge {
                    what: "line bytes",
                    ..
                }
            ),
            "{e}"
        );
        let e = Dataset::from_jsonl(
            b"{\"text\":\"a\"}\n{\"text\":\"a\"}\n{\"text\":\"a\"}\n",
            &DatasetLimits {
                max_line_bytes: 100,
                ..small
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::DatasetTooLarge { what: "records", .. }), "{e}");
        assert_eq!(e.status(), 413);
        let e = Dataset::from_jsonl(&[b' '; 1001], &small).unwrap_err();
        assert!(matches!(e, Error::DatasetTooLarge { what: "bytes", .. }), "{e}");
    }

    #[test]
    fn entry_names_that_escape_are_refused() {
        for bad in [
            "../x.jsonl",
            "data/../../x.jsonl",
            "/etc/passwd",
            "C:\\x.jsonl",
            "a\\..\\..\\b",
            "",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad}");
        }
        for ok in ["data/train.jsonl", "x..y.jsonl", "data/.hidden.jsonl"] {
            assert!(check_entry_name(ok).is_ok(), "{ok}");
        }
    }
}
