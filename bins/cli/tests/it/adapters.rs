//! Adapter deployment end to end (issue 11 item 4): a real zg-broker training a real LoRA adapter on SmolLM2, a
//! real zg-provider serving SmolLM2 (both in process, simulated TEEs) on an anvil devnet, and the `zg` binary:
//! create-task → acknowledge-model → `fine-tuning deploy-adapter` (the broker verifies the provider's TEE and
//! hands the adapter over gRPC, the provider verifies the broker's) → `fine-tuning chat` as the owner (answer,
//! receipt naming the adapter, exact fee) → refused for another customer → list-adapters / remove-adapter.

use serde_json::Value;
use zg_chain::{Amount, Devnet, DevnetConfig, ServiceKind};
use zg_test_utils::net::free_port;

use crate::{stderr, stdout, zg};

const MODEL: &str = "smollm2-135m-instruct";
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/policy.simulated.toml");
const GGUF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
);

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "zg failed:\n{}\n{}", stdout(o), stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(o)))
}

fn dec(v: &Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

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

/// Runs `zg` off the runtime that serves the broker and the provider.
async fn run(args: Vec<String>, env: Vec<(String, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        zg(&args, &env)
    })
    .await
    .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lora_adapter_deployed_by_the_broker_is_served_to_its_owner_only_e2e() {
    assert!(
        std::path::Path::new(GGUF).is_file(),
        "{GGUF} is missing: run `just setup`"
    );
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let rpc = devnet.rpc_url();
    let dir = tempfile::tempdir().unwrap();
    let keys = devnet.keys().to_vec();
    let (owner_key, broker_key, prov_key, alice_key, bob_key) = (
        keys[0].clone(),
        keys[4].clone(),
        keys[2].clone(),
        keys[1].clone(),
        keys[3].clone(),
    );
    let hexkey = |k: &zg_chain::PrivateKeySigner| format!("0x{}", hex::encode(k.to_bytes()));

    // The inference provider: built-in SmolLM2, its gRPC API advertised on chain.
    let (pport, pgrpc) = (free_port(), free_port());
    let psettings = zg_provider::Settings::resolve(zg_provider::RunArgs {
        data_dir: Some(dir.path().join("provider")),
        http_addr: Some(format!("127.0.0.1:{pport}").parse().unwrap()),
        grpc_addr: Some(format!("127.0.0.1:{pgrpc}").parse().unwrap()),
        public_url: Some(format!("http://127.0.0.1:{pport}")),
        grpc_public_url: Some(format!("http://127.0.0.1:{pgrpc}")),
        upstream: Some("builtin".into()),
        model: Some(MODEL.into()),
        model_path: Some(GGUF.into()),
        rpc_url: Some(rpc.clone()),
        provider_key: Some(hexkey(&prov_key)),
        tee: Some(zg_provider::BackendChoice::Simulated),
        settle_interval: Some(0),
        account_ttl_ms: Some(0),
        // The broker's simulated TD, named by the simulated policy, and accepted loudly.
        adapters_policy: Some(POLICY.into()),
        adapters_dangerous_allow_simulated: true,
        ..Default::default()
    })
    .unwrap();
    let provider_running = zg_provider::start(psettings).await.unwrap();

    // The broker: LoRA on the same GGUF; the provider's simulated TEE accepted by name (policy) and loudly.
    let bport = free_port();
    let key_file = dir.path().join("broker.key");
    std::fs::write(&key_file, hexkey(&broker_key)).unwrap();
    let cfg = dir.path().join("broker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[models]]\nname = \"{MODEL}\"\nexecutor = \"lora\"\nmodel_path = {GGUF:?}\n\n\
             [adapters]\npolicy = {POLICY:?}\ndangerous_allow_simulated = true\n"
        ),
    )
    .unwrap();
    let bsettings = zg_broker::Settings::resolve(zg_broker::RunArgs {
        config: Some(cfg),
        data_dir: Some(dir.path().join("broker")),
        http_addr: Some(format!("127.0.0.1:{bport}").parse().unwrap()),
        grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
        public_url: Some(format!("http://127.0.0.1:{bport}")),
        rpc_url: Some(rpc.clone()),
        tee: Some(zg_broker::BackendChoice::Simulated),
        storage_dir: Some(dir.path().join("storage")),
        price_per_token: Some("1000000000".into()),
        poll_interval_ms: Some(100),
        key_file: Some(key_file),
        ..Default::default()
    })
    .unwrap();
    let broker_running = zg_broker::start(bsettings).await.unwrap();
    let owner = devnet.client(Some(owner_key)).await.unwrap();
    owner
        .fine_tuning()
        .acknowledge_tee_signer_by_owner(broker_key.address())
        .await
        .unwrap();

    let (broker, provider) = (
        broker_key.address().to_checksum(None),
        prov_key.address().to_checksum(None),
    );
    let store = dir.path().join("storage").display().to_string();
    let env_for = |k: &zg_chain::PrivateKeySigner, name: &str| -> Vec<(String, String)> {
        [
            ("ZG_RPC_URL", rpc.clone()),
            ("ZG_PRIVATE_KEY", hexkey(k)),
            ("ZG_STORAGE_DIR", store.clone()),
            ("ZG_ATTESTATION_POLICY", POLICY.to_owned()),
            ("ZG_DATA_DIR", dir.path().join(name).display().to_string()),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b))
        .collect()
    };
    let (alice, bob) = (env_for(&alice_key, "alice"), env_for(&bob_key, "bob"));
    let c = devnet.client(Some(alice_key.clone())).await.unwrap();
    c.ledger().add_ledger(Amount::from_zg(10), "").await.unwrap();
    c.ledger()
        .transfer_fund(broker_key.address(), ServiceKind::FineTuning, Amount::from_zg(5))
        .await
        .unwrap();

    // A real LoRA task (2 steps: the fast path), acknowledged after checking the sealed model.
    let data = dir.path().join("baking.jsonl");
    std::fs::write(&data, baking(6)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"max_steps": 2, "per_device_train_batch_size": 2, "max_seq_length": 64, "validation_split": 0.34, "learning_rate": 0.002}"#,
    )
    .unwrap();
    let t = json(
        &run(
            strings(&[
                "fine-tuning",
                "create-task",
                "--provider",
                &broker,
                "--model",
                MODEL,
                "--dataset-path",
                data.to_str().unwrap(),
                "--config-path",
                config.to_str().unwrap(),
                "--follow",
                "--json",
            ]),
            alice.clone(),
        )
        .await,
    );
    assert_eq!(t["state"], "Delivered", "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let adapter = zg_adapters::adapter_name(MODEL, &id);

    // Before acknowledging: the broker refuses, saying what to do.
    let deploy = strings(&[
        "fine-tuning",
        "deploy-adapter",
        "--provider",
        &provider,
        "--task-id",
        &id,
        "--json",
    ]);
    let o = run(deploy.clone(), alice.clone()).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("acknowledge-model"), "{}", stderr(&o));
    let sealed = dir.path().join("model.sealed").display().to_string();
    json(
        &run(
            strings(&[
                "fine-tuning",
                "acknowledge-model",
                "--provider",
                &broker,
                "--task-id",
                &id,
                "--data-path",
                &sealed,
                "--json",
            ]),
            alice.clone(),
        )
        .await,
    );

    // Bob cannot deploy alice's task (his authorization is for his tasks only).
    let o = run(
        [deploy.clone(), strings(&["--broker", &broker])].concat(),
        bob.clone(),
    )
    .await;
    assert!(!o.status.success(), "{}", stdout(&o));

    // deploy-adapter (the broker found from the deliverable on chain): mutual attestation, sealed hand-over.
    let d = json(&run(deploy, alice.clone()).await);
    assert_eq!(d["adapter"], adapter.as_str(), "{d}");
    assert_eq!(d["state"], "active");
    assert_eq!(d["base_model"], MODEL);
    assert_eq!(
        d["broker"].as_str().unwrap().to_lowercase(),
        broker.to_lowercase()
    );
    assert_eq!(d["provider_simulated"], true);

    // The owner chats with it: verified answer, the receipt names the adapter, fee = usage × prices.
    let chat = |who: Vec<(String, String)>, extra: &[&str]| {
        let args = [
            strings(&[
                "fine-tuning",
                "chat",
                "--provider",
                &provider,
                "--allow-simulated",
                "--max-tokens",
                "12",
                "--temperature",
                "0",
                "--json",
            ]),
            strings(extra),
            strings(&["How long do I bake loaf 3?"]),
        ]
        .concat();
        run(args, who)
    };
    let a = json(&chat(alice.clone(), &["--task-id", &id]).await);
    assert_eq!(a["verified"], true);
    assert!(!a["answer"].as_str().unwrap().is_empty(), "{a}");
    assert_eq!(a["model"], adapter.as_str());
    assert_eq!(a["receipt"]["receipt"]["model"], adapter.as_str());
    let service = owner
        .inference()
        .get_service(prov_key.address())
        .await
        .unwrap()
        .unwrap();
    let u = &a["receipt"]["receipt"]["usage"];
    let fee = u["prompt_tokens"].as_u64().unwrap() as u128 * service.input_price.to::<u128>()
        + u["completion_tokens"].as_u64().unwrap() as u128 * service.output_price.to::<u128>();
    assert!(fee > 0);
    assert_eq!(dec(&a["receipt"]["fee"]), fee);
    // The same through `zg inference chat --model ft-…`.
    let o = run(
        strings(&[
            "inference",
            "chat",
            "--provider",
            &provider,
            "--allow-simulated",
            "--model",
            &adapter,
            "--max-tokens",
            "8",
            "--json",
            "hello",
        ]),
        alice.clone(),
    )
    .await;
    assert_eq!(json(&o)["receipt"]["receipt"]["model"], adapter.as_str());

    // Another customer asking for it is refused (and told why), and charged nothing.
    let bob_chain = devnet.client(Some(bob_key.clone())).await.unwrap();
    bob_chain
        .ledger()
        .add_ledger(Amount::from_zg(5), "")
        .await
        .unwrap();
    let o = chat(bob.clone(), &["--adapter-name", &adapter]).await;
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("does not serve"), "{}", stderr(&o));
    let v = json(
        &run(
            strings(&[
                "inference",
                "balance",
                "--provider",
                &provider,
                "--allow-simulated",
                "--json",
            ]),
            bob.clone(),
        )
        .await,
    );
    assert_eq!(dec(&v["balance"]["owed"]), 0, "{v}");

    // list-adapters: alice sees hers, bob none; bob cannot remove it; alice can.
    let owner_args = |verb: &str| strings(&["inference", verb, "--provider", &provider, "--json"]);
    let l = json(&run(owner_args("list-adapters"), alice.clone()).await);
    assert_eq!(l[0]["name"], adapter.as_str(), "{l}");
    let l = json(&run(owner_args("list-adapters"), bob.clone()).await);
    assert_eq!(l.as_array().unwrap().len(), 0, "{l}");
    let rm = [owner_args("remove-adapter"), strings(&["--model", &adapter])].concat();
    assert!(!run(rm.clone(), bob.clone()).await.status.success());
    let r = json(&run(rm, alice.clone()).await);
    assert_eq!(r["removed"], true);
    let o = chat(alice.clone(), &["--task-id", &id]).await;
    assert!(!o.status.success(), "served after removal: {}", stdout(&o));

    broker_running.shutdown().await;
    provider_running.shutdown().await;
}

