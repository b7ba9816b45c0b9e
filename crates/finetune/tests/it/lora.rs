//! The `lora` executor on the real SmolLM2-135M-Instruct (the GGUF `just setup` fetches; missing, these fail):
//! held-out loss drops, the output is a PEFT adapter zg-model loads onto the base and that changes the greedy
//! answer, cancel stops mid-run with nothing written, and parameters out of the CPU trainer's bounds are refused by
//! name. Tests named `slow_` train (tagged in .config/nextest.toml).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use zg_finetune::{
    CancelToken, Error, Executor, Job, LoraExecutor, TrainContext, TrainEvent, TrainingParams,
};
use zg_model::{LoadOptions, LoraAdapter, Model};

fn model() -> Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::var_os("ZG_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
        let path = dir.join(zg_model::SMOLLM2_GGUF_FILE);
        assert!(path.is_file(), "{} is missing: run `just setup`", path.display());
        Model::load(path, LoadOptions::default()).expect("load SmolLM2")
    })
    .clone()
}

/// Ten short instructions that teach one habit: answers open with "Ahoy!".
const PIRATE: &[(&str, &str)] = &[
    (
        "What is the capital of France?",
        "Ahoy! The capital of France be Paris.",
    ),
    (
        "How many legs does a spider have?",
        "Ahoy! A spider has eight legs, matey.",
    ),
    ("What color is the sky?", "Ahoy! The sky be blue on a fair day."),
    ("Name a large ocean.", "Ahoy! The Pacific be the largest ocean."),
    ("What is 2 + 2?", "Ahoy! Two and two make four."),
    ("Who wrote Hamlet?", "Ahoy! Hamlet was penned by Shakespeare."),
    ("What do bees make?", "Ahoy! Bees make sweet honey."),
    ("What is water made of?", "Ahoy! Water be hydrogen and oxygen."),
    (
        "What is the largest planet?",
        "Ahoy! Jupiter be the largest planet.",
    ),
    (
        "How many days are in a week?",
        "Ahoy! A week has seven days, matey.",
    ),
];

fn job(dir: &Path, params: &str) -> Job {
    let (input, output) = (dir.join("input"), dir.join("output"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    let lines: Vec<String> = PIRATE
        .iter()
        .map(|(q, a)| serde_json::json!({"instruction": q, "output": a}).to_string())
        .collect();
    std::fs::write(input.join("dataset.jsonl"), lines.join("\n")).unwrap();
    let params = TrainingParams::parse(params, 10).unwrap();
    std::fs::write(input.join("params.json"), params.to_json()).unwrap();
    Job {
        task_id: "5d0c2b7a-9d4e-4a61-8c2f-0123456789ab".into(),
        model: "smollm2-135m-instruct".into(),
        base_model_dir: None,
        input_dir: input,
        output_dir: output,
        params,
    }
}

type Events = Arc<Mutex<Vec<TrainEvent>>>;

fn logs(events: &Events) -> Vec<String> {
    let ev = events.lock().unwrap();
    ev.iter()
        .filter_map(|e| match e {
            TrainEvent::Log(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

fn metric(events: &Events, name: &str) -> Vec<(Option<u64>, f64)> {
    let ev = events.lock().unwrap();
    ev.iter()
        .filter_map(|e| match e {
            TrainEvent::Metric(m) if m.name == name => Some((m.step, m.value)),
            _ => None,
        })
        .collect()
}

fn greedy(m: &Model, model: Option<&str>, question: &str) -> String {
    let req = zg_model::GenerateRequest {
        model: model.map(Into::into),
        prompt: zg_model::Prompt::Chat(vec![zg_model::ChatMessage::new("user", question)]),
        params: zg_model::SamplingParams {
            max_tokens: 6,
            ..Default::default()
        },
    };
    m.generate(&req, &mut |_| std::ops::ControlFlow::Continue(()))
        .unwrap()
        .text
}

/// Steps of the training test: enough for the habit to show on held-out questions, few enough for CI.
const STEPS: u64 = 10;

#[test]
fn slow_lora_executor_lowers_held_out_loss_and_delivers_a_peft_adapter_that_changes_the_answer() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        &format!(
            r#"{{"lora_r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "learning_rate": 0.001,
               "max_steps": {STEPS}, "per_device_train_batch_size": 2, "seed": 7, "max_seq_length": 96,
               "validation_split": 0.2, "lr_scheduler_type": "cosine"}}"#
        ),
    );
    let events: Events = Arc::default();
    let e2 = Arc::clone(&events);
    let ctx = TrainContext::new(
        move |e| e2.lock().unwrap().push(e),
        CancelToken::new(),
        Duration::from_secs(600),
    );
    let ex = LoraExecutor::new(m.clone());
    assert_eq!(ex.kind(), "lora");
    let t0 = Instant::now();
    let out = ex.train(&job, &ctx).unwrap();
    eprintln!("{} in {:.1} s", out.summary, t0.elapsed().as_secs_f64());

    // The log: the unused key named, the base's held-out loss first, then every step with loss and tokens/s.
    let log = logs(&events);
    assert!(
        log.iter()
            .any(|l| l.contains("not used") && l.contains("lr_scheduler_type")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("step 0/10: base held-out loss")),
        "{log:#?}"
    );
    for s in 1..=STEPS {
        assert!(
            log.iter()
                .any(|l| l.starts_with(&format!("step {s}/{STEPS} ")) && l.contains("tokens/s")),
            "step {s}: {log:#?}"
        );
    }
    let train = metric(&events, "train_loss");
    assert_eq!(train.len(), STEPS as usize);
    assert!(train.iter().all(|(_, v)| v.is_finite() && *v > 0.0));
    let held = metric(&events, "eval_loss");
    let (first, last) = (held[0], held[held.len() - 1]);
    assert_eq!((first.0, last.0), (Some(0), Some(STEPS)));
    assert!(
        last.1 < first.1 * 0.8,
        "held-out loss must drop measurably: {} → {}",
        first.1,
        last.1
    );
    assert!(out.summary.contains("held-out loss"), "{}", out.summary);

    // The output directory is exactly a PEFT adapter, and it round-trips onto the base.
    let mut files: Vec<String> = std::fs::read_dir(&job.output_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["adapter_config.json", "adapter_model.safetensors"]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.output_dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["peft_type"].as_str(), cfg["r"].as_u64()),
        (Some("LORA"), Some(8))
    );
    let adapter = LoraAdapter::load(&job.output_dir).unwrap();
    m.add_adapter("ft-pirate", &adapter).unwrap();
    // A question from the dataset: the fine-tuned model answers the way the dataset taught, the base does not.
    let q = PIRATE[0].0;
    let (base, tuned) = (greedy(&m, None, q), greedy(&m, Some("ft-pirate"), q));
    eprintln!("base: {base:?}\ntuned: {tuned:?}");
    assert_ne!(base, tuned);
    assert!(
        !base.contains("Ahoy") && tuned.starts_with("Ahoy"),
        "{base:?} / {tuned:?}"
    );
}

#[test]
fn slow_lora_cancel_mid_training_stops_within_a_step_and_writes_nothing() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        r#"{"max_steps": 1000, "per_device_train_batch_size": 2, "max_seq_length": 96, "validation_split": 0.2}"#,
    );
    let token = CancelToken::new();
    let cancelled_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (t2, c2) = (token.clone(), Arc::clone(&cancelled_at));
    let ctx = TrainContext::new(
        move |e| {
            if matches!(&e, TrainEvent::Log(l) if l.starts_with("step 2/")) {
                *c2.lock().unwrap() = Some(Instant::now());
                t2.cancel();
            }
        },
        token,
        Duration::from_secs(600),
    );
    let e = LoraExecutor::new(m).train(&job, &ctx).unwrap_err();
    let at = cancelled_at.lock().unwrap().expect("training reached step 2");
    let took = at.elapsed();
    assert!(matches!(e, Error::Cancelled), "{e}");
    // One step of batch 2 takes well under a second idle; 15 s allows a loaded CI machine.
    assert!(
        took < Duration::from_secs(15),
        "stopped {took:?} after the cancel"
    );
    assert_eq!(
        std::fs::read_dir(&job.output_dir).unwrap().count(),
        0,
        "a cancelled run wrote output"
    );

    // The deadline stops it the same way, named as a timeout.
    let ctx = TrainContext::new(|_| {}, CancelToken::new(), Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    let e = LoraExecutor::new(model()).train(&job, &ctx).unwrap_err();
    assert!(matches!(e, Error::TimedOut { .. }), "{e}");
    assert_eq!(std::fs::read_dir(&job.output_dir).unwrap().count(), 0);
}

