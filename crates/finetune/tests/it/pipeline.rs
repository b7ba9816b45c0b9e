//! The pipeline end to end over MemChain: the lifecycle, fees, the key exchange, penalties, cancels in every
//! state, idempotency across lost responses and restarts, and bad input refused before anything is stored.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use zg_finetune::{
    ArtifactStore, B256, ChainFailure, Error, Fault, FineTuningChain as _, NewTask, Result, TaskId,
    TaskState, TaskStore, U256, Update, apply_adapter, sig, unpack,
};
use zg_ngram::{NgramModel, SHIPPED_CORPUS, Sampling};
use zg_sealing::{EncryptedSecret, Unsealer};
use zg_storage::LocalStore;

use crate::common::*;

const PARAMS: &str = r#"{"num_train_epochs": 2, "seed": 7}"#;

fn transient() -> ChainFailure {
    ChainFailure::Transient("connection reset".into())
}

#[tokio::test]
async fn happy_path_reveals_the_key_only_after_acknowledgement_and_charges_the_exact_fee() {
    let env = Env::new(30);
    let p = env.pipeline();
    let alice = customer(1);
    env.fund(&alice, 10_000_000_000);
    let data = baking(30);
    let root = env.store_dataset(&data);
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    assert_eq!(t.state, TaskState::Init);
    let t = wait_for(&p, &t.id, 30, |s| s == TaskState::Delivered || s.is_terminal()).await;
    assert_eq!(t.state, TaskState::Delivered, "{:?}", t.fail_reason);

    // Fee = exact tokens × epochs × price, computed in SettingUp.
    let ds = zg_finetune::Dataset::from_jsonl(&data, &Default::default()).unwrap();
    let tokens = ds.token_count(&zg_finetune::WordTokenizer);
    assert_eq!(t.tokens, Some(tokens));
    assert_eq!(t.epochs, Some(2));
    assert_eq!(t.fee, Some(U256::from(tokens * 2 * PRICE)));

    // On chain: the deliverable with keccak256(sealed file), no secret yet.
    let d = env
        .chain
        .deliverable(addr(&alice), t.id.as_str())
        .await
        .unwrap()
        .unwrap();
    let (sealed_path, len) = p.sealed_of(&t).unwrap();
    let sealed = std::fs::read(&sealed_path).unwrap();
    assert_eq!(sealed.len() as u64, len);
    assert_eq!(
        d.model_root_hash.as_ref(),
        alloy_primitives::keccak256(&sealed).as_slice()
    );
    assert!(!d.acknowledged && !d.settled);
    assert!(env.chain.secret(addr(&alice), t.id.as_str()).is_empty());
    // Also in storage under its 0G root.
    let storage_root: B256 = t.storage_root.as_deref().unwrap().parse().unwrap();
    assert_eq!(env.storage.get_bytes(storage_root).unwrap(), sealed);

    // TEE download needs the owner's fresh signature.
    let ts = zg_finetune::now_ms() / 1000;
    let lora = format!(
        "0x{}",
        hex::encode(sig::sign_personal(&alice, &sig::lora_digest(&t.id, ts)).unwrap())
    );
    let (path, _) = p.deliverable_file(addr(&alice), &t.id, &lora, ts).await.unwrap();
    assert_eq!(path, sealed_path);
    let bob = customer(2);
    let e = p
        .deliverable_file(addr(&bob), &t.id, &lora, ts)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WrongSigner { .. }), "{e}");
    let stale = ts - 1000;
    let old = format!(
        "0x{}",
        hex::encode(sig::sign_personal(&alice, &sig::lora_digest(&t.id, stale)).unwrap())
    );
    assert!(matches!(
        p.deliverable_file(addr(&alice), &t.id, &old, stale).await,
        Err(Error::StaleTimestamp { .. })
    ));

    // The customer acknowledges; settlement pays the full fee and reveals the key.
    env.chain.acknowledge(addr(&alice), t.id.as_str()).unwrap();
    let t = wait_for(&p, &t.id, 30, |s| s.is_terminal()).await;
    assert_eq!(t.state, TaskState::Finished);
    assert_eq!(t.charged, t.fee);
    assert_eq!(
        env.chain.payments(),
        vec![(addr(&alice), t.id.to_string(), t.fee.unwrap())]
    );
    let secret = env.chain.secret(addr(&alice), t.id.as_str());
    assert_eq!(secret.len(), 129);

    // The customer opens it: unwrap, verify the tag signature, unpack, apply the adapter.
    let customer_key = k256::SecretKey::from_slice(&[1u8; 32]).unwrap();
    let key = EncryptedSecret::from_bytes(secret.to_vec())
        .unwrap_with(&customer_key)
        .unwrap();
    let plain = Unsealer::new(&key, p.tee_signer()).unseal_bytes(&sealed).unwrap();
    let out = env.dir.path().join("unpacked");
    let files = unpack(&mut plain.as_slice(), &out, 1 << 30).unwrap();
    assert!(files.contains(&"adapter.ngram".to_string()), "{files:?}");
    let tuned = apply_adapter(&NgramModel::train(SHIPPED_CORPUS), &out, 1 << 26).unwrap();
    let s = Sampling {
        temperature: 0.0,
        max_tokens: 12,
        ..Sampling::default()
    };
    let answer = tuned.generate("how long do I bake the sourdough loaf", &s).text;
    assert!(
        answer.to_lowercase().contains("bake") || answer.contains("minutes"),
        "{answer}"
    );

    // The log tells the story; metrics show the held-out loss falling.
    let log = p.store().log_since(&t.id, 0).await.unwrap();
    let states: Vec<&str> = log
        .iter()
        .filter(|l| l.kind == "state")
        .map(|l| l.line.split(':').next().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "Init",
            "SettingUp",
            "Training",
            "Trained",
            "Delivering",
            "Delivered",
            "UserAcknowledged",
            "Finished"
        ]
    );
    let losses: Vec<f64> = log
        .iter()
        .filter(|l| l.kind == "metric")
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.line).unwrap())
        .filter(|m| m["name"] == "eval_loss")
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 3, "{losses:?}");
    assert!(losses[2] < losses[0] && losses[1] < losses[0], "{losses:?}");
    // Nothing secret in the log.
    let all = log.iter().map(|l| l.line.clone()).collect::<Vec<_>>().join("\n");
    assert!(
        !all.contains(&hex::encode(&secret)) && !all.contains("sourdough"),
        "{all}"
    );
    // The dataset and the plaintext output are gone from the TEE's disk; the sealed copy stays.
    let dir = p.config().data_dir.join("tasks").join(t.id.as_str());
    assert!(!dir.join("input").exists() && !dir.join("output").exists());
    assert!(dir.join("model.sealed").exists());
}

