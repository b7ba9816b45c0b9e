#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod adapters;
mod chain;
mod config;
mod error;
mod grpc;
mod http;
mod metrics;
mod run;
mod storage;
mod tee;

pub use crate::adapters::{
    Deployer, MAX_DEPLOYS_AT_ONCE, MAX_PROVIDER_MESSAGE, authorization_from_pb, authorization_pb, deploy,
};
pub use crate::chain::{ChainAdapter, CrashPoints};
pub use crate::config::{AdapterSettings, CONFIG_TEMPLATE, KeySource, ModelConfig, RunArgs, Settings};
pub use crate::error::{Error, Result};
pub use crate::grpc::{Grpc, GrpcService, grpc_service, read_auth, task_pb};
pub use crate::http::{MAX_JSON_BODY, READ_AUTH_HEADER, render_log, router, serve, task_json};
pub use crate::metrics::Metrics;
pub use crate::run::{
    App, BrokerPipeline, DEFAULT_MODEL_PATH, Running, SMOLLM2_MODEL, ZEROG_MODEL_HASHES, build_models, init,
    run, start,
};
pub use crate::storage::BrokerStore;
pub use crate::tee::{BackendChoice, Tee};

// Used by the binary only (main.rs).
use anyhow as _;
use tracing_subscriber as _;
