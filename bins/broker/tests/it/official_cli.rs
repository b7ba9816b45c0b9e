//! The official 0G CLI 0.9.0 (`@0gfoundation/0g-compute-ts-sdk`, pinned in package.json) against the
//! `zg-broker` binary on an anvil devnet: every fine-tuning verb that can run offline (FINE_TUNING.md §6)
//! succeeds, and the model the official `decrypt-model` writes is byte-identical to what the broker trained.
//!
//! Runs the CLI through `zg_test_utils::node::OfficialCli` (config in a temp HOME, one verb per run, with a
//! timeout; a missing node or package fails the test with the fix). Verbs that cannot run offline (upload,
//! download, calculate-token, download-counter, acknowledge-model `--download-method 0g-storage`) need 0G's
//! public storage indexer and the token-counter binary from it.

use std::time::Duration;

use serde_json::Value;
use zg_finetune::unpack;
use zg_sealing::{EncryptedSecret, Unsealer};
use zg_test_utils::node::OfficialCli;

use crate::common::*;

fn task_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Created Task ID:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no task id in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_0g_cli_fine_tuning_verbs_against_zg_broker_e2e() {
    let net = Net::start().await;
    let b = net.broker(&[], &["--epoch-pause-ms", "1000"]).await;
    let rpc = net.devnet.rpc_url();
    let provider = net.provider().to_checksum(None);
    let key = |i: usize| hexkey(&net.devnet.keys()[i]);
    let home = |name: &str| {
        let d = net.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };

    // The contract owner acknowledges the broker's TEE signer with the official CLI's hidden owner verb.
    let owner = OfficialCli::new(&home("owner"), &rpc, &key(0)).timeout(Duration::from_secs(90));
    let out = owner.ok(&["fine-tuning", "ack-provider", "--provider", &provider]);
    assert!(out.contains("Provider acknowledged successfully"), "{out}");

    // The customer: ledger verbs, then the fine-tuning verbs.
    let cli = OfficialCli::new(&home("alice"), &rpc, &key(1)).timeout(Duration::from_secs(120));
    cli.ok(&["add-account", "--amount", "10"]);
    cli.ok(&[
        "transfer-fund",
        "--provider",
        &provider,
        "--service",
        "fine-tuning",
        "--amount",
        "5",
    ]);

    let out = cli.ok(&["fine-tuning", "list-providers"]);
    assert!(out.contains(&provider), "list-providers:\n{out}");
    let out = cli.ok(&["fine-tuning", "list-models"]);
    assert!(out.contains(MODEL), "list-models:\n{out}");

    let reports = home("reports");
    let out = cli.ok(&[
        "fine-tuning",
        "verify",
        "--provider",
        &provider,
        "--output-dir",
        &reports.display().to_string(),
    ]);
    assert!(
        out.contains("Verification completed successfully") || out.contains("✅"),
        "verify:\n{out}"
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("fine_tuning_attestation_report.json")).unwrap(),
    )
    .unwrap();
    assert!(report.get("tcb_info").is_some(), "{report}");

    // create-task --dataset <root>: the official path (quote, pending = 0, acknowledge signer, sign, POST).
    let data = baking(24);
    let root = net.upload(&data);
    let cfg = net.dir.path().join("config.json");
    std::fs::write(&cfg, "{\n  \"num_train_epochs\": 2\n}\n").unwrap();
    let cfg = cfg.display().to_string();
    let out = cli.ok(&[
        "fine-tuning",
        "create-task",
        "--provider",
        &provider,
        "--model",
        MODEL,
        "--dataset",
        &root,
        "--config-path",
        &cfg,
    ]);
    let id = task_id(&out);
    let alice = net.customer_handle(1).await;

    let out = cli.ok(&["fine-tuning", "get-task", "--provider", &provider, "--task", &id]);
    assert!(out.contains(&id) && out.contains("Progress"), "get-task:\n{out}");
    let out = cli.ok(&["fine-tuning", "list-tasks", "--provider", &provider]);
    assert!(out.contains(&id), "list-tasks:\n{out}");
    alice.wait(&b, &id, 60, |s| s == "Delivered").await;
    let out = cli.ok(&["fine-tuning", "get-log", "--provider", &provider, "--task", &id]);
    assert!(
        out.contains("state: Delivered") && out.contains("held-out loss"),
        "get-log:\n{out}"
    );
    let out = cli.ok(&["fine-tuning", "get-task", "--provider", &provider]);
    assert!(out.contains(&id), "get-task (latest):\n{out}");

    // acknowledge-model --download-method tee: downloads from the TEE, hash check passes, acks on chain.
    let models = home("models");
    let out = cli.ok(&[
        "fine-tuning",
        "acknowledge-model",
        "--provider",
        &provider,
        "--task-id",
        &id,
        "--data-path",
        &models.display().to_string(),
        "--download-method",
        "tee",
    ]);
    assert!(out.contains("Acknowledged model"), "acknowledge-model:\n{out}");
    assert!(
        !out.contains("Hash mismatch"),
        "the TEE download must hash to modelRootHash:\n{out}"
    );
    let sealed_path = models.join(format!("lora_model_{id}.zip"));
    let sealed = std::fs::read(&sealed_path).unwrap();
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}");

    // decrypt-model: the official CLI's plaintext equals ours (decrypted with the key the chain revealed).
    let plain_path = net.dir.path().join("model.tar");
    let out = cli.ok(&[
        "fine-tuning",
        "decrypt-model",
        "--provider",
        &provider,
        "--task-id",
        &id,
        "--encrypted-model",
        &sealed_path.display().to_string(),
        "--output",
        &plain_path.display().to_string(),
    ]);
    assert!(out.contains("Decrypted model"), "decrypt-model:\n{out}");
    let official_plain = std::fs::read(&plain_path).unwrap();
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    let secret = zg_sealing::k256::SecretKey::from_slice(alice.key.to_bytes().as_slice()).unwrap();
    let aes = EncryptedSecret::from_bytes(d.encrypted_secret.to_vec())
        .unwrap_with(&secret)
        .unwrap();
    let signer = alice
        .chain
        .fine_tuning()
        .tee_signer(net.provider())
        .await
        .unwrap()
        .unwrap();
    let ours = Unsealer::new(&aes, signer).unseal_bytes(&sealed).unwrap();
    assert_eq!(official_plain, ours, "byte-identical");
    let files = unpack(
        &mut official_plain.as_slice(),
        &net.dir.path().join("unpacked"),
        1 << 30,
    )
    .unwrap();
    assert!(files.contains(&"adapter.ngram".to_owned()), "{files:?}");

    // create-task --dataset-path: 0G Storage is unreachable offline, so the CLI falls back to the TEE upload.
    let ds_path = net.dir.path().join("train.jsonl");
    std::fs::write(&ds_path, baking(30)).unwrap();
    let slow = net.dir.path().join("slow.json");
    std::fs::write(&slow, "{\"num_train_epochs\": 10}\n").unwrap();
    let out = cli.ok(&[
        "fine-tuning",
        "create-task",
        "--provider",
        &provider,
        "--model",
        MODEL,
        "--dataset-path",
        &ds_path.display().to_string(),
        "--config-path",
        &slow.display().to_string(),
    ]);
    assert!(
        out.contains("Dataset uploaded to TEE"),
        "expected the TEE fallback:\n{out}"
    );
    let id2 = task_id(&out);
    alice.wait(&b, &id2, 60, |s| s == "Training").await;
    let out = cli.ok(&[
        "fine-tuning",
        "cancel-task",
        "--provider",
        &provider,
        "--task",
        &id2,
    ]);
    assert!(out.contains("cancelled"), "cancel-task:\n{out}");
    assert_eq!(alice.wait(&b, &id2, 20, terminal).await["progress"], "Cancelled");

    // acknowledge-deliverable (no download), then decrypt what we fetch over the TEE route ourselves.
    let out = cli.ok(&[
        "fine-tuning",
        "create-task",
        "--provider",
        &provider,
        "--model",
        MODEL,
        "--dataset",
        &root,
        "--config-path",
        &cfg,
    ]);
    let id3 = task_id(&out);
    alice.wait(&b, &id3, 60, |s| s == "Delivered").await;
    let out = cli.ok(&[
        "fine-tuning",
        "acknowledge-deliverable",
        "--provider",
        &provider,
        "--task-id",
        &id3,
    ]);
    assert!(
        out.contains("Acknowledged deliverable"),
        "acknowledge-deliverable:\n{out}"
    );
    assert_eq!(alice.wait(&b, &id3, 60, terminal).await["progress"], "Finished");
    let (st, sealed3) = alice.download(&b, &id3).await;
    assert_eq!(st, 200);
    let p3 = net.dir.path().join("m3.sealed");
    std::fs::write(&p3, &sealed3).unwrap();
    let out3 = net.dir.path().join("m3.tar");
    cli.ok(&[
        "fine-tuning",
        "decrypt-model",
        "--provider",
        &provider,
        "--task-id",
        &id3,
        "--encrypted-model",
        &p3.display().to_string(),
        "--output",
        &out3.display().to_string(),
    ]);
    assert!(std::fs::metadata(&out3).unwrap().len() > 0);
}
