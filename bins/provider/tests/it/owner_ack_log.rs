//! Issue 9: while the contract owner has not acknowledged the provider's TEE signer (TEE-signed settlements are
//! refused until then), `zg-provider` warns at start and at every settlement round, with the exact `zg owner`
//! command to run; the warnings stop once the owner acknowledged the signer.

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zg_chain::{Devnet, DevnetConfig, ServiceKind};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const WAITING: &str = "the TEE signer waits for the contract owner's acknowledgement";

#[tokio::test]
async fn provider_logs_the_owner_command_every_round_until_the_signer_is_acknowledged() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let prov = devnet.keys()[7].clone();
    let provider = prov.address();
    let fake = zg_test_utils::fake_upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[settlement]\nthreshold = \"1\"\ninterval_secs = 1\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zg-provider"))
        .args(["run", "-c"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .args(["--rpc-url", &devnet.rpc_url(), "--upstream", &fake.base])
        .args(["--model", "fake", "--tee", "simulated"])
        .env("ZG_PROVIDER_KEY", format!("0x{}", hex::encode(prov.to_bytes())))
        .env("ZG_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let _child = Child(child);
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let warnings = || log.lock().unwrap().matches(WAITING).count();

    // At start, then at each 1 s settlement round.
    for _ in 0..300 {
        if warnings() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = log.lock().unwrap().clone();
    assert!(warnings() >= 3, "start + two rounds:\n{text}");
    let command = format!(
        "zg owner acknowledge-tee-signer --provider {provider} --service inference --rpc {} --inference-ca {}",
        devnet.rpc_url(),
        devnet.addresses().inference
    );
    assert!(text.contains(&command), "the exact command:\n{text}");

    // The owner runs it: the warnings stop (allow for one round already in flight).
    devnet
        .acknowledge_tee_signer(ServiceKind::Inference, provider, &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = warnings();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        warnings(),
        settled,
        "no warning once acknowledged:\n{}",
        log.lock().unwrap()
    );
}
