#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod kernels;
mod llama;
mod lora;
mod model;
mod sample;
mod template;
mod tokenizer;
mod train;

pub use crate::error::{Error, Result};
pub use crate::llama::LlamaConfig;
pub use crate::lora::{
    ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, LoraAdapter, LoraConfig, MAX_ADAPTER_BYTES, MAX_RANK, Target,
};
pub use crate::model::{
    Completion, DeviceKind, FinishReason, GenerateRequest, LoadOptions, MAX_STOP, MAX_STOP_BYTES, Model,
    Prompt, SMOLLM2_135M_INSTRUCT, SMOLLM2_GGUF_FILE, SamplingParams, Threads, same_model_name,
};
pub use crate::template::{ChatMessage, ChatTemplate};
pub use crate::tokenizer::Tokenizer;
pub use crate::train::{
    MAX_EXAMPLES, Targets, TrainExample, TrainOutcome, TrainParams, TrainProgress, dataset_loss,
    parse_dataset, train_lora,
};
