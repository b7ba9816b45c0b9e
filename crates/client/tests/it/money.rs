//! Funding and durable client state: top-up, insufficient funds, nonces and vouchers across restarts,
//! and a replayed request refused by the provider.

use alloy_primitives::U256;
use zg_client::{ClientConfig, Error, TopUpPolicy};

use crate::common::{chat_body, env, proxy};

#[tokio::test]
async fn insufficient_funds_and_disabled_top_up_name_the_fix() {
    let e = env(0).await;
    // No ledger at all: the top-up needs funds the customer does not have.
    let client = e.client().await;
    let err = client
        .chat(e.provider, chat_body("hi", 4, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InsufficientFunds { available, .. } if available == U256::ZERO),
        "{err}"
    );
    assert!(err.to_string().contains("zg deposit"), "{err}");
    assert!(err.is_insufficient_balance());

    // Top-up off and no sub-account: says how to create one.
    let cfg = ClientConfig {
        top_up: TopUpPolicy {
            enabled: false,
            ..TopUpPolicy::default()
        },
        ..e.config()
    };
    let client = e.client_with(cfg).await;
    let err = client
        .chat(e.provider, chat_body("hi", 4, false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSubAccount { .. }), "{err}");
    assert!(err.to_string().contains("zg transfer-fund"), "{err}");
}

#[tokio::test]
async fn nonces_and_vouchers_survive_a_restart_and_replays_are_refused() {
    let e = env(10).await;
    let p = proxy(&e.provider_url).await;
    let cfg = ClientConfig {
        url_override: Some(p.url.clone()),
        ..e.config()
    };
    let first = e.client_with(cfg.clone()).await;
    let a = first.chat(e.provider, chat_body("one", 8, false)).await.unwrap();
    let b = first.chat(e.provider, chat_body("two", 8, false)).await.unwrap();
    let st1 = first.state(e.provider).await.unwrap();
    assert_eq!(st1.owed, a.receipt.fee + b.receipt.fee);
    assert_eq!(
        st1.vouched, a.receipt.fee,
        "the second request vouched for the first answer"
    );
    drop(first);

    // A new process on the same data dir: larger nonces, the owed amount continues, no re-verification
    // needed (the keys verified earlier are kept and still match the chain).
    let second = e.client_with(cfg).await;
    let st = second.state(e.provider).await.unwrap();
    assert_eq!(st, st1);
    let c = second
        .chat(e.provider, chat_body("three", 8, false))
        .await
        .unwrap();
    let st2 = second.state(e.provider).await.unwrap();
    assert!(st2.last_nonce > st1.last_nonce);
    assert_eq!(st2.vouched, st1.owed);
    assert_eq!(st2.owed, st1.owed + c.receipt.fee);

    // Replaying a request the proxy saw is refused by the provider (nonce already used).
    let (header, body) = p.seen.lock().unwrap()[0].clone();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/proxy/chat/completions", e.provider_url))
        .header("zg-request", header)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "nonce_replayed");
}
