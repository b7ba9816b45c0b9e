//! Shared setup: one devnet per test, the provider started in process on loopback, a funded customer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, U256};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use zg_billing::EthSigner;
use zg_chain::{Amount, Devnet, DevnetConfig, PrivateKeySigner};
use zg_client::{Client, ClientConfig};
use zg_provider::{RunArgs, Running, Settings};

pub struct Env {
    pub devnet: Devnet,
    pub running: Option<Running>,
    /// What the provider was started with (to restart it).
    pub settings: Settings,
    pub provider: Address,
    pub customer: PrivateKeySigner,
    pub provider_url: String,
    pub dir: tempfile::TempDir,
}

pub fn hexkey(k: &PrivateKeySigner) -> String {
    format!("0x{}", hex::encode(k.to_bytes()))
}

pub fn eth(k: &PrivateKeySigner) -> EthSigner {
    EthSigner::from_bytes(&B256::from(k.to_bytes())).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A devnet, the provider (simulated TEE, built-in model, settlement loop off), and a customer whose
/// ledger holds `ledger_zg` 0G (0 = no ledger).
pub async fn env(ledger_zg: u64) -> Env {
    env_with(ledger_zg, false).await
}

/// As [`env`]; with `grpc` the provider advertises its gRPC API (`grpc` in its on-chain additionalInfo).
pub async fn env_with(ledger_zg: u64, grpc: bool) -> Env {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let keys = devnet.keys().to_vec();
    let (prov, customer) = (keys[2].clone(), keys[1].clone());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let grpc_port = if grpc { free_port() } else { 0 };
    let mut settings = Settings::resolve(RunArgs {
        data_dir: Some(dir.path().join("provider")),
        http_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        grpc_addr: Some(format!("127.0.0.1:{grpc_port}").parse().unwrap()),
        public_url: Some(format!("http://127.0.0.1:{port}")),
        grpc_public_url: grpc.then(|| format!("http://127.0.0.1:{grpc_port}")),
        rpc_url: Some(devnet.rpc_url()),
        provider_key: Some(hexkey(&prov)),
        tee: Some(zg_provider::BackendChoice::Simulated),
        settle_interval: Some(0),
        account_ttl_ms: Some(0),
        ..RunArgs::default()
    })
    .unwrap();
    settings.settle_threshold = U256::from(1);
    let running = zg_provider::start(settings.clone()).await.unwrap();
    if ledger_zg > 0 {
        let c = devnet.client(Some(customer.clone())).await.unwrap();
        c.ledger()
            .add_ledger(Amount::from_zg(ledger_zg), "")
            .await
            .unwrap();
    }
    Env {
        provider: prov.address(),
        provider_url: format!("http://127.0.0.1:{port}"),
        running: Some(running),
        settings,
        devnet,
        customer,
        dir,
    }
}

impl Env {
    pub fn config(&self) -> ClientConfig {
        // The simulated provider's image, named explicitly (issue 9 item 10), and the simulated opt-in.
        let mut cfg = ClientConfig::new(self.dir.path().join("client"));
        cfg.policy = zg_attestation::AttestationPolicy::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/policy.simulated.toml"
        ))
        .unwrap();
        cfg.dangerous_allow_simulated(true)
    }

    pub async fn client_with(&self, cfg: ClientConfig) -> Client {
        let chain = self.devnet.client(Some(self.customer.clone())).await.unwrap();
        Client::new(chain, eth(&self.customer), cfg).unwrap()
    }

    pub async fn client(&self) -> Client {
        self.client_with(self.config()).await
    }

    /// The customer's sub-account balance on chain.
    pub async fn sub_balance(&self) -> U256 {
        let c = self.devnet.client(None).await.unwrap();
        c.inference()
            .get_account(self.customer.address(), self.provider)
            .await
            .unwrap()
            .map(|a| a.balance.0)
            .unwrap_or_default()
    }
}

pub fn chat_body(prompt: &str, max_tokens: u64, stream: bool) -> String {
    serde_json::json!({
        "model": "zg-demo-ngram",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "seed": 7,
        "stream": stream,
    })
    .to_string()
}

