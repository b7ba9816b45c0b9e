//! "Compatible with the official 0G client" proven by running it: the official `0g-compute-cli` and SDK 0.9.0
//! (`@0gfoundation/0g-compute-ts-sdk`, pinned in `package.json`, from the repository's `node_modules`) against a
//! real anvil devnet with our contracts and a real `zg-provider` (simulated TEE, built-in demo model) on loopback.
//!
//! Every step asserts values: balances in neuron on chain after each ledger verb (and the CLI's own table),
//! the listed service, the verification report, the API key's claims, the chat's fee in the provider's
//! unsettled fee, the SDK's auto-funding top-ups to the neuron, the SDK's `processResponse` signature check,
//! and the settlement that pays exactly the metered fees before the customer's refund unlocks.
//!
//! Node or the package missing fails the test (`zg_test_utils::node`); it never skips.

use std::path::Path;
use std::time::Duration;

use zg_chain::{Address, Amount, Devnet, DevnetConfig, U256};
use zg_test_utils::node::{OfficialCli, Run, result_line, run_js};

const NEURON: u128 = 1_000_000_000_000_000_000;
const INPUT_PRICE: u128 = 1_000_000_000;
const OUTPUT_PRICE: u128 = 2_000_000_000;

/// Runs an official CLI verb off the runtime that serves the provider.
async fn cli(c: &OfficialCli, args: &[&str]) -> Run {
    let (c, args) = (
        c.clone(),
        args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        c.run(&args)
    })
    .await
    .unwrap()
}

async fn cli_ok(c: &OfficialCli, args: &[&str]) -> String {
    let r = cli(c, args).await;
    r.expect_ok(&format!("0g-compute-cli {}", args.join(" ")));
    r.all()
}

/// The cells of the first table row (`│ a │ b │ …`) whose first cell is `label`.
fn row(out: &str, label: &str) -> Option<Vec<String>> {
    out.lines().find_map(|l| {
        let cells: Vec<String> = l
            .split('│')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        (cells.first().map(String::as_str) == Some(label)).then_some(cells)
    })
}

/// The value cell of row `label`.
fn cell(out: &str, label: &str) -> String {
    row(out, label)
        .and_then(|r| r.get(1).cloned())
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{out}"))
}

/// A 0G amount as the CLI prints it (a JavaScript float with 18 decimals) equals `neuron`, to float precision.
fn assert_0g(printed: &str, neuron: u128, what: &str) {
    let got: f64 = printed
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {printed:?}: {e}"));
    let want = neuron as f64 / NEURON as f64;
    assert!(
        (got - want).abs() < 1e-9,
        "{what}: CLI shows {printed} 0G, chain has {neuron} neuron"
    );
}

fn fee(usage: &serde_json::Value) -> u128 {
    usage["prompt_tokens"].as_u64().unwrap() as u128 * INPUT_PRICE
        + usage["completion_tokens"].as_u64().unwrap() as u128 * OUTPUT_PRICE
}

struct Chain {
    client: zg_chain::Client,
    me: Address,
    provider: Address,
}

impl Chain {
    async fn ledger(&self) -> (u128, u128) {
        let l = self.client.ledger().get_ledger(self.me).await.unwrap().unwrap();
        (amount(l.total), amount(l.available))
    }
    async fn sub(&self) -> zg_chain::InferenceAccount {
        self.client
            .inference()
            .get_account(self.me, self.provider)
            .await
            .unwrap()
            .expect("sub-account exists")
    }
}

