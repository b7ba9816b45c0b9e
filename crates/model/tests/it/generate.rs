//! Generation: greedy equals llama.cpp's first tokens, seeds reproduce, streaming, stop strings, limits.

use std::ops::ControlFlow;

use crate::common::{model, reference};
use zg_model::{ChatMessage, Error, FinishReason, GenerateRequest, Prompt, SamplingParams};

fn req(prompt: Prompt, params: SamplingParams) -> GenerateRequest {
    GenerateRequest {
        model: None,
        prompt,
        params,
    }
}

fn run(r: &GenerateRequest) -> zg_model::Completion {
    model().generate(r, &mut |_| ControlFlow::Continue(())).unwrap()
}

/// Bounds on how far our logits may be from llama.cpp's, over its top-5 tokens along its greedy paths. The kernels
/// differ (llama.cpp keeps the KV cache in f16 and quantizes activations to 8 bits for every product; we keep f32,
/// quantize activations only when decoding, and run prompts in f32), so logits differ a little (measured: mean 0.18,
/// max 0.91 for whole sequences; mean 0.19, max 0.78 token by token; on logits of ~25);
/// a wrong RoPE, norm, mask or attention would be off by whole units everywhere.
const MEAN_TOLERANCE: f32 = 0.35;
const MAX_TOLERANCE: f32 = 1.6;
/// Where llama.cpp's best token leads its second by more than this, our greedy choice must be the same.
const CLEAR_MARGIN: f32 = 1.0;

/// Along llama.cpp's greedy path (teacher-forced), our logits equal llama.cpp's within the bounds above, and our
/// greedy choice equals llama.cpp's wherever its choice is clear. Both of our paths are checked: the whole sequence
/// in one pass (the prompt kernels: dequantized weights, f32 products) and the prompt in one pass then one token at
/// a time, as `generate` runs (the decode kernels: 8-bit activations against the 4/8-bit weights).
#[test]
fn logits_and_greedy_choices_equal_llama_cpp() {
    let m = model();
    for path in ["sequence", "incremental"] {
        let (mut worst, mut sum, mut n, mut decided) = (0f32, 0f32, 0usize, 0usize);
        for g in reference().greedy {
            let steps = g.top5.len();
            let mut ids = g.prompt_ids.clone();
            ids.extend_from_slice(&g.tokens[..steps - 1]);
            let rows = if path == "sequence" {
                let all = m.sequence_logits(&ids, None).unwrap();
                all[g.prompt_ids.len() - 1..].to_vec()
            } else {
                m.incremental_logits(&ids, g.prompt_ids.len(), None).unwrap()
            };
            assert_eq!(rows.len(), steps);
            for (step, top) in g.top5.iter().enumerate() {
                let ours = &rows[step];
                for (tok, theirs) in top {
                    let d = (ours[*tok as usize] - theirs).abs();
                    worst = worst.max(d);
                    sum += d;
                    n += 1;
                }
                let margin = top[0].1 - top[1].1;
                if margin > CLEAR_MARGIN {
                    let argmax = ours
                        .iter()
                        .enumerate()
                        .fold((0, f32::MIN), |b, (i, v)| if *v > b.1 { (i, *v) } else { b })
                        .0;
                    assert_eq!(
                        argmax as u32, top[0].0,
                        "{path}, step {step}: llama.cpp's margin {margin}"
                    );
                    decided += 1;
                }
            }
        }
        let mean = sum / n as f32;
        eprintln!(
            "{path}: logit difference to llama.cpp: max {worst:.4}, mean {mean:.4}; {decided} clear greedy choices equal"
        );
        assert!(
            mean < MEAN_TOLERANCE && worst < MAX_TOLERANCE,
            "{path}: mean {mean}, max {worst}"
        );
        assert!(decided >= 15, "{path}: only {decided} clear choices compared");
    }
}

/// Greedy decoding with our own choices: the third reference prompt has no near-tie at its start, so the first
/// tokens are llama.cpp's exactly.
#[test]
fn greedy_first_tokens_equal_llama_cpp() {
    let g = reference().greedy.into_iter().nth(2).unwrap();
    let c = run(&req(
        Prompt::Tokens(g.prompt_ids.clone()),
        SamplingParams {
            max_tokens: g.tokens.len(),
            ..SamplingParams::default()
        },
    ));
    let same = c
        .token_ids
        .iter()
        .zip(&g.tokens)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!("ours {:?}\nllama {:?}", c.token_ids, g.tokens);
    assert!(same >= 4, "first {same} tokens equal");
}

#[test]
fn greedy_is_deterministic_and_seeded_sampling_reproduces() {
    let chat = Prompt::Chat(vec![ChatMessage::new(
        "user",
        "Tell me a short story about a robot.",
    )]);
    let greedy = SamplingParams {
        max_tokens: 20,
        seed: 1,
        ..SamplingParams::default()
    };
    let a = run(&req(chat.clone(), greedy.clone()));
    let b = run(&req(chat.clone(), SamplingParams { seed: 99, ..greedy }));
    assert_eq!(a.token_ids, b.token_ids, "greedy must not depend on the seed");
    let hot = |seed| SamplingParams {
        max_tokens: 20,
        temperature: 1.0,
        top_p: 0.95,
        seed,
        ..SamplingParams::default()
    };
    let x = run(&req(chat.clone(), hot(7)));
    let y = run(&req(chat.clone(), hot(7)));
    let z = run(&req(chat, hot(8)));
    assert_eq!(x.token_ids, y.token_ids);
    assert_eq!(x.text, y.text);
    assert_ne!(
        x.token_ids, z.token_ids,
        "different seeds should sample differently"
    );
}

