//! Decode throughput, time to first token and RSS of zg-model on SmolLM2-135M-Instruct (Q4_1), side by side with
//! llama.cpp (llama-cpp-python) on the same GGUF and thread count.
//!
//! `RAYON_NUM_THREADS=1 ZG_BENCH_THREADS=1 cargo bench -p zg-model --bench decode` (`ZG_BENCH_THREADS`, default 2:
//! llama.cpp's `n_threads` and the size of rayon's global pool, which runs our prompt products; set
//! `RAYON_NUM_THREADS` to the same number, since candle sizes its GEMM split from it; llama.cpp side: set
//! `ZG_LLAMA_CPP_PYTHON` to a Python with `llama_cpp`, e.g. the venv `tests/reference/make_reference.py` names).
//! Ours runs with the default [`zg_model::Threads::PerStream`] (each stream decodes on its own thread), or with
//! `ZG_BENCH_POOL=n` on a pool of its own (`Threads::Pool(n)`).
//! Protocol, both sides: a fixed chat prompt; TTFT = median of 5 prefill+first-token runs; decode tokens/s = tokens
//! after the first / time after the first (1 stream: median of 3 runs), 128 tokens per stream, end-of-turn
//! ignored; 4 streams = 4 concurrent sequences, aggregate tokens/s over the wall time of the decode phase; RSS =
//! VmRSS after the 1-stream runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use zg_model::{ChatMessage, GenerateRequest, LoadOptions, Model, Prompt, SamplingParams, Threads};

const PROMPT: &str = "Explain in detail how a steam engine works, step by step, for a curious student.";
/// Tokens per stream (`ZG_BENCH_TOKENS` overrides).
const TOKENS: usize = 128;

fn rss_mb() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn req(max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        model: None,
        prompt: Prompt::Chat(vec![ChatMessage::new("user", PROMPT)]),
        params: SamplingParams {
            max_tokens,
            ignore_eos: true,
            ..SamplingParams::default()
        },
    }
}

fn decode_rate(c: &zg_model::Completion) -> f64 {
    (c.completion_tokens - 1) as f64 / (c.elapsed - c.time_to_first_token).as_secs_f64()
}

fn opts_threads(pool: usize) -> Threads {
    if pool > 0 {
        Threads::Pool(pool)
    } else {
        Threads::PerStream
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let threads: usize = std::env::var("ZG_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let tokens: usize = std::env::var("ZG_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TOKENS);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let path = std::env::var_os("ZG_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join(zg_model::SMOLLM2_GGUF_FILE);
    let t0 = Instant::now();
    // `ZG_BENCH_POOL=n`: the model's own pool of n threads (`Threads::Pool`) instead of the default.
    let pool: usize = std::env::var("ZG_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let opts = LoadOptions {
        threads: opts_threads(pool),
        ..LoadOptions::default()
    };
    let model = Model::load(&path, opts).expect("model (run `just setup`)");
    let load = t0.elapsed();
    let none = &mut |_: &str| ControlFlow::Continue(());
    let prompt_tokens = model.prompt_tokens(&req(1).prompt).unwrap().len();
    // Warm-up (page in weights, kernels' lazy init).
    model.generate(&req(4), none).unwrap();
    let ttft = median(
        (0..5)
            .map(|_| model.generate(&req(1), none).unwrap().time_to_first_token)
            .collect(),
    );
    // Decode of one stream: median of 3 runs (the machine is shared; one run moves with the load).
    let mut rates: Vec<f64> = (0..3)
        .map(|_| decode_rate(&model.generate(&req(tokens), none).unwrap()))
        .collect();
    rates.sort_by(f64::total_cmp);
    let rate1 = rates[1];
    let (rss, hwm) = rss_mb();
    let wall = Instant::now();
    let outs: Vec<zg_model::Completion> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = model.clone();
                s.spawn(move || {
                    m.generate(&req(TOKENS), &mut |_| ControlFlow::Continue(()))
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = wall.elapsed();
    let first = outs.iter().map(|c| c.time_to_first_token).max().unwrap();
    let rate4 =
        outs.iter().map(|c| (c.completion_tokens - 1) as f64).sum::<f64>() / (wall - first).as_secs_f64();
    println!(
        "zg-model: threads {threads}, {:?}, prompt {prompt_tokens} tokens, load {:.2} s",
        opts_threads(pool),
        load.as_secs_f64()
    );
    let ours = [rate1, rate4, ttft.as_secs_f64() * 1000.0, rss, hwm];

    let theirs = std::env::var_os("ZG_LLAMA_CPP_PYTHON").map(|py| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/llama_cpp_bench.py");
        let out = Command::new(py)
            .arg(script)
            .arg(&path)
            .arg(threads.to_string())
            .arg(tokens.to_string())
            .arg(PROMPT)
            .output()
            .expect("run llama_cpp_bench.py");
        assert!(
            out.status.success(),
            "llama.cpp bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let f = |k: &str| v[k].as_f64().unwrap();
        assert_eq!(
            v["prompt_tokens"].as_u64(),
            Some(prompt_tokens as u64),
            "same prompt on both sides"
        );
        [
            f("decode_1"),
            f("decode_4"),
            f("ttft_ms"),
            f("rss_mb"),
            f("hwm_mb"),
        ]
    });
    println!("| metric | zg-model (candle) | llama.cpp | ratio |");
    println!("| --- | --- | --- | --- |");
    let names = [
        "decode tok/s, 1 stream",
        "decode tok/s, 4 streams (sum)",
        "TTFT ms",
        "RSS MB",
        "peak RSS MB",
    ];
    for (i, n) in names.iter().enumerate() {
        match &theirs {
            Some(t) => println!("| {n} | {:.1} | {:.1} | {:.2} |", ours[i], t[i], ours[i] / t[i]),
            None => println!("| {n} | {:.1} | (set ZG_LLAMA_CPP_PYTHON) | |", ours[i]),
        }
    }
}
