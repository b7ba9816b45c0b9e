//! Integration tests of zg-finetune: the pipeline over MemChain and a LocalStore, executors, datasets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub
)]

mod common;
mod datasets;
mod executors;
mod lora;
mod pipeline;
