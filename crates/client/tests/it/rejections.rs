//! Fail closed: the client never returns an answer its receipt does not cover, and never accepts a
//! simulated TEE unless told to.

use alloy_primitives::U256;
use zg_client::{ClientConfig, Error};

use crate::common::{Tamper, chat_body, env, proxy};

#[tokio::test]
async fn tampered_truncated_and_receiptless_answers_are_rejected() {
    let e = env(10).await;
    let p = proxy(&e.provider_url).await;
    let client = e
        .client_with(ClientConfig {
            url_override: Some(p.url.clone()),
            ..e.config()
        })
        .await;
    // Attestation through the proxy still binds the on-chain signer, so verification passes.
    client.verify_provider(e.provider).await.unwrap();
    let ok = client
        .chat(e.provider, chat_body("hello there", 8, false))
        .await
        .unwrap();
    let owed = ok.receipt.owed_after;

    *p.mode.lock().unwrap() = Tamper::Body;
    let err = client
        .chat(e.provider, chat_body("hello again", 8, false))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ReceiptInvalid(m) if m.contains("response")),
        "{err}"
    );
    assert!(err.is_verification_failure());

    *p.mode.lock().unwrap() = Tamper::StripReceipt;
    let err = client
        .chat(e.provider, chat_body("and again", 8, false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingReceipt), "{err}");

    *p.mode.lock().unwrap() = Tamper::Body;
    let s = client
        .chat_stream(e.provider, chat_body("stream please", 16, true))
        .await
        .unwrap();
    let err = s.collect_text().await.unwrap_err();
    assert!(matches!(&err, Error::ReceiptInvalid(_)), "{err}");

    *p.mode.lock().unwrap() = Tamper::StripStreamReceipt;
    let s = client
        .chat_stream(e.provider, chat_body("stream please", 16, true))
        .await
        .unwrap();
    let err = s.collect_text().await.unwrap_err();
    assert!(matches!(&err, Error::StreamIncomplete(_)), "{err}");

    // None of the rejected answers was counted as owed.
    let st = client.state(e.provider).await.unwrap();
    assert_eq!((st.owed, st.receipts), (owed, 1));
    assert!(owed > U256::ZERO);
}

#[tokio::test]
async fn simulated_provider_is_refused_without_the_flag() {
    let e = env(10).await;
    let client = e
        .client_with(ClientConfig::new(e.dir.path().join("strict")))
        .await;
    let err = client.verify_provider(e.provider).await.unwrap_err();
    assert!(
        matches!(err, Error::SimulatedRefused { provider } if provider == e.provider),
        "{err}"
    );
    assert!(err.to_string().contains("--allow-simulated"), "{err}");
    // Chatting needs a verified provider: it verifies first, and refuses the same way.
    let err = client
        .chat(e.provider, chat_body("hi", 4, false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SimulatedRefused { .. }), "{err}");
    assert!(client.state(e.provider).await.unwrap().verified.is_none());
}
