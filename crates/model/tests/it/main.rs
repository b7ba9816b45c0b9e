//! zg-model integration tests against the real SmolLM2-135M-Instruct GGUF (fetched by `just setup`).
//!
//! A missing model file fails the tests: it is part of the test fixture, not an optional extra.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod generate;
mod lora;
mod tokenizer;
mod train;