/// How the proxy misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Forward unchanged.
    None,
    /// Flip one byte of the response body (the receipt no longer covers it).
    Body,
    /// Drop the `zg-receipt` header.
    StripReceipt,
    /// Streams: drop the final receipt event.
    StripStreamReceipt,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    mode: Arc<Mutex<Tamper>>,
    seen_requests: Arc<Mutex<Vec<(String, Bytes)>>>,
    http: reqwest::Client,
}

pub struct Proxy {
    pub url: String,
    pub mode: Arc<Mutex<Tamper>>,
    /// (`zg-request` header, body) of every billed request seen.
    pub seen: Arc<Mutex<Vec<(String, Bytes)>>>,
}

/// A man in the middle between client and provider.
pub async fn proxy(upstream: &str) -> Proxy {
    let st = ProxyState {
        upstream: upstream.to_owned(),
        mode: Arc::new(Mutex::new(Tamper::None)),
        seen_requests: Arc::default(),
        http: reqwest::Client::new(),
    };
    let (mode, seen) = (st.mode.clone(), st.seen_requests.clone());
    let app = axum::Router::new().fallback(handle).with_state(st);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Proxy {
        url: format!("http://{addr}"),
        mode,
        seen,
    }
}

async fn handle(
    axum::extract::State(st): axum::extract::State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!(
        "{}{}",
        st.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = st.http.request(method, &url).body(body.clone());
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    if let Some(h) = headers.get("zg-request").and_then(|v| v.to_str().ok()) {
        st.seen_requests
            .lock()
            .unwrap()
            .push((h.to_owned(), body.clone()));
    }
    let resp = req.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let mut out_headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            out_headers.insert(k.clone(), v.clone());
        }
    }
    let mut bytes = resp.bytes().await.unwrap().to_vec();
    let mode = *st.mode.lock().unwrap();
    if status.is_success() && uri.path().starts_with("/v1/proxy/") {
        match mode {
            Tamper::None => {}
            Tamper::Body => {
                // Change one content byte (inside the JSON text, so the answer still parses).
                if let Some(i) = bytes.windows(9).position(|w| w == b"\"content\"") {
                    let j = i + 12;
                    if j < bytes.len() {
                        bytes[j] = if bytes[j] == b'a' { b'b' } else { b'a' };
                    }
                }
            }
            Tamper::StripReceipt => {
                out_headers.remove("zg-receipt");
            }
            Tamper::StripStreamReceipt => {
                if let Some(i) = bytes.windows(17).position(|w| w == b"event: zg-receipt") {
                    bytes.truncate(i);
                }
            }
        }
    }
    (status, out_headers, Body::from(bytes)).into_response()
}

impl Env {
    /// The provider re-registers its service with `signer` as its TEE signer (what a provider operator can
    /// do at any time; the running provider keeps its attested keys).
    pub async fn register_signer(&self, signer: Address) {
        let c = self
            .devnet
            .client(Some(self.devnet.keys()[2].clone()))
            .await
            .unwrap();
        let s = c.inference().get_service(self.provider).await.unwrap().unwrap();
        let params = zg_chain::ServiceParams {
            service_type: s.service_type,
            url: s.url,
            model: s.model,
            verifiability: s.verifiability,
            input_price: s.input_price,
            output_price: s.output_price,
            additional_info: s.additional_info,
            tee_signer: signer,
        };
        c.inference()
            .add_or_update_service(&params, Amount(U256::ZERO))
            .await
            .unwrap();
    }

    /// Stops the provider, deletes its simulated TEE keys and starts it again on the same address: it comes
    /// back with new keys and registers the new signer on chain (what a TEE redeploy does).
    pub async fn restart_provider_with_new_keys(&mut self) {
        self.running.take().unwrap().shutdown().await;
        std::fs::remove_file(self.settings.data_dir.join("tee-keys.simulated.json")).unwrap();
        self.running = Some(zg_provider::start(self.settings.clone()).await.unwrap());
    }

    /// The on-chain TEE signer of the provider.
    pub async fn tee_signer(&self) -> Address {
        let c = self.devnet.client(None).await.unwrap();
        c.inference()
            .get_service(self.provider)
            .await
            .unwrap()
            .unwrap()
            .tee_signer
    }

    /// How many transactions `who` has sent (`eth_getTransactionCount`, latest).
    pub async fn tx_count(&self, who: Address) -> u64 {
        let v: serde_json::Value = reqwest::Client::new()
            .post(self.devnet.rpc_url())
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount", "params": [who, "latest"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        u64::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }
}
