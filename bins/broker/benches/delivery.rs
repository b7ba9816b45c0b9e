//! Delivery bench (a timed bench binary, not a timed test): the `zg-broker` binary on an anvil devnet trains a
//! `command` model that writes an output of N bytes, then delivers it — package (ustar, streamed), seal
//! (zg-sealing), hash (keccak256 + 0G root in one pass), store (local content-addressed store), `addDeliverable`.
//!
//! Reports, per size: the delivery overhead (time in `Delivering`, from the task log's timestamps) and the
//! broker's peak RSS (`VmHWM` of the process). Targets (issue 10): < 3 s for 256 MiB; RSS < 150 MiB while
//! delivering 1 GiB. Exits non-zero when a target is missed.
//!
//! Run: `cargo bench -p zg-broker --bench delivery` (sizes in MiB: `ZG_BENCH_SIZES=256,1024`; files go to
//! `ZG_BENCH_DIR`, default the temp dir).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use zg_chain::{Amount, Devnet, DevnetConfig, ServiceKind};
use zg_finetune::{SigningKey, sig};

use zg_test_utils::net::free_port;

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::var("ZG_BENCH_SIZES")
        .unwrap_or_else(|_| "256,1024".into())
        .split(',')
        .map(|s| s.trim().parse().expect("ZG_BENCH_SIZES: MiB, comma-separated"))
        .collect();
    let base = std::env::var_os("ZG_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut failed = false;
    for mib in sizes {
        let (secs, rss_mib) = run(&base, mib).await;
        let target_time = if mib == 256 { Some(3.0) } else { None };
        let target_rss = if mib >= 1024 { Some(150.0) } else { None };
        let ok_t = target_time.is_none_or(|t| secs < t);
        let ok_r = target_rss.is_none_or(|r| rss_mib < r);
        failed |= !(ok_t && ok_r);
        println!(
            "delivery of {mib} MiB: {secs:.2} s in Delivering (package + seal + hash + store + addDeliverable){}; \
             broker peak RSS {rss_mib:.0} MiB{}",
            target_time
                .map(|t| format!(" [target < {t} s: {}]", if ok_t { "ok" } else { "MISSED" }))
                .unwrap_or_default(),
            target_rss
                .map(|r| format!(" [target < {r} MiB: {}]", if ok_r { "ok" } else { "MISSED" }))
                .unwrap_or_default(),
        );
    }
    if failed {
        std::process::exit(1);
    }
    // (each run's devnet is dropped inside `run`, so no anvil outlives the bench)
}

async fn run(base: &std::path::Path, mib: u64) -> (f64, f64) {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    let broker_key = devnet.keys()[5].clone();
    let port = free_port();
    let cfg = dir.path().join("broker.toml");
    // A trainer that writes `mib` MiB of incompressible bytes in 1 MiB blocks (never in memory).
    std::fs::write(
        &cfg,
        format!(
            "[[models]]\nname = \"bulk\"\nexecutor = \"command\"\ntokenizer = \"bytes\"\n\
             command = [\"sh\", \"-c\", \"head -c {} /dev/urandom > \\\"$ZG_OUTPUT_DIR/model.bin\\\"\"]\n",
            mib << 20
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zg-broker"))
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .args([
            "--tee",
            "simulated",
            "--poll-interval-ms",
            "50",
            "--price-per-token",
            "1",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--public-url",
            &format!("http://127.0.0.1:{port}"),
            "--rpc-url",
            &devnet.rpc_url(),
        ])
        .env(
            "ZG_BROKER_KEY",
            format!("0x{}", hex::encode(broker_key.to_bytes())),
        )
        .env("ZG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "the broker never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A customer with a sub-account; the dataset lives in the broker's store.
    let key = devnet.keys()[1].clone();
    let c = devnet.client(Some(key.clone())).await.unwrap();
    c.ledger().add_ledger(Amount::from_zg(5), "").await.unwrap();
    c.ledger()
        .transfer_fund(broker_key.address(), ServiceKind::FineTuning, Amount::from_zg(1))
        .await
        .unwrap();
    c.fine_tuning()
        .acknowledge_tee_signer(broker_key.address(), true)
        .await
        .unwrap();
    let store = zg_storage::LocalStore::open(dir.path().join("data/storage")).unwrap();
    let data = b"{\"text\":\"one\"}\n{\"text\":\"two\"}\n";
    let root = format!("{:#x}", store.put_bytes(data).unwrap());
    let model: Value = reqwest::get(format!("{url}/v1/model/bulk"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sk = SigningKey::from_slice(key.to_bytes().as_slice()).unwrap();
    let nonce = zg_finetune::U256::from(zg_finetune::now_ms() as u64 * 10_000 + 40);
    let s = sig::sign_personal(&sk, &sig::create_digest(key.address(), nonce, &root)).unwrap();
    let user = key.address().to_checksum(None);
    let body = serde_json::json!({
        "userAddress": user, "datasetHash": root, "trainingParams": "{}",
        "preTrainedModelHash": model["hash"], "fee": "0", "nonce": nonce.to_string(),
        "signature": format!("0x{}", hex::encode(s)), "wait": false,
    });
    let t: Value = reqwest::Client::new()
        .post(format!("{url}/v1/user/{user}/task"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = t["id"]
        .as_str()
        .unwrap_or_else(|| panic!("create failed: {t}"))
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let t: Value = reqwest::get(format!("{url}/v1/user/{user}/task/{id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match t["progress"].as_str().unwrap_or_default() {
            "Delivered" => break,
            "Failed" | "Cancelled" => panic!("task ended: {t}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not delivered in time: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_mib = vm_hwm_kib(child.id()) as f64 / 1024.0;
    let log = reqwest::get(format!("{url}/v1/user/{user}/task/{id}/log"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |needle: &str| -> chrono::DateTime<chrono::FixedOffset> {
        let line = log
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in:\n{log}"));
        chrono::DateTime::parse_from_rfc3339(line.split(' ').next().unwrap()).unwrap()
    };
    let secs = (at("state: Delivered") - at("state: Delivering")).num_milliseconds() as f64 / 1000.0;
    let _ = child.kill();
    let _ = child.wait();
    (secs, rss_mib)
}
