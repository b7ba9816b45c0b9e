//! Byte-level BPE tokenizer (GPT-2 family) built from a GGUF's `tokenizer.ggml.*` metadata.
//!
//! It reproduces Hugging Face `tokenizers`' pipeline for SmolLM2 (`tokenizer.ggml.pre = "smollm"`), which is also
//! llama.cpp's: special (added) tokens are matched first in the raw text, then every Unicode number is isolated
//! (the `Digits(individual_digits)` pre-tokenizer), then each piece is split with the GPT-2 regex and BPE-merged over
//! its bytes. Counts are checked against both references in `tests/reference/` (the Python `tokenizers` package and
//! llama.cpp), see the crate's tests.
//!
//! Cost is O(n log n) in the input length (a heap of candidate merges), so a hostile prompt of one long "word"
//! cannot make counting quadratic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use regex::Regex;

use crate::error::{Error, Result};

/// GGUF `tokenizer.ggml.token_type` value of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `tokenizer.ggml.token_type` value of user-defined added tokens.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Marks a byte that has no token.
const NO_TOKEN: u32 = u32::MAX;

/// The GPT-2 pre-tokenizer regex without its `\s+(?!\S)` look-ahead, which the `regex` crate does not support;
/// [`split_gpt2`] restores that alternative's effect by hand.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// A byte-level BPE tokenizer.
///
/// Built by [`crate::Model::load`] from the GGUF metadata; [`Tokenizer::encode`] is what usage counts are made of.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    tokens: Vec<String>,
    /// Token bytes (byte-level decoded), for detokenization.
    token_bytes: Vec<Vec<u8>>,
    ids: HashMap<String, u32>,
    /// (left, right) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Special tokens matched in raw text, longest first.
    specials: Vec<(String, u32)>,
    /// Control tokens, skipped when decoding completions.
    control: Vec<bool>,
    /// Token id of each byte, through the GPT-2 byte-to-unicode table.
    byte_ids: [u32; 256],
    split: Regex,
    bos: Option<u32>,
    eos: u32,
    add_bos: bool,
}

/// The GPT-2 byte-to-unicode table: printable bytes map to themselves, the others to U+0100 onward.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let code = if printable {
            b as u32
        } else {
            let c = next;
            next += 1;
            c
        };
        // Infallible: codes are below 0x200, all valid scalar values.
        *slot = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// Inputs read from GGUF metadata.
#[derive(Debug)]
pub(crate) struct TokenizerSpec {
    pub(crate) model: String,
    pub(crate) pre: Option<String>,
    pub(crate) tokens: Vec<String>,
    pub(crate) token_types: Vec<i32>,
    pub(crate) merges: Vec<String>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: u32,
    pub(crate) add_bos: bool,
}

