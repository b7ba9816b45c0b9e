//! Shared fixtures: the model path and the committed reference data.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;
use zg_model::{LoadOptions, Model, SMOLLM2_GGUF_FILE};

pub(crate) fn model_path() -> PathBuf {
    let dir = std::env::var_os("ZG_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let path = dir.join(SMOLLM2_GGUF_FILE);
    assert!(
        path.is_file(),
        "{} is missing: run `just setup` (scripts/fetch-model.sh)",
        path.display()
    );
    path
}

/// The model, loaded once per test process.
pub(crate) fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::load(model_path(), LoadOptions::default()).expect("load SmolLM2"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reference {
    pub(crate) gguf_sha256: String,
    pub(crate) tokenizer: Vec<TokRef>,
    pub(crate) greedy: Vec<GreedyRef>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokRef {
    pub(crate) text: String,
    pub(crate) ids: Vec<u32>,
    pub(crate) count: usize,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GreedyRef {
    pub(crate) messages: Vec<zg_model::ChatMessage>,
    pub(crate) prompt: String,
    pub(crate) prompt_ids: Vec<u32>,
    pub(crate) tokens: Vec<u32>,
    /// llama.cpp's five best `[token, logit]` at each step of its greedy path.
    pub(crate) top5: Vec<Vec<(u32, f32)>>,
}

pub(crate) fn reference() -> Reference {
    let raw = include_str!("../reference/reference.json");
    let r: Reference = serde_json::from_str(raw).unwrap();
    assert_eq!(
        r.gguf_sha256,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    r
}
