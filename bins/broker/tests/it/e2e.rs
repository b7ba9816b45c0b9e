//! The whole flow on anvil through the `zg-broker` binary: 0G-compatible HTTP (the official CLI's bodies and
//! signatures), the chain (ack, settlement, key reveal), storage, gRPC WatchTask; parallel tasks, cancels,
//! the penalty path and bad input.

use std::time::Duration;

use alloy_primitives::{U256, keccak256};
use serde_json::{Value, json};
use zg_finetune::{Dataset, DatasetLimits, TaskId, WordTokenizer, apply_adapter, unpack};
use zg_ngram::{NgramModel, SHIPPED_CORPUS};
use zg_proto::v1 as pb;
use zg_sealing::{EncryptedSecret, Unsealer};

use crate::common::*;

const PARAMS: &str = "{\n  \"num_train_epochs\": 2,\n  \"seed\": 11\n}\n";

#[tokio::test]
async fn whole_flow_through_the_binary_reveals_the_key_for_the_exact_fee() {
    let net = Net::start().await;
    let b = net.broker(&[], &[]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let data = baking(40);
    let root = net.upload(&data);
    let hash = model_hash(&b).await;
    let before = alice.balance(net.provider()).await;

    // The official CLI's path: pending = 0 (no prompt), quote has the signer, then create.
    assert_eq!(
        reqwest::get(format!("{}/v1/task/pending", b.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "0"
    );
    let quote: Value = reqwest::get(format!("{}/v1/quote", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(quote["report_data"].as_str().is_some_and(|s| !s.is_empty()));
    let (st, t) = alice.create(&b, &alice.create_body(&root, &hash, PARAMS)).await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["trainingParams"], PARAMS, "config text kept verbatim");
    let t = alice.wait(&b, &id, 60, |s| s == "Delivered" || terminal(s)).await;
    assert_eq!(t["progress"], "Delivered", "{t}");

    // The fee is exact and shown before settlement.
    let tokens = Dataset::from_jsonl(&data, &DatasetLimits::default())
        .unwrap()
        .token_count(&WordTokenizer);
    let fee = U256::from(tokens) * U256::from(2) * U256::from(PRICE);
    assert_eq!(t["tokens"], tokens);
    assert_eq!(t["fee"], fee.to_string());

    // Download from the TEE exactly as the official CLI does; the root on chain is keccak256 of the file.
    let (st, sealed) = alice.download(&b, &id).await;
    assert_eq!(st, 200);
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    assert_eq!(d.model_root_hash.as_ref(), keccak256(&sealed).as_slice());
    assert!(d.encrypted_secret.is_empty() && !d.acknowledged);

    // Acknowledge on chain; the broker settles and the key appears in the same transaction as the payment.
    alice.acknowledge(net.provider(), &id).await;
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}");
    assert_eq!(t["charged"], fee.to_string());
    assert_eq!(
        before - alice.balance(net.provider()).await,
        fee,
        "paid exactly once, exactly the fee"
    );
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    assert!(d.settled && d.acknowledged && d.encrypted_secret.len() == 129);

    // Decrypt with the customer's key, check the TEE signature, and use the model.
    let secret = zg_sealing::k256::SecretKey::from_slice(alice.key.to_bytes().as_slice()).unwrap();
    let key = EncryptedSecret::from_bytes(d.encrypted_secret.to_vec())
        .unwrap_with(&secret)
        .unwrap();
    let signer = alice
        .chain
        .fine_tuning()
        .tee_signer(net.provider())
        .await
        .unwrap()
        .unwrap();
    let plain = Unsealer::new(&key, signer).unseal_bytes(&sealed).unwrap();
    let out = net.dir.path().join("model");
    unpack(&mut plain.as_slice(), &out, 1 << 30).unwrap();
    let tuned = apply_adapter(&NgramModel::train(SHIPPED_CORPUS), &out, 1 << 26).unwrap();
    let held_out = ["Bake the sourdough loaf for 31 minutes at 210 degrees, then rest it."];
    assert!(tuned.loss(held_out).mean() < NgramModel::train(SHIPPED_CORPUS).loss(held_out).mean());

    // The log shows every step; nothing secret in it; /metrics counts it.
    let log = alice.log(&b, &id).await;
    for s in [
        "SettingUp",
        "Training",
        "Trained",
        "Delivering",
        "Delivered",
        "UserAcknowledged",
        "Finished",
    ] {
        assert!(log.contains(&format!("state: {s}")), "{s} missing:\n{log}");
    }
    assert!(!log.contains(&hex::encode(&d.encrypted_secret)) && !log.contains("sourdough"));
    let m = reqwest::get(format!("{}/metrics", b.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("zg_broker_tasks{state=\"Finished\"} 1"), "{m}");
    assert!(m.contains("zg_broker_training_seconds_count 1"), "{m}");
}

#[tokio::test]
async fn three_tasks_two_customers_in_parallel_with_cancels_e2e() {
    let net = Net::start().await;
    let b = net
        .broker(&[], &["--epoch-pause-ms", "400", "--max-parallel", "3"])
        .await;
    net.owner_ack().await;
    let (alice, bob) = (net.customer(1, 5).await, net.customer(2, 5).await);
    let root = net.upload(&baking(20));
    let hash = model_hash(&b).await;
    let mut ids = Vec::new();
    for (c, params) in [
        (&alice, PARAMS),
        (&alice, "{\"num_train_epochs\": 3}"),
        (&bob, PARAMS),
    ] {
        let (st, t) = c.create(&b, &c.create_body(&root, &hash, params)).await;
        assert_eq!(st, 200, "{t}");
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    // A fourth task, cancelled while it trains: nothing charged, nothing on chain.
    let (_, t4) = bob
        .create(&b, &bob.create_body(&root, &hash, "{\"num_train_epochs\": 5}"))
        .await;
    let id4 = t4["id"].as_str().unwrap().to_owned();
    bob.wait(&b, &id4, 30, |s| s == "Training").await;
    // All three (and the fourth) are in flight at once.
    let mut states: Vec<Value> = Vec::new();
    for (c, id) in [(&alice, &ids[0]), (&alice, &ids[1]), (&bob, &ids[2])] {
        states.push(c.task(&b, id).await);
    }
    assert!(
        states.iter().all(|t| !terminal(t["progress"].as_str().unwrap())),
        "{states:?}"
    );
    let (st, text) = bob.cancel(&b, &id4).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(bob.wait(&b, &id4, 10, terminal).await["progress"], "Cancelled");
    // A stranger cannot cancel alice's task.
    let (st, _) = {
        let tid = TaskId::parse(&ids[0]).unwrap();
        let s = zg_finetune::sig::sign_personal(&bob.sk, &zg_finetune::sig::cancel_digest(&tid)).unwrap();
        let r = reqwest::Client::new()
            .post(alice.path(&b, &format!("/task/{}/cancel", ids[0])))
            .json(&json!({"signature": hex0x(s)}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(st, 401);
    for (c, id) in [(&alice, &ids[0]), (&alice, &ids[1]), (&bob, &ids[2])] {
        c.wait(&b, id, 60, |s| s == "Delivered").await;
        c.acknowledge(net.provider(), id).await;
    }
    for (c, id) in [(&alice, &ids[0]), (&alice, &ids[1]), (&bob, &ids[2])] {
        assert_eq!(c.wait(&b, id, 60, terminal).await["progress"], "Finished");
    }
    let ft = alice.chain.fine_tuning();
    assert_eq!(
        ft.get_deliverables(alice.addr, net.provider())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ft.get_deliverables(bob.addr, net.provider()).await.unwrap().len(),
        1,
        "cancelled: no deliverable"
    );
    // Delivered tasks can no longer be cancelled.
    let (st, body) = alice.cancel(&b, &ids[0]).await;
    assert_eq!(st, 409, "{body}");
}

#[tokio::test]
async fn an_unacknowledged_deliverable_is_settled_at_the_penalty_without_the_key_e2e() {
    let net = Net::start().await;
    let b = net.broker(&[], &["--ack-timeout-secs", "1"]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let root = net.upload(&baking(10));
    let before = alice.balance(net.provider()).await;
    let (_, t) = alice
        .create(&b, &alice.create_body(&root, &model_hash(&b).await, PARAMS))
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "PenaltySettled", "{t}");
    let fee: U256 = t["fee"].as_str().unwrap().parse().unwrap();
    let pct = alice.chain.fine_tuning().penalty_percentage().await.unwrap();
    let penalty = fee * pct / U256::from(100);
    assert_eq!(t["charged"], penalty.to_string());
    assert_eq!(before - alice.balance(net.provider()).await, penalty);
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    assert!(
        d.settled && !d.acknowledged && d.encrypted_secret.is_empty(),
        "the key must never appear"
    );
    // Too late to acknowledge: the contract refuses, so the key can never be revealed.
    assert!(
        alice
            .chain
            .fine_tuning()
            .acknowledge_deliverable(net.provider(), &id)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bad_input_gets_a_named_4xx_and_nothing_is_stored_e2e() {
    let net = Net::start().await;
    let b = net.broker(&[], &[]).await;
    let alice = net.customer(1, 5).await;
    let mallory = net.customer(3, 5).await;
    let root = net.upload(&baking(10));
    let hash = model_hash(&b).await;
    let good = alice.create_body(&root, &hash, PARAMS);
    let mut cases: Vec<(&str, Value, u16, &str)> = Vec::new();
    let mut forged = good.clone();
    forged["signature"] = mallory.create_body(&root, &hash, PARAMS)["signature"].clone();
    cases.push(("wrong signature", forged, 401, "bad_signature|wrong_signer"));
    cases.push((
        "unknown model",
        alice.create_body(
            &root,
            "0x2e6f9620c35bdcb2b753cc7aa34e78077a8ed133e36fa36008fd6bdfd29af3a5",
            PARAMS,
        ),
        400,
        "unknown_model",
    ));
    cases.push((
        "missing dataset root",
        alice.create_body(&format!("0x{}", "66".repeat(32)), &hash, PARAMS),
        404,
        "dataset_not_found",
    ));
    cases.push((
        "params out of bounds",
        alice.create_body(&root, &hash, "{\"num_train_epochs\": 500}"),
        400,
        "training_params",
    ));
    cases.push((
        "unknown param",
        alice.create_body(&root, &hash, "{\"num_epochs\": 2}"),
        400,
        "training_params",
    ));
    let mut other_user = good.clone();
    other_user["userAddress"] = json!(mallory.addr.to_checksum(None));
    cases.push(("body user ≠ path user", other_user, 400, "invalid_request"));
    let mut bad_nonce = good.clone();
    bad_nonce["nonce"] = json!("12abc");
    cases.push(("nonce not a number", bad_nonce, 400, "invalid_field"));
    for (what, body, status, codes) in cases {
        let (st, v) = alice.create(&b, &body).await;
        assert_eq!(st, status, "{what}: {v}");
        let code = v["code"].as_str().unwrap_or_default();
        assert!(codes.split('|').any(|c| c == code), "{what}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {v}");
    }
    assert!(alice.tasks(&b).await.is_empty(), "nothing was stored");
    // The replayed nonce.
    let (st, _) = alice.create(&b, &good).await;
    assert_eq!(st, 200);
    let (st, v) = alice.create(&b, &good).await;
    assert_eq!((st, v["code"].as_str()), (409, Some("nonce_replayed")));
    assert_eq!(alice.tasks(&b).await.len(), 1);

    // TEE uploads: oversized (413 from the stream cap), malformed, a traversal zip → nothing kept.
    let up = |bytes: Vec<u8>| {
        let url = alice.path(&b, "/dataset");
        let addr = alice.addr;
        let sk = alice.sk.clone();
        async move {
            let ts = zg_finetune::now_ms() / 1000;
            let s =
                zg_finetune::sig::sign_personal(&sk, &zg_finetune::sig::dataset_digest(addr, ts)).unwrap();
            let form = reqwest::multipart::Form::new()
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(bytes)
                        .file_name("d.jsonl")
                        .mime_str("application/octet-stream")
                        .unwrap(),
                )
                .text("signature", hex0x(s))
                .text("timestamp", ts.to_string());
            let r = reqwest::Client::new()
                .post(url)
                .multipart(form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (st, v) = up(b"{\"text\":\"a\"}\nnope\n".to_vec()).await;
    assert_eq!(st, 400, "{v}");
    assert!(v.contains("line 2"), "{v}");
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("../../escape.jsonl", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut w, &baking(3)).unwrap();
    let (st, v) = up(w.finish().unwrap().into_inner()).await;
    assert_eq!(st, 400, "{v}");
    assert!(v.contains("archive_refused"), "{v}");
    let datasets = net.data_dir().join("datasets");
    let kept = walk(&datasets);
    assert_eq!(kept, 0, "refused uploads left files");
    let uploads = walk(&net.data_dir().join("uploads"));
    assert_eq!(uploads, 0, "spooled uploads left behind");
    let (st, v) = up(baking(4)).await;
    assert_eq!(st, 200, "{v}");
    let hash_tee: Value = serde_json::from_str(&v).unwrap();
    assert!(hash_tee["datasetHash"].as_str().unwrap().starts_with("0x"));
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 })
        .sum()
}

#[tokio::test]
async fn grpc_watch_task_streams_states_and_log_lines_as_they_happen_e2e() {
    let net = Net::start().await;
    let b = net.broker(&[], &["--epoch-pause-ms", "200"]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let root = net.upload(&baking(10));
    let mut client = pb::fine_tuning_client::FineTuningClient::connect(b.grpc.clone())
        .await
        .unwrap();
    let info = client.get_info(pb::GetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.provider, net.provider().to_checksum(None));
    assert_eq!(info.models[0].name, MODEL);
    // Native create: signs model, config and a max fee; a max below the fee fails before training.
    let create = |max_fee: U256, params: &str| {
        let nonce = U256::from(zg_finetune::now_ms() as u64 * 10_000 + 7);
        let d = zg_finetune::sig::native_create_digest(
            net.provider(),
            alice.addr,
            nonce,
            &root,
            MODEL,
            params,
            max_fee,
        );
        pb::CreateTaskRequest {
            user: alice.addr.to_checksum(None),
            dataset_hash: root.clone(),
            training_params: params.to_owned(),
            model: MODEL.into(),
            nonce: nonce.to_string(),
            signature: zg_finetune::sig::sign_personal(&alice.sk, &d).unwrap().to_vec(),
            max_fee: max_fee.to_string(),
        }
    };
    let t = client
        .create_task(create(U256::from(1), "{}"))
        .await
        .unwrap()
        .into_inner();
    let t = alice.wait(&b, &t.id, 30, terminal).await;
    assert_eq!(t["progress"], "Failed");
    assert!(
        t["failReason"]
            .as_str()
            .unwrap()
            .starts_with("fee_above_signed_max"),
        "{t}"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = client
        .create_task(create(U256::from(10).pow(U256::from(20)), PARAMS))
        .await
        .unwrap()
        .into_inner();
    // Reads need the owner's signature.
    let err = client
        .get_task(pb::GetTaskRequest {
            auth: None,
            id: t.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let auth = zg_broker::read_auth(&alice.sk).unwrap();
    let mut stream = client
        .watch_task(pb::WatchTaskRequest {
            auth: Some(auth),
            id: t.id.clone(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut states, mut lines) = (Vec::new(), Vec::new());
    let acker = {
        let chain = alice.chain.clone();
        let (id, provider) = (t.id.clone(), net.provider());
        tokio::spawn(async move {
            loop {
                if let Ok(d) = chain
                    .fine_tuning()
                    .get_deliverable(chain.signer_address().unwrap(), provider, &id)
                    .await
                {
                    assert!(!d.acknowledged);
                    chain
                        .fine_tuning()
                        .acknowledge_deliverable(provider, &id)
                        .await
                        .unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    while let Some(u) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        match u.update.unwrap() {
            pb::task_update::Update::Task(t) => states.push(t.state),
            pb::task_update::Update::Log(l) => lines.push(l),
        }
    }
    acker.await.unwrap();
    // The first message is the task as it is now; then every change until the end.
    assert_eq!(states.last().map(String::as_str), Some("Finished"), "{states:?}");
    assert!(states.len() >= 3, "{states:?}");
    let logged: Vec<&str> = lines
        .iter()
        .filter(|l| l.kind == "state")
        .map(|l| l.line.split(':').next().unwrap())
        .collect();
    assert_eq!(
        logged,
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
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gapless, ordered: {seqs:?}"
    );
    assert!(lines.iter().any(|l| l.kind == "metric"), "metrics streamed");
    assert!(
        lines.iter().any(|l| l.line.contains("epoch 2: held-out loss")),
        "trainer lines streamed"
    );
    // GetDeliverable streams the sealed model.
    let mut d = client
        .get_deliverable(pb::GetDeliverableRequest {
            auth: Some(zg_broker::read_auth(&alice.sk).unwrap()),
            id: t.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    let mut info = None;
    while let Some(c) = d.message().await.unwrap() {
        match c.chunk.unwrap() {
            pb::deliverable_chunk::Chunk::Info(i) => info = Some(i),
            pb::deliverable_chunk::Chunk::Data(b) => bytes.extend_from_slice(&b),
        }
    }
    let info = info.unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.model_root_hash, hex0x(keccak256(&bytes)));
}

#[tokio::test]
async fn reads_need_the_owners_signature_when_require_read_auth_is_on_e2e() {
    let net = Net::start().await;
    let b = net.broker(&[], &["--require-read-auth", "true"]).await;
    let alice = net.customer(1, 5).await;
    let mallory = net.customer_handle(3).await;
    let root = net.upload(&baking(6));
    let (st, t) = alice
        .create(&b, &alice.create_body(&root, &model_hash(&b).await, PARAMS))
        .await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let url = alice.path(&b, &format!("/task/{id}"));
    let header = |k: &zg_finetune::SigningKey, user: alloy_primitives::Address, ts: i64| {
        let s = zg_finetune::sig::sign_personal(k, &zg_finetune::sig::read_digest(user, ts)).unwrap();
        format!("{ts}:{}", hex0x(s))
    };
    let get = |h: Option<String>| {
        let url = url.clone();
        async move {
            let mut r = reqwest::Client::new().get(url);
            if let Some(h) = h {
                r = r.header(zg_broker::READ_AUTH_HEADER, h);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let now = zg_finetune::now_ms() / 1000;
    let (st, body) = get(None).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("unauthenticated"), "{body}");
    let (st, _) = get(Some(header(&mallory.sk, alice.addr, now))).await;
    assert_eq!(st, 401, "someone else's signature");
    let (st, _) = get(Some(header(&alice.sk, alice.addr, now - 3600))).await;
    assert_eq!(st, 401, "a stale signature");
    let (st, body) = get(Some(header(&alice.sk, alice.addr, now))).await;
    assert_eq!(st, 200, "{body}");
    // The model download of a task not yet delivered is refused by name.
    let (st, body) = alice.download(&b, &id).await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        st == 409 && body.contains("not_delivered") || st == 200,
        "{st} {body}"
    );
}

/// Attack: a TEE signer key the owner bound to one provider is reused by another provider's broker (a copied
/// data dir, a replayed sealed key). The contract would never let it settle there; the broker refuses to start
/// and says why, instead of serving tasks it can never be paid for.
#[tokio::test]
async fn a_tee_signer_bound_to_another_provider_refuses_to_start_e2e() {
    let mut net = Net::start().await;
    let mut b = net.broker(&[], &[]).await;
    net.owner_ack().await;
    let signer = b_signer(&b).await;
    b.kill9();
    // Same data dir (same simulated TEE key), another wallet.
    let first = net.provider();
    net.broker_key = net.devnet.keys()[6].clone();
    let (st, err) = net.broker_exit(&[], 60);
    assert!(!st.success(), "{err}");
    assert!(
        err.contains("already serves provider") && err.contains(&first.to_checksum(None)),
        "names the provider the signer serves: {err}"
    );
    assert!(err.contains(&signer), "names the signer: {err}");
    let chain = net.devnet.client(None).await.unwrap();
    assert!(
        chain
            .fine_tuning()
            .get_service(net.provider())
            .await
            .unwrap()
            .is_none(),
        "nothing registered for the second provider"
    );
}

async fn b_signer(b: &Broker) -> String {
    let q: Value = reqwest::get(format!("{}/v1/info", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = q["teeSigner"]
        .as_str()
        .unwrap_or_else(|| panic!("no teeSigner in {q}"));
    s.parse::<alloy_primitives::Address>().unwrap().to_checksum(None)
}

/// Attack: the broker is down while the customer's acknowledgement freezes refunds; by the time it is back the
/// freeze is (almost) over, so a settlement revealing the key could be front-run by the customer's matured
/// refund (key for free). The broker does not send the key; it tells the customer to acknowledge again, and
/// settles (key revealed, full fee, once) when the customer does.
#[tokio::test]
async fn a_key_is_not_revealed_after_the_refund_freeze_until_the_customer_acknowledges_again_e2e() {
    let net = Net::start().await;
    let mut b = net.broker(&[], &[]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let root = net.upload(&baking(10));
    let (st, t) = alice
        .create(&b, &alice.create_body(&root, &model_hash(&b).await, PARAMS))
        .await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let t = alice.wait(&b, &id, 60, |s| s == "Delivered" || terminal(s)).await;
    assert_eq!(t["progress"], "Delivered", "{t}");
    let fee: U256 = t["fee"].as_str().unwrap().parse().unwrap();
    b.kill9();
    alice.acknowledge(net.provider(), &id).await;
    let before = alice.balance(net.provider()).await;
    // lockTime is 120 s on the devnet: 100 s later fewer than the 30 s margin are left.
    net.devnet.advance_time(100).await.unwrap();
    let b = net.broker(&[], &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = alice.log(&b, &id).await;
        if log.contains("acknowledge-deliverable") {
            assert!(log.contains("refund freeze"), "{log}");
            assert_eq!(
                log.matches("acknowledge-deliverable").count(),
                1,
                "said once, not every poll: {log}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never told the customer:\n{log}\n{}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(alice.task(&b, &id).await["progress"], "UserAcknowledged");
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    assert!(
        !d.settled && d.encrypted_secret.is_empty(),
        "no key sent outside the freeze"
    );
    assert_eq!(alice.balance(net.provider()).await, before);
    // Acknowledging again restarts the freeze; the broker settles with the key, for the fee, once.
    alice.acknowledge(net.provider(), &id).await;
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}");
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    assert!(d.settled && d.encrypted_secret.len() == 129);
    assert_eq!(before - alice.balance(net.provider()).await, fee);
}
