//! Every page in real headless Chromium against a devnet and the real provider: open the Account page, create the
//! ledger and fund the provider's sub-account through the form (checked on chain), verify the provider and see the
//! SIMULATED banner and each check, acknowledge it, chat and see a verified receipt with its fee, and watch the
//! provider's metrics. A screenshot of each page lands in the test artifacts (`env::screenshot_dir`).

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use serde_json::json;

use crate::env::{Env, screenshot_dir};
use crate::webdriver::Browser;

const T: Duration = Duration::from_secs(60);

fn zg(n: u64) -> U256 {
    U256::from(n) * U256::from(1_000_000_000_000_000_000u128)
}

/// Accessibility basics on the current page: every form control has a label (or aria-label), every button and
/// link has a name, every image has alt text, and exactly one h1.
async fn assert_accessible(b: &Browser, page: &str) {
    let v = b
        .exec(
            "const bad = [];\n\
             for (const e of document.querySelectorAll('input, select, textarea')) {\n\
               if (e.type === 'hidden') continue;\n\
               if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) bad.push('unlabelled ' + (e.id || e.outerHTML.slice(0, 60)));\n\
             }\n\
             for (const e of document.querySelectorAll('button, a[href]')) {\n\
               if (!(e.textContent.trim() || e.getAttribute('aria-label'))) bad.push('nameless ' + e.outerHTML.slice(0, 60));\n\
             }\n\
             for (const e of document.querySelectorAll('img')) if (!e.hasAttribute('alt')) bad.push('no alt ' + e.src);\n\
             const h1 = document.querySelectorAll('main h1').length;\n\
             if (h1 !== 1) bad.push(h1 + ' h1 elements');\n\
             return bad;",
            vec![],
        )
        .await;
    assert_eq!(v, json!([]), "{page}: accessibility problems");
}

