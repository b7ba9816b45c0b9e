#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod amount;
mod bindings;
mod client;
mod deploy;
mod devnet;
mod error;
mod fine_tuning;
mod inference;
mod keys;
mod ledger;
mod revert;
#[cfg(feature = "billing")]
mod settlement;
mod types;

pub use amount::{Amount, NEURON_PER_ZG};
pub use bindings::{
    ARTIFACTS, FineTuningServing as FineTuningServingContract, InferenceServing as InferenceServingContract,
    LedgerManager as LedgerManagerContract,
};
pub use client::Client;
pub use deploy::{DeployConfig, deploy_all};
pub use devnet::{DevAccount, Devnet, DevnetConfig, DevnetInfo};
pub use error::{Error, Result};
pub use fine_tuning::{
    FineTuning, FineTuningAccount, FineTuningQuota, FineTuningServiceParams, REVEAL_MARGIN_SECS,
    RefundFreeze, TaskSettlement,
};
pub use inference::Inference;
pub use keys::{load_keystore, save_keystore, signer_from_hex};
pub use ledger::Ledger;
pub use revert::Revert;
#[cfg(feature = "billing")]
pub use settlement::SettlementAdapter;
pub use types::{
    ContractAddresses, Deliverable, InferenceAccount, InferenceService, LedgerInfo, Refund, ServiceInfo,
    ServiceKind, ServiceParams, SettledItem, SettlementOutcome, SettlementPreview, SettlementStatus,
    SignedVoucher, TeeSettlement, TeeSignerAcknowledgements, TxOutcome,
};

/// Re-exported so callers can name signer and primitive types without depending on alloy directly.
pub use alloy::{
    primitives::{Address, B256, Bytes, U256},
    signers::local::PrivateKeySigner,
};

// Used only by the `time` feature of tokio that alloy's pending-transaction watcher needs at run time.
use tokio as _;
