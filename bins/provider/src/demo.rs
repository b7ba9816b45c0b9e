//! The built-in demo model (`--upstream builtin`) lives in `zg-ngram`, one copy for zg-provider and zg-broker
//! (which fine-tunes it); re-exported here under its old paths.

pub use zg_ngram::{
    DEFAULT_MAX_TOKENS, DEMO_EMBEDDING_ID, DEMO_MODEL_ID, DemoError, DemoReply, EMBEDDING_DIMS, Finish,
    Generation, NgramModel, SHIPPED_CORPUS, Sampling, embed, prompt_tokens, tokenize,
};
