//! Shared setup: an anvil devnet with the contracts, the `zg-broker` binary as a child process (restartable on
//! the same data dir and ports, killable with SIGKILL), and customers that talk to it as the official 0G CLI
//! does (same bodies, same signatures) and act on chain through zg-chain.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use serde_json::{Value, json};
use zg_chain::{Amount, Client, Devnet, DevnetConfig, PrivateKeySigner, ServiceKind};
use zg_finetune::{SigningKey, sig};
use zg_storage::LocalStore;

pub const PRICE: u64 = 1_000_000_000; // neuron per token
pub const MODEL: &str = "zg-demo-ngram";

pub use zg_test_utils::net::free_port;

pub fn hexkey(k: &PrivateKeySigner) -> String {
    zg_test_utils::keys::hex_key(&k.to_bytes().0)
}

pub struct Net {
    pub devnet: Devnet,
    pub dir: tempfile::TempDir,
    pub storage: LocalStore,
    pub broker_key: PrivateKeySigner,
    pub http_port: u16,
    pub grpc_port: u16,
}

pub struct Broker {
    pub child: Child,
    pub url: String,
    pub grpc: String,
    pub log: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// The broker's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to die on its own (a crash point), returning whether it was killed by a signal.
    pub fn wait_death(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return std::os::unix::process::ExitStatusExt::signal(&st).is_some();
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not crash as armed:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub struct Customer {
    pub key: PrivateKeySigner,
    pub sk: SigningKey,
    pub addr: Address,
    pub chain: Client,
}

impl Net {
    pub async fn start() -> Self {
        let devnet = Devnet::start_with(DevnetConfig {
            anvil: Some(zg_test_utils::tools::anvil()),
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStore::open(dir.path().join("storage")).unwrap();
        let broker_key = devnet.keys()[5].clone();
        Self {
            devnet,
            storage,
            dir,
            broker_key,
            http_port: free_port(),
            grpc_port: free_port(),
        }
    }

    pub fn provider(&self) -> Address {
        self.broker_key.address()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("broker")
    }

    /// Runs the broker binary, which must exit on its own within `secs`: its exit status and stderr.
    pub fn broker_exit(&self, args: &[&str], secs: u64) -> (std::process::ExitStatus, String) {
        let (mut cmd, log) = self.command(&[], args);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return (st, std::fs::read_to_string(&log).unwrap_or_default());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "zg-broker did not exit within {secs} s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&self, env: &[(&str, &str)], args: &[&str]) -> (Command, PathBuf) {
        let log = self
            .dir
            .path()
            .join(format!("broker-{}.log", zg_finetune::now_ms()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zg-broker"));
        cmd.arg("run")
            .args(["--tee", "simulated"])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--grpc-addr", &format!("127.0.0.1:{}", self.grpc_port)])
            .args(["--public-url", &format!("http://127.0.0.1:{}", self.http_port)])
            .args(["--rpc-url", &self.devnet.rpc_url()])
            .arg("--storage-dir")
            .arg(self.dir.path().join("storage"))
            .args(["--price-per-token", &PRICE.to_string()])
            .args(["--poll-interval-ms", "100"])
            .args(args)
            .env("ZG_BROKER_KEY", hexkey(&self.broker_key))
            .env("ZG_LOG", "info,zg_broker=debug")
            .env_remove("ZG_BROKER_TEST_CRASH_AT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        (cmd, log)
    }

    /// Starts the broker binary (same data dir and ports every time) and waits until it serves.
    pub async fn broker(&self, env: &[(&str, &str)], args: &[&str]) -> Broker {
        let (mut cmd, log) = self.command(env, args);
        let child = cmd.spawn().unwrap();
        let mut b = Broker {
            child,
            url: format!("http://127.0.0.1:{}", self.http_port),
            grpc: format!("http://127.0.0.1:{}", self.grpc_port),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = b.child.try_wait().unwrap() {
                panic!("zg-broker exited ({st}) before serving:\n{}", b.stderr());
            }
            if let Ok(r) = reqwest::get(format!("{}/healthz", b.url)).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "zg-broker never served:\n{}",
                b.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = &mut b;
        b
    }

    /// The contract owner (devnet account 0) acknowledges the broker's TEE signer.
    pub async fn owner_ack(&self) {
        let owner = self
            .devnet
            .client(Some(self.devnet.keys()[0].clone()))
            .await
            .unwrap();
        owner
            .fine_tuning()
            .acknowledge_tee_signer_by_owner(self.provider())
            .await
            .unwrap();
    }

    /// A customer with a ledger, `fund_zg` 0G in its fine-tuning sub-account with the broker, and the broker's
    /// signer acknowledged (as the official CLI's create-task does).
    pub async fn customer(&self, i: usize, fund_zg: u64) -> Customer {
        let key = self.devnet.keys()[i].clone();
        let chain = self.devnet.client(Some(key.clone())).await.unwrap();
        chain
            .ledger()
            .add_ledger(Amount::from_zg(fund_zg + 3), "")
            .await
            .unwrap();
        chain
            .ledger()
            .transfer_fund(self.provider(), ServiceKind::FineTuning, Amount::from_zg(fund_zg))
            .await
            .unwrap();
        chain
            .fine_tuning()
            .acknowledge_tee_signer(self.provider(), true)
            .await
            .unwrap();
        Customer {
            sk: SigningKey::from_slice(key.to_bytes().as_slice()).unwrap(),
            addr: key.address(),
            key,
            chain,
        }
    }

    /// Customer `i` as is (no ledger actions).
    pub async fn customer_handle(&self, i: usize) -> Customer {
        let key = self.devnet.keys()[i].clone();
        Customer {
            sk: SigningKey::from_slice(key.to_bytes().as_slice()).unwrap(),
            addr: key.address(),
            chain: self.devnet.client(Some(key.clone())).await.unwrap(),
            key,
        }
    }

    /// Stores a dataset as `zg upload` would and returns its root.
    pub fn upload(&self, bytes: &[u8]) -> String {
        format!("{:#x}", self.storage.put_bytes(bytes).unwrap())
    }
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn hex0x(b: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(b))
}

impl Customer {
    /// The official CLI's create-task body, signed the same way.
    pub fn create_body(&self, dataset: &str, model_hash: &str, params: &str) -> Value {
        let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nonce = U256::from((zg_finetune::now_ms() as u64 + n) * 10_000 + 40);
        let s = sig::sign_personal(&self.sk, &sig::create_digest(self.addr, nonce, dataset)).unwrap();
        json!({
            "userAddress": self.addr.to_checksum(None),
            "datasetHash": dataset,
            "trainingParams": params,
            "preTrainedModelHash": model_hash,
            "fee": "0",
            "nonce": nonce.to_string(),
            "signature": hex0x(s),
            "wait": false,
        })
    }

    pub fn path(&self, b: &Broker, rest: &str) -> String {
        format!("{}/v1/user/{}{rest}", b.url, self.addr.to_checksum(None))
    }

    pub async fn create(&self, b: &Broker, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.path(b, "/task"))
            .json(body)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn task(&self, b: &Broker, id: &str) -> Value {
        reqwest::get(self.path(b, &format!("/task/{id}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn tasks(&self, b: &Broker) -> Vec<Value> {
        reqwest::get(self.path(b, "/task"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn log(&self, b: &Broker, id: &str) -> String {
        reqwest::get(self.path(b, &format!("/task/{id}/log")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn cancel(&self, b: &Broker, id: &str) -> (u16, String) {
        let tid = zg_finetune::TaskId::parse(id).unwrap();
        let s = sig::sign_personal(&self.sk, &sig::cancel_digest(&tid)).unwrap();
        let r = reqwest::Client::new()
            .post(self.path(b, &format!("/task/{id}/cancel")))
            .json(&json!({"signature": hex0x(s)}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn download(&self, b: &Broker, id: &str) -> (u16, Vec<u8>) {
        let tid = zg_finetune::TaskId::parse(id).unwrap();
        let ts = zg_finetune::now_ms() / 1000;
        let s = sig::sign_personal(&self.sk, &sig::lora_digest(&tid, ts)).unwrap();
        let r = reqwest::Client::new()
            .post(self.path(b, &format!("/task/{id}/lora")))
            .json(&json!({"signature": hex0x(s), "timestamp": ts}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    pub async fn acknowledge(&self, provider: Address, id: &str) {
        self.chain
            .fine_tuning()
            .acknowledge_deliverable(provider, id)
            .await
            .unwrap();
    }

    pub async fn balance(&self, provider: Address) -> U256 {
        self.chain
            .fine_tuning()
            .get_account(self.addr, provider)
            .await
            .unwrap()
            .unwrap()
            .balance
            .0
    }

    /// Waits until the task's `progress` satisfies `f`.
    pub async fn wait(&self, b: &Broker, id: &str, secs: u64, f: impl Fn(&str) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(r) = reqwest::get(self.path(b, &format!("/task/{id}"))).await
                && let Ok(t) = r.json::<Value>().await
                && f(t["progress"].as_str().unwrap_or_default())
            {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} never got there; last: {:?}\n{}",
                self.task(b, id).await,
                b.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A chat dataset unlike the base corpus (baking), `n` records.
pub fn baking(n: usize) -> Vec<u8> {
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

/// The builtin model's hash as the broker publishes it.
pub async fn model_hash(b: &Broker) -> String {
    let v: Value = reqwest::get(format!("{}/v1/model/{MODEL}", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["hash"].as_str().unwrap().to_owned()
}

pub fn terminal(s: &str) -> bool {
    matches!(s, "Finished" | "Cancelled" | "Failed" | "PenaltySettled")
}
