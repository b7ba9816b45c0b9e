//! The server: configuration, the shared state, the router and the loopback listener.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use rand::RngCore as _;

use crate::error::{Error, Result};
use crate::guard::{GuardRules, guard};
use crate::metrics::ProviderView;
use crate::{account, assets, chat, finetune, metrics, providers};

/// Largest request body the API accepts (a fine-tuning dataset is the largest thing a page sends).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Settings of the dashboard.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Port on 127.0.0.1 (0 = any free port). The dashboard never listens beyond loopback.
    pub port: u16,
    /// A provider's metrics endpoint (`http://host:port/metrics`) for the Provider view; the page can set another.
    pub provider_metrics: Option<String>,
    /// The fine-tuning broker's base URL, when the customer uses one (the Fine-tuning page's task API).
    pub broker_url: Option<String>,
    /// How often the Provider view samples the metrics endpoint for its charts.
    pub metrics_every: Duration,
    /// Timeout of each provider health probe shown on the Providers page.
    pub probe_timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            port: 4000,
            provider_metrics: None,
            broker_url: None,
            metrics_every: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) client: zg_client::Client,
    pub(crate) cfg: WebConfig,
    pub(crate) http: reqwest::Client,
    pub(crate) view: Mutex<ProviderView>,
    /// The customer's key for 0G's fine-tuning signatures and the model key unwrap (never sent anywhere).
    pub(crate) key: Option<zg_finetune::SigningKey>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A dashboard bound to its port, not yet serving. [`Dashboard::url`] carries the session token.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: String,
    router: Router,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes from the OS generator, hex: the per-session token.
fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Dashboard {
    /// Binds 127.0.0.1:`cfg.port` and builds the router around `client` (which holds the customer's key; the
    /// page never sees it). A fresh session token is drawn from the OS random generator.
    pub async fn bind(client: zg_client::Client, cfg: WebConfig) -> Result<Self> {
        Self::bind_inner(client, None, cfg).await
    }

    /// Like [`Dashboard::bind`], also holding the customer's secp256k1 key for fine-tuning: 0G's task, dataset
    /// and download signatures, and unwrapping the model key a settlement reveals. It must be the key of
    /// `client` (checked).
    pub async fn bind_with_key(client: zg_client::Client, key: [u8; 32], cfg: WebConfig) -> Result<Self> {
        let key = zg_finetune::SigningKey::from_slice(&key)
            .map_err(|_| Error::BadRequest("the customer key is not a secp256k1 key".into()))?;
        if zg_finetune::sig::address_of(&key) != client.address() {
            return Err(Error::BadRequest(
                "the fine-tuning key is not the key the dashboard's client signs with".into(),
            ));
        }
        Self::bind_inner(client, Some(key), cfg).await
    }

    async fn bind_inner(
        client: zg_client::Client,
        key: Option<zg_finetune::SigningKey>,
        cfg: WebConfig,
    ) -> Result<Self> {
        let port = cfg.port;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|source| Error::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { port, source })?;
        let token = new_token();
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.probe_timeout)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Upstream {
                what: "building the HTTP client".into(),
                reason: e.to_string(),
            })?;
        let view = ProviderView::new(cfg.provider_metrics.clone());
        let state = AppState(Arc::new(Inner {
            client,
            cfg,
            http,
            view: Mutex::new(view),
            key,
        }));
        metrics::spawn_sampler(state.clone());
        // Cannot fail: the token is 64 hex digits, above ApiKey::MIN_LEN and printable.
        let rules = GuardRules::new(addr.port(), &token)
            .map_err(|e| Error::Serve(std::io::Error::other(format!("session token: {e}"))))?;
        let router = router(state, rules);
        Ok(Self {
            listener,
            addr,
            token,
            router,
        })
    }

    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open: the token rides in the fragment, which browsers never send to a server or a log.
    pub fn url(&self) -> String {
        format!("http://{}/#token={}", self.addr, self.token)
    }

    /// The session token (tests; the CLI prints [`Dashboard::url`] only).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(Error::Serve)
    }
}

/// The dashboard's router: the embedded pages and the JSON API, all behind the guard.
pub(crate) fn router(state: AppState, rules: GuardRules) -> Router {
    let api = Router::new()
        .route("/api/session", get(account::session))
        .route("/api/account", get(account::account))
        .route("/api/tx/preview", post(account::preview))
        .route("/api/tx/send", post(account::send))
        .route("/api/providers", get(providers::list))
        .route("/api/providers/{addr}/verify", post(providers::verify))
        .route("/api/providers/{addr}/acknowledge", post(providers::acknowledge))
        .route("/api/chat/{addr}", post(chat::chat))
        .route("/api/chat/{addr}/balance", get(chat::balance))
        .route("/api/tokens/{addr}/secret", post(chat::secret))
        .route("/api/tokens/{addr}/revoke", post(chat::revoke))
        .route("/api/provider-view", get(metrics::view))
        .route("/api/provider-view/target", post(metrics::set_target))
        .route("/api/finetune", get(finetune::overview))
        .route("/api/finetune/estimate", post(finetune::estimate))
        .route(
            "/api/finetune/acknowledge-signer",
            post(finetune::acknowledge_signer),
        )
        .route("/api/finetune/tasks", post(finetune::create))
        .route("/api/finetune/tasks/{provider}/{id}", get(finetune::task))
        .route(
            "/api/finetune/tasks/{provider}/{id}/acknowledge",
            post(finetune::acknowledge),
        )
        .route(
            "/api/finetune/tasks/{provider}/{id}/decrypt",
            post(finetune::decrypt),
        )
        .route("/api/finetune/tasks/{provider}/{id}/model", get(finetune::model))
        .with_state(state);
    Router::new()
        .merge(assets::routes())
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(rules, guard))
}
