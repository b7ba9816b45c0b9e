//! `zg fine-tuning …` end to end against zg-broker (in process, simulated TEE) on an anvil devnet: every verb,
//! live logs over gRPC, the model checked against the chain before acknowledging, decrypted with the key the
//! settlement revealed, and tried next to the base model.

use std::time::{Duration, Instant};

use serde_json::Value;
use zg_chain::{Amount, Devnet, DevnetConfig, ServiceKind};

use crate::{stderr, stdout, zg};

fn baking(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"How long do I bake loaf {i}?"}},{{"role":"assistant","content":"Bake the sourdough loaf for {} minutes at {} degrees, then rest it."}}]}}"#,
                30 + i % 9,
                200 + (i % 5) * 10
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "zg failed:\n{}\n{}", stdout(o), stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(o)))
}

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/policy.simulated.toml");

use zg_test_utils::net::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_tuning_verbs_against_the_broker_e2e() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker_key = devnet.keys()[4].clone();
    let provider = broker_key.address().to_string();
    let port = free_port();
    // The broker reads its key from the environment only; the test process sets it for the in-process broker.
    let key_file = dir.path().join("broker.key");
    std::fs::write(&key_file, format!("0x{}", hex::encode(broker_key.to_bytes()))).unwrap();
    let settings = zg_broker::Settings::resolve(zg_broker::RunArgs {
        data_dir: Some(dir.path().join("broker")),
        http_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
        public_url: Some(format!("http://127.0.0.1:{port}")),
        rpc_url: Some(devnet.rpc_url()),
        tee: Some(zg_broker::BackendChoice::Simulated),
        storage_dir: Some(dir.path().join("storage")),
        price_per_token: Some("1000000000".into()),
        poll_interval_ms: Some(100),
        epoch_pause_ms: Some(300),
        key_file: Some(key_file),
        ..Default::default()
    })
    .unwrap();
    let running = zg_broker::start(settings).await.unwrap();
    let owner = devnet.client(Some(devnet.keys()[0].clone())).await.unwrap();
    owner
        .fine_tuning()
        .acknowledge_tee_signer_by_owner(broker_key.address())
        .await
        .unwrap();

    let customer = devnet.keys()[1].clone();
    let key = format!("0x{}", hex::encode(customer.to_bytes()));
    let store = dir.path().join("storage").display().to_string();
    let rpc = devnet.rpc_url();
    let env = [
        ("ZG_RPC_URL", rpc.as_str()),
        ("ZG_PRIVATE_KEY", key.as_str()),
        ("ZG_STORAGE_DIR", store.as_str()),
        // The simulated TD's measurements: an empty allow-list accepts no image.
        ("ZG_ATTESTATION_POLICY", POLICY),
    ];
    let c = devnet.client(Some(customer.clone())).await.unwrap();
    c.ledger().add_ledger(Amount::from_zg(10), "").await.unwrap();
    c.ledger()
        .transfer_fund(broker_key.address(), ServiceKind::FineTuning, Amount::from_zg(5))
        .await
        .unwrap();

    let v = json(&zg(&["fine-tuning", "list-providers", "--json"], &env));
    assert_eq!(
        v[0]["provider"].as_str().unwrap().to_lowercase(),
        provider.to_lowercase()
    );
    assert_eq!(v[0]["models"][0], "zg-demo-ngram");
    let v = json(&zg(&["fine-tuning", "list-models", "--json"], &env));
    assert_eq!(
        (v[0]["name"].as_str(), v[0]["tokenizer"].as_str()),
        (Some("zg-demo-ngram"), Some("zg-ngram"))
    );

    // verify: the simulated TEE is refused unless allowed; allowed, the fresh quote binds the on-chain signer.
    let o = zg(&["fine-tuning", "verify", "--provider", &provider], &env);
    assert!(!o.status.success(), "{}", stdout(&o));
    let v = json(&zg(
        &[
            "fine-tuning",
            "verify",
            "--provider",
            &provider,
            "--allow-simulated",
            "--json",
        ],
        &env,
    ));
    assert_eq!(v["passed"], true);

    // calculate-token offline and with the provider's price: the same number the broker charges.
    let data = dir.path().join("baking.jsonl");
    std::fs::write(&data, baking(30)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"num_train_epochs": 2, "seed": 3}"#).unwrap();
    let d = data.display().to_string();
    let cfg = config.display().to_string();
    let offline = json(&zg(
        &[
            "fine-tuning",
            "calculate-token",
            "--model",
            "zg-demo-ngram",
            "--dataset-path",
            &d,
            "--json",
        ],
        &env,
    ));
    let priced = json(&zg(
        &[
            "fine-tuning",
            "calculate-token",
            "--model",
            "zg-demo-ngram",
            "--dataset-path",
            &d,
            "--config-path",
            &cfg,
            "--provider",
            &provider,
            "--json",
        ],
        &env,
    ));
    assert_eq!(offline["tokens"], priced["tokens"]);
    let tokens = priced["tokens"].as_u64().unwrap();
    assert_eq!(priced["fee"], (tokens as u128 * 2 * 1_000_000_000).to_string());

    // upload → create-task --follow (live log on stderr) → Delivered with that fee.
    let up = json(&zg(&["fine-tuning", "upload", "--data-path", &d, "--json"], &env));
    let root = up["root"].as_str().unwrap().to_owned();
    let o = zg(
        &[
            "fine-tuning",
            "create-task",
            "--provider",
            &provider,
            "--model",
            "zg-demo-ngram",
            "--dataset",
            &root,
            "--config-path",
            &cfg,
            "--follow",
            "--json",
        ],
        &env,
    );
    let t = json(&o);
    assert_eq!(t["state"], "Delivered", "{}", stderr(&o));
    assert_eq!(t["fee"], priced["fee"]);
    assert!(
        stderr(&o).contains("epoch 2: held-out loss"),
        "live log missing:\n{}",
        stderr(&o)
    );
    let id = t["id"].as_str().unwrap().to_owned();

    let log = zg(&["fine-tuning", "get-log", "--provider", &provider], &env);
    assert!(
        log.status.success() && stdout(&log).contains("state: Delivered"),
        "{}",
        stdout(&log)
    );
    let list = json(&zg(
        &["fine-tuning", "list-tasks", "--provider", &provider, "--json"],
        &env,
    ));
    assert_eq!(list.as_array().unwrap().len(), 1);

    // acknowledge-model: download from the TEE, check root + tag signature, acknowledge.
    let sealed = dir.path().join("model.sealed").display().to_string();
    let v = json(&zg(
        &[
            "fine-tuning",
            "acknowledge-model",
            "--provider",
            &provider,
            "--task-id",
            &id,
            "--data-path",
            &sealed,
            "--download-method",
            "tee",
            "--json",
        ],
        &env,
    ));
    assert_eq!(v["source"], "tee");
    assert!(v["acknowledgeTx"].is_string());
    // ... and from storage gives the same bytes.
    let again = dir.path().join("again.sealed").display().to_string();
    let v2 = json(&zg(
        &[
            "fine-tuning",
            "acknowledge-model",
            "--provider",
            &provider,
            "--task-id",
            &id,
            "--data-path",
            &again,
            "--download-method",
            "storage",
            "--json",
        ],
        &env,
    ));
    assert_eq!(v2["modelRootHash"], v["modelRootHash"]);
    assert!(v2["acknowledgeTx"].is_null(), "already acknowledged");

    // Wait for the settlement that reveals the key, then decrypt and try the model.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = json(&zg(
            &[
                "fine-tuning",
                "get-task",
                "--provider",
                &provider,
                "--task",
                &id,
                "--json",
            ],
            &env,
        ));
        if t["state"] == "Finished" {
            assert_eq!(t["charged"], priced["fee"]);
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let model = dir.path().join("model.tar").display().to_string();
    let o = zg(
        &[
            "fine-tuning",
            "decrypt-model",
            "--provider",
            &provider,
            "--task-id",
            &id,
            "--encrypted-model",
            &sealed,
            "--output",
            &model,
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let g = json(&zg(
        &[
            "fine-tuning",
            "generate",
            "--model",
            &model,
            "--prompt",
            "How long do I bake the sourdough loaf?",
            "--json",
        ],
        &env,
    ));
    assert_ne!(g["base"], g["fineTuned"]);
    // The answer comes from the dataset's domain (words the base corpus never uses).
    let tuned = g["fineTuned"].as_str().unwrap().to_lowercase();
    assert!(tuned.contains("minutes") || tuned.contains("degrees"), "{g}");
    assert!(!g["base"].as_str().unwrap().contains("degrees"), "{g}");

    // A second task from a TEE upload, cancelled while it trains.
    let slow = dir.path().join("slow.json");
    std::fs::write(&slow, r#"{"num_train_epochs": 8}"#).unwrap();
    let t = json(&zg(
        &[
            "fine-tuning",
            "create-task",
            "--provider",
            &provider,
            "--model",
            "zg-demo-ngram",
            "--dataset-path",
            &d,
            "--config-path",
            &slow.display().to_string(),
            "--json",
        ],
        &env,
    ));
    let id2 = t["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = json(&zg(
            &["fine-tuning", "get-task", "--provider", &provider, "--json"],
            &env,
        ));
        if t["state"] == "Training" {
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = json(&zg(
        &[
            "fine-tuning",
            "cancel-task",
            "--provider",
            &provider,
            "--task",
            &id2,
            "--json",
        ],
        &env,
    ));
    assert_eq!(t["state"], "Cancelled");
    // A model file that does not match the chain is never acknowledged.
    let o = zg(
        &[
            "fine-tuning",
            "acknowledge-model",
            "--provider",
            &provider,
            "--task-id",
            &id2,
            "--data-path",
            &again,
            "--download-method",
            "storage",
        ],
        &env,
    );
    assert!(!o.status.success());
    running.shutdown().await;
}
