//! The crate's one error type.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading a model, tokenizing, generating, or loading and training adapters.
///
/// Variants carry the offending values. None of them holds secrets: prompts and completions never appear in an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The GGUF file is not a model this crate can run (wrong architecture, missing or malformed metadata or tensor).
    #[error("{path}: unsupported or malformed GGUF model: {reason}")]
    BadModel {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong, naming the metadata key or tensor.
        reason: String,
    },
    /// The tokenizer metadata in the GGUF is unusable (unknown tokenizer model, a merge naming an unknown token, ...).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template from the model's metadata failed to parse or to render these messages.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// The prompt plus the requested completion does not fit the model's context window.
    #[error(
        "context window exceeded: {prompt_tokens} prompt tokens + {max_tokens} max_tokens > {context} (lower max_tokens or shorten the prompt)"
    )]
    ContextWindow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The completion budget asked for.
        max_tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// A sampling or training parameter is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam {
        /// The parameter (its 0G / Hugging Face name).
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The request names a model that is neither the base nor a loaded adapter.
    #[error("unknown model `{requested}` (served: {served})")]
    UnknownModel {
        /// What the request asked for.
        requested: String,
        /// The names this model serves, comma-separated.
        served: String,
    },
    /// The adapter files are not a PEFT LoRA adapter this crate supports.
    #[error("adapter {path}: {reason}")]
    BadAdapter {
        /// The adapter directory or file.
        path: PathBuf,
        /// What is wrong (a missing key, an unsupported PEFT option, ...).
        reason: String,
    },
    /// The adapter's tensors do not fit this base model: it was trained for a different architecture or size.
    #[error(
        "adapter tensor `{tensor}` has shape {got:?}, the base model needs {want:?}: it was trained for another base"
    )]
    AdapterShapeMismatch {
        /// The PEFT tensor name.
        tensor: String,
        /// Its shape in the adapter file.
        got: Vec<usize>,
        /// The shape this base model needs.
        want: Vec<usize>,
    },
    /// The adapter says it was trained on another base model.
    #[error("adapter was trained on `{adapter_base}`, this model is `{model}`")]
    AdapterBaseMismatch {
        /// `base_model_name_or_path` from `adapter_config.json`.
        adapter_base: String,
        /// This model's name.
        model: String,
    },
    /// The training dataset is empty or a line of it is malformed.
    #[error("dataset line {line}: {reason}")]
    Dataset {
        /// 1-based line number (0 for the dataset as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Training or generation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A tensor operation failed (a bug or an exhausted resource, not bad input).
    #[error("tensor backend: {0}")]
    Backend(#[from] candle_core::Error),
}

impl Error {
    /// True when the caller's input (request, adapter, dataset, parameters) is at fault, not the server.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            Self::ContextWindow { .. }
                | Self::InvalidParam { .. }
                | Self::UnknownModel { .. }
                | Self::BadAdapter { .. }
                | Self::AdapterShapeMismatch { .. }
                | Self::AdapterBaseMismatch { .. }
                | Self::Dataset { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
