//! `zg web` as a process: the keystore is unlocked once at start, the dashboard listens on 127.0.0.1 only, prints a
//! URL whose fragment carries the session token, signs as the keystore's address, and refuses the API without it.

use std::io::BufReader;
use std::process::{Command, Stdio};

use zg_chain::{Devnet, DevnetConfig};

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zg_web_unlocks_the_keystore_once_and_serves_loopback_with_a_token() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let customer = devnet.keys()[1].clone();
    let ks = zg_chain::save_keystore(&customer, dir.path(), "customer.json", "pw").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zg"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ZG_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(["web", "--port", "0", "--json", "--allow-simulated"])
        .env("ZG_RPC_URL", devnet.rpc_url())
        .env("ZG_KEYSTORE", &ks)
        .env("ZG_KEYSTORE_PASSWORD", "pw")
        .env("ZG_DATA_DIR", dir.path().join("client"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    // The one JSON document `--json` prints before serving (the process keeps running).
    let v: serde_json::Value = tokio::task::spawn_blocking(move || {
        serde_json::Deserializer::from_reader(BufReader::new(stdout))
            .into_iter::<serde_json::Value>()
            .next()
            .expect("zg web printed a JSON document")
            .expect("valid JSON")
    })
    .await
    .unwrap();
    let url = v["url"].as_str().unwrap();
    assert_eq!(v["customer"], serde_json::json!(customer.address()));
    let (base, token) = url.split_once("/#token=").unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(token.len(), 64, "32 random bytes, hex");

    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/app.js"));
    let no_token = http.get(format!("{base}/api/session")).send().await.unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    let s = http
        .get(format!("{base}/api/session"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(
        s["customer"],
        serde_json::json!(customer.address()),
        "signs as the keystore's key"
    );
    assert_eq!(s["allow_simulated"], true);
    let text = serde_json::to_string(&s).unwrap();
    assert!(
        !text.contains(&hex::encode(customer.to_bytes())),
        "the private key never reaches the page"
    );
}
