//! The demo model family's tokenizer: words and single punctuation marks, lower-cased. It is also the
//! tokenizer the fine-tuning fee counts with for this family, so `calculate-token` and the broker agree.

/// Splits text into the model's tokens: runs of letters/digits (with inner `'` or `-`), and every other
/// non-space character on its own. Lower-cased.
///
/// ```
/// assert_eq!(zg_ngram::tokenize("It's TEE-signed."), ["it's", "tee-signed", "."]);
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_owned()));
    out
}

/// Number of tokens in `text` (what [`tokenize`] returns, without allocating each token).
///
/// ```
/// assert_eq!(zg_ngram::count_tokens("Hello, world!"), 4);
/// ```
pub fn count_tokens(text: &str) -> u64 {
    let mut n = 0u64;
    for_each_token(text, |_| n += 1);
    n
}

fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        let joins =
            (c == '\'' || c == '-') && !word.is_empty() && chars.peek().is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || c == '_' || joins {
            word.extend(c.to_lowercase());
        } else {
            if !word.is_empty() {
                f(&word);
                word.clear();
            }
            if !c.is_whitespace() {
                f(c.encode_utf8(&mut buf));
            }
        }
    }
    if !word.is_empty() {
        f(&word);
    }
}

/// The text piece a token adds after `prev` (spacing and sentence capitalisation).
pub(crate) fn piece(prev: Option<&str>, tok: &str) -> String {
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

/// Tokens the demo model counts for a prompt made of these messages: one role token per message plus
/// the tokens of its content.
pub fn prompt_tokens<'a>(contents: impl IntoIterator<Item = &'a str>) -> u64 {
    contents.into_iter().map(|c| 1 + count_tokens(c)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            count_tokens("a -b c- 'd' e'f"),
            tokenize("a -b c- 'd' e'f").len() as u64
        );
    }
}