/// The prompt is one where llama.cpp's greedy answer (llama-cpp-python 0.3.36, same GGUF) is this sentence with a
/// clear lead at every step (smallest top-1/top-2 logit gap 0.98). "What is the capital of France?" is not: its
/// first token is a near tie (llama.cpp: "L" 24.74 vs "The" 24.65) and llama.cpp answers "L'Étoile, la Cité, …".
#[test]
fn streams_text_and_counts_usage_exactly() {
    let m = model();
    let msgs = vec![ChatMessage::new("user", "Name the capital of France.")];
    let mut pieces = Vec::new();
    let c = m
        .generate(
            &req(
                Prompt::Chat(msgs.clone()),
                SamplingParams {
                    max_tokens: 40,
                    ..SamplingParams::default()
                },
            ),
            &mut |s| {
                pieces.push(s.to_string());
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert!(pieces.len() > 1, "streamed in pieces: {pieces:?}");
    assert_eq!(pieces.concat(), c.text);
    assert_eq!(c.text, "The capital of France is Paris.");
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!(
        c.prompt_tokens,
        m.tokenizer().count(&m.render_chat(&msgs, true).unwrap())
    );
    assert_eq!(c.completion_tokens, c.token_ids.len());
    if c.finish_reason == FinishReason::Stop {
        assert_eq!(
            c.token_ids.last(),
            Some(&m.tokenizer().eos_token_id()),
            "ends with <|im_end|>"
        );
    }
    assert_eq!(m.tokenizer().decode(&c.token_ids, true), c.text);
    assert!(c.time_to_first_token <= c.elapsed);
}

#[test]
fn max_tokens_stop_strings_and_cancellation() {
    let m = model();
    let chat = Prompt::Chat(vec![ChatMessage::new(
        "user",
        "Count from 1 to 20, separated by commas.",
    )]);
    let c = run(&req(
        chat.clone(),
        SamplingParams {
            max_tokens: 5,
            ..SamplingParams::default()
        },
    ));
    assert_eq!((c.completion_tokens, c.finish_reason), (5, FinishReason::Length));
    let full = run(&req(
        chat.clone(),
        SamplingParams {
            max_tokens: 30,
            ..SamplingParams::default()
        },
    ));
    assert!(full.text.contains('3'), "{}", full.text);
    let cut = run(&req(
        chat.clone(),
        SamplingParams {
            max_tokens: 30,
            stop: vec!["3".into()],
            ..SamplingParams::default()
        },
    ));
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert_eq!(cut.text, full.text[..full.text.find('3').unwrap()]);
    // The caller hangs up after the first piece: usage still counts what was computed.
    let mut n = 0;
    let c = m
        .generate(
            &req(
                chat,
                SamplingParams {
                    max_tokens: 30,
                    ..SamplingParams::default()
                },
            ),
            &mut |_| {
                n += 1;
                ControlFlow::Break(())
            },
        )
        .unwrap();
    assert_eq!((c.finish_reason, n), (FinishReason::Cancelled, 1));
    assert!(c.completion_tokens >= 1 && c.completion_tokens < 30);
}

#[test]
fn bad_requests_get_named_errors() {
    let m = model();
    let p = Prompt::Text("hi".into());
    let err = |params: SamplingParams| {
        m.generate(&req(p.clone(), params), &mut |_| ControlFlow::Continue(()))
            .unwrap_err()
    };
    assert!(matches!(
        err(SamplingParams {
            max_tokens: 0,
            ..Default::default()
        }),
        Error::InvalidParam {
            name: "max_tokens",
            ..
        }
    ));
    assert!(matches!(
        err(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }),
        Error::InvalidParam { name: "top_p", .. }
    ));
    assert!(matches!(
        err(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }),
        Error::InvalidParam {
            name: "temperature",
            ..
        }
    ));
    assert!(matches!(
        err(SamplingParams {
            stop: vec![String::new()],
            ..Default::default()
        }),
        Error::InvalidParam { name: "stop", .. }
    ));
    let e = err(SamplingParams {
        max_tokens: 9000,
        ..Default::default()
    });
    assert!(matches!(e, Error::ContextWindow { context: 8192, .. }), "{e}");
    let e = m
        .generate(
            &GenerateRequest {
                model: Some("gpt-4".into()),
                prompt: p.clone(),
                params: SamplingParams::default(),
            },
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::UnknownModel { requested, .. } if requested == "gpt-4"),
        "{e}"
    );
    assert!(e.is_client_fault());
    let e = m
        .generate(
            &req(Prompt::Tokens(vec![49_152]), SamplingParams::default()),
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidParam { name: "prompt", .. }), "{e}");
    // The base answers to its own name, whatever the case.
    let ok = m.generate(
        &GenerateRequest {
            model: Some("smollm2-135m-instruct".into()),
            prompt: p,
            params: SamplingParams {
                max_tokens: 1,
                ..Default::default()
            },
        },
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(ok.is_ok());
}
