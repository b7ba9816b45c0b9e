//! The happy path against the real provider and chain: verify, chat plain and streaming, settle.

use alloy_primitives::U256;
use zg_client::StreamEvent;

use crate::common::{chat_body, env};

#[tokio::test]
async fn verify_chat_stream_and_settle_with_exact_balances() {
    let mut e = env(10).await;
    let client = e.client().await;

    // Listing reads the chain.
    let services = client.list_services().await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].provider, e.provider);
    assert_eq!(services[0].model, zg_provider::DEMO_MODEL_ID);

    // Verification: fresh nonce, simulated evidence accepted only because the config allows it, loudly.
    let v = client.verify_provider(e.provider).await.unwrap();
    assert!(v.report.passed(), "{}", v.report);
    assert!(v.simulated);
    assert_eq!(v.report.notice.as_deref(), Some(zg_attestation::SIMULATED_BANNER));
    assert_eq!(v.signer, services[0].tee_signer);
    assert_eq!(
        v.report.binding.as_ref().unwrap().signer_address,
        services[0].tee_signer
    );

    // N plain requests and a stream; every receipt checked; owed is their exact sum.
    let prices = (services[0].input_price, services[0].output_price);
    let mut sum = U256::ZERO;
    for i in 0..4 {
        let r = client
            .chat(
                e.provider,
                chat_body(&format!("how are fees settled {i}"), 24, false),
            )
            .await
            .unwrap();
        let u = r.receipt.receipt.usage;
        assert!(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 24);
        let fee = U256::from(u.prompt_tokens) * prices.0 + U256::from(u.completion_tokens) * prices.1;
        assert_eq!(r.receipt.fee, fee);
        sum += fee;
        assert_eq!(r.receipt.owed_after, sum);
        assert!(!r.text().unwrap().is_empty());
    }
    let mut s = client
        .chat_stream(e.provider, chat_body("what does a voucher prove", 32, true))
        .await
        .unwrap();
    assert!(s.res_key().is_some());
    let (mut text, mut events, mut receipt) = (String::new(), 0, None);
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            d @ StreamEvent::Data(_) => {
                events += 1;
                text.push_str(&d.delta_text().unwrap_or_default());
            }
            StreamEvent::Receipt(r) => receipt = Some(*r),
        }
    }
    let receipt = receipt.expect("a verified receipt ends the stream");
    assert!(events > 2, "{events} events");
    assert!(!text.is_empty());
    sum += receipt.fee;
    assert_eq!(receipt.owed_after, sum);

    // Funding happened automatically: the sub-account got the policy's refill from the ledger.
    let before = e.sub_balance().await;
    assert_eq!(before, client.config().top_up.refill);
    let b = client.balance(e.provider).await.unwrap();
    assert_eq!(
        (b.owed, b.paid, b.unsettled, b.receipts),
        (sum, U256::ZERO, sum, 5)
    );
    assert!(
        b.vouched < sum,
        "the last answer is not vouched until the next request"
    );

    // Flush the last voucher (an unbilled request), then the provider settles: it earns exactly the receipts.
    assert_eq!(client.flush_voucher(e.provider).await.unwrap(), sum);
    let running = e.running.take().unwrap();
    let report = running.settle(true).await.unwrap();
    assert_eq!(report.total_paid(), sum, "{report:?}");
    assert_eq!(e.sub_balance().await, before - sum);
    let b = client.balance(e.provider).await.unwrap();
    assert_eq!(
        (b.paid, b.unsettled, b.sub_account),
        (sum, U256::ZERO, before - sum)
    );
    // Settling again pays nothing more.
    assert_eq!(running.settle(true).await.unwrap().total_paid(), U256::ZERO);
    running.shutdown().await;
}