impl Tokenizer {
    pub(crate) fn from_spec(spec: TokenizerSpec) -> Result<Self> {
        if spec.model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.model = {:?}; only byte-level BPE (\"gpt2\") is supported",
                spec.model
            )));
        }
        match spec.pre.as_deref() {
            None | Some("smollm") | Some("default") | Some("gpt2") => {}
            Some(other) => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.ggml.pre = {other:?}; supported: smollm (digits isolated, GPT-2 split)"
                )));
            }
        }
        let n = spec.tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Tokenizer(format!("vocabulary of {n} tokens")));
        }
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in spec.tokens.iter().enumerate() {
            // Later duplicates never win, as in HF's vocab map built from the first occurrence.
            ids.entry(t.clone()).or_insert(i as u32);
        }
        let table = byte_to_char();
        let mut decode = HashMap::with_capacity(256);
        for (b, c) in table.iter().enumerate() {
            decode.insert(*c, b as u8);
        }
        // Some vocabularies lack a few bytes (SmolLM2: 0x04, 0x06, 0x13, ..., 0xc0, 0xf1, ...). Like Hugging Face's BPE
        // without an unknown token, and like llama.cpp, such bytes are dropped.
        let mut byte_ids = [NO_TOKEN; 256];
        for (b, c) in table.iter().enumerate() {
            if let Some(id) = ids.get(&c.to_string()) {
                byte_ids[b] = *id;
            }
        }
        let mut merges = HashMap::with_capacity(spec.merges.len());
        for (rank, m) in spec.merges.iter().enumerate() {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| Error::Tokenizer(format!("merge {rank} {m:?} is not \"left right\"")))?;
            let id = |s: &str| {
                ids.get(s)
                    .copied()
                    .ok_or_else(|| Error::Tokenizer(format!("merge {rank} {m:?} names unknown {s:?}")))
            };
            let merged = id(&format!("{a}{b}"))?;
            merges.entry((id(a)?, id(b)?)).or_insert((rank as u32, merged));
        }
        let types = |i: usize| spec.token_types.get(i).copied().unwrap_or(1);
        let mut specials: Vec<(String, u32)> = (0..n)
            .filter(|&i| matches!(types(i), TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .filter(|&i| !spec.tokens[i].is_empty())
            .map(|i| (spec.tokens[i].clone(), i as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let control = (0..n).map(|i| types(i) == TOKEN_TYPE_CONTROL).collect();
        let token_bytes = spec
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if matches!(types(i), TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED) {
                    t.as_bytes().to_vec()
                } else {
                    let mut out = Vec::with_capacity(t.len());
                    for c in t.chars() {
                        match decode.get(&c) {
                            Some(b) => out.push(*b),
                            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    out
                }
            })
            .collect();
        if spec.eos as usize >= n {
            return Err(Error::Tokenizer(format!(
                "eos token id {} outside the vocabulary",
                spec.eos
            )));
        }
        if let Some(b) = spec.bos
            && b as usize >= n
        {
            return Err(Error::Tokenizer(format!(
                "bos token id {b} outside the vocabulary"
            )));
        }
        // Infallible: a constant pattern that the tests compile.
        let split = Regex::new(GPT2_SPLIT).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self {
            tokens: spec.tokens,
            token_bytes,
            ids,
            merges,
            specials,
            control,
            byte_ids,
            split,
            bos: spec.bos,
            eos: spec.eos,
            add_bos: spec.add_bos,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The end-of-sequence token (for chat models, the end-of-turn token, e.g. `<|im_end|>`).
    pub fn eos_token_id(&self) -> u32 {
        self.eos
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    /// The text of token `id` as stored in the vocabulary (byte-level form), if it exists.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary entry (byte-level form, e.g. `"<|im_end|>"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Tokenizes `text`, matching special tokens (`<|im_start|>`, ...) in it, as Hugging Face `tokenizers` does with
    /// `add_special_tokens=False`. A beginning-of-sequence token is prepended only when the model's metadata asks
    /// for it (`tokenizer.ggml.add_bos_token`; SmolLM2 does not).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        if self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest special token; at equal positions the longest (specials are sorted longest first).
            let mut best: Option<(usize, &str, u32)> = None;
            for (s, id) in &self.specials {
                if let Some(p) = rest.find(s.as_str())
                    && best.is_none_or(|(bp, _, _)| p < bp)
                {
                    best = Some((p, s, *id));
                }
            }
            match best {
                Some((p, s, id)) => {
                    self.encode_ordinary(&rest[..p], &mut out);
                    out.push(id);
                    rest = &rest[p + s.len()..];
                }
                None => {
                    self.encode_ordinary(rest, &mut out);
                    rest = "";
                }
            }
        }
        out
    }

    /// Number of tokens [`Tokenizer::encode`] makes of `text`.
    pub fn count(&self, text: &str) -> usize {
        self.encode(text).len()
    }

    /// Text without special tokens: digits isolated, then the GPT-2 split, then BPE.
    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) {
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                self.encode_piece(&text[start..i], out);
                self.encode_piece(&text[i..i + c.len_utf8()], out);
                start = i + c.len_utf8();
            }
        }
        self.encode_piece(&text[start..], out);
    }

    fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) {
        let mut pos = 0;
        while pos < piece.len() {
            let Some(m) = self.split.find_at(piece, pos) else {
                // Unreachable: the pattern matches every character; fall back to bytes rather than lose text.
                self.bpe(&piece.as_bytes()[pos..], out);
                return;
            };
            let mut end = m.end();
            let word = m.as_str();
            // `\s+(?!\S)`: a whitespace run followed by a non-space gives up its last character to the next word.
            if end < piece.len() && word.chars().all(char::is_whitespace) && word.chars().nth(1).is_some() {
                let last = word.chars().last().map_or(0, char::len_utf8);
                end -= last;
            }
            self.bpe(&piece.as_bytes()[m.start()..end], out);
            pos = end;
        }
    }

    /// Merges the bytes of one pre-token by rank (lowest first, leftmost on ties), as HF's BPE does.
    fn bpe(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let mut id: Vec<u32> = bytes
            .iter()
            .map(|b| self.byte_ids[*b as usize])
            .filter(|id| *id != NO_TOKEN)
            .collect();
        match id.len() {
            0 => return,
            1 => {
                out.push(id[0]);
                return;
            }
            _ => {}
        }
        let n = id.len();
        let mut next: Vec<usize> = (1..=n).collect(); // n = none
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect(); // usize::MAX = none
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Reverse<(u32, usize, u32, u32)>>, i: usize, a: u32, b: u32| {
            if let Some((rank, _)) = self.merges.get(&(a, b)) {
                heap.push(Reverse((*rank, i, a, b)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, i, id[i], id[i + 1]);
        }
        while let Some(Reverse((_, i, a, b))) = heap.pop() {
            let j = next[i];
            if !alive[i] || j >= n || id[i] != a || id[j] != b {
                continue; // stale candidate
            }
            let Some((_, merged)) = self.merges.get(&(a, b)) else {
                continue;
            };
            id[i] = *merged;
            alive[j] = false;
            let k = next[j];
            next[i] = k;
            if k < n {
                prev[k] = i;
            }
            let p = prev[i];
            if p != usize::MAX {
                push(&mut heap, p, id[p], id[i]);
            }
            if k < n {
                push(&mut heap, i, id[i], id[k]);
            }
        }
        let mut i = 0;
        while i < n {
            out.push(id[i]);
            i = next[i];
        }
    }

    /// The bytes token `id` stands for (special tokens as their text). Unknown ids give no bytes.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// True for control tokens (`<|im_start|>`, `<|endoftext|>`, ...), which completions do not show.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// Decodes `ids` to text; invalid UTF-8 (a split multi-byte character) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_control: bool) -> String {
        let mut bytes = Vec::new();
        for id in ids {
            if !(skip_control && self.is_control(*id)) {
                bytes.extend_from_slice(self.token_bytes(*id));
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny vocabulary: bytes, plus merges for "ab", "abc" and " a".
    fn tiny() -> Tokenizer {
        let table = byte_to_char();
        let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
        tokens.extend([
            "ab".to_string(),
            "abc".to_string(),
            "Ġa".to_string(),
            "<|im_end|>".to_string(),
        ]);
        let mut types = vec![1; tokens.len()];
        types[259] = TOKEN_TYPE_CONTROL;
        Tokenizer::from_spec(TokenizerSpec {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens,
            token_types: types,
            merges: vec!["a b".into(), "ab c".into(), "Ġ a".into()],
            bos: None,
            eos: 259,
            add_bos: false,
        })
        .unwrap()
    }

    #[test]
    fn merges_by_rank_and_matches_specials() {
        let t = tiny();
        let abc = 257;
        assert_eq!(t.encode("abc"), vec![abc]);
        // "abcab": one word, ab+c then ab.
        assert_eq!(t.encode("abcab"), vec![abc, 256]);
        assert_eq!(
            t.encode("x<|im_end|>abc"),
            vec![t.byte_ids[b'x' as usize], 259, abc]
        );
        assert_eq!(t.decode(&t.encode("x<|im_end|> abc"), true), "x abc");
        assert_eq!(t.decode(&t.encode("x<|im_end|>"), false), "x<|im_end|>");
    }

    #[test]
    fn whitespace_run_gives_its_last_space_to_the_next_word() {
        let t = tiny();
        // "  a": the run "  " splits into " " and " a" (the GPT-2 look-ahead), and " a" merges to "Ġa".
        assert_eq!(t.encode("  a"), vec![t.byte_ids[b' ' as usize], 258]);
        // Digits are isolated: "a12" is three pieces.
        let d = |c: u8| t.byte_ids[c as usize];
        assert_eq!(t.encode("a12"), vec![d(b'a'), d(b'1'), d(b'2')]);
    }

    #[test]
    fn long_word_is_not_quadratic() {
        let t = tiny();
        let s = "ab".repeat(200_000);
        assert_eq!(t.count(&s), 200_000);
    }
}