fn amount(a: Amount) -> u128 {
    u128::try_from(a.0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_cli_and_sdk_on_our_devnet_and_provider() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let rpc = devnet.rpc_url();
    let (owner, cust, prov) = (
        devnet.keys()[0].clone(),
        devnet.keys()[1].clone(),
        devnet.keys()[2].clone(),
    );
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    // It advertises its gRPC API too (`grpc` in additionalInfo): the official SDK must still read the service.
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The provider as an operator runs it, with the default account cache (2 s); settlement rounds are
    // driven by the test (`settle(false)`: what the periodic loop does), so their timing is deterministic.
    let settings = zg_provider::Settings::resolve(zg_provider::RunArgs {
        data_dir: Some(dir.path().join("provider")),
        http_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        grpc_addr: Some(format!("127.0.0.1:{grpc_port}").parse().unwrap()),
        public_url: Some(url.clone()),
        grpc_public_url: Some(format!("http://127.0.0.1:{grpc_port}")),
        rpc_url: Some(rpc.clone()),
        provider_key: Some(format!("0x{}", hex::encode(prov.to_bytes()))),
        tee: Some(zg_provider::BackendChoice::Simulated),
        settle_interval: Some(0),
        ..Default::default()
    })
    .unwrap();
    let running = zg_provider::start(settings).await.unwrap();
    let p = prov.address().to_checksum(None);
    let signer = running.provider.tee().signer();
    let chain = Chain {
        client: devnet.client(None).await.unwrap(),
        me: cust.address(),
        provider: prov.address(),
    };
    let home = dir.path().join("home");
    let cust_hex = format!("0x{}", hex::encode(cust.to_bytes()));
    let c = OfficialCli::new(&home, &rpc, &cust_hex);

    // The pinned version, and no account yet.
    assert_eq!(cli_ok(&c, &["--version"]).await.trim(), "0.9.0");
    let r = cli(&c, &["get-account"]).await;
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(r.all().contains("Account does not exist"), "{}", r.all());

    // add-account, deposit, get-account: exact neuron on chain, the same in the CLI's table.
    cli_ok(&c, &["add-account", "--amount", "10"]).await;
    assert_eq!(chain.ledger().await, (10 * NEURON, 10 * NEURON));
    cli_ok(&c, &["deposit", "--amount", "2.5"]).await;
    assert_eq!(chain.ledger().await, (25 * NEURON / 2, 25 * NEURON / 2));
    let out = cli_ok(&c, &["get-account"]).await;
    assert_eq!(cell(&out, "Total"), "12.500000000000000000");
    assert_eq!(
        cell(&out, "Locked (transferred to sub-accounts)"),
        "0.000000000000000000"
    );
    assert_eq!(
        cell(&out, "Available for transfer to sub-accounts"),
        "12.500000000000000000"
    );

    // list-providers hides services whose TEE signer the contract owner has not acknowledged (0G's rule) ...
    let out = cli_ok(&c, &["inference", "list-providers"]).await;
    assert!(!out.contains(&p), "unacknowledged signer listed:\n{out}");
    let out = cli_ok(&c, &["inference", "list-providers", "--include-invalid"]).await;
    assert_eq!(cell(&out, "Provider 1"), p);
    // ... and shows it once the owner (the devnet deployer) acknowledged it.
    let owner_chain = devnet.client(Some(owner)).await.unwrap();
    owner_chain
        .inference()
        .acknowledge_tee_signer_by_owner(prov.address())
        .await
        .unwrap();
    let out = cli_ok(&c, &["inference", "list-providers"]).await;
    assert_eq!(cell(&out, "Provider 1"), p, "{out}");
    assert_eq!(cell(&out, "Model"), zg_provider::DEMO_MODEL_ID);
    assert_eq!(cell(&out, "Input Price Per Token (0G)"), "0.000000001000000000");
    assert_eq!(cell(&out, "Output Price Per Token (0G)"), "0.000000002000000000");
    assert_eq!(cell(&out, "Verifiability"), "TeeML");
    assert!(row(&out, "Provider 2").is_none(), "one service: {out}");
    // get-models reads the provider's public /v1/models.
    let out = cli_ok(&c, &["inference", "get-models", "--provider", &p]).await;
    assert!(
        out.contains(&format!("Default model: {}", zg_provider::DEMO_MODEL_ID)),
        "{out}"
    );
    let model = row(&out, zg_provider::DEMO_MODEL_ID).unwrap_or_else(|| panic!("no model row:\n{out}"));
    assert_eq!(model[1], "chatbot");
    assert!(model[2].starts_with("in 0.000000001 / out 0.000000002"), "{out}");

    // transfer-fund (1 0G: the SDK will have to top up), get-sub-account, get-account.
    cli_ok(
        &c,
        &[
            "transfer-fund",
            "--provider",
            &p,
            "--amount",
            "1",
            "--service",
            "inference",
        ],
    )
    .await;
    assert_eq!(amount(chain.sub().await.balance), NEURON);
    assert_eq!(chain.ledger().await, (25 * NEURON / 2, 23 * NEURON / 2));
    let out = cli_ok(
        &c,
        &["get-sub-account", "--provider", &p, "--service", "inference"],
    )
    .await;
    assert_eq!(cell(&out, "Service Type"), "Inference");
    assert_eq!(cell(&out, "Provider"), p);
    assert_eq!(cell(&out, "Balance (0G)"), "1.000000000000000000");
    assert_eq!(
        cell(&out, "Funds Applied for Return to Main Account (0G)"),
        "0.000000000000000000"
    );
    let out = cli_ok(&c, &["get-account"]).await;
    assert_eq!(
        cell(&out, "Locked (transferred to sub-accounts)"),
        "1.000000000000000000"
    );
    assert_eq!(
        cell(&out, "Available for transfer to sub-accounts"),
        "11.500000000000000000"
    );
    let sub_row = row(&out, &p).unwrap_or_else(|| panic!("no sub-account row:\n{out}"));
    assert_eq!(sub_row[1], "1.000000000000000000");

    // verify: the report's bound signer is the on-chain teeSignerAddress, and the compose hash matches.
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let out = cli_ok(
        &c,
        &[
            "inference",
            "verify",
            "--provider",
            &p,
            "--output-dir",
            reports.to_str().unwrap(),
        ],
    )
    .await;
    let signer_s = signer.to_checksum(None);
    for line in [
        format!("Provider URL: {url}"),
        format!("Contract TEE Signer Address: {signer_s}"),
        format!("Combined Report Signer: {signer_s}"),
        "Address Match: ✅ MATCH".to_owned(),
        "Docker Compose Verification: ✅ PASSED".to_owned(),
        "TEE Signer Address Verification: ✅ PASSED (1/1 matches)".to_owned(),
    ] {
        assert!(out.contains(&line), "verify output lacks {line:?}:\n{out}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("attestation_report.json")).unwrap()).unwrap();
    assert_eq!(report["simulated"], true, "the saved report says it is simulated");

    // acknowledge-provider: the customer's acknowledgement lands on chain.
    assert!(!chain.sub().await.acknowledged);
    cli_ok(&c, &["inference", "acknowledge-provider", "--provider", &p]).await;
    assert!(chain.sub().await.acknowledged);

    // get-secret: an API key with the claims asked for, and the curl example naming our URL and model.
    let (key3, out) = get_secret(&c, &p, 3).await;
    assert!(out.contains("Service Type: chatbot"), "{out}");
    assert!(out.contains("Token ID: 3"), "{out}");
    assert!(
        out.contains(&format!("curl {url}/v1/proxy/chat/completions")),
        "{out}"
    );
    assert!(
        out.contains(&format!("\"model\": \"{}\"", zg_provider::DEMO_MODEL_ID)),
        "{out}"
    );
    let token = zg_billing::SessionToken::parse(&key3).unwrap();
    let claims = token.claims();
    assert_eq!(claims.address, cust.address());
    assert!(claims.provider.eq_ignore_ascii_case(&p));
    assert_eq!((claims.token_id, claims.generation), (3, 0));
    assert_eq!(claims.expires_at - claims.timestamp, 600_000);
    let (key5, _) = get_secret(&c, &p, 5).await;

    // A chat with that key, exactly as the printed curl example sends it.
    let http = reqwest::Client::new();
    let example = serde_json::json!({
        "model": zg_provider::DEMO_MODEL_ID,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"}
        ]
    });
    let chat = |key: String| {
        let (http, url, body) = (http.clone(), url.clone(), example.to_string());
        async move {
            http.post(format!("{url}/v1/proxy/chat/completions"))
                .header("Content-Type", "application/json")
                .header("Authorization", format!("Bearer {key}"))
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = chat(key3.clone()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("zg-res-key"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    let fee1 = fee(&v["usage"]);
    assert!(fee1 > 0);
    let unsettled = |key: String| {
        let (http, url, me) = (http.clone(), url.clone(), cust.address());
        async move {
            let v: serde_json::Value = http
                .get(format!("{url}/v1/user/{me}/unsettledfee"))
                .header("Authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["unsettledFee"].as_str().unwrap().parse::<u128>().unwrap()
        }
    };
    assert_eq!(unsettled(key3.clone()).await, fee1, "the chat's fee is unsettled");

    // The official SDK as its README uses it: headers (which top the sub-account up first), a plain and a
    // streamed chat, and processResponse's signature check against the on-chain signer.
    let sdk = sdk_chats(&rpc, &cust_hex, &p, "how are fees settled").await;
    assert_eq!(sdk["listed"], serde_json::json!([p]), "{sdk}");
    let svc = &sdk["service"];
    assert_eq!(svc["url"], url.as_str());
    assert_eq!(svc["model"], zg_provider::DEMO_MODEL_ID);
    assert_eq!(svc["serviceType"], "chatbot");
    assert_eq!(svc["verifiability"], "TeeML");
    assert_eq!(svc["inputPrice"], INPUT_PRICE.to_string());
    assert_eq!(svc["outputPrice"], OUTPUT_PRICE.to_string());
    assert_eq!(svc["teeSignerAddress"], signer_s.as_str());
    assert_eq!(svc["teeSignerAcknowledged"], true);
    check_sdk_chats(&sdk, &signer_s);
    let (fee2, fee3) = (fee(&sdk["plain"]["usage"]), fee(&sdk["streamed"]["usage"]));
    // Auto-funding, to the neuron (0G's rule: keep unsettled + 2 0G locked, transfer at least 1 0G): before the
    // plain chat it moved fee1 + 1 0G (1 0G + fee1 → 2 0G + fee1); before the streamed chat the deficit was
    // fee2, so the 1 0G minimum.
    assert_eq!(amount(chain.sub().await.balance), 3 * NEURON + fee1);
    let mut fees = fee1 + fee2 + fee3;
    assert_eq!(unsettled(key3.clone()).await, fees, "every SDK chat is billed");

    // The official CLI's own chat path: `inference serve`, a local OpenAI-compatible proxy built on the SDK
    // (it acknowledges the provider, tops up, forwards, and reports usage with processResponse). Its start-up
    // health check is itself a billed chat, so the fees of our two chats are measured from after it.
    let serve_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = c.spawn(&[
        "inference",
        "serve",
        "--provider",
        &p,
        "--host",
        "127.0.0.1",
        "--port",
        &serve_port.to_string(),
    ]);
    let serve = tokio::task::spawn_blocking(move || {
        let mut serve = serve;
        serve.wait_for("Inference service is running", Duration::from_secs(120));
        serve
    })
    .await
    .unwrap();
    let base = unsettled(key3.clone()).await;
    assert!(base > fees, "the health check was served and billed");
    let local = format!("http://127.0.0.1:{serve_port}/v1/chat/completions");
    let v: serde_json::Value = http
        .post(&local)
        .json(&serde_json::json!({"messages": [{"role": "user", "content": "what is a receipt"}], "max_tokens": 8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !v["choices"][0]["message"]["content"].as_str().unwrap().is_empty(),
        "{v}"
    );
    let served_plain = fee(&v["usage"]);
    let sse = http
        .post(&local)
        .json(&serde_json::json!({"messages": [{"role": "user", "content": "what is a receipt"}], "max_tokens": 8, "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let usage = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|c| c["usage"].is_object())
        .unwrap_or_else(|| panic!("no usage chunk in the stream:\n{sse}"))["usage"]
        .clone();
    let served_stream = fee(&usage);
    fees = unsettled(key3.clone()).await;
    assert_eq!(
        fees - base,
        served_plain + served_stream,
        "both chats through `serve` billed exactly"
    );
    drop(serve);

    // revoke-token: that key is refused from now on, the other one still works.
    cli_ok(
        &c,
        &["inference", "revoke-token", "--provider", &p, "--token-id", "3"],
    )
    .await;
    assert_eq!(chain.sub().await.revoked_bitmap, U256::from(1u8 << 3));
    assert_eq!(chat(key3).await.status(), 401);
    let resp = chat(key5.clone()).await;
    assert_eq!(resp.status(), 200);
    fees += fee(&resp.json::<serde_json::Value>().await.unwrap()["usage"]);
    assert_eq!(unsettled(key5.clone()).await, fees);

    // retrieve-fund: the whole sub-account is asked back; the provider's next round settles what it served
    // before the refund unlocks, so the customer pays exactly the metered fees.
    let funded = 3 * NEURON + fee1;
    cli_ok(&c, &["retrieve-fund", "--provider", &p, "--service", "inference"]).await;
    assert_eq!(amount(chain.sub().await.pending_refund), funded);
    let report = running.settle(false).await.unwrap();
    assert_eq!(
        report.total_paid(),
        U256::from(fees),
        "a pending refund makes the customer due: {report:?}"
    );
    assert_eq!(amount(chain.sub().await.balance), funded - fees);
    let out = cli_ok(
        &c,
        &["get-sub-account", "--provider", &p, "--service", "inference"],
    )
    .await;
    assert_0g(
        &cell(&out, "Balance (0G)"),
        funded - fees,
        "sub-account after settlement",
    );
    let lock = owner_chain.inference().lock_time().await.unwrap();
    devnet.advance_time(lock + 1).await.unwrap();
    cli_ok(&c, &["retrieve-fund", "--provider", &p, "--service", "inference"]).await;
    assert_eq!(amount(chain.sub().await.balance), 0);
    let (total, available) = chain.ledger().await;
    assert_eq!(total, 25 * NEURON / 2 - fees);
    assert_eq!(available, total);

    // The customer comes back with the SDK on the now empty sub-account: it transfers 2 0G, then (deficit =
    // the first chat's fee) the 1 0G minimum, and the provider admits each request right after its top-up
    // (before the fix, the balance cached by the SDK's `unsettledfee` call moments earlier made it 402).
    let sdk = sdk_chats(&rpc, &cust_hex, &p, "what is a voucher").await;
    check_sdk_chats(&sdk, &signer_s);
    let back = fee(&sdk["plain"]["usage"]) + fee(&sdk["streamed"]["usage"]);
    assert_eq!(amount(chain.sub().await.balance), 3 * NEURON);
    assert_eq!(chain.ledger().await.1, total - 3 * NEURON);
    assert_eq!(unsettled(key5).await, back);
    assert_eq!(
        running.provider.ledger().unsettled_fee(cust.address()),
        U256::from(back),
        "the provider's own ledger"
    );

    // refund: from the ledger back to the wallet.
    let before = amount(chain.client.balance(cust.address()).await.unwrap());
    cli_ok(&c, &["refund", "--amount", "1.5"]).await;
    let after = amount(chain.client.balance(cust.address()).await.unwrap());
    assert_eq!(chain.ledger().await.0, 11 * NEURON - fees);
    assert_eq!(chain.ledger().await.1, 11 * NEURON - fees - 3 * NEURON);
    let received = after - before;
    assert!(
        received <= 3 * NEURON / 2 && received > 3 * NEURON / 2 - NEURON / 100,
        "1.5 0G minus gas, got {received}"
    );
    let out = cli_ok(&c, &["get-account"]).await;
    assert_0g(&cell(&out, "Total"), 11 * NEURON - fees, "ledger after refund");

    running.shutdown().await;
}

/// Runs `js/sdk_inference.cjs` (the official SDK) for one plain and one streamed chat; its RESULT document.
async fn sdk_chats(rpc: &str, key: &str, provider: &str, prompt: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/js/sdk_inference.cjs");
    let args: Vec<String> = [rpc, key, provider, prompt].map(str::to_owned).to_vec();
    let run = tokio::task::spawn_blocking(move || {
        run_js(
            &script,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            Duration::from_secs(90),
        )
    })
    .await
    .unwrap();
    serde_json::from_str(result_line(&run)).unwrap()
}

/// Both SDK chats answered, and the SDK's `processResponse` accepted our provider's signature, which signs
/// exactly the bytes exchanged and recovers to the on-chain signer; an unknown chat id does not verify.
fn check_sdk_chats(sdk: &serde_json::Value, signer: &str) {
    for name in ["plain", "streamed"] {
        let x = &sdk[name];
        assert_eq!(x["status"], 200, "{name}: {sdk}");
        assert!(!x["answer"].as_str().unwrap().is_empty(), "{name}: {x}");
        assert!(
            x["exposeHeaders"].as_str().unwrap().contains("ZG-Res-Key"),
            "{name}"
        );
        assert_eq!(
            x["valid"], true,
            "{name}: processResponse must accept our signature: {x}"
        );
        assert_eq!(
            x["signedText"], x["expectedText"],
            "{name}: signed text covers the exact bytes"
        );
        assert_eq!(x["recovered"], signer, "{name}");
        assert_eq!(x["signingAddress"], signer, "{name}");
    }
    assert_ne!(sdk["unknown"], true, "an unknown chat id must not verify: {sdk}");
}

/// `inference get-secret --token-id N --duration 600000` (ms; no prompt): the key and the whole output.
async fn get_secret(c: &OfficialCli, provider: &str, id: u8) -> (String, String) {
    let out = cli_ok(
        c,
        &[
            "inference",
            "get-secret",
            "--provider",
            provider,
            "--token-id",
            &id.to_string(),
            "--duration",
            "600000",
        ],
    )
    .await;
    let key = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Authorization: Bearer "))
        .unwrap_or_else(|| panic!("no key printed:\n{out}"))
        .to_owned();
    assert!(key.starts_with("app-sk-"));
    (key, out)
}