/// `zg fine-tuning get-adapter-name` prints what the official 0G CLI (0.9.0) prints for the same base model and
/// task id, so names agree across clients and with providers that follow 0G's rule.
#[test]
fn get_adapter_name_matches_the_official_cli() {
    let home = tempfile::tempdir().unwrap();
    let official = zg_test_utils::node::OfficialCli::new(home.path(), "http://127.0.0.1:9", &"11".repeat(32));
    for (model, task) in [
        (MODEL, "0d4c6a52-9f7e-4b1a-8c3d-2e5f6a7b8c9d"),
        (
            "Qwen/Qwen2.5-0.5B-Instruct",
            "5f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
        ),
        ("/odd name.v2/", "short"),
    ] {
        let args = [
            "fine-tuning",
            "get-adapter-name",
            "--model",
            model,
            "--task-id",
            task,
        ];
        let theirs = zg_test_utils::node::run_with_timeout(
            official.command(&args),
            std::time::Duration::from_secs(60),
        );
        let theirs = theirs.expect_ok("official get-adapter-name").trim().to_owned();
        let ours = zg(&args, &[]);
        assert!(ours.status.success(), "{}", stderr(&ours));
        assert_eq!(stdout(&ours).trim(), theirs, "{model} {task}");
        assert_eq!(theirs, zg_adapters::adapter_name(model, task));
    }
}
