//! The crate's error type. Client faults carry the offending value and map to a 4xx status with a stable
//! code ([`Error::status`], [`Error::code`]); server faults keep their cause for the operator's log.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a chain call failed with, as the pipeline needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFailure {
    /// The contract reverted with this custom error name (e.g. `DeliverableAlreadyExists`) and message.
    Reverted {
        /// Solidity error name.
        name: String,
        /// Decoded reason, for logs.
        message: String,
    },
    /// The node could not be reached, timed out, or the transaction was not mined yet: retry later.
    Transient(String),
    /// Anything else (bad response, mined but failed without a decodable reason).
    Other(String),
    /// A settlement that would reveal the key was not sent: the customer's refund freeze (started by its
    /// acknowledgement) has ended or ends too soon for the transaction to be included, so a matured refund
    /// processed first could leave the reveal unpaid. Retry after the customer acknowledges again.
    RevealWindowClosed(String),
}

impl std::fmt::Display for ChainFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reverted { name, message } => write!(f, "reverted {name}: {message}"),
            Self::Transient(m) => write!(f, "transient: {m}"),
            Self::Other(m) => f.write_str(m),
            Self::RevealWindowClosed(m) => write!(f, "reveal window closed: {m}"),
        }
    }
}

impl ChainFailure {
    /// Whether the contract reverted with the custom error `name`.
    pub fn is_revert(&self, name: &str) -> bool {
        matches!(self, Self::Reverted { name: n, .. } if n == name)
    }
}

