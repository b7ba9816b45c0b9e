//! The provider serving the built-in SmolLM2 over loopback (issue 11 item 2): time to first token, decode tokens/s
//! and whole-request latency for 1 stream and 4 concurrent streams, and RSS, through the full billed path (session
//! token, admission, metering, signing, ledger commit). zg-model alone on the same prompt is printed beside it,
//! so the provider's share is visible; zg-model's own bench (`crates/model/benches/decode.rs`) compares that with
//! llama.cpp.
//!
//! `RAYON_NUM_THREADS=1 nice cargo bench -p zg-provider --bench smollm2` (`ZG_BENCH_SLOTS`: the model's
//! generation slots, default 2, one thread each; requests beyond them wait for a slot).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/common.rs"]
mod common;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde_json::Value;

const QUESTION: &str = "Count from 1 to 100, separated by commas.";
const TOKENS: u64 = 128;

struct Run {
    ttft: Duration,
    total: Duration,
    tokens: u64,
}

async fn stream(url: &str, token: &str) -> Run {
    let body = serde_json::json!({"messages": [{"role": "user", "content": QUESTION}], "max_tokens": TOKENS,
                                  "temperature": 0, "stream": true})
    .to_string();
    let t = Instant::now();
    let mut r = reqwest::Client::new()
        .post(format!("{url}/v1/proxy/chat/completions"))
        .header("authorization", token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut ttft = None;
    let mut buf = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        if ttft.is_none() && String::from_utf8_lossy(&c).contains("\"content\":\"") {
            // The first chunk with text (the role chunk carries an empty content).
            if !String::from_utf8_lossy(&c).contains("\"content\":\"\"") {
                ttft = Some(t.elapsed());
            }
        }
        buf.extend_from_slice(&c);
    }
    let total = t.elapsed();
    let text = String::from_utf8(buf).unwrap();
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| !v["usage"].is_null())
        .expect("usage chunk");
    Run {
        ttft: ttft.unwrap_or(total),
        total,
        tokens: usage["usage"]["completion_tokens"].as_u64().unwrap(),
    }
}

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let slots: usize = std::env::var("ZG_BENCH_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rss0 = rss_mb();
    let o = rt.block_on(common::offline(common::Opts {
        smollm2: true,
        smollm2_slots: slots,
        ..common::Opts::default()
    }));
    let (_, token) = common::customer(&o, 10u128.pow(30));
    // Warm-up.
    rt.block_on(stream(&o.url, &token));
    let ones: Vec<Run> = (0..3).map(|_| rt.block_on(stream(&o.url, &token))).collect();
    let decode = |r: &Run| (r.tokens - 1) as f64 / (r.total - r.ttft).as_secs_f64();
    let ttft1 = median(ones.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect());
    let total1 = median(ones.iter().map(|r| r.total.as_secs_f64() * 1e3).collect());
    let dec1 = median(ones.iter().map(decode).collect());
    let rss1 = rss_mb();
    let t = Instant::now();
    let four: Vec<Run> = rt.block_on(async {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (url, token) = (o.url.clone(), token.clone());
                tokio::spawn(async move { stream(&url, &token).await })
            })
            .collect();
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.unwrap());
        }
        out
    });
    let wall = t.elapsed();
    let agg4 = four.iter().map(|r| r.tokens as f64).sum::<f64>() / wall.as_secs_f64();
    let ttft4 = median(four.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect());
    let max_ttft4 = four.iter().map(|r| r.ttft).max().unwrap().as_secs_f64() * 1e3;
    let total4 = four.iter().map(|r| r.total).max().unwrap().as_secs_f64() * 1e3;
    let rss4 = rss_mb();
    // zg-model alone, same prompt and length, on this thread.
    let m = match o.provider.upstream() {
        zg_provider::Upstream::Llm(l) => l.model().clone(),
        _ => unreachable!("smollm2 upstream"),
    };
    let direct: Vec<zg_model::Completion> = (0..3)
        .map(|_| {
            m.generate(
                &zg_model::GenerateRequest {
                    model: None,
                    prompt: zg_model::Prompt::Chat(vec![zg_model::ChatMessage::new("user", QUESTION)]),
                    params: zg_model::SamplingParams {
                        max_tokens: TOKENS as usize,
                        ..Default::default()
                    },
                },
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap()
        })
        .collect();
    let d_ttft = median(
        direct
            .iter()
            .map(|c| c.time_to_first_token.as_secs_f64() * 1e3)
            .collect(),
    );
    let d_dec = median(
        direct
            .iter()
            .map(|c| (c.completion_tokens - 1) as f64 / (c.elapsed - c.time_to_first_token).as_secs_f64())
            .collect(),
    );
    println!("zg-provider + built-in SmolLM2, {TOKENS} tokens per stream, {slots} generation slots");
    println!("| metric | through the provider | zg-model alone |");
    println!("| --- | --- | --- |");
    println!("| 1 stream: time to first token ms (median of 3) | {ttft1:.0} | {d_ttft:.0} |");
    println!("| 1 stream: decode tok/s (median of 3) | {dec1:.1} | {d_dec:.1} |");
    println!("| 1 stream: whole request ms | {total1:.0} | |");
    println!("| 4 streams: aggregate tok/s (tokens / wall) | {agg4:.1} | |");
    println!("| 4 streams: time to first token ms, median / max | {ttft4:.0} / {max_ttft4:.0} | |");
    println!("| 4 streams: wall ms | {total4:.0} | |");
    println!("| RSS MB: before load / after 1 stream / after 4 | {rss0:.0} / {rss1:.0} / {rss4:.0} | |");
}