#[tokio::test]
async fn an_unacknowledged_deliverable_settles_at_the_penalty_and_never_reveals_its_key() {
    let env = Env::new(30);
    let mut cfg = env.config();
    cfg.ack_timeout = Duration::from_millis(300);
    let p = env.pipeline_with(cfg, env.builtin(Duration::ZERO));
    let alice = customer(1);
    env.fund(&alice, 10_000_000_000);
    let root = env.store_dataset(&baking(10));
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    let t = wait_for(&p, &t.id, 30, |s| s.is_terminal()).await;
    assert_eq!(t.state, TaskState::PenaltySettled, "{:?}", t.fail_reason);
    let fee = t.fee.unwrap();
    let penalty = fee * U256::from(30) / U256::from(100);
    assert_eq!(t.charged, Some(penalty));
    assert_eq!(
        env.chain.payments(),
        vec![(addr(&alice), t.id.to_string(), penalty)]
    );
    assert!(env.chain.secret(addr(&alice), t.id.as_str()).is_empty());
    let d = env
        .chain
        .deliverable(addr(&alice), t.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(d.settled && !d.secret_revealed);
    // Acknowledging afterwards is refused by the contract (so the key can never come out).
    assert!(env.chain.acknowledge(addr(&alice), t.id.as_str()).is_err());
}

#[tokio::test]
async fn three_tasks_from_two_customers_run_in_parallel() {
    let env = Env::new(30);
    let mut cfg = env.config();
    cfg.max_parallel = 3;
    let p = env.pipeline_with(cfg, env.builtin(Duration::from_millis(150)));
    let (alice, bob) = (customer(1), customer(2));
    env.fund(&alice, 10_000_000_000);
    env.fund(&bob, 10_000_000_000);
    let root = env.store_dataset(&baking(12));
    let started = std::time::Instant::now();
    let tasks = vec![
        p.create_task(request(&alice, &root, PARAMS)).await.unwrap(),
        p.create_task(request(&alice, &root, r#"{"num_train_epochs": 3}"#))
            .await
            .unwrap(),
        p.create_task(request(&bob, &root, PARAMS)).await.unwrap(),
    ];
    // All three train at the same time.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut training = 0;
        for t in &tasks {
            if p.store().get(&t.id).await.unwrap().unwrap().state == TaskState::Training {
                training += 1;
            }
        }
        if training == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never 3 in Training at once"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in &tasks {
        let d = wait_for(&p, &t.id, 30, |s| s == TaskState::Delivered).await;
        env.chain.acknowledge(d.user, d.id.as_str()).unwrap();
    }
    let mut total = U256::ZERO;
    for t in &tasks {
        let t = wait_for(&p, &t.id, 30, |s| s.is_terminal()).await;
        assert_eq!(t.state, TaskState::Finished);
        total += t.fee.unwrap();
    }
    let paid: U256 = env.chain.payments().iter().map(|p| p.2).sum();
    assert_eq!((env.chain.payments().len(), paid), (3, total));
    assert_eq!(env.chain.deliverable_count(addr(&alice)), 2);
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Storage that holds `fetch` and `put_sealed` until released, to catch a task in SettingUp / Delivering.
#[derive(Clone)]
struct Gated {
    inner: LocalStore,
    fetch: Arc<Semaphore>,
    put: Arc<Semaphore>,
}

impl ArtifactStore for Gated {
    async fn put_sealed(&self, path: &Path, root: B256) -> Result<()> {
        let _p = self.put.acquire().await.unwrap();
        self.inner.put_sealed(path, root).await
    }
    async fn exists(&self, root: B256) -> Result<bool> {
        self.inner.exists(root).await
    }
    async fn fetch(&self, root: B256, out: &Path, max: u64) -> Result<Option<u64>> {
        let _p = self.fetch.acquire().await.unwrap();
        self.inner.fetch(root, out, max).await
    }
}

#[tokio::test]
async fn cancel_in_each_state() {
    let env = Env::new(30);
    let gated = Gated {
        inner: env.storage.clone(),
        fetch: Arc::new(Semaphore::new(0)),
        put: Arc::new(Semaphore::new(0)),
    };
    let cfg = env.config();
    let store = TaskStore::open(cfg.data_dir.join("tasks.sqlite")).unwrap();
    let p = zg_finetune::Pipeline::new(
        cfg,
        store.clone(),
        Arc::clone(&env.chain),
        gated.clone(),
        vec![zg_finetune::ModelSpec {
            name: MODEL.into(),
            hash: MODEL_HASH.into(),
            description: "demo".into(),
            tokenizer: Arc::new(zg_finetune::WordTokenizer),
            executor: env.builtin(Duration::from_millis(300)),
            base_model_dir: None,
        }],
        env.tee.clone(),
    )
    .unwrap();
    let alice = customer(1);
    env.fund(&alice, 10_000_000_000);
    let root = env.store_dataset(&baking(10));
    let cancel = |id: TaskId| {
        let p = p.clone();
        let k = alice.clone();
        async move { p.cancel_task(addr(&k), &id, &cancel_sig(&k, &id)).await }
    };
    let assert_cancelled = |t: zg_finetune::TaskRecord| {
        assert_eq!(t.state, TaskState::Cancelled);
        assert_eq!(t.charged, None);
    };

    // Init: accepted, no driver has picked it up.
    let t = store
        .insert(NewTask {
            id: TaskId::random(),
            user: addr(&alice),
            model: MODEL.into(),
            model_hash: MODEL_HASH.into(),
            dataset_hash: root.clone(),
            training_params: "{}".into(),
            nonce: U256::from(1),
            signature: "0x".into(),
            user_pubkey: vec![],
            wait: false,
            native: false,
            max_fee: None,
        })
        .await
        .unwrap();
    assert_cancelled(cancel(t.id.clone()).await.unwrap());
    // Cancelling twice is idempotent; a stranger's signature is refused.
    assert_cancelled(cancel(t.id.clone()).await.unwrap());
    let bob = customer(2);
    let e = p
        .cancel_task(addr(&alice), &t.id, &cancel_sig(&bob, &t.id))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WrongSigner { .. }), "{e}");

    // SettingUp: the dataset fetch is held.
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    wait_for(&p, &t.id, 10, |s| s == TaskState::SettingUp).await;
    assert_cancelled(cancel(t.id.clone()).await.unwrap());
    gated.fetch.add_permits(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_cancelled(p.store().get(&t.id).await.unwrap().unwrap());

    // Training: the trainer is stopped.
    gated.fetch.add_permits(100);
    let t = p
        .create_task(request(&alice, &root, r#"{"num_train_epochs": 5}"#))
        .await
        .unwrap();
    wait_for(&p, &t.id, 10, |s| s == TaskState::Training).await;
    assert_cancelled(cancel(t.id.clone()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = p.store().get(&t.id).await.unwrap().unwrap();
    assert_cancelled(t.clone());
    assert!(
        !p.config().data_dir.join("tasks").join(t.id.as_str()).exists(),
        "task files removed"
    );

    // Trained (between two driver steps; reproduced through the store as after a crash).
    let t2 = store
        .insert(NewTask {
            id: TaskId::random(),
            user: addr(&alice),
            model: MODEL.into(),
            model_hash: MODEL_HASH.into(),
            dataset_hash: root.clone(),
            training_params: "{}".into(),
            nonce: U256::from(2),
            signature: "0x".into(),
            user_pubkey: vec![],
            wait: false,
            native: false,
            max_fee: None,
        })
        .await
        .unwrap();
    for (a, b) in [
        (TaskState::Init, TaskState::SettingUp),
        (TaskState::SettingUp, TaskState::Training),
        (TaskState::Training, TaskState::Trained),
    ] {
        assert!(
            store
                .transition(&t2.id, a, b, Update::new(), String::new())
                .await
                .unwrap()
        );
    }
    assert_cancelled(cancel(t2.id.clone()).await.unwrap());

    // Delivering, before addDeliverable: storing the sealed model is held.
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    wait_for(&p, &t.id, 10, |s| s == TaskState::Delivering).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_cancelled(cancel(t.id.clone()).await.unwrap());
    gated.put.add_permits(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_cancelled(p.store().get(&t.id).await.unwrap().unwrap());
    assert!(
        env.chain
            .deliverable(addr(&alice), t.id.as_str())
            .await
            .unwrap()
            .is_none()
    );

    // Delivering while addDeliverable is being sent: refused (the node keeps failing, the driver retries).
    gated.put.add_permits(100);
    for _ in 0..50 {
        env.chain.inject("add_deliverable", Fault::Before(transient()));
    }
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.store().get(&t.id).await.unwrap().unwrap().deliver_sending {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = cancel(t.id.clone()).await.unwrap_err();
    assert!(
        matches!(e, Error::NotCancellable { .. }) && e.status() == 409,
        "{e}"
    );

    // Delivered / UserAcknowledged / Finished: refused with what to do instead.
    let t = wait_for(&p, &t.id, 20, |s| s == TaskState::Delivered).await;
    let e = cancel(t.id.clone()).await.unwrap_err();
    assert!(e.to_string().contains("acknowledge it"), "{e}");
    env.chain.acknowledge(addr(&alice), t.id.as_str()).unwrap();
    let t = wait_for(&p, &t.id, 20, |s| s == TaskState::Finished).await;
    assert!(matches!(
        cancel(t.id.clone()).await,
        Err(Error::NotCancellable { .. })
    ));
    // Nothing was charged for any cancelled task.
    assert_eq!(env.chain.payments().len(), 1);
}

#[tokio::test]
async fn lost_responses_and_restarts_never_add_or_pay_twice() {
    let env = Env::new(30);
    let p = env.pipeline();
    let alice = customer(1);
    env.fund(&alice, 10_000_000_000);
    let root = env.store_dataset(&baking(10));
    // addDeliverable lands but its response is lost; so does the settlement's.
    env.chain.inject("add_deliverable", Fault::After(transient()));
    env.chain.inject("settle", Fault::After(transient()));
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    let t = wait_for(&p, &t.id, 20, |s| s == TaskState::Delivered).await;
    env.chain.acknowledge(addr(&alice), t.id.as_str()).unwrap();
    let t = wait_for(&p, &t.id, 20, |s| s.is_terminal()).await;
    assert_eq!(t.state, TaskState::Finished);
    assert_eq!(
        env.chain.calls("add_deliverable"),
        1,
        "read the chain instead of re-sending"
    );
    assert_eq!(env.chain.calls("settle"), 1);
    assert_eq!(env.chain.payments().len(), 1);

    // A restart with a settlement recorded but never confirmed: the new pipeline finishes it once.
    let t2 = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    wait_for(&p, &t2.id, 20, |s| s == TaskState::Delivered).await;
    for _ in 0..1000 {
        env.chain.inject("settle", Fault::Before(transient()));
    }
    env.chain.acknowledge(addr(&alice), t2.id.as_str()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = p.store().get(&t2.id).await.unwrap().unwrap();
        if r.state == TaskState::UserAcknowledged && r.settle_signature.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.shutdown().await;
    p.store().close();
    // Let the node answer again, then restart on the same data dir.
    env.chain.clear_faults();
    let p2 = env.pipeline();
    assert!(p2.start().await.unwrap() >= 1);
    let r = wait_for(&p2, &t2.id, 20, |s| s.is_terminal()).await;
    assert_eq!(r.state, TaskState::Finished);
    assert_eq!(env.chain.payments().len(), 2);
    assert_eq!(env.chain.deliverable_count(addr(&alice)), 2);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_named_4xx_and_nothing_is_stored() {
    let env = Env::new(30);
    let mut cfg = env.config();
    cfg.dataset_limits.max_bytes = 64 * 1024;
    let p = env.pipeline_with(cfg, env.builtin(Duration::ZERO));
    let (alice, mallory) = (customer(1), customer(3));
    env.fund(&alice, 10_000_000_000);
    let root = env.store_dataset(&baking(10));
    let ok = request(&alice, &root, PARAMS);
    let count = || async { p.store().counts().await.unwrap().iter().map(|c| c.1).sum::<u64>() };

    let mut cases: Vec<(&str, zg_finetune::CreateTask, &str, u16)> = Vec::new();
    let mut wrong_sig = ok.clone();
    wrong_sig.signature = request(&mallory, &root, PARAMS).signature;
    cases.push(("wrong signature", wrong_sig, "bad_signature|wrong_signer", 401));
    let mut garbage = ok.clone();
    garbage.signature = "0xdeadbeef".into();
    cases.push(("garbage signature", garbage, "bad_signature", 401));
    let mut unknown_model = ok.clone();
    unknown_model.model = "0x2e6f9620c35bdcb2b753cc7aa34e78077a8ed133e36fa36008fd6bdfd29af3a5".into();
    cases.push(("unknown model", unknown_model, "unknown_model", 400));
    let missing = format!("0x{}", "77".repeat(32));
    cases.push((
        "missing dataset root",
        request(&alice, &missing, PARAMS),
        "dataset_not_found",
        404,
    ));
    cases.push((
        "not a root",
        request(&alice, "hello", PARAMS),
        "dataset_not_found",
        404,
    ));
    cases.push((
        "params out of bounds",
        request(&alice, &root, r#"{"num_train_epochs": 1000000}"#),
        "training_params",
        400,
    ));
    cases.push((
        "params not JSON",
        request(&alice, &root, "epochs=3"),
        "training_params",
        400,
    ));
    cases.push((
        "no sub-account",
        request(&mallory, &root, PARAMS),
        "no_sub_account",
        402,
    ));
    let mut low = request(&alice, &root, PARAMS);
    low.nonce = U256::ZERO;
    low.signature = format!(
        "0x{}",
        hex::encode(
            sig::sign_personal(&alice, &sig::create_digest(addr(&alice), U256::ZERO, &root)).unwrap()
        )
    );
    cases.push(("nonce not above the account's", low, "nonce_too_low", 409));
    let carol = customer(4);
    env.chain
        .set_account(addr(&carol), U256::from(1_000_000_000u64), false);
    cases.push((
        "signer not acknowledged",
        request(&carol, &root, PARAMS),
        "signer_not_acknowledged",
        412,
    ));
    for (what, req, codes, status) in cases {
        let before = count().await;
        let e = p.create_task(req).await.unwrap_err();
        assert!(
            codes.split('|').any(|c| c == e.code()),
            "{what}: {} ({e})",
            e.code()
        );
        assert_eq!(e.status(), status, "{what}: {e}");
        assert_eq!(count().await, before, "{what}: a task was stored");
    }
    // A replayed create: the first is accepted, the replay refused.
    let t = p.create_task(ok.clone()).await.unwrap();
    let e = p.create_task(ok).await.unwrap_err();
    assert_eq!((e.code(), e.status()), ("nonce_replayed", 409));
    assert_eq!(p.store().list(addr(&alice), 10).await.unwrap().len(), 1);
    let _ = t;

    // TEE uploads: oversized, malformed, path traversal in a zip, stale or forged signature → nothing kept.
    let uploads = p.config().data_dir.join("datasets");
    let up = |bytes: Vec<u8>, ts_offset: i64, signer: zg_finetune::SigningKey| {
        let p = p.clone();
        let dir = env.dir.path().to_owned();
        let user = addr(&alice);
        async move {
            let tmp = dir.join(format!("up-{}", TaskId::random()));
            std::fs::write(&tmp, bytes).unwrap();
            let ts = zg_finetune::now_ms() / 1000 + ts_offset;
            let s = format!(
                "0x{}",
                hex::encode(sig::sign_personal(&signer, &sig::dataset_digest(user, ts)).unwrap())
            );
            let r = p.upload_dataset(user, &s, ts, tmp.clone()).await;
            assert!(r.is_ok() || !tmp.exists(), "a refused upload was left on disk");
            r
        }
    };
    let cases: Vec<(&str, Vec<u8>, i64, zg_finetune::SigningKey, &str)> = vec![
        (
            "oversized",
            vec![b' '; 65 * 1024],
            0,
            alice.clone(),
            "dataset_too_large",
        ),
        (
            "malformed",
            b"{\"text\":\"a\"}\nnot json\n".to_vec(),
            0,
            alice.clone(),
            "dataset_format",
        ),
        (
            "traversal",
            crate::datasets::zip_with(&[("../../etc/cron.d/x.jsonl", &baking(3))]),
            0,
            alice.clone(),
            "archive_refused",
        ),
        ("stale", baking(3), -3600, alice.clone(), "stale_timestamp"),
        ("forged", baking(3), 0, mallory.clone(), "wrong_signer"),
    ];
    for (what, bytes, off, k, code) in cases {
        let e = up(bytes, off, k).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.is_client_fault(), "{what}");
        assert_eq!(files_under(&uploads), 0, "{what}: something was stored");
    }
    // A good upload is kept, and only its owner can use it.
    let hash = up(baking(5), 0, alice.clone()).await.unwrap();
    assert_eq!(files_under(&uploads), 1);
    let e = p.create_task(request(&carol, &hash, PARAMS)).await.unwrap_err();
    assert_eq!(e.code(), "dataset_not_found");
    let t = p.create_task(request(&alice, &hash, PARAMS)).await.unwrap();
    let t = wait_for(&p, &t.id, 20, |s| s == TaskState::Delivered || s.is_terminal()).await;
    assert_eq!(t.state, TaskState::Delivered, "{:?}", t.fail_reason);
}

#[tokio::test]
async fn a_fee_the_sub_account_cannot_cover_fails_the_task_before_training() {
    let env = Env::new(30);
    let p = env.pipeline();
    let alice = customer(1);
    env.fund(&alice, 5_000); // far below tokens × epochs × 1000
    let root = env.store_dataset(&baking(10));
    let t = p.create_task(request(&alice, &root, PARAMS)).await.unwrap();
    let t = wait_for(&p, &t.id, 20, |s| s.is_terminal()).await;
    assert_eq!(t.state, TaskState::Failed);
    assert!(
        t.fail_reason
            .as_deref()
            .unwrap()
            .starts_with("insufficient_balance"),
        "{:?}",
        t.fail_reason
    );
    assert!(env.chain.payments().is_empty());
    assert!(
        env.chain
            .deliverable(addr(&alice), t.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
}