/// Everything that can go wrong in the pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---------------------------------------------------------------- client faults (4xx)
    /// A signature does not parse or does not recover.
    #[error("bad {what} signature: {reason}")]
    BadSignature {
        /// Which signature (`create`, `cancel`, `dataset`, `lora`, `read`).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A signature recovers to someone other than the account it speaks for.
    #[error("the {what} signature was made by {recovered}, not by {expected}")]
    WrongSigner {
        /// Which signature.
        what: &'static str,
        /// The account named in the request.
        expected: Address,
        /// The signer recovered.
        recovered: Address,
    },
    /// A signed timestamp is outside the accepted window.
    #[error(
        "timestamp {timestamp} is more than {window_secs} s away from the broker's clock ({now}); sign again"
    )]
    StaleTimestamp {
        /// Timestamp signed (seconds).
        timestamp: i64,
        /// Broker time (seconds).
        now: i64,
        /// Window (seconds).
        window_secs: u64,
    },
    /// The create-task nonce was used before by this customer.
    #[error("nonce {nonce} was already used by {user}: create tasks with a fresh nonce")]
    NonceReplayed {
        /// Customer.
        user: Address,
        /// The replayed nonce.
        nonce: U256,
    },
    /// The create-task nonce is not above the sub-account's settled nonce.
    #[error("nonce {nonce} is not above the sub-account's nonce {account_nonce} on chain")]
    NonceTooLow {
        /// Nonce offered.
        nonce: U256,
        /// `account.nonce` on chain.
        account_nonce: U256,
    },
    /// A request field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field (as named on the wire).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The model is not offered by this broker.
    #[error("unknown model {name:?}; this broker fine-tunes: {}", known.join(", "))]
    UnknownModel {
        /// Name or hash asked for.
        name: String,
        /// What is offered.
        known: Vec<String>,
    },
    /// The dataset named by the task cannot be found (storage root unknown, TEE upload missing or owned by
    /// someone else).
    #[error("dataset {hash} not found: upload it first (storage root, or `POST /v1/user/{{addr}}/dataset`)")]
    DatasetNotFound {
        /// The dataset hash/root.
        hash: String,
    },
    /// The dataset exceeds a size limit.
    #[error("dataset too large: {what} is {size}, the limit is {max}")]
    DatasetTooLarge {
        /// What was measured (`bytes`, `records`, `line bytes`, `unpacked bytes`, `entries`).
        what: &'static str,
        /// Measured.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// A dataset line is not in an accepted format.
    #[error("dataset line {line}: {reason}")]
    DatasetFormat {
        /// 1-based line (0 = the file as a whole).
        line: u64,
        /// Why.
        reason: String,
    },
    /// An archive entry was refused (path traversal, link, special file, compression bomb, …): in a dataset,
    /// or in a delivered model being unpacked.
    #[error("archive entry {entry:?} refused: {reason}")]
    Archive {
        /// The entry name as stored in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The training parameters are not acceptable.
    #[error("training parameter {field}: {reason}")]
    TrainingParams {
        /// The parameter key.
        field: String,
        /// Why.
        reason: String,
    },
    /// No such task for this customer.
    #[error("task {id} not found")]
    TaskNotFound {
        /// Task id.
        id: String,
    },
    /// The task cannot be cancelled in its state.
    #[error("task {id} is {state} and can no longer be cancelled{hint}")]
    NotCancellable {
        /// Task id.
        id: String,
        /// Its state.
        state: String,
        /// What the customer can do instead.
        hint: &'static str,
    },
    /// The task has no deliverable (yet).
    #[error("task {id} has no deliverable to download (state {state})")]
    NotDelivered {
        /// Task id.
        id: String,
        /// Its state.
        state: String,
    },
    /// The customer has no fine-tuning sub-account with this provider.
    #[error(
        "{user} has no fine-tuning sub-account with provider {provider}: transfer funds first (zg transfer-fund --service fine-tuning)"
    )]
    NoSubAccount {
        /// Customer.
        user: Address,
        /// Provider.
        provider: Address,
    },
    /// The customer has not acknowledged this provider's TEE signer.
    #[error(
        "{user} has not acknowledged provider {provider}'s TEE signer; acknowledge it first (create-task does)"
    )]
    SignerNotAcknowledged {
        /// Customer.
        user: Address,
        /// Provider.
        provider: Address,
    },
    /// The sub-account cannot cover the fee.
    #[error(
        "the fee of {fee} neuron exceeds the sub-account's available {available} neuron (balance minus pending refunds and other unsettled tasks)"
    )]
    InsufficientBalance {
        /// Fee.
        fee: U256,
        /// Available.
        available: U256,
    },
    /// The fee exceeds what the customer signed as a maximum.
    #[error("the fee of {fee} neuron exceeds the maximum of {max} neuron the customer signed")]
    FeeAboveSignedMax {
        /// Fee.
        fee: U256,
        /// Signed maximum.
        max: U256,
    },
    /// Too many tasks are queued.
    #[error("{what}: {count} of {max} tasks in flight; retry later")]
    Busy {
        /// Which limit (`broker queue`, `customer tasks`).
        what: &'static str,
        /// In flight.
        count: u64,
        /// Limit.
        max: u64,
    },
    /// A read needs the owner's signature (`require_read_auth`, or the native API).
    #[error("authentication required: {0}")]
    Unauthenticated(String),

    // ---------------------------------------------------------------- server faults
    /// The task store (SQLite) failed.
    #[error("task store: {op}: {reason}")]
    Store {
        /// Operation.
        op: &'static str,
        /// Cause.
        reason: String,
    },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// Operation.
        op: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Sealing failed.
    #[error("sealing: {0}")]
    Sealing(#[from] zg_sealing::Error),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] zg_storage::Error),
    /// A chain call failed.
    #[error("chain: {op}: {failure}")]
    Chain {
        /// Which call.
        op: &'static str,
        /// How.
        failure: ChainFailure,
    },
    /// The trainer failed.
    #[error("training failed ({executor}): {reason}")]
    Training {
        /// Executor kind.
        executor: &'static str,
        /// Why (exit code, signal, message).
        reason: String,
    },
    /// The trainer was cancelled.
    #[error("training cancelled")]
    Cancelled,
    /// The trainer ran out of time.
    #[error("training exceeded its time limit of {secs} s")]
    TimedOut {
        /// Limit.
        secs: u64,
    },
    /// The configuration is not usable.
    #[error("config {field}: {reason}")]
    Config {
        /// The key.
        field: String,
        /// Why, and the fix.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(op: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Store {
            op,
            reason: e.to_string(),
        }
    }

    /// Whether the caller caused it (bad input, missing funds, wrong state): a 4xx.
    pub fn is_client_fault(&self) -> bool {
        self.status() < 500
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadSignature { .. }
            | Self::WrongSigner { .. }
            | Self::StaleTimestamp { .. }
            | Self::Unauthenticated(_) => 401,
            Self::NonceReplayed { .. }
            | Self::NonceTooLow { .. }
            | Self::NotCancellable { .. }
            | Self::NotDelivered { .. } => 409,
            Self::InvalidField { .. }
            | Self::DatasetFormat { .. }
            | Self::Archive { .. }
            | Self::TrainingParams { .. }
            | Self::UnknownModel { .. } => 400,
            Self::DatasetNotFound { .. } | Self::TaskNotFound { .. } => 404,
            Self::DatasetTooLarge { .. } => 413,
            Self::NoSubAccount { .. } | Self::InsufficientBalance { .. } | Self::FeeAboveSignedMax { .. } => {
                402
            }
            Self::SignerNotAcknowledged { .. } => 412,
            Self::Busy { .. } => 429,
            Self::Chain {
                failure: ChainFailure::Transient(_),
                ..
            } => 503,
            Self::Store { .. }
            | Self::Io { .. }
            | Self::Sealing(_)
            | Self::Storage(_)
            | Self::Chain { .. }
            | Self::Training { .. }
            | Self::Cancelled
            | Self::TimedOut { .. }
            | Self::Config { .. } => 500,
        }
    }

    /// A stable machine-readable name for the error (the `code` of the JSON error body and of a task's
    /// failure reason).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadSignature { .. } => "bad_signature",
            Self::WrongSigner { .. } => "wrong_signer",
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::NonceReplayed { .. } => "nonce_replayed",
            Self::NonceTooLow { .. } => "nonce_too_low",
            Self::InvalidField { .. } => "invalid_field",
            Self::UnknownModel { .. } => "unknown_model",
            Self::DatasetNotFound { .. } => "dataset_not_found",
            Self::DatasetTooLarge { .. } => "dataset_too_large",
            Self::DatasetFormat { .. } => "dataset_format",
            Self::Archive { .. } => "archive_refused",
            Self::TrainingParams { .. } => "training_params",
            Self::TaskNotFound { .. } => "task_not_found",
            Self::NotCancellable { .. } => "not_cancellable",
            Self::NotDelivered { .. } => "not_delivered",
            Self::NoSubAccount { .. } => "no_sub_account",
            Self::SignerNotAcknowledged { .. } => "signer_not_acknowledged",
            Self::InsufficientBalance { .. } => "insufficient_balance",
            Self::FeeAboveSignedMax { .. } => "fee_above_signed_max",
            Self::Busy { .. } => "busy",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Store { .. } => "store",
            Self::Io { .. } => "io",
            Self::Sealing(_) => "sealing",
            Self::Storage(_) => "storage",
            Self::Chain { .. } => "chain",
            Self::Training { .. } => "training_failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut { .. } => "timed_out",
            Self::Config { .. } => "config",
        }
    }

    /// Whether retrying the same operation later may succeed (chain unreachable, not mined yet).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Chain {
                failure: ChainFailure::Transient(_),
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_are_4xx_with_codes() {
        let e = Error::NonceReplayed {
            user: Address::ZERO,
            nonce: U256::from(5),
        };
        assert_eq!((e.status(), e.code()), (409, "nonce_replayed"));
        assert!(e.is_client_fault());
        let e = Error::Chain {
            op: "addDeliverable",
            failure: ChainFailure::Transient("connection refused".into()),
        };
        assert!(e.is_transient() && !e.is_client_fault());
        assert!(
            ChainFailure::Reverted {
                name: "DeliverableAlreadyExists".into(),
                message: String::new()
            }
            .is_revert("DeliverableAlreadyExists")
        );
    }
}
