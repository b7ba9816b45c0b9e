//! The `lora` executor on a demo-sized task: the dataset the repo ships (`examples/finetune/dataset.jsonl`, 40
//! chat examples) with `examples/finetune/config.lora.json`, on SmolLM2-135M-Instruct on the CPU. Prints the wall
//! time (model load excluded, dequantization included), the held-out loss before and after, tokens/s and the load
//! average, and fails if held-out loss did not drop.
//!
//! `cargo bench -p zg-finetune --bench lora --profile dev` (candle and zg-model are optimised in the dev profile;
//! `ZG_BENCH_CONFIG=path` for other parameters, `ZG_MODEL_DIR` for the GGUF's folder).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zg_finetune::{CancelToken, Executor, Job, LoraExecutor, TrainContext, TrainEvent, TrainingParams};
use zg_model::{LoadOptions, Model};

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("ZG_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    let config = std::env::var_os("ZG_BENCH_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("examples/finetune/config.lora.json"));
    let t = Instant::now();
    let model = Model::load(dir.join(zg_model::SMOLLM2_GGUF_FILE), LoadOptions::default()).unwrap();
    eprintln!("model loaded in {:.1} s", t.elapsed().as_secs_f64());

    let work = tempfile::tempdir().unwrap();
    let (input, output) = (work.path().join("input"), work.path().join("output"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    std::fs::copy(
        root.join("examples/finetune/dataset.jsonl"),
        input.join("dataset.jsonl"),
    )
    .unwrap();
    let params = TrainingParams::parse(&std::fs::read_to_string(&config).unwrap(), 10).unwrap();
    let job = Job {
        task_id: "bench".into(),
        model: "smollm2-135m-instruct".into(),
        base_model_dir: None,
        input_dir: input,
        output_dir: output,
        params,
    };
    let held: Arc<Mutex<Vec<f64>>> = Arc::default();
    let h2 = Arc::clone(&held);
    let ctx = TrainContext::new(
        move |e| match e {
            TrainEvent::Log(l) => eprintln!("  {l}"),
            TrainEvent::Metric(m) if m.name == "eval_loss" => h2.lock().unwrap().push(m.value),
            _ => {}
        },
        CancelToken::new(),
        Duration::from_secs(3600),
    );
    let load_before = load_avg();
    let t = Instant::now();
    let out = LoraExecutor::new(model).train(&job, &ctx).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let held = held.lock().unwrap();
    let (before, after) = (held[0], held[held.len() - 1]);
    println!(
        "lora demo task ({}): {secs:.1} s wall, held-out loss {before:.4} → {after:.4} ({:+.1}%); load average \
         {load_before} before, {} after",
        config.display(),
        (after / before - 1.0) * 100.0,
        load_avg()
    );
    println!("{}", out.summary);
    assert!(after < before * 0.9, "held-out loss did not drop measurably");
}
