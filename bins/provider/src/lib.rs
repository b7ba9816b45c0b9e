#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod adapters;
mod chain;
mod config;
mod core;
mod demo;
mod error;
mod grpc;
mod http;
mod llm;
mod metrics;
mod run;
mod tee;
mod upstream;

pub use crate::adapters::{
    ADAPTERS_DIR, AdapterRegistry, AdapterService, AdapterSettings, CHALLENGE_TTL, DEFAULT_MAX_ADAPTERS,
    DEFAULT_MAX_PER_OWNER, DEPLOYMENT_FILE, Deployment, MAX_DEPLOY_STREAMS, MAX_DEPLOYS_AT_ONCE,
    MAX_OUTSTANDING_CHALLENGES, ReserveRefusal, STATE_ACTIVE, adapter_service, serves_base,
};
pub use crate::chain::{register, warn_unless_owner_acknowledged};
pub use crate::config::{CONFIG_TEMPLATE, RunArgs, Settings};
pub use crate::core::{
    AccountSource, Authorized, CoreConfig, Credentials, Exchange, ExchangeBody, Limits, Provider,
    ReceiptJson, Slot, StaticAccounts, StoredReceipt, StreamItem, UsageJson, now_ms,
};
pub use crate::demo::{
    DEFAULT_MAX_TOKENS, DEMO_EMBEDDING_ID, DEMO_MODEL_ID, DemoError, DemoReply, EMBEDDING_DIMS, Finish,
    Generation, NgramModel, SHIPPED_CORPUS, Sampling, embed, prompt_tokens, tokenize,
};
pub use crate::error::{Error, Result};
pub use crate::grpc::{GrpcService, ServiceInfo, grpc_service};
pub use crate::http::{
    MAX_BODY, RECEIPT_EVENT, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, receipt_event, router, serve,
};
pub use crate::llm::{DEFAULT_MODEL_PATH, LlmUpstream, SMOLLM2_MODEL_ID};
pub use crate::metrics::Metrics;
pub use crate::run::{Running, init, run, settle_round, start};
pub use crate::tee::{BackendChoice, GpuChoice, Tee, TeeKeys};
pub use crate::upstream::{Route, UpBody, UpResponse, Upstream};

// Used by the binary only (main.rs); the library re-exports nothing of them.
use anyhow as _;
use tracing_subscriber as _;
