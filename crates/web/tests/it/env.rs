//! Shared setup: one devnet per test, the provider (simulated TEE, built-in model) in process on loopback, a
//! customer key, and the dashboard serving on a free loopback port.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use zg_chain::{Devnet, DevnetConfig, PrivateKeySigner};
use zg_client::{Client, ClientConfig};
use zg_provider::{RunArgs, Running, Settings};
use zg_web::{Dashboard, WebConfig};

pub(crate) struct Env {
    pub(crate) devnet: Devnet,
    pub(crate) running: Option<Running>,
    pub(crate) provider: Address,
    pub(crate) customer: PrivateKeySigner,
    pub(crate) web: String,
    pub(crate) token: String,
    pub(crate) port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots go: a test artifact under target/ (`ZG_WEB_SCREENSHOTS` overrides).
pub(crate) fn screenshot_dir() -> PathBuf {
    std::env::var_os("ZG_WEB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zg-web-screenshots"))
}

impl Env {
    /// Devnet, provider, and the dashboard for a customer without a ledger.
    pub(crate) async fn start() -> Env {
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
        let mut settings = Settings::resolve(RunArgs {
            data_dir: Some(dir.path().join("provider")),
            http_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            public_url: Some(format!("http://127.0.0.1:{port}")),
            rpc_url: Some(devnet.rpc_url()),
            provider_key: Some(format!("0x{}", hex::encode(prov.to_bytes()))),
            tee: Some(zg_provider::BackendChoice::Simulated),
            settle_interval: Some(0),
            account_ttl_ms: Some(0),
            ..RunArgs::default()
        })
        .unwrap();
        settings.settle_threshold = U256::from(1);
        let running = zg_provider::start(settings).await.unwrap();
        let provider_url = format!("http://127.0.0.1:{port}");

        let chain = devnet.client(Some(customer.clone())).await.unwrap();
        let key = zg_billing::EthSigner::from_bytes(&B256::from(customer.to_bytes())).unwrap();
        // The simulated provider's image named explicitly (an empty allow-list fails), and the simulated opt-in.
        let mut cfg = ClientConfig::new(dir.path().join("client"));
        cfg.policy = zg_attestation::AttestationPolicy::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/policy.simulated.toml"
        ))
        .unwrap();
        let cfg = cfg.dangerous_allow_simulated(true);
        let client = Client::new(chain, key, cfg).unwrap();
        let web = Dashboard::bind(
            client,
            WebConfig {
                port: 0,
                provider_metrics: Some(format!("{provider_url}/metrics")),
                metrics_every: Duration::from_millis(500),
                ..WebConfig::default()
            },
        )
        .await
        .unwrap();
        let url = web.url();
        let token = web.token().to_owned();
        let wport = web.addr().port();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            web.serve(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Env {
            devnet,
            running: Some(running),
            provider: prov.address(),
            customer,
            web: url,
            token,
            port: wport,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT` of the dashboard.
    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The customer's ledger (available, total), neuron; `None` without a ledger.
    pub(crate) async fn ledger(&self) -> Option<(U256, U256)> {
        let c = self.devnet.client(None).await.unwrap();
        c.ledger()
            .get_ledger(self.customer.address())
            .await
            .unwrap()
            .map(|l| (l.available.0, l.total.0))
    }

    /// The customer's inference sub-account balance with the provider, neuron.
    pub(crate) async fn sub_balance(&self) -> U256 {
        let c = self.devnet.client(None).await.unwrap();
        c.inference()
            .get_account(self.customer.address(), self.provider)
            .await
            .unwrap()
            .map(|a| a.balance.0)
            .unwrap_or_default()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}
