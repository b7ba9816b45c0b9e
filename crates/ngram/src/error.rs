//! The crate's error type: what can go wrong reading a serialised model.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a serialised model was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a model in the `zg-ngram 1` format.
    #[error("not a zg-ngram model (line {line}): {reason}")]
    Format {
        /// 1-based line where parsing stopped (0 = before the first line).
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// The model is larger than the caller allows.
    #[error("model of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bytes offered.
        size: u64,
        /// Bytes allowed.
        max: u64,
    },
}
