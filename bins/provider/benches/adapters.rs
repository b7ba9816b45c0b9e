//! Adapter deployment latency (issue 11 item 4): a broker double (zg-adapters + the simulated TEE, registered in
//! FineTuningServing on an anvil devnet) deploys the demo-sized LoRA adapter (rank 8 on q_proj/v_proj of all 30
//! SmolLM2 layers, `examples/finetune/config.lora.json`) to a provider serving the built-in SmolLM2, over loopback
//! gRPC: `Challenge` (fresh quote, signature), the broker's checks and sealing, then `Deploy` (nonce, chain reads,
//! attestation, statement, authorization, deliverable, unsealing, fsynced files, loading into the model). The same
//! adapter is redeployed `ZG_BENCH_ROUNDS` times (default 10); min / median / max are printed.
//!
//! `nice cargo bench -p zg-provider --bench adapters` (needs anvil on PATH and `just setup`'s GGUF, as the tests).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/common.rs"]
mod common;

#[path = "../tests/it/adapters.rs"]
#[allow(unused_imports)]
mod adapters;

use std::time::{Duration, Instant};

use adapters::{TASK, authorize, challenge, demo_sized_adapter, grpc, llm, prepare, send, setup, start};

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}

fn main() {
    let rounds: usize = std::env::var("ZG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (env, _keys) = setup(3).await;
        let running = start(&env, true).await;
        let package = demo_sized_adapter(llm(&running), 1);
        let auth = authorize(&env, &env.customer, TASK);
        let mut g = grpc(&running).await;
        let (mut whole, mut rpc) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            let ch = challenge(&mut g, &env, &running).await;
            let d = prepare(&env, &ch, &auth, &package);
            let t_rpc = Instant::now();
            send(&mut g, &d).await.unwrap();
            rpc.push(t_rpc.elapsed());
            whole.push(t.elapsed());
        }
        println!(
            "adapter deployment, {} rounds, package {} bytes (safetensors {} bytes):",
            rounds,
            package.config_json.len() + package.safetensors.len(),
            package.safetensors.len()
        );
        println!("  Deploy RPC (provider side):                   {}", stats(rpc));
        println!("  Challenge + broker checks/sealing + Deploy:   {}", stats(whole));
        running.shutdown().await;
    });
}
