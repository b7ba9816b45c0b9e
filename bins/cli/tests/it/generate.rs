//! `zg fine-tuning generate` on a decrypted LoRA model: the archive `decrypt-model` writes (a ustar of the PEFT
//! files), applied to SmolLM2 from its GGUF, answers differently from the base; an archive that is not a model
//! and a base GGUF that does not exist are refused with what to do.

use std::io::Read as _;

use serde_json::Value;

use crate::{stderr, stdout, zg};

const GGUF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
);
const DATASET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/finetune/dataset.jsonl"
);

/// A real (short) LoRA run on the shipped dataset, packed as the broker delivers it.
fn lora_archive(dir: &std::path::Path) -> std::path::PathBuf {
    let model = zg_model::Model::load(GGUF, zg_model::LoadOptions::default())
        .unwrap_or_else(|e| panic!("{GGUF}: {e} (run `just setup` to fetch SmolLM2)"));
    let examples = zg_model::parse_dataset(&std::fs::read_to_string(DATASET).unwrap()).unwrap();
    let params = zg_model::TrainParams::from_json(
        r#"{"max_steps": 3, "lora_r": 4, "learning_rate": 0.01, "max_seq_length": 64, "validation_split": 0}"#,
    )
    .unwrap();
    let out = zg_model::train_lora(&model, &examples, &params, &mut |_| {}, &|| false).unwrap();
    let peft = dir.join("peft");
    out.adapter.save(&peft).unwrap();
    let mut tar = Vec::new();
    zg_finetune::TarStream::new(&peft)
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    let path = dir.join("model.tar");
    std::fs::write(&path, tar).unwrap();
    path
}

#[test]
fn generate_tries_a_decrypted_lora_adapter_next_to_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let tar = lora_archive(dir.path());
    let tar = tar.to_str().unwrap();
    let prompt = "How long do I bake a sourdough loaf?";
    let generate = || {
        let o = zg(
            &[
                "fine-tuning",
                "generate",
                "--model",
                tar,
                "--prompt",
                prompt,
                "--model-path",
                GGUF,
                "--max-tokens",
                "16",
                "--json",
            ],
            &[],
        );
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    let v = generate();
    assert_eq!(v["kind"], "lora", "{v}");
    assert_eq!(v["files"].as_array().unwrap().len(), 2, "{v}");
    let (base, tuned) = (v["base"].as_str().unwrap(), v["fineTuned"].as_str().unwrap());
    assert!(!base.is_empty() && !tuned.is_empty(), "{v}");
    assert_ne!(base, tuned, "the adapter changes the greedy answer");
    // Greedy by default: the same command gives the same answers.
    assert_eq!(generate(), v);

    // A missing base GGUF: refused, naming the fix.
    let o = zg(
        &[
            "fine-tuning",
            "generate",
            "--model",
            tar,
            "--prompt",
            prompt,
            "--model-path",
            "/nonexistent.gguf",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--model-path"), "{}", stderr(&o));

    // Not an archive at all: refused, nothing generated.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar archive").unwrap();
    let o = zg(
        &[
            "fine-tuning",
            "generate",
            "--model",
            junk.to_str().unwrap(),
            "--prompt",
            prompt,
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}
