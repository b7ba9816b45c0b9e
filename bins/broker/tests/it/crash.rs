//! Crash injection through the binary: the broker is killed with SIGKILL in every state, and between sending
//! and recording `addDeliverable` and `settleFees`; restarted on the same data dir, the task ends Finished
//! exactly once, the chain holds one deliverable for it, and the customer paid the fee exactly once.

use std::time::Duration;

use alloy_primitives::U256;
use serde_json::Value;

use crate::common::*;

const PARAMS: &str = r#"{"num_train_epochs": 2}"#;

async fn finish_and_check(net: &Net, alice: &Customer, b: &Broker, id: &str, before: U256) {
    let t = alice.wait(b, id, 60, |s| s == "Delivered" || terminal(s)).await;
    if t["progress"] == "Delivered" {
        let d = alice
            .chain
            .fine_tuning()
            .get_deliverable(alice.addr, net.provider(), id)
            .await
            .unwrap();
        if !d.acknowledged {
            alice.acknowledge(net.provider(), id).await;
        }
    }
    let t = alice.wait(b, id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}\n{}", b.stderr());
    let fee: U256 = t["fee"].as_str().unwrap().parse().unwrap();
    let ds = alice
        .chain
        .fine_tuning()
        .get_deliverables(alice.addr, net.provider())
        .await
        .unwrap();
    let mine: Vec<_> = ds.iter().filter(|d| d.id == id).collect();
    assert_eq!(mine.len(), 1, "one deliverable for {id}");
    assert!(mine[0].settled && mine[0].encrypted_secret.len() == 129);
    assert_eq!(
        before - alice.balance(net.provider()).await,
        fee,
        "{id}: paid exactly once"
    );
    let log = alice.log(b, id).await;
    assert_eq!(log.matches("state: Finished").count(), 1, "{log}");
    assert_eq!(log.matches("state: Delivered").count(), 1, "{log}");
}

#[tokio::test]
async fn kill9_in_every_state_and_between_send_and_record_anvil() {
    let net = Net::start().await;
    {
        // Register and have the owner acknowledge once.
        let _b = net.broker(&[], &[]).await;
        net.owner_ack().await;
    }
    let alice = net.customer(1, 20).await;
    let root = net.upload(&baking(12));
    let points = [
        "accepted",
        "state:SettingUp",
        "state:Training",
        "state:Trained",
        "state:Delivering",
        "add-deliverable-sent",
        "state:Delivered",
        "state:UserAcknowledged",
        "settle-sent",
    ];
    for point in points {
        let mut b = net
            .broker(&[("ZG_BROKER_TEST_CRASH_AT", point)], &["--epoch-pause-ms", "50"])
            .await;
        let hash = model_hash(&b).await;
        let before = alice.balance(net.provider()).await;
        let known: Vec<String> = alice
            .tasks(&b)
            .await
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        let body = alice.create_body(&root, &hash, PARAMS);
        let created = reqwest::Client::new()
            .post(alice.path(&b, "/task"))
            .json(&body)
            .send()
            .await;
        let id = match created {
            Ok(r) if r.status().is_success() => Some(
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            _ => None, // died before answering ("accepted")
        };
        if matches!(point, "state:UserAcknowledged" | "settle-sent") {
            let id = id.clone().unwrap();
            alice.wait(&b, &id, 60, |s| s == "Delivered").await;
            alice.acknowledge(net.provider(), &id).await;
        }
        assert!(
            b.wait_death(60),
            "{point}: the broker exited instead of being killed"
        );
        let b = net.broker(&[], &[]).await;
        let id = match id {
            Some(id) => id,
            None => {
                let now: Vec<String> = alice
                    .tasks(&b)
                    .await
                    .iter()
                    .map(|t| t["id"].as_str().unwrap().to_owned())
                    .filter(|i| !known.contains(i))
                    .collect();
                assert_eq!(now.len(), 1, "{point}: the accepted task survived the crash");
                now[0].clone()
            }
        };
        finish_and_check(&net, &alice, &b, &id, before).await;
        // The replayed create (same nonce) is refused after the restart too (by the store, or — once settled —
        // by the account nonce on chain).
        let (st, v) = alice.create(&b, &body).await;
        assert_eq!(st, 409, "{point}: {v}");
        assert!(
            matches!(v["code"].as_str(), Some("nonce_replayed" | "nonce_too_low")),
            "{point}: {v}"
        );
    }
}

#[tokio::test]
async fn kill9_mid_training_restarts_training_and_finishes_once_anvil() {
    let net = Net::start().await;
    let mut b = net.broker(&[], &["--epoch-pause-ms", "400"]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let root = net.upload(&baking(12));
    let before = alice.balance(net.provider()).await;
    let (_, t) = alice
        .create(
            &b,
            &alice.create_body(&root, &model_hash(&b).await, r#"{"num_train_epochs": 4}"#),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !alice.log(&b, &id).await.contains("epoch 1:") {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill9();
    let b = net.broker(&[], &[]).await;
    finish_and_check(&net, &alice, &b, &id, before).await;
    let log = alice.log(&b, &id).await;
    assert_eq!(
        log.matches("state: Training").count(),
        1,
        "resumed in Training, not re-entered:\n{log}"
    );
    assert!(
        log.matches("epoch 1:").count() >= 2,
        "training restarted from scratch:\n{log}"
    );
}
