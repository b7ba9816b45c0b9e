#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod error;
mod model;
mod openai;
mod tokenize;

pub use error::{Error, Result};
pub use model::{DEFAULT_MAX_TOKENS, END, Finish, Generation, Loss, NgramModel, Sampling};
pub use openai::{
    DEMO_EMBEDDING_ID, DEMO_MODEL_ID, DemoError, DemoReply, EMBEDDING_DIMS, MAX_MAX_TOKENS, SHIPPED_CORPUS,
    embed,
};
pub use tokenize::{count_tokens, prompt_tokens, tokenize};
