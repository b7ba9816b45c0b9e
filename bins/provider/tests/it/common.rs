//! Shared helpers: an in-process provider over loopback with in-memory chain accounts, and 0G tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use zg_billing::{
    ChainAccount, Domains, EthSigner, Ledger, LedgerConfig, Prices, SessionClaims, SessionToken,
};
use zg_provider::{
    AccountSource, BackendChoice, CoreConfig, Limits, Metrics, Provider, StaticAccounts, Tee, Upstream,
    now_ms,
};

pub const INPUT_PRICE: u64 = 1_000_000_000;
pub const OUTPUT_PRICE: u64 = 2_000_000_000;

pub struct Offline {
    pub url: String,
    pub provider: Provider,
    pub accounts: Arc<StaticAccounts>,
    /// Chain reads of customers' accounts (`getAccount` RPCs) so far.
    pub lookups: Arc<AtomicU64>,
    pub me: Address,
    pub domains: Domains,
    pub _dir: tempfile::TempDir,
}

pub struct Opts {
    pub upstream: Option<String>,
    /// Serve the built-in SmolLM2 (the GGUF `just setup` fetches into `models/`) instead of the n-gram.
    pub smollm2: bool,
    /// The built-in SmolLM2's generation slots.
    pub smollm2_slots: usize,
    pub max_concurrency: usize,
    pub limits: Limits,
    /// How long a read account is trusted (zero: read on every request).
    pub account_ttl: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            upstream: None,
            smollm2: false,
            smollm2_slots: 2,
            max_concurrency: 64,
            limits: Limits {
                // Long enough that a test's repeated requests of one stranger all meet the cache.
                unknown_account_ttl: Duration::from_secs(60),
                ..Limits::default()
            },
            account_ttl: Duration::ZERO,
        }
    }
}

/// An [`AccountSource`] that counts the chain reads it answers.
struct Counting {
    inner: Arc<StaticAccounts>,
    calls: Arc<AtomicU64>,
}

impl AccountSource for Counting {
    fn account(
        &self,
        user: Address,
    ) -> futures::future::BoxFuture<'_, Result<Option<zg_billing::ChainAccount>, zg_billing::BoxError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.account(user)
    }
}

pub async fn offline(opts: Opts) -> Offline {
    let dir = tempfile::tempdir().unwrap();
    let me = EthSigner::random().address();
    let domains = Domains::new(31337, Address::repeat_byte(0x42));
    let tee = Arc::new(Tee::start(BackendChoice::Simulated, dir.path(), None, "test".into()).unwrap());
    let ledger = Ledger::open(LedgerConfig::new(
        dir.path().join("ledger.sqlite"),
        me,
        domains.clone(),
    ))
    .unwrap();
    let (upstream, model) = match &opts.upstream {
        None if opts.smollm2 => (
            Upstream::Llm(smollm2(opts.smollm2_slots)),
            zg_provider::SMOLLM2_MODEL_ID.to_owned(),
        ),
        None => (
            Upstream::builtin(zg_provider::SHIPPED_CORPUS),
            zg_provider::DEMO_MODEL_ID.to_owned(),
        ),
        Some(u) => (
            Upstream::http(u, None, Duration::from_secs(5)).unwrap(),
            "fake".to_owned(),
        ),
    };
    let accounts = Arc::new(StaticAccounts::default());
    let lookups = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(Counting {
        inner: Arc::clone(&accounts),
        calls: Arc::clone(&lookups),
    });
    let provider = Provider::new(
        me,
        CoreConfig {
            model,
            prices: Prices {
                input: U256::from(INPUT_PRICE),
                output: U256::from(OUTPUT_PRICE),
            },
            max_concurrency: opts.max_concurrency,
            retry_after_secs: 2,
            upstream_timeout: Duration::from_secs(5),
            account_ttl: opts.account_ttl,
            default_max_tokens: 256,
            max_skew_ms: 60_000,
            limits: opts.limits.clone(),
        },
        ledger,
        tee,
        upstream,
        counting,
        Arc::new(Metrics::default()),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let p2 = provider.clone();
    tokio::spawn(async move { zg_provider::serve(l, p2, std::future::pending()).await.unwrap() });
    Offline {
        url: format!("http://{addr}"),
        provider,
        accounts,
        lookups,
        me,
        domains,
        _dir: dir,
    }
}

/// The built-in SmolLM2 upstream on the repository's `models/` GGUF (a missing file fails the test: run `just setup`),
/// `slots` generations at a time.
pub fn smollm2(slots: usize) -> zg_provider::LlmUpstream {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../")
        .join(zg_provider::DEFAULT_MODEL_PATH);
    assert!(path.is_file(), "{} is missing: run `just setup`", path.display());
    zg_provider::LlmUpstream::load(
        &path,
        zg_provider::SMOLLM2_MODEL_ID,
        slots,
        Duration::from_secs(60),
    )
    .unwrap()
}

/// A funded customer with a 0G session token for `provider`.
pub fn customer(o: &Offline, balance: u128) -> (EthSigner, String) {
    let c = EthSigner::random();
    o.accounts.set(
        c.address(),
        ChainAccount {
            balance: U256::from(balance),
            tee_signer_acknowledged: true,
            ..Default::default()
        },
    );
    let t = token(&c, o.me, 1, now_ms() + 3_600_000, 0);
    (c, t)
}

pub fn token(c: &EthSigner, provider: Address, token_id: u8, expires_at: u64, generation: u64) -> String {
    let claims = SessionClaims {
        address: c.address(),
        provider: provider.to_string().to_lowercase(),
        timestamp: now_ms() - 1000,
        expires_at,
        nonce: hex::encode(rand::random::<[u8; 8]>()),
        generation,
        token_id,
    };
    SessionToken::create(c, &claims).unwrap().1
}

pub fn fee(prompt: u64, completion: u64) -> U256 {
    U256::from(prompt * INPUT_PRICE + completion * OUTPUT_PRICE)
}

pub fn sha(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}
