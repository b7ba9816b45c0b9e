//! `zg inference …` and `zg serve` end to end: a devnet, the real provider in process on loopback, the `zg`
//! binary as a process, `curl` attacking `zg serve` as a web page, a DNS-rebinding page and a keyless local
//! process would (issue 9, item 6), and the official `openai` Python package (from `.tools/venv`, made by
//! `just setup` / `scripts/setup.sh`; the test fails without it) talking to `zg serve` with its key.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use crate::{stderr, stdout, zg};
use zg_chain::{Devnet, DevnetConfig};

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "zg failed: {}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn dec(v: &serde_json::Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

/// `curl -sS` with `args`: (status, body as JSON or Null). curl must be installed: the test fails otherwise.
fn curl(args: &[String]) -> (u16, serde_json::Value) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is required by this test (apt-get install curl)");
    assert!(
        o.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or_default(),
    )
}

/// Starts `zg serve --port 0 --allow-simulated --json` with `env` plus `extra`; returns it and its JSON.
async fn start_serve(env: &[(&str, &str)], extra: &[(&str, &str)]) -> (KillOnDrop, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zg"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ZG_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(["serve", "--port", "0", "--allow-simulated", "--json"])
        .envs(env.iter().copied())
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let out = child.0.stdout.take().unwrap();
    let v = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(out).lines() {
            text.push_str(&line.unwrap());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                return v;
            }
        }
        panic!("zg serve printed no URL: {text}");
    })
    .await
    .unwrap();
    (child, v)
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_verbs_and_serve_with_the_official_openai_client() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let rpc = devnet.rpc_url();
    let (prov, cust) = (devnet.keys()[2].clone(), devnet.keys()[1].clone());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = zg_provider::Settings::resolve(zg_provider::RunArgs {
        data_dir: Some(dir.path().join("provider")),
        http_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
        public_url: Some(format!("http://127.0.0.1:{port}")),
        rpc_url: Some(rpc.clone()),
        provider_key: Some(format!("0x{}", hex::encode(prov.to_bytes()))),
        tee: Some(zg_provider::BackendChoice::Simulated),
        settle_interval: Some(0),
        account_ttl_ms: Some(0),
        ..Default::default()
    })
    .unwrap();
    let running = zg_provider::start(settings).await.unwrap();
    let provider = prov.address().to_string();
    let key = format!("0x{}", hex::encode(cust.to_bytes()));
    let data = dir.path().join("client");
    let data = data.to_str().unwrap();
    // The simulated provider's image, named explicitly (issue 9 item 10).
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/policy.simulated.toml");
    let env = [
        ("ZG_ATTESTATION_POLICY", policy),
        ("ZG_RPC_URL", rpc.as_str()),
        ("ZG_PRIVATE_KEY", key.as_str()),
        ("ZG_DATA_DIR", data),
        ("ZG_PROVIDER", provider.as_str()),
    ];
    // `zg` is a blocking process: run it off the runtime that serves the provider.
    let run = |args: Vec<&'static str>| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            zg(&args, &env)
        })
    };

    assert!(
        run(vec!["add-account", "--amount", "10"])
            .await
            .unwrap()
            .status
            .success()
    );
    let v = json(&run(vec!["inference", "list-providers", "--json"]).await.unwrap());
    assert_eq!(
        v[0]["provider"].as_str().unwrap().to_lowercase(),
        provider.to_lowercase()
    );
    assert_eq!(v[0]["model"], zg_provider::DEMO_MODEL_ID);

    // A simulated TEE is refused without the flag, loudly, and accepted with it.
    let o = run(vec!["inference", "verify"]).await.unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SIMULATED") && stderr(&o).contains("--allow-simulated"),
        "{}",
        stderr(&o)
    );
    let v = json(
        &run(vec!["inference", "verify", "--allow-simulated", "--json"])
            .await
            .unwrap(),
    );
    assert_eq!(v["report"]["verdict"], "pass");
    assert_eq!(v["simulated"], true);
    // Which allow-list entry matched, and the (simulated) GPU's checks bound to the same nonce.
    assert_eq!(v["report"]["allowlist_matches"][0], "image zg-simulated-td");
    let checks = v["report"]["checks"].as_array().unwrap();
    for name in [
        "gpu.nonce",
        "gpu.signature",
        "gpu.rim.driver",
        "gpu.measurements",
        "gpu.simulated.allowed",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name && c["ok"] == true),
            "{name} missing or failed: {v}"
        );
    }
    assert_eq!(v["signer"], v["service"]["tee_signer"]);

    // Native chat, plain and streamed: verified receipts with exact fees.
    let a = json(
        &run(vec![
            "inference",
            "chat",
            "--allow-simulated",
            "--json",
            "--max-tokens",
            "16",
            "how are fees settled",
        ])
        .await
        .unwrap(),
    );
    assert_eq!(a["verified"], true);
    assert!(!a["answer"].as_str().unwrap().is_empty());
    let u = &a["receipt"]["receipt"]["usage"];
    let fee_a = dec(&a["receipt"]["fee"]);
    assert_eq!(
        fee_a,
        u["prompt_tokens"].as_u64().unwrap() as u128 * 1_000_000_000
            + u["completion_tokens"].as_u64().unwrap() as u128 * 2_000_000_000
    );
    let b = json(
        &run(vec![
            "inference",
            "chat",
            "--allow-simulated",
            "--json",
            "--stream",
            "--max-tokens",
            "16",
            "what is a voucher",
        ])
        .await
        .unwrap(),
    );
    let fee_b = dec(&b["receipt"]["fee"]);
    assert_eq!(dec(&b["receipt"]["owed_after"]), fee_a + fee_b);
    // The same over the provider's gRPC API (issue 11 item 5), named here since this service advertises none.
    let grpc_url: &'static str = Box::leak(format!("http://{}", running.grpc_addr).into_boxed_str());
    let g = json(
        &run(vec![
            "inference",
            "chat",
            "--allow-simulated",
            "--json",
            "--transport",
            "grpc",
            "--provider-grpc-url",
            grpc_url,
            "--max-tokens",
            "16",
            "over grpc",
        ])
        .await
        .unwrap(),
    );
    assert_eq!(g["verified"], true);
    assert_eq!(
        (a["transport"].as_str(), g["transport"].as_str()),
        (Some("http"), Some("grpc"))
    );
    let fee_g = dec(&g["receipt"]["fee"]);
    assert!(fee_g > 0);
    assert_eq!(dec(&g["receipt"]["owed_after"]), fee_a + fee_b + fee_g);
    // Forcing gRPC without an endpoint is a named error.
    let o = run(vec![
        "inference",
        "chat",
        "--allow-simulated",
        "--transport",
        "grpc",
        "hi",
    ])
    .await
    .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("advertises no gRPC endpoint"),
        "{}",
        stderr(&o)
    );

    // A session token is refused unless the customer acknowledged the provider's signer (TEE batches would not pay
    // for it): with --no-acknowledge, get-secret says so and what to run.
    let refused = run(vec![
        "inference",
        "get-secret",
        "--no-acknowledge",
        "--token-id",
        "1",
    ])
    .await
    .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("acknowledge-provider"), "{err}");
    // A 0G session secret works straight against the provider, and stops working once revoked. get-secret
    // verifies the provider and acknowledges its signer first.
    let s = json(
        &run(vec![
            "inference",
            "get-secret",
            "--allow-simulated",
            "--token-id",
            "1",
            "--duration",
            "600",
            "--json",
        ])
        .await
        .unwrap(),
    );
    let secret = s["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("app-sk-"));
    let http = reqwest::Client::new();
    let call = |secret: String| {
        let http = http.clone();
        async move {
            http.post(format!("http://127.0.0.1:{port}/v1/proxy/chat/completions"))
                .bearer_auth(secret)
                .header("content-type", "application/json")
                .body(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(secret.clone()).await, 200);
    assert!(
        run(vec!["inference", "revoke-token", "--token-id", "1"])
            .await
            .unwrap()
            .status
            .success()
    );
    assert_eq!(call(secret).await, 401);
    let o = run(vec!["inference", "get-secret", "--duration", "100000"])
        .await
        .unwrap();
    assert!(stderr(&o).contains("--token-id 0-254"), "{}", stderr(&o));

    // zg serve, attacked with curl, then used by the official openai Python client with the printed key.
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `just setup` (scripts/setup.sh installs the pinned openai client into .tools/venv)",
        python.display()
    );
    let (child, serve) = start_serve(&env, &[]).await;
    let url = serve["url"].as_str().unwrap().to_owned();
    let api_key = serve["api_key"]
        .as_str()
        .expect("a generated key is printed once")
        .to_owned();
    assert!(api_key.starts_with("sk-zg-") && api_key.len() > 40, "{api_key}");
    assert_eq!(serve["api_key_source"], "generated for this run; shown once");
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/v1")
        .to_owned();
    let chat_url = format!("{url}/chat/completions");
    let body = r#"{"messages":[{"role":"user","content":"spend it"}],"max_tokens":8}"#;
    let bearer = format!("Authorization: Bearer {api_key}");
    let rebind_host = format!("rebind.evil.example:{port}");
    let rebind_url = format!("http://{rebind_host}/v1/chat/completions");
    let resolve = format!("{rebind_host}:127.0.0.1");
    // (what, curl arguments, status, error type)
    let attacks: Vec<(&str, Vec<&str>, u16, &str)> = vec![
        (
            "cross-origin POST from a web page",
            vec![
                "-H",
                "Origin: https://evil.example",
                "-H",
                "Content-Type: application/json",
                "-H",
                &bearer,
                "--data",
                body,
                &chat_url,
            ],
            403,
            "forbidden_origin",
        ),
        (
            "no-cors form POST (text/plain) from a web page",
            vec![
                "-H",
                "Origin: https://evil.example",
                "-H",
                "Sec-Fetch-Site: cross-site",
                "-H",
                "Sec-Fetch-Mode: no-cors",
                "-H",
                "Content-Type: text/plain;charset=UTF-8",
                "--data",
                body,
                &chat_url,
            ],
            403,
            "forbidden_origin",
        ),
        (
            "text/plain POST from a local process, even with the key",
            vec![
                "-H",
                "Content-Type: text/plain",
                "-H",
                &bearer,
                "--data",
                body,
                &chat_url,
            ],
            415,
            "unsupported_media_type",
        ),
        (
            "DNS rebinding: the attacker's name resolving to 127.0.0.1",
            vec![
                "--resolve",
                &resolve,
                "-H",
                "Content-Type: application/json",
                "-H",
                &bearer,
                "--data",
                body,
                &rebind_url,
            ],
            403,
            "forbidden_host",
        ),
        (
            "missing key",
            vec!["-H", "Content-Type: application/json", "--data", body, &chat_url],
            401,
            "missing_api_key",
        ),
        (
            "wrong key",
            vec![
                "-H",
                "Content-Type: application/json",
                "-H",
                "Authorization: Bearer sk-zg-guessed-wrong-0000000000",
                "--data",
                body,
                &chat_url,
            ],
            401,
            "invalid_api_key",
        ),
    ];
    for (what, args, status, kind) in attacks {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let (got, v) = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
        assert_eq!(
            (got, v["error"]["type"].as_str().unwrap_or_default()),
            (status, kind),
            "{what}: {v}"
        );
    }
    // The same request with the key, JSON and no foreign origin is served (curl, then the openai client).
    let args: Vec<String> = [
        "-H",
        "Content-Type: application/json",
        "-H",
        &bearer,
        "--data",
        body,
        &chat_url,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let (got, v) = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
    assert_eq!(got, 200, "{v}");
    let fee_curl = v["usage"]["prompt_tokens"].as_u64().unwrap() as u128 * 1_000_000_000
        + v["usage"]["completion_tokens"].as_u64().unwrap() as u128 * 2_000_000_000;
    let script = r#"
import base64, json, os, sys, urllib.request
import openai
c = openai.OpenAI(base_url=os.environ["BASE"], api_key=os.environ["KEY"])
m = c.models.list().data[0].id
raw = c.chat.completions.with_raw_response.create(model=m, max_tokens=12, messages=[{"role": "user", "content": "hello"}])
plain = raw.parse()
rec = json.loads(base64.urlsafe_b64decode(raw.headers["zg-receipt"] + "=="))
raw2 = c.chat.completions.with_raw_response.create(model=m, max_tokens=12, stream=True, messages=[{"role": "user", "content": "stream"}])
text = "".join((x.choices[0].delta.content or "") for x in raw2.parse() if x.choices)
key = raw2.headers["zg-res-key"]
req = urllib.request.Request(os.environ["BASE"].rsplit("/v1", 1)[0] + "/zg/v1/receipts/" + key,
                             headers={"Authorization": "Bearer " + os.environ["KEY"]})
r2 = json.load(urllib.request.urlopen(req))
try:
    openai.OpenAI(base_url=os.environ["BASE"], api_key="sk-zg-wrong-key-000000000000").models.list()
    wrong = "accepted"
except openai.AuthenticationError as e:
    wrong = e.body["type"] if isinstance(e.body, dict) else str(e.body)
print(json.dumps({"model": m, "verified": raw.headers["zg-verified"], "fee": raw.headers["zg-fee"], "receipt_key": rec["key"],
                  "res_key": raw.headers["zg-res-key"], "plain": plain.choices[0].message.content,
                  "usage": [plain.usage.prompt_tokens, plain.usage.completion_tokens], "stream": text, "stream_fee": r2["fee"],
                  "wrong_key": wrong}))
"#;
    let out = tokio::task::spawn_blocking({
        let (python, url, api_key) = (python.clone(), url.clone(), api_key.clone());
        move || {
            Command::new(python)
                .args(["-c", script])
                .env("BASE", &url)
                .env("KEY", &api_key)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], zg_provider::DEMO_MODEL_ID);
    assert_eq!(v["verified"], "true");
    assert_eq!(v["receipt_key"], v["res_key"]);
    assert_eq!(v["wrong_key"], "invalid_api_key");
    assert!(!v["plain"].as_str().unwrap().is_empty() && !v["stream"].as_str().unwrap().is_empty());
    let fee: u128 = v["fee"].as_str().unwrap().parse().unwrap();
    let (p, c) = (
        v["usage"][0].as_u64().unwrap() as u128,
        v["usage"][1].as_u64().unwrap() as u128,
    );
    assert_eq!(fee, p * 1_000_000_000 + c * 2_000_000_000);
    let fees_via_serve = fee_curl + fee + dec(&v["stream_fee"]);
    let served = 3;
    drop(child);

    // A key of the user's own (ZG_SERVE_API_KEY) works and is never printed.
    let own = "sk-zg-my-own-stable-key-0123456789";
    // This one forwards over the provider's gRPC API (ZG_TRANSPORT=grpc): a paid chat is billed the same.
    let (_child2, serve2) = start_serve(
        &env,
        &[
            ("ZG_SERVE_API_KEY", own),
            ("ZG_TRANSPORT", "grpc"),
            ("ZG_PROVIDER_GRPC_URL", grpc_url),
        ],
    )
    .await;
    assert!(serve2["api_key"].is_null(), "{serve2}");
    let args: Vec<String> = vec![
        "-H".into(),
        "Content-Type: application/json".into(),
        "-H".into(),
        format!("Authorization: Bearer {own}"),
        "--data".into(),
        body.to_owned(),
        format!("{}/chat/completions", serve2["url"].as_str().unwrap()),
    ];
    let (got, v) = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
    assert_eq!(got, 200, "{v}");
    let fee_serve_grpc = v["usage"]["prompt_tokens"].as_u64().unwrap() as u128 * 1_000_000_000
        + v["usage"]["completion_tokens"].as_u64().unwrap() as u128 * 2_000_000_000;
    let fees_via_serve = fees_via_serve + fee_serve_grpc;
    let served = served + 1;
    let models = format!("{}/models", serve2["url"].as_str().unwrap());
    let args: Vec<String> = vec![
        "-H".into(),
        format!("Authorization: Bearer {own}"),
        models.clone(),
    ];
    let (got, v) = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
    assert_eq!(
        (got, v["data"][0]["id"].as_str()),
        (200, Some(zg_provider::DEMO_MODEL_ID)),
        "{v}"
    );
    let (got, _) = tokio::task::spawn_blocking(move || curl(&[models]))
        .await
        .unwrap();
    assert_eq!(got, 401);
    // Turning the key off is refused beyond loopback.
    let o = run(vec![
        "serve",
        "--host",
        "0.0.0.0",
        "--dangerous-no-api-key",
        "--allow-simulated",
    ])
    .await
    .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not loopback"), "{}", stderr(&o));

    // The client's books: every verified receipt counted once, across processes sharing the data dir.
    let v = json(&run(vec!["inference", "balance", "--json"]).await.unwrap());
    assert_eq!(dec(&v["balance"]["owed"]), fee_a + fee_b + fee_g + fees_via_serve);
    assert_eq!(v["balance"]["receipts"], 3 + served);
    assert_eq!(
        dec(&v["balance"]["unsettled"]),
        fee_a + fee_b + fee_g + fees_via_serve
    );
    running.shutdown().await;
}
