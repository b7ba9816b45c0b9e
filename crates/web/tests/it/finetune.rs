//! The Fine-tuning page in headless Chromium against the real broker (in process, simulated TEE, built-in
//! trainer): fund the fine-tuning sub-account through the Account form, acknowledge the broker's signer, estimate
//! a dataset's tokens and fee (equal to what the broker then charges), create the task with the dataset upload,
//! watch it train and deliver, acknowledge the model (hash checked against the chain), and decrypt it once the
//! settlement revealed the key.

use std::time::Duration;

use alloy::primitives::U256;
use zg_finetune::{Dataset, DatasetLimits, WordTokenizer};

use crate::env::{Env, FT_PRICE, screenshot_dir};
use crate::webdriver::Browser;

const T: Duration = Duration::from_secs(90);

/// A small chat dataset unlike the demo corpus.
fn baking(n: usize) -> Vec<u8> {
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
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_tuning_page_creates_a_task_and_decrypts_the_model() {
    let env = Env::start_with(true).await;
    let broker = env.devnet.keys()[5].address().to_string();
    let b = Browser::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = baking(30);
    let dataset = dir.path().join("baking.jsonl");
    std::fs::write(&dataset, &data).unwrap();

    // Fund: ledger, then 5 0G into the fine-tuning sub-account, through the Account form.
    b.goto(&env.web).await;
    b.find("#page-account[data-ready] #card-wallet", T).await;
    for (action, amount, provider, service) in [
        ("deposit", "10", None, "inference"),
        ("transfer", "5", Some(broker.as_str()), "fine-tuning"),
    ] {
        b.select("#tx-action", action).await;
        let a = b.find("#tx-amount", T).await;
        b.type_into(&a, amount).await;
        if let Some(p) = provider {
            let el = b.find("#tx-provider", T).await;
            b.type_into(&el, p).await;
            b.select("#tx-service", service).await;
        }
        b.click(&b.find("#tx-review", T).await).await;
        b.find("#confirm[open] #tx-preview", T).await;
        b.click(&b.find("#confirm-ok", T).await).await;
        b.wait_text("#tx-done", "mined", T).await;
    }
    let c = env.devnet.client(None).await.unwrap();
    let acct = c
        .fine_tuning()
        .get_account(env.customer.address(), env.devnet.keys()[5].address())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acct.balance.0, U256::from(5_000_000_000_000_000_000u128));

    // Fine-tuning page: models and prices from the broker; acknowledge its TEE signer.
    b.goto(&format!("{}/#/fine-tuning", env.base())).await;
    b.find("#page-fine-tuning[data-ready] #ft-services", T).await;
    let services = b.wait_text("#ft-services", "zg-demo-ngram", T).await;
    assert!(services.contains(&FT_PRICE.to_string()), "{services}");
    b.click(&b.find(".ft-ack-signer", T).await).await;
    b.wait_text("#ft-services", "you ✓", T).await;

    // Estimate: the same tokens and fee the broker will charge.
    let file = b.find("#ft-dataset", T).await;
    b.type_into(&file, dataset.to_str().unwrap()).await;
    b.click(&b.find("#ft-estimate-btn", T).await).await;
    let tokens = Dataset::from_jsonl(&data, &DatasetLimits::default())
        .unwrap()
        .token_count(&WordTokenizer);
    let fee = U256::from(tokens) * U256::from(FT_PRICE);
    b.wait_text("#ft-tokens", &tokens.to_string(), T).await;
    b.wait_text("#ft-fee", &format!("{fee} neuron"), T).await;

    // Create: confirm the fee, then watch the task to delivery.
    b.click(&b.find("#ft-create", T).await).await;
    b.find("#confirm[open] #ft-fee", T).await;
    b.click(&b.find("#confirm-ok", T).await).await;
    b.wait_text("#ft-created", "Created task", T).await;
    b.find(".ft-ack", T).await;
    let state = b.wait_text("#ft-progress", "Delivered", T).await;
    assert_eq!(state, "Delivered");
    // "Your tasks" lists the new task with its current state (not the list from before it was created).
    let listed = b.wait_text("#ft-tasks", "Delivered", T).await;
    let id = b.wait_text("#ft-created .mono", "-", T).await;
    assert!(listed.contains(&id), "{listed}");
    let log = b.wait_text("#ft-log", "fee", T).await;
    assert!(log.contains(&fee.to_string()), "the log states the fee: {log}");
    b.exec(
        "document.querySelector('#ft-task').scrollIntoView(); return true",
        vec![],
    )
    .await;
    b.screenshot(&screenshot_dir().join("fine-tuning.png")).await;

    // Acknowledge (download + hash check + on-chain ack), the broker settles, then decrypt and download.
    b.click(&b.find(".ft-ack", T).await).await;
    b.wait_text("#ft-acked", "matches the chain", T).await;
    b.click(&b.find(".ft-decrypt", T).await).await;
    b.wait_text("#ft-decrypted", "every chunk tag signed by", T).await;
    b.wait_text("#ft-progress", "Finished", T).await;
    b.click(&b.find(".ft-download", T).await).await;
    let link = b.wait_text("#ft-downloaded", "bytes", T).await;
    assert!(link.contains("zg-model-"), "{link}");
    let paid = c
        .fine_tuning()
        .get_account(env.customer.address(), env.devnet.keys()[5].address())
        .await
        .unwrap()
        .unwrap()
        .balance
        .0;
    assert_eq!(
        paid,
        U256::from(5_000_000_000_000_000_000u128) - fee,
        "the settlement charged exactly the estimated fee"
    );
    b.quit().await;
    env.stop().await;
}
