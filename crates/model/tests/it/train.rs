//! LoRA training on the CPU: loss goes down, runs are deterministic and cancellable, output round-trips as PEFT.

use zg_model::{Error, LoraAdapter, TrainExample, TrainParams, dataset_loss, parse_dataset, train_lora};

use crate::common::model;

/// Eight short conversations that teach one habit: answers open with "Ahoy!".
fn pirate_dataset() -> Vec<TrainExample> {
    let qs = [
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
    ];
    let lines: Vec<String> = qs
        .iter()
        .map(|(q, a)| serde_json::json!({"instruction": q, "output": a}).to_string())
        .collect();
    parse_dataset(&lines.join("\n")).unwrap()
}

fn params(steps: i64) -> TrainParams {
    TrainParams::from_json(&format!(
        r#"{{"lora_rank": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "learning_rate": 0.001,
            "max_steps": {steps}, "per_device_train_batch_size": 2, "seed": 7, "max_seq_len": 96, "eval_fraction": 0}}"#
    ))
    .unwrap()
}

/// Training steps of the loss test: 10 take the loss from 3.58 to 1.37 (20 steps: to 0.40; measured), at half
/// the CPU time, so the suite stays short on a busy CI machine.
const STEPS: usize = 10;

#[test]
fn slow_ten_steps_lower_the_training_loss_and_the_adapter_round_trips() {
    let m = model();
    let data = pirate_dataset();
    let before = dataset_loss(m, &data, None, 96).unwrap();
    let mut log = Vec::new();
    let out = train_lora(
        m,
        &data,
        &params(STEPS as i64),
        &mut |p| log.push(p.clone()),
        &|| false,
    )
    .unwrap();
    let after = dataset_loss(m, &data, Some(&out.adapter), 96).unwrap();
    let secs = out.elapsed.as_secs_f64();
    eprintln!(
        "train: loss {before:.3} → {after:.3} in {} steps, {secs:.1} s ({:.2} s/step, {:.0} tokens/s)",
        out.steps,
        secs / out.steps as f64,
        out.tokens as f64 / secs
    );
    assert_eq!(out.steps, STEPS);
    assert_eq!(log.len(), STEPS);
    assert!(
        log.iter()
            .all(|p| p.loss.is_finite() && p.tokens_per_sec > 0.0 && p.total_steps == STEPS)
    );
    assert_eq!(log.last().map(|p| p.step), Some(STEPS));
    assert!(
        after < before * 0.7,
        "training loss must drop: {before} → {after}"
    );

    // Save as PEFT, load back: the same logits as the adapter in memory.
    let dir = tempfile::tempdir().unwrap();
    out.adapter.save(dir.path()).unwrap();
    let loaded = LoraAdapter::load(dir.path()).unwrap();
    m.add_adapter("ft-mem", &out.adapter).unwrap();
    m.add_adapter("ft-disk", &loaded).unwrap();
    let ids = m
        .tokenizer()
        .encode("<|im_start|>user\nWhat is the capital of Spain?<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(
        m.logits(&ids, Some("ft-mem")).unwrap(),
        m.logits(&ids, Some("ft-disk")).unwrap()
    );
    // And it learned the habit: the greedy answer now opens like the dataset's.
    let c = m
        .generate(
            &zg_model::GenerateRequest {
                model: Some("ft-disk".into()),
                prompt: zg_model::Prompt::Tokens(ids),
                params: zg_model::SamplingParams {
                    max_tokens: 4,
                    ..Default::default()
                },
            },
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
    eprintln!("fine-tuned answer: {:?}", c.text);
}

#[test]
fn training_is_deterministic_held_out_is_reported_and_cancel_stops() {
    let m = model();
    let data = pirate_dataset();
    let mut p = params(2);
    p.eval_fraction = 0.25;
    let run = || {
        let mut log = Vec::new();
        let out = train_lora(m, &data, &p, &mut |x| log.push(x.clone()), &|| false).unwrap();
        (out, log)
    };
    let (a, log) = run();
    let (b, _) = run();
    assert_eq!((a.train_examples, a.held_out_examples), (6, 2));
    assert!(a.held_out_before.is_some() && log.last().and_then(|p| p.held_out_loss).is_some());
    for layer in 0..30 {
        for t in [zg_model::Target::Q, zg_model::Target::V] {
            let (aa, ab) = a.adapter.weights(layer, t).unwrap();
            let (ba, bb) = b.adapter.weights(layer, t).unwrap();
            assert_eq!(aa.to_vec2::<f32>().unwrap(), ba.to_vec2::<f32>().unwrap());
            assert_eq!(ab.to_vec2::<f32>().unwrap(), bb.to_vec2::<f32>().unwrap());
        }
    }
    let e = train_lora(m, &data, &p, &mut |_| {}, &|| true).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
}