/// Fills the Move-funds form and confirms in the dialog; returns the preview's text.
async fn move_funds(b: &Browser, action: &str, amount: &str, provider: Option<&str>) -> String {
    b.select("#tx-action", action).await;
    if !amount.is_empty() {
        let a = b.find("#tx-amount", T).await;
        b.type_into(&a, amount).await;
    }
    if let Some(p) = provider {
        let p_el = b.find("#tx-provider", T).await;
        b.type_into(&p_el, p).await;
    }
    b.click(&b.find("#tx-review", T).await).await;
    b.find("#confirm[open] #tx-preview", T).await;
    let preview = b.wait_text("#tx-preview", "Gas fee", T).await;
    b.click(&b.find("#confirm-ok", T).await).await;
    b.wait_text("#tx-done", "mined", T).await;
    preview
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_headless_chromium() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let shots = screenshot_dir();
    let provider = env.provider.to_string();

    // ---- Account: open with the printed URL (the token rides in the fragment and leaves the address bar).
    let t0 = Instant::now();
    b.goto(&env.web).await;
    b.find("#page-account[data-ready] #card-wallet", T).await;
    let load = t0.elapsed();
    let nav = b
        .exec(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, bytes: n.transferSize}",
            vec![],
        )
        .await;
    eprintln!("page load: account ready {load:?} after navigation; navigation timing {nav}");
    let url = b.exec("return location.href", vec![]).await;
    assert!(
        !url.as_str().unwrap().contains(&env.token),
        "the token must leave the address bar: {url}"
    );
    assert!(b.exists("#sub-accounts").await);
    assert_eq!(env.ledger().await, None, "no ledger before the form");
    assert_accessible(&b, "account").await;

    // Deposit creates the ledger: the preview shows 0G, neuron and gas; the chain then holds exactly 5 0G.
    let preview = move_funds(&b, "deposit", "5", None).await;
    assert!(preview.contains("5 0G"), "{preview}");
    assert!(preview.contains("5000000000000000000 neuron"), "{preview}");
    assert!(preview.contains("gas ×"), "{preview}");
    assert_eq!(env.ledger().await, Some((zg(5), zg(5))));

    // Transfer 2 0G to the provider's sub-account through the form.
    let preview = move_funds(&b, "transfer", "2", Some(&provider)).await;
    assert!(preview.contains("2000000000000000000 neuron"), "{preview}");
    assert_eq!(env.sub_balance().await, zg(2), "the form funded the sub-account");
    assert_eq!(env.ledger().await, Some((zg(3), zg(5))));
    let row = b
        .wait_text(
            &format!("#sub-accounts tr[data-provider='{provider}' i]"),
            "2 0G",
            T,
        )
        .await;
    assert!(row.contains("inference"), "{row}");

    // An over-large refund is refused before anything is signed, with the fix.
    b.select("#tx-action", "refund").await;
    let a = b.find("#tx-amount", T).await;
    b.type_into(&a, "100").await;
    b.click(&b.find("#tx-review", T).await).await;
    let err = b.wait_text("#tx-error", "available", T).await;
    assert!(err.contains("Retrieve"), "the error names the fix: {err}");
    assert_eq!(env.ledger().await, Some((zg(3), zg(5))), "nothing was sent");

    // ---- Providers: Verify renders the report with the SIMULATED banner and every check.
    b.click(&b.find("nav a[data-page='providers']", T).await).await;
    b.find("#page-providers[data-ready] #providers", T).await;
    assert_accessible(&b, "providers").await;
    b.click(
        &b.find(&format!("button.verify[data-provider='{provider}' i]"), T)
            .await,
    )
    .await;
    let banner = b.wait_text("#sim-banner", "SIMULATED", T).await;
    assert!(banner.contains("--allow-simulated"), "{banner}");
    assert_eq!(b.wait_text("#verdict", "PASS", T).await, "PASS");
    // Every check is listed with its result; the required ones all passed (informational ones, such as the TCB
    // status a simulated quote cannot have, may show as failed without failing the verdict).
    let checks = b
        .exec(
            "return [...document.querySelectorAll('#checks tbody tr')].map(r => [r.className, r.lastChild.textContent])",
            vec![],
        )
        .await;
    let checks = checks.as_array().unwrap();
    assert!(checks.len() >= 3, "every check is listed: {checks:?}");
    assert!(
        checks.iter().all(|c| c[0] == "check-ok" || c[1] == "info"),
        "a required check failed: {checks:?}"
    );
    assert!(checks.iter().any(|c| c[1] == "required"));
    let signer_row = b.wait_text("#checks", "binding.signer", T).await;
    assert!(signer_row.contains("binding.nonce"), "{signer_row}");
    // The test provider presents simulated GPU evidence: the page lists the GPU and says it is simulated.
    let gpu = b.wait_text("#gpu-status", "GPU", T).await;
    assert!(
        gpu.contains("verified: 1 GPU(s)") && gpu.contains("SIMULATED GPU"),
        "{gpu}"
    );
    let gpus = b.wait_text("#gpus", "yes", T).await;
    assert!(!gpus.is_empty());
    b.screenshot(&shots.join("providers.png")).await;

    // Acknowledge records the signer on chain for this customer.
    b.click(
        &b.find(&format!("button.ack[data-provider='{provider}' i]"), T)
            .await,
    )
    .await;
    b.wait_text("#ack-done", "Acknowledged", T).await;
    let c = env.devnet.client(None).await.unwrap();
    let acct = c
        .inference()
        .get_account(env.customer.address(), env.provider)
        .await
        .unwrap()
        .unwrap();
    assert!(acct.acknowledged, "the page's Acknowledge reached the chain");

    // ---- Chat: a streamed answer, shown verified with its receipt; the running cost counts it.
    b.goto(&format!("{}/#/chat?provider={provider}", env.base()))
        .await;
    b.find("#page-chat[data-ready] #chat-input", T).await;
    assert_accessible(&b, "chat").await;
    let input = b.find("#chat-input", T).await;
    b.type_into(&input, "how are fees settled?").await;
    // Keyboard: Ctrl+Enter sends.
    b.keys("\u{E009}\u{E007}").await;
    let receipt = b.wait_text(".verified-receipt", "receipt verified", T).await;
    assert!(receipt.contains("neuron"), "{receipt}");
    let answer = b
        .exec(
            "return document.querySelector('.msg.assistant .text').textContent",
            vec![],
        )
        .await;
    assert!(!answer.as_str().unwrap().is_empty(), "the answer streamed in");
    // The fee the page shows is the one the client recorded from the verified receipt.
    let owed = b.wait_text("#chat-cost", "1 receipts", T).await;
    let fee: String = receipt
        .split("fee ")
        .nth(1)
        .and_then(|s| s.split(" 0G").next())
        .unwrap()
        .to_owned();
    assert!(owed.contains(&fee), "running cost {owed} shows the fee {fee}");

    // A second message (the button this time): its request carries the voucher over the first answer's fee.
    let input = b.find("#chat-input", T).await;
    b.type_into(&input, "and who pays for gas?").await;
    b.click(&b.find("#chat-send", T).await).await;
    b.wait_text("#chat-cost", "2 receipts", T).await;
    let receipts = b
        .exec(
            "return document.querySelectorAll('.verified-receipt').length",
            vec![],
        )
        .await;
    assert_eq!(receipts, json!(2));
    b.exec("window.scrollTo(0, 0); return true", vec![]).await;
    b.screenshot(&shots.join("chat.png")).await;

    // A session secret for the official SDK.
    b.click(&b.find("#tok-get", T).await).await;
    let secret = b
        .exec(
            "const e = document.querySelector('#tok-secret'); return e ? e.value : null",
            vec![],
        )
        .await;
    let secret = match secret.as_str() {
        Some(s) => s.to_owned(),
        None => {
            b.find("#tok-secret", T).await;
            b.exec("return document.querySelector('#tok-secret').value", vec![])
                .await
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert!(secret.starts_with("app-sk-"), "{secret}");
    // Revoke that token id on chain, through the confirmation dialog.
    b.click(&b.find("#tok-revoke", T).await).await;
    b.find("#confirm[open]", T).await;
    b.click(&b.find("#confirm-ok", T).await).await;
    b.wait_text("#tok-revoked", "Revoked token id 255", T).await;
    let bitmap = c
        .inference()
        .get_account(env.customer.address(), env.provider)
        .await
        .unwrap()
        .unwrap()
        .revoked_bitmap;
    assert!(bitmap.bit(255), "token id 255 is revoked on chain");

    // ---- Provider view: the metrics count both chats; the provider settles the vouched fee on chain and the
    // settlement history (VoucherSettled events) shows exactly the first answer's fee paid.
    let report = env.running.as_ref().unwrap().settle(true).await.unwrap();
    eprintln!("settlement: {report:?}");
    b.click(&b.find("nav a[data-page='provider']", T).await).await;
    b.find("#page-provider[data-ready] #pv-cards", T).await;
    assert_accessible(&b, "provider view").await;
    b.wait_text("#pv-requests", "2", T).await;
    b.wait_text("#pv-earned", "0G", T).await;
    let history = b.wait_text("#pv-settlements", "success", T).await;
    assert!(
        history.contains(&fee),
        "settlement history {history} pays the vouched fee {fee}"
    );
    let paid = b.wait_text("#pv-paid", "0G", T).await;
    assert!(
        paid.contains(&fee),
        "paid on chain {paid} = the settled fee {fee}"
    );
    b.screenshot(&shots.join("provider.png")).await;

    // ---- Fine-tuning: the services table renders from the chain.
    b.click(&b.find("nav a[data-page='fine-tuning']", T).await).await;
    b.find("#page-fine-tuning[data-ready] #ft-services", T).await;
    b.screenshot(&shots.join("fine-tuning.png")).await;

    // ---- Account again: spend charts from the verified receipts; Retrieve 1 0G leaves a pending refund whose
    // unlock time (request time + the contract's lock time) is shown.
    b.click(&b.find("nav a[data-page='account']", T).await).await;
    b.find("#page-account[data-ready] #card-wallet", T).await;
    let tokens = b
        .exec(
            "return [...document.querySelectorAll('#page-account figure table')].map(t => t.textContent)",
            vec![],
        )
        .await;
    assert!(
        tokens.to_string().contains("0x3c44cd"),
        "tokens per provider lists the provider: {tokens}"
    );
    let preview = move_funds(&b, "retrieve", "", Some(&provider)).await;
    assert!(preview.contains("retrieve-fund"), "{preview}");
    let row = b
        .wait_text(
            &format!("#sub-accounts tr[data-provider='{provider}' i]"),
            "unlocks",
            T,
        )
        .await;
    let lock = c.inference().lock_time().await.unwrap();
    assert!(lock > 0);
    assert!(row.contains("(in "), "the time left is shown: {row}");
    let acct = c
        .inference()
        .get_account(env.customer.address(), env.provider)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !acct.pending_refund.0.is_zero(),
        "the form's Retrieve requested a refund on chain"
    );
    b.exec("window.scrollTo(0, 0); return true", vec![]).await;
    b.screenshot(&shots.join("account.png")).await;

    // Keyboard: the skip link is the first Tab stop and moves focus to the content.
    b.goto(&format!("{}/#/account", env.base())).await;
    b.exec("location.reload(); return true", vec![]).await;
    b.find("#page-account[data-ready]", T).await;
    b.keys("\u{E004}").await;
    let focused = b.exec("return document.activeElement.id", vec![]).await;
    assert_eq!(focused, json!("skip"));
    b.keys("\u{E007}").await;
    let focused = b.exec("return document.activeElement.id", vec![]).await;
    assert_eq!(
        focused,
        json!("main"),
        "Enter on the skip link moves focus to the content"
    );

    b.quit().await;
    env.stop().await;
}
