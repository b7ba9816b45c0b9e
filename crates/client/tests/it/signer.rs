//! The provider changes its on-chain TEE signer in the middle of a session (issue 9, item 2): the client
//! notices (on its re-read interval, or at once after a receipt fails verification), refuses the next
//! request with a named error, and moves no funds to the provider until a fresh attestation binds the new
//! signer.

use std::time::Duration;

use alloy_primitives::{Address, U256};
use zg_chain::Amount;
use zg_client::{ClientConfig, Error};

use crate::common::{Tamper, chat_body, env, proxy};
use crate::gateway::serve;

/// A request whose fee cap (2e9 completion tokens at 2 gwei: 4 0G) exceeds what the default top-up leaves
/// in the sub-account, so it cannot be sent without a `transferFund` first.
fn needs_top_up(prompt: &str) -> String {
    chat_body(prompt, 2_000_000_000, false)
}

/// 4 0G: more than the sub-account holds after the default 2 0G refill.
fn big_cap() -> U256 {
    Amount::from_zg(4).0
}

#[tokio::test]
async fn signer_rotation_refuses_the_next_request_and_sends_no_transfer() {
    let e = env(20).await;
    let cfg = ClientConfig {
        signer_check_interval: Duration::ZERO,
        ..e.config()
    };
    let client = e.client_with(cfg).await;
    let me = e.customer.address();
    let old = e.tee_signer().await;

    // Before the rotation: the first request funds the sub-account (a transferFund), the next ones use it.
    let t0 = e.tx_count(me).await;
    client.chat(e.provider, chat_body("one", 8, false)).await.unwrap();
    assert_eq!(e.tx_count(me).await, t0 + 1, "the first request topped up");
    client.chat(e.provider, chat_body("two", 8, false)).await.unwrap();
    assert!(e.sub_balance().await < big_cap());
    let gw = serve(client.clone(), e.provider).await;

    // The operator registers a signer no attested TEE of ours holds.
    let new = Address::repeat_byte(0x5e);
    e.register_signer(new).await;
    let before = (
        e.tx_count(me).await,
        e.sub_balance().await,
        client.state(e.provider).await.unwrap(),
    );

    let err = client.chat(e.provider, needs_top_up("three")).await.unwrap_err();
    assert!(
        matches!(err, Error::SignerChanged { provider, verified, on_chain }
            if provider == e.provider && verified == old && on_chain == new),
        "{err}"
    );
    assert!(err.to_string().contains("zg inference verify"), "{err}");
    // Refused again (streams and top-ups too), not once.
    let err = client
        .chat_stream(e.provider, chat_body("four", 2_000_000_000, true))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SignerChanged { .. }), "{err}");
    let err = client.ensure_funded(e.provider, big_cap()).await.unwrap_err();
    assert!(matches!(err, Error::SignerChanged { .. }), "{err}");
    // Through zg serve: a named 403, before anything is paid.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(needs_top_up("five"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "tee_signer_changed", "{v}");
    // A new process on the same data dir refuses too (it does not silently re-verify).
    let fresh = e.client().await;
    let err = fresh.chat(e.provider, needs_top_up("six")).await.unwrap_err();
    assert!(matches!(err, Error::SignerChanged { .. }), "{err}");

    // No transferFund (no transaction at all), no nonce used, nothing owed.
    let after = (
        e.tx_count(me).await,
        e.sub_balance().await,
        client.state(e.provider).await.unwrap(),
    );
    assert_eq!(after, before);

    // Verifying again cannot pass: the provider's attested key is still the old one, not the new signer.
    let err = client.verify_provider(e.provider).await.unwrap_err();
    assert!(matches!(err, Error::AttestationFailed { .. }), "{err}");
    assert!(matches!(
        client.chat(e.provider, needs_top_up("seven")).await.unwrap_err(),
        Error::SignerChanged { .. }
    ));

    // The operator puts the attested signer back: the keys verified earlier match again; funding and
    // service resume.
    e.register_signer(old).await;
    let t = e.tx_count(me).await;
    assert!(
        client.ensure_funded(e.provider, big_cap()).await.unwrap(),
        "topped up again"
    );
    assert_eq!(e.tx_count(me).await, t + 1);
    let r = client
        .chat(e.provider, chat_body("eight", 8, false))
        .await
        .unwrap();
    assert!(r.receipt.fee > U256::ZERO);
}

