#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod chain;
mod dataset;
mod deliver;
mod error;
mod executor;
#[cfg(any(test, feature = "test-utils"))]
mod memchain;
mod package;
mod params;
mod pipeline;
pub mod sig;
mod state;
mod store;

pub use chain::{DeliverableState, FineTuningChain, Settlement, SettlementDomain, SubAccount};
pub use dataset::{ByteTokenizer, Dataset, DatasetFormat, DatasetLimits, Record, Tokenizer, WordTokenizer};
pub use deliver::{Artifact, ArtifactStore, hash_file, seal_output};
pub use error::{ChainFailure, Error, Result};
pub use executor::{
    ADAPTER_FORMAT, BuiltinExecutor, CancelToken, CommandExecutor, CommandSpec, ContainerRuntime,
    DockerExecutor, Executor, Job, LoraExecutor, MAX_BATCH, MAX_LOG_LINE, MAX_LORA_RANK, MAX_SEQ_LEN, Metric,
    ModelTokenizer, ResourceLimits, TrainContext, TrainEvent, TrainOutcome, apply_adapter,
};
#[cfg(any(test, feature = "test-utils"))]
pub use memchain::{Fault, MemChain};
pub use package::{TarStream, list_entries, unpack};
pub use params::{MAX_PARAMS_BYTES, TrainingParams};
pub use pipeline::{ADAPTER_DIR, CreateTask, ModelSpec, Pipeline, PipelineConfig, TaskEvent};
pub use state::{TaskId, TaskState};
pub use store::{LogLine, MAX_LOG_LINES, NewTask, TaskRecord, TaskStore, Update, now_ms};

/// Re-exported so callers name keys and amounts without direct dependencies.
pub use alloy_primitives::{Address, B256, Bytes, U256};
/// The secp256k1 signing key type the pipeline takes for the TEE.
pub use k256::ecdsa::SigningKey;

// zip's deflate support runs on flate2; naming it here selects flate2's pure-Rust backend (miniz_oxide).
use flate2 as _;