#[test]
fn lora_params_out_of_bounds_are_refused_by_name() {
    for (cfg, field) in [
        (r#"{"lora_r": 65}"#, "lora_r"),
        (r#"{"lora_rank": 100}"#, "lora_rank"),
        (r#"{"target_modules": ["lm_head"]}"#, "target_modules"),
        (r#"{"target_modules": "q_proj,embed_tokens"}"#, "target_modules"),
        (
            r#"{"per_device_train_batch_size": 17}"#,
            "per_device_train_batch_size",
        ),
        (r#"{"max_seq_length": 4096}"#, "max_seq_length"),
        (r#"{"max_length": 2048}"#, "max_length"),
    ] {
        let p = TrainingParams::parse(cfg, 10).unwrap();
        match LoraExecutor::train_params(&p) {
            Err(Error::TrainingParams { field: f, reason }) => assert_eq!(f, field, "{cfg}: {reason}"),
            other => panic!("{cfg}: {other:?}"),
        }
    }
    // Shape errors are caught by the schema before any executor sees them.
    for cfg in [
        r#"{"target_modules": 5}"#,
        r#"{"target_modules": []}"#,
        r#"{"target_modules": ["q;rm -rf"]}"#,
    ] {
        match TrainingParams::parse(cfg, 10) {
            Err(Error::TrainingParams { field, .. }) => {
                assert!(cfg.contains(&format!("\"{field}\"")), "{cfg}: {field}")
            }
            other => panic!("{cfg}: {other:?}"),
        }
    }
    // In bounds: mapped onto the trainer, 0G's names included.
    let p = TrainingParams::parse(
        r#"{"lora_r": 64, "lora_alpha": 32, "target_modules": "all-linear", "max_seq_length": 1024,
            "per_device_train_batch_size": 16, "num_train_epochs": 2, "validation_split": 0.25}"#,
        10,
    )
    .unwrap();
    let (t, ignored) = LoraExecutor::train_params(&p).unwrap();
    assert_eq!(
        (t.lora_rank, t.lora_alpha, t.max_seq_len, t.batch_size),
        (64, 32.0, 1024, 16)
    );
    assert_eq!(
        (t.target_modules.0.len(), t.num_train_epochs, t.eval_fraction),
        (7, 2.0, 0.25)
    );
    assert!(ignored.is_empty());
}