#[tokio::test]
async fn a_failed_receipt_rereads_the_signer_before_the_next_request() {
    let e = env(20).await;
    let p = proxy(&e.provider_url).await;
    // An hour between scheduled re-reads: only a receipt failure can trigger the re-read we expect.
    let cfg = ClientConfig {
        signer_check_interval: Duration::from_secs(3600),
        url_override: Some(p.url.clone()),
        ..e.config()
    };
    let client = e.client_with(cfg).await;
    let me = e.customer.address();
    let attested = e.tee_signer().await;
    client.chat(e.provider, chat_body("one", 8, false)).await.unwrap();

    // Plain: the signer changes, the next answer fails verification (the proxy flips a byte)...
    e.register_signer(Address::repeat_byte(0x77)).await;
    *p.mode.lock().unwrap() = Tamper::Body;
    let err = client
        .chat(e.provider, chat_body("two", 8, false))
        .await
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    // ...so the signer is read again before the next request, which is refused without a transfer.
    *p.mode.lock().unwrap() = Tamper::None;
    let before = (e.tx_count(me).await, e.sub_balance().await);
    let err = client.chat(e.provider, needs_top_up("three")).await.unwrap_err();
    assert!(matches!(err, Error::SignerChanged { .. }), "{err}");
    assert_eq!((e.tx_count(me).await, e.sub_balance().await), before);

    // Back to the attested signer: served again (the keys verified earlier match the chain again).
    e.register_signer(attested).await;
    client
        .chat(e.provider, chat_body("four", 8, false))
        .await
        .unwrap();

    // Streamed: same, a stream whose receipt fails triggers the re-read.
    e.register_signer(Address::repeat_byte(0x78)).await;
    *p.mode.lock().unwrap() = Tamper::Body;
    let s = client
        .chat_stream(e.provider, chat_body("five", 16, true))
        .await
        .unwrap();
    assert!(s.collect_text().await.unwrap_err().is_verification_failure());
    *p.mode.lock().unwrap() = Tamper::None;
    let before = (e.tx_count(me).await, e.sub_balance().await);
    let err = client.chat(e.provider, needs_top_up("six")).await.unwrap_err();
    assert!(matches!(err, Error::SignerChanged { .. }), "{err}");
    assert_eq!((e.tx_count(me).await, e.sub_balance().await), before);
}

#[tokio::test]
async fn a_provider_redeployed_with_new_keys_is_served_again_after_a_fresh_verification() {
    let mut e = env(20).await;
    // A long-running client (zg serve) re-reading the signer before every request.
    let long = e
        .client_with(ClientConfig {
            signer_check_interval: Duration::ZERO,
            ..e.config()
        })
        .await;
    long.chat(e.provider, chat_body("before", 8, false))
        .await
        .unwrap();
    let old = e.tee_signer().await;

    e.restart_provider_with_new_keys().await;
    let new = e.tee_signer().await;
    assert_ne!(old, new, "the redeployed provider registered its new signer");
    let me = e.customer.address();
    let before = e.tx_count(me).await;
    let err = long.chat(e.provider, needs_top_up("after")).await.unwrap_err();
    assert!(
        matches!(err, Error::SignerChanged { verified, on_chain, .. } if verified == old && on_chain == new),
        "{err}"
    );
    assert_eq!(e.tx_count(me).await, before);

    // The customer verifies the new signer from another process on the same data dir
    // (`zg inference verify`): a fresh attestation binding the new on-chain signer.
    let v = e.client().await.verify_provider(e.provider).await.unwrap();
    assert_eq!(v.signer, new);
    // The long-running client resumes without a restart, checking receipts under the new response key.
    let r = long
        .chat(e.provider, chat_body("resumed", 8, false))
        .await
        .unwrap();
    assert_eq!(r.receipt.receipt.response_key, v.response_key);
    assert_eq!(
        long.state(e.provider).await.unwrap().verified.unwrap().signer,
        new
    );
}

#[tokio::test]
async fn acknowledging_pins_the_verified_signer_and_never_a_swapped_one() {
    let e = env(20).await;
    let client = e.client().await;
    let me = e.customer.address();
    let (v, _) = client.acknowledge_provider(e.provider).await.unwrap();
    let chain = e.devnet.client(None).await.unwrap();
    let acks = chain
        .inference()
        .tee_signer_acknowledgements(me, e.provider)
        .await
        .unwrap();
    assert_eq!((acks.signer, acks.user_acknowledged_signer), (v.signer, v.signer));

    // After a swap the customer's acknowledgement does not carry over, and the client acknowledges nothing
    // it has not verified: the fresh attestation still binds the old key, so no transaction is sent.
    e.register_signer(Address::repeat_byte(0x42)).await;
    let before = e.tx_count(me).await;
    let err = client.acknowledge_provider(e.provider).await.unwrap_err();
    assert!(matches!(err, Error::AttestationFailed { .. }), "{err}");
    assert_eq!(e.tx_count(me).await, before);
    let acks = chain
        .inference()
        .tee_signer_acknowledgements(me, e.provider)
        .await
        .unwrap();
    assert_eq!(acks.signer, Address::repeat_byte(0x42));
    assert_eq!(acks.user_acknowledged_signer, v.signer);
    assert!(!acks.settleable);
}
