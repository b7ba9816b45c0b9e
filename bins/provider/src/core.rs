//! The one core that HTTP and gRPC share: the one place a request is authenticated
//! ([`Provider::authorize`] then admission in [`Provider::serve`]), the one place a fee is charged and the keys
//! sign ([`Provider::finish`]).
//!
//! Who can call what, and the worst they can do:
//! - **Anyone** can send credentials. [`Provider::authorize`] checks signatures and the stateless token rules
//!   first (CPU only, no chain call, no body read); a forged or garbage credential costs one signature check.
//!   Only a valid signature leads to a chain read of the account, which is cached (unknown accounts too, for
//!   [`Limits::unknown_account_ttl`]) and limited to [`Limits::max_account_lookups`] in flight.
//! - **An authenticated customer** gets a concurrency slot, then its body is read (bounded in size and time),
//!   parsed top level only, and admitted against its balance: a native request whose signed fee cap is below
//!   the request's worst case is refused, so no request can be served for free.
//! - **A customer who stops reading or leaves** is billed for what the upstream generated (the stream is read
//!   to its usage report, for at most [`Limits::drain_timeout`]); a connection whose writes stall longer than
//!   [`Limits::write_timeout`] is dropped, freeing its slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use axum::body::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zg_billing::{
    Admission, BoxError, ChainAccount, Completion, Endpoint, Ledger, Meter, Prices, Receipt, ReceiptRecord,
    SessionToken, SessionVerifier, SignedRequest, StreamUsage, Usage, VerifiedRequest, billed_fee,
    upstream_body, usage_from_json,
};

use crate::adapters::AdapterRegistry;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::tee::Tee;
use crate::upstream::{Route, UpBody, Upstream};

/// Where the provider reads customers' on-chain accounts (balance, refunds, token generation and
/// revocation bitmap). The chain adapter implements it; tests and benches use [`StaticAccounts`].
pub trait AccountSource: Send + Sync + 'static {
    /// `getAccount(user, provider)`; `Ok(None)` when the customer has no sub-account.
    fn account(&self, user: Address) -> BoxFuture<'_, std::result::Result<Option<ChainAccount>, BoxError>>;
}

/// Accounts held in memory (tests, benches, offline demos).
#[derive(Debug, Default)]
pub struct StaticAccounts(Mutex<HashMap<Address, ChainAccount>>);

impl StaticAccounts {
    /// Sets (or replaces) an account.
    pub fn set(&self, user: Address, account: ChainAccount) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(user, account);
        }
    }
}

impl AccountSource for StaticAccounts {
    fn account(&self, user: Address) -> BoxFuture<'_, std::result::Result<Option<ChainAccount>, BoxError>> {
        let a = self.0.lock().ok().and_then(|m| m.get(&user).copied());
        Box::pin(async move { Ok(a) })
    }
}

impl AccountSource for zg_chain::SettlementAdapter {
    fn account(&self, user: Address) -> BoxFuture<'_, std::result::Result<Option<ChainAccount>, BoxError>> {
        Box::pin(async move { self.get_account(user).await.map_err(|e| Box::new(e) as BoxError) })
    }
}

/// The customer's credentials as they arrived (HTTP headers or gRPC fields).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `Authorization` (0G session token).
    pub authorization: Option<String>,
    /// `ZG-Request` (native signed request + voucher).
    pub zg_request: Option<String>,
}

/// Bounds on what a peer can make the provider hold or do before, and while, it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// HTTP connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time a peer has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a peer has to send a request body once its credentials were accepted.
    pub body_timeout: Duration,
    /// Longest a response write may stall (a peer that stops reading) before the connection is dropped.
    pub write_timeout: Duration,
    /// Longest the provider keeps reading an upstream stream after its client left, to bill its usage.
    pub drain_timeout: Duration,
    /// How long an account without a sub-account is remembered before the chain is asked again.
    pub unknown_account_ttl: Duration,
    /// Chain reads of customers' accounts in flight at once.
    pub max_account_lookups: usize,
    /// Fresh attestation quotes a peer may ask for at once (token bucket size).
    pub quote_burst: u32,
    /// Fresh attestation quotes a peer earns per minute.
    pub quotes_per_minute: u32,
    /// Oldest never-expiring 0G session token accepted, in milliseconds.
    pub max_unexpiring_token_age_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            unknown_account_ttl: Duration::from_secs(2),
            max_account_lookups: 32,
            quote_burst: 4,
            quotes_per_minute: 12,
            max_unexpiring_token_age_ms: zg_billing::DEFAULT_MAX_UNEXPIRING_AGE_MS,
        }
    }
}

/// Provider settings the core needs.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The model id put into receipts (what is registered on chain).
    pub model: String,
    /// Prices per token, neuron.
    pub prices: Prices,
    /// Requests served at once; more get 429.
    pub max_concurrency: usize,
    /// `Retry-After` seconds sent with 429.
    pub retry_after_secs: u64,
    /// Per-request upstream timeout (time to headers; for streams, also the longest gap between chunks).
    pub upstream_timeout: Duration,
    /// How long a customer's on-chain account is trusted before it is read again.
    pub account_ttl: Duration,
    /// Completion tokens a request that sets no `max_tokens` is bounded by (and forwarded with).
    pub default_max_tokens: u64,
    /// Allowed client clock skew for session tokens.
    pub max_skew_ms: u64,
    /// Connection, time and rate limits.
    pub limits: Limits,
}

pub use zg_billing::{ReceiptJson, UsageJson};

/// One item of a streamed exchange.
#[derive(Debug)]
pub enum StreamItem {
    /// Upstream bytes, forwarded as they are.
    Data(Bytes),
    /// The receipt, after the last byte (the stream ends after it).
    Receipt(Box<ReceiptJson>),
    /// The upstream broke mid-stream (nothing is billed).
    Failed(String),
}

/// What the client gets back.
#[derive(Debug)]
pub enum ExchangeBody {
    /// Complete body; `receipt` is `None` for upstream errors (not billed).
    Full {
        /// The bytes.
        bytes: Bytes,
        /// The receipt.
        receipt: Option<Box<ReceiptJson>>,
    },
    /// A stream; the last item is the receipt.
    Stream(mpsc::Receiver<StreamItem>),
}

/// A served (or upstream-failed) exchange.
#[derive(Debug)]
pub struct Exchange {
    /// HTTP status (the upstream's).
    pub status: u16,
    /// Content type (the upstream's).
    pub content_type: String,
    /// `ZG-Res-Key` (only for successful exchanges).
    pub res_key: Option<String>,
    /// Whether the customer used a native signed request (gets the SSE receipt event).
    pub native: bool,
    /// The body.
    pub body: ExchangeBody,
}

/// One stored exchange as the 0G signature endpoint serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// 0G text: `hex(sha256(request)):hex(sha256(response))`.
    pub text: String,
    /// EIP-191 signature of `text` by the TEE settlement key, `0x`-hex (made on read, RFC 6979).
    pub signature: String,
    /// The native receipt as JSON (see README "Receipt JSON").
    pub native: String,
}

/// A customer whose credentials verified (and whose account is known); admit it with [`Provider::serve`].
#[derive(Debug, Clone)]
pub enum Authorized {
    /// A 0G session token.
    Session(Arc<SessionToken>),
    /// A native signed request (signatures checked, voucher in low-s form).
    Native(Box<VerifiedRequest>),
}

/// A concurrency slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.inflight(-1);
    }
}

/// What the provider knows about customers' on-chain accounts beyond the ledger: when each was read, and
/// which addresses have no account (so a stranger costs one chain read per TTL, not one per request).
#[derive(Debug, Default)]
struct AccountCache {
    read_at: HashMap<Address, (Instant, bool)>,
}

/// Most addresses the account cache holds; it is cleared when full (then refills).
const ACCOUNT_CACHE_CAPACITY: usize = 100_000;

/// Per-peer token buckets for fresh attestation quotes.
#[derive(Debug, Default)]
struct QuoteBuckets {
    peers: HashMap<IpAddr, (f64, Instant)>,
}

/// Most peers the quote limiter tracks; it is cleared when full.
const QUOTE_PEERS_CAPACITY: usize = 100_000;

struct Inner {
    provider: Address,
    config: CoreConfig,
    ledger: Ledger,
    verifier: SessionVerifier,
    meter: Meter,
    tee: Arc<Tee>,
    upstream: Upstream,
    accounts: Arc<dyn AccountSource>,
    account_cache: Mutex<AccountCache>,
    lookups: Semaphore,
    /// When an admission refused for balance last re-read the customer's account (one re-read per TTL).
    reread: Mutex<HashMap<Address, Instant>>,
    quotes: Mutex<QuoteBuckets>,
    quote_slots: Arc<Semaphore>,
    limiter: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// LoRA adapters deployed here (`ft-…` models), each served to its owner only.
    adapters: AdapterRegistry,
}

/// The provider's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Provider(Arc<Inner>);

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("provider", &self.0.provider)
            .field("model", &self.0.config.model)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A `ZG-Res-Key`: 32 hex = 6 bytes of big-endian Unix milliseconds, then 80 random bits. Keys
/// that grow with time land at the right edge of the receipts table's B-tree, so a group commit
/// rewrites one or two pages instead of one page per receipt (fully random keys made the receipt
/// writer the provider's largest disk and CPU cost); 80 random bits per millisecond keep keys
/// unguessable.
fn random_key() -> String {
    let mut k = [0u8; 16];
    let (time, random) = k.split_at_mut(6);
    // `now_ms()` is < 2^48 until the year 10889: the top two bytes are zero.
    time.copy_from_slice(&now_ms().to_be_bytes()[2..]);
    random.copy_from_slice(&rand::random::<[u8; 10]>());
    hex::encode(k)
}

/// Releases an admission when dropped without being finished (client gone, upstream broke).
struct Guard {
    p: Provider,
    admission: Option<Admission>,
    _slot: Slot,
}

impl Guard {
    fn take(&mut self) -> Option<Admission> {
        self.admission.take()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(a) = self.admission.take() {
            let ledger = self.p.0.ledger.clone();
            // Dropped inside a runtime (a handler or a stream task); releasing is async.
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    if let Err(e) = ledger.release(a).await {
                        tracing::warn!(error = %e, "could not release a reservation");
                    }
                });
            }
        }
    }
}

fn endpoint(route: Route) -> Result<Endpoint> {
    match route {
        Route::Chat => Ok(Endpoint::Chat),
        Route::Completions => Ok(Endpoint::Completions),
        Route::Embeddings => Ok(Endpoint::Embeddings),
        Route::Models => Err(Error::BadRequest("models is not a billed route".into())),
    }
}

fn sha(bytes: &[u8]) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(bytes)))
}

impl Provider {
    /// Assembles the core.
    pub fn new(
        provider: Address,
        config: CoreConfig,
        ledger: Ledger,
        tee: Arc<Tee>,
        upstream: Upstream,
        accounts: Arc<dyn AccountSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let verifier = SessionVerifier::new(provider, config.max_skew_ms)
            .with_max_unexpiring_age(config.limits.max_unexpiring_token_age_ms);
        let meter = Meter::new(config.prices);
        let limiter = Arc::new(Semaphore::new(config.max_concurrency));
        let lookups = Semaphore::new(config.limits.max_account_lookups.max(1));
        Provider(Arc::new(Inner {
            provider,
            config,
            ledger,
            verifier,
            meter,
            tee,
            upstream,
            accounts,
            account_cache: Mutex::new(AccountCache::default()),
            lookups,
            reread: Mutex::new(HashMap::new()),
            quotes: Mutex::new(QuoteBuckets::default()),
            // Quote generation is slow (TDX: tens of ms, a socket round trip on dstack): two at a time.
            quote_slots: Arc::new(Semaphore::new(2)),
            limiter,
            metrics,
            adapters: AdapterRegistry::default(),
        }))
    }

    /// This provider's address.
    pub fn address(&self) -> Address {
        self.0.provider
    }

    /// Settings.
    pub fn config(&self) -> &CoreConfig {
        &self.0.config
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// The TEE.
    pub fn tee(&self) -> &Tee {
        &self.0.tee
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }

    /// The LoRA adapters served (see [`crate::adapters`]).
    pub fn adapters(&self) -> &AdapterRegistry {
        &self.0.adapters
    }

    /// The adapter a request's `model` names (`"model": "ft-…"`, from `zg_billing::UpstreamBody::model`, the parse
    /// that decides what is forwarded), for `user`: `None` for any other model (the base
    /// serves it); an unknown adapter and another customer's are refused alike, 404 `model_not_found` (adapter
    /// names derive from task ids that are public on chain: a distinct answer would tell anyone with an account
    /// which provider serves whose adapter). Before admission and the upstream: nothing is reserved, billed or
    /// generated.
    pub fn adapter_for(&self, model: Option<&str>, user: Address) -> Result<Option<String>> {
        let Some(model) = model.filter(|m| zg_adapters::is_adapter_name(m)) else {
            return Ok(None);
        };
        match self.0.adapters.get(model) {
            Some(d) if d.owner == user => Ok(Some(model.to_owned())),
            _ => Err(Error::Adapter {
                code: "model_not_found",
                status: axum::http::StatusCode::NOT_FOUND,
                message: format!(
                    "model {:?} is not served here to {user} (no adapter of that name is yours)",
                    model.chars().take(zg_adapters::MAX_NAME_LEN).collect::<String>()
                ),
            }),
        }
    }

    /// Makes sure the ledger has a fresh copy of the customer's on-chain account: the cached one while younger
    /// than the TTL, else one chain read (at most [`Limits::max_account_lookups`] at once). For billed requests
    /// (`negative`) an address without an account is remembered for [`Limits::unknown_account_ttl`]; the 0G
    /// `unsettledfee` call, which the SDK makes before it funds a new sub-account, always asks the chain, so the
    /// request that follows the funding is not refused from the cache. Nothing is stored in the ledger for an
    /// unknown address.
    async fn refresh_account(&self, user: Address, negative: bool) -> Result<()> {
        let limits = &self.0.config.limits;
        let cached = self
            .0
            .account_cache
            .lock()
            .ok()
            .and_then(|c| c.read_at.get(&user).copied());
        match cached {
            Some((at, true))
                if at.elapsed() < self.0.config.account_ttl
                    && self.0.ledger.chain_account(user).is_some() =>
            {
                return Ok(());
            }
            Some((at, false)) if negative && at.elapsed() < limits.unknown_account_ttl => {
                return Err(zg_billing::Error::UnknownAccount { user }.into());
            }
            _ => {}
        }
        let remember = |known: bool| {
            if let Ok(mut c) = self.0.account_cache.lock() {
                if c.read_at.len() >= ACCOUNT_CACHE_CAPACITY {
                    c.read_at.clear();
                }
                c.read_at.insert(user, (Instant::now(), known));
            }
        };
        let read = {
            let _permit = self.0.lookups.acquire().await.map_err(|_| Error::Chain {
                op: "getAccount",
                source: "account lookups closed".into(),
            })?;
            self.0.accounts.account(user).await
        };
        match read {
            Ok(Some(a)) => {
                self.0.ledger.set_chain_account(user, a)?;
                remember(true);
                Ok(())
            }
            Ok(None) => {
                if negative {
                    remember(false);
                }
                Err(zg_billing::Error::UnknownAccount { user }.into())
            }
            Err(e) if self.0.ledger.chain_account(user).is_some() => {
                tracing::warn!(%user, error = %e, "chain unavailable; using the cached account");
                Ok(())
            }
            Err(source) => Err(Error::Chain {
                op: "getAccount",
                source,
            }),
        }
    }

    /// Authenticates a 0G session token: signature, provider, time and age first (no chain call), then
    /// generation and revocation against the account read from the chain.
    pub async fn authenticate(&self, authorization: &str) -> Result<Arc<SessionToken>> {
        self.authenticate_with(authorization, true).await
    }

    async fn authenticate_with(&self, authorization: &str, negative: bool) -> Result<Arc<SessionToken>> {
        let (token, cached) = self.0.verifier.lookup_or_parse(authorization)?;
        self.0.verifier.check_stateless(&token, now_ms())?;
        self.refresh_account(token.user(), negative).await?;
        let ledger = &self.0.ledger;
        Ok(self
            .0
            .verifier
            .accept(authorization, token, cached, now_ms(), |u| ledger.token_state(u))?)
    }

    /// Checks a native envelope's signatures (no chain call), then reads the customer's account.
    async fn authenticate_native(&self, envelope: &str) -> Result<VerifiedRequest> {
        let signed = SignedRequest::from_header(envelope)?;
        let verified = self.0.ledger.verify_native(&signed)?;
        self.refresh_account(signed.request.user, true).await?;
        Ok(verified)
    }

    /// `unsettledfee`: fees `user` owes that are not settled yet, for an authenticated caller.
    pub async fn unsettled_fee(&self, creds: &Credentials, user: &str) -> Result<U256> {
        let auth = creds.authorization.as_deref().ok_or(Error::NoCredentials)?;
        let token = self.authenticate_with(auth, false).await?;
        let asked: Address = user
            .parse()
            .map_err(|_| Error::BadRequest(format!("{user:?} is not an address")))?;
        if asked != token.user() {
            return Err(Error::Forbidden {
                token_user: token.user(),
                asked: user.to_owned(),
            });
        }
        Ok(self.0.ledger.unsettled_fee(asked))
    }

    /// gRPC `GetUnsettledFee`: the token's own customer and what it owes (same checks as [`Provider::unsettled_fee`]).
    pub async fn own_unsettled_fee(&self, authorization: &str) -> Result<(Address, U256)> {
        let token = self.authenticate_with(authorization, false).await?;
        let user = token.user();
        Ok((user, self.0.ledger.unsettled_fee(user)))
    }

    /// Authenticates a billed request from its credentials alone, before its body is read: signatures and
    /// stateless rules first, then the account (see the module doc). A native request must be signed for this
    /// route's service.
    pub async fn authorize(&self, route: Route, creds: &Credentials) -> Result<Authorized> {
        let endpoint = endpoint(route)?;
        if let Some(env) = creds.zg_request.as_deref() {
            let signed = SignedRequest::from_header(env)?;
            if signed.request.service != endpoint.service() {
                return Err(zg_billing::Error::WrongService {
                    signed: signed.request.service,
                    route: endpoint.service(),
                }
                .into());
            }
            let verified = self.0.ledger.verify_native(&signed)?;
            self.refresh_account(signed.request.user, true).await?;
            return Ok(Authorized::Native(Box::new(verified)));
        }
        let auth = creds.authorization.as_deref().ok_or(Error::NoCredentials)?;
        Ok(Authorized::Session(self.authenticate(auth).await?))
    }

    /// After a refusal for balance, reads the account from chain again (true) unless that was already done
    /// within the account TTL (false). The official 0G SDK calls `unsettledfee` (which caches the account),
    /// tops the sub-account up with `transferFund`, then sends the request at once: without the re-read the
    /// request is refused on the balance from before the top-up. Callers are authenticated (a verified token
    /// or signed request for an existing account), and the limit keeps an empty account from turning every
    /// request into an RPC: at most two `getAccount` per customer per TTL.
    async fn reread_account(&self, user: Address) -> Result<bool> {
        let ttl = self.0.config.account_ttl;
        {
            let Ok(mut m) = self.0.reread.lock() else {
                return Ok(false);
            };
            if m.get(&user).is_some_and(|t| t.elapsed() < ttl) {
                return Ok(false);
            }
            if m.len() >= ACCOUNT_CACHE_CAPACITY {
                m.clear();
            }
            m.insert(user, Instant::now());
        }
        if let Ok(mut c) = self.0.account_cache.lock() {
            c.read_at.remove(&user);
        }
        self.refresh_account(user, true).await?;
        Ok(true)
    }

    /// A concurrency slot, or [`Error::Saturated`].
    pub fn slot(&self) -> Result<Slot> {
        let permit = Arc::clone(&self.0.limiter)
            .try_acquire_owned()
            .map_err(|_| Error::Saturated {
                limit: self.0.config.max_concurrency,
                retry_after_secs: self.0.config.retry_after_secs,
            })?;
        self.0.metrics.inflight(1);
        Ok(Slot {
            _permit: permit,
            metrics: Arc::clone(&self.0.metrics),
        })
    }

    /// Serves a billed OpenAI request end to end when the body is already in hand (gRPC): authorize, slot,
    /// then [`Provider::serve`]. Rejections are counted.
    pub async fn exchange(&self, route: Route, creds: Credentials, body: Bytes) -> Result<Exchange> {
        let r = async {
            let auth = self.authorize(route, &creds).await?;
            let slot = self.slot()?;
            self.serve(auth, slot, route, body).await
        }
        .await;
        if let Err(e) = &r {
            self.0.metrics.rejected(e.code());
        }
        r
    }

    /// Admits an authorized request with its body and serves it: the body is read top level once (its
    /// worst-case bound, the `stream` flag, the body to forward), a native request's fee cap must cover the
    /// bound, a session request reserves it; then forward, meter, sign.
    pub async fn serve(&self, auth: Authorized, slot: Slot, route: Route, body: Bytes) -> Result<Exchange> {
        let endpoint = endpoint(route)?;
        let up_body = upstream_body(endpoint, &body, self.0.config.default_max_tokens)?;
        let bound = up_body.bound.fee(&self.0.config.prices)?;
        let now = now_ms();
        let admit = || async {
            match &auth {
                Authorized::Native(v) => self.0.ledger.admit_verified(v, &body, bound, now).await,
                Authorized::Session(token) => self.0.ledger.admit_session(token, bound, now).await,
            }
        };
        let user = match &auth {
            Authorized::Native(v) => v.request().user,
            Authorized::Session(token) => token.user(),
        };
        // An adapter is served to its owner only; the receipt names the model that served.
        let model = self
            .adapter_for(up_body.model.as_deref(), user)?
            .unwrap_or_else(|| self.0.config.model.clone());
        let admission = match admit().await {
            // The official SDK funds (or acknowledges) right before it sends: read the chain once more.
            Err(
                zg_billing::Error::InsufficientBalance { .. }
                | zg_billing::Error::TeeSignerNotAcknowledged { .. },
            ) if self.reread_account(user).await? => admit().await?,
            r => r?,
        };
        let forward = up_body.rewritten.map(Bytes::from).unwrap_or_else(|| body.clone());
        let native = admission.nonce.is_some();
        let mut guard = Guard {
            p: self.clone(),
            admission: Some(admission),
            _slot: slot,
        };
        let started = Instant::now();
        let up = self.0.upstream.send(route, forward).await?; // guard releases on error
        self.0.metrics.upstream_latency(started.elapsed().as_secs_f64());
        let request_hash = sha(&body);
        if !(200..300).contains(&up.status) {
            // Upstream errors pass through and are not billed (the guard releases the reservation).
            let bytes = match up.body {
                UpBody::Full(b) => b,
                UpBody::Stream(mut s) => {
                    let mut v = Vec::new();
                    while let Some(Ok(c)) = s.next().await {
                        v.extend_from_slice(&c);
                        if v.len() > 1 << 20 {
                            break;
                        }
                    }
                    Bytes::from(v)
                }
            };
            self.0.metrics.request(route.label(), up.status);
            return Ok(Exchange {
                status: up.status,
                content_type: up.content_type,
                res_key: None,
                native,
                body: ExchangeBody::Full { bytes, receipt: None },
            });
        }
        let key = random_key();
        match up.body {
            UpBody::Full(bytes) => {
                let usage = usage_from_json(&bytes).unwrap_or(None);
                let admission = guard
                    .take()
                    .ok_or_else(|| Error::BadRequest("admission lost".into()))?;
                let receipt = self
                    .finish(admission, key.clone(), request_hash, sha(&bytes), usage, model)
                    .await?;
                self.0.metrics.request(route.label(), up.status);
                drop(guard);
                Ok(Exchange {
                    status: up.status,
                    content_type: up.content_type,
                    res_key: Some(key),
                    native,
                    body: ExchangeBody::Full {
                        bytes,
                        receipt: Some(Box::new(receipt)),
                    },
                })
            }
            UpBody::Stream(stream) => {
                let (tx, rx) = mpsc::channel::<StreamItem>(16);
                let p = self.clone();
                tokio::spawn(p.relay(stream, tx, guard, route, (key.clone(), request_hash, model)));
                Ok(Exchange {
                    status: up.status,
                    content_type: up.content_type,
                    res_key: Some(key),
                    native,
                    body: ExchangeBody::Stream(rx),
                })
            }
        }
    }

    /// Forwards an upstream stream to the client chunk by chunk, hashing what it hands over, then bills the
    /// usage the stream reported. If the client leaves, the rest of the stream is read (not forwarded) up to
    /// its usage report, for at most [`Limits::drain_timeout`]: what the upstream generated is billed, never
    /// nothing. An upstream that breaks or idles is not billed.
    async fn relay(
        self,
        mut stream: futures::stream::BoxStream<'static, std::result::Result<Bytes, String>>,
        tx: mpsc::Sender<StreamItem>,
        mut guard: Guard,
        route: Route,
        (key, request_hash, model): (String, B256, String),
    ) {
        let idle = self.0.config.upstream_timeout;
        let mut hasher = Sha256::new();
        let mut usage = StreamUsage::default();
        let mut drain_until: Option<Instant> = None;
        loop {
            let wait = match drain_until {
                Some(t) => idle.min(t.saturating_duration_since(Instant::now())),
                None => idle,
            };
            match tokio::time::timeout(wait, stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    usage.push(&chunk);
                    if drain_until.is_none() {
                        hasher.update(&chunk);
                        if tx.send(StreamItem::Data(chunk)).await.is_err() {
                            tracing::info!(%key, "client left mid-stream; reading the upstream to its usage");
                            drain_until = Some(Instant::now() + self.0.config.limits.drain_timeout);
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    let _ = tx
                        .send(StreamItem::Failed(format!("upstream stream broke: {e}")))
                        .await;
                    self.0.metrics.request(route.label(), 502);
                    return;
                }
                Err(_) if drain_until.is_some() => {
                    tracing::warn!(%key, "upstream did not report usage before the drain deadline; not billed");
                    self.0.metrics.request(route.label(), 499);
                    return;
                }
                Err(_) => {
                    let _ = tx
                        .send(StreamItem::Failed(format!(
                            "upstream idle for {} s",
                            idle.as_secs()
                        )))
                        .await;
                    self.0.metrics.request(route.label(), 504);
                    return;
                }
            }
        }
        let response_hash = B256::from(<[u8; 32]>::from(hasher.finalize()));
        let Some(admission) = guard.take() else { return };
        match self
            .finish(admission, key, request_hash, response_hash, usage.finish(), model)
            .await
        {
            Ok(r) if drain_until.is_none() => {
                self.0.metrics.request(route.label(), 200);
                let _ = tx.send(StreamItem::Receipt(Box::new(r))).await;
            }
            Ok(_) => self.0.metrics.request(route.label(), 499),
            Err(e) => {
                tracing::error!(error = %e, "could not record a served stream");
                let _ = tx
                    .send(StreamItem::Failed(
                        "provider could not record the exchange".into(),
                    ))
                    .await;
            }
        }
        drop(guard);
    }

    /// Meters, signs (native ed25519 receipt; the 0G EIP-191 text is signed on read) and records the request,
    /// its fee and its receipts in one ledger commit: the only place a fee is charged and the TEE keys sign
    /// responses. The fee is [`billed_fee`]: usage × prices, never above the admission's cap.
    async fn finish(
        &self,
        admission: Admission,
        key: String,
        request_hash: B256,
        response_hash: B256,
        usage: Option<Usage>,
        model: String,
    ) -> Result<ReceiptJson> {
        let keys = self.0.tee.keys();
        let fee = match self.0.meter.charge(usage) {
            Ok(f) => f,
            Err(e) => {
                let _ = self.0.ledger.release(admission).await;
                return Err(e.into());
            }
        };
        match (usage, fee) {
            (Some(u), Some(f)) => self.0.metrics.billed(
                u.prompt_tokens,
                u.completion_tokens,
                u128::try_from(f).unwrap_or(u128::MAX),
            ),
            _ => self.0.metrics.unbilled(),
        }
        // The receipt states the fee the ledger bills, so the customer's count and ours agree.
        let fee = billed_fee(&self.0.config.prices, usage, admission.fee_cap)?;
        let nonce = admission.nonce.unwrap_or_default();
        let signed = keys.response.sign(Receipt {
            request_hash,
            response_hash,
            model: model.clone(),
            usage: usage.unwrap_or_default(),
            fee,
            nonce,
        });
        let receipt = ReceiptJson {
            key: key.clone(),
            request_hash,
            response_hash,
            model: model.clone(),
            usage: UsageJson {
                prompt_tokens: usage.map(|u| u.prompt_tokens).unwrap_or(0),
                completion_tokens: usage.map(|u| u.completion_tokens).unwrap_or(0),
            },
            billed: usage.is_some(),
            fee: fee.to_string(),
            nonce: nonce.to_string(),
            signature: format!("0x{}", hex::encode(signed.signature)),
            response_key: format!("0x{}", hex::encode(keys.response.verifying_key().to_bytes())),
        };
        // The 0G EIP-191 signature is made when `GET /v1/proxy/signature/{key}` asks for it
        // ([`Provider::zg_receipt`]): a deterministic function (RFC 6979) of the stored text and the TEE's
        // settlement key, so signing per request only cost CPU.
        let record = ReceiptRecord {
            key,
            text: format!("{}:{}", hex::encode(request_hash), hex::encode(response_hash)),
            native: serde_json::to_string(&receipt).unwrap_or_default(),
        };
        let completion = Completion {
            request_hash,
            response_hash,
            model,
            usage,
            fee,
            receipt_signature: signed.signature.to_vec(),
            receipt: Some(record),
        };
        self.0.ledger.complete(admission, completion, now_ms()).await?;
        Ok(receipt)
    }

    /// The stored receipts under `key`, with the 0G EIP-191 signature of `text` filled in: receipts
    /// are stored unsigned and signed here, on demand, with the TEE's settlement key (deterministic,
    /// RFC 6979: the same text always gets the same signature).
    pub async fn zg_receipt(&self, key: String) -> Result<Option<StoredReceipt>> {
        let Some(r) = self.0.ledger.receipt(key).await? else {
            return Ok(None);
        };
        let sig = self.0.tee.keys().settlement.sign_message(r.text.as_bytes())?;
        Ok(Some(StoredReceipt {
            text: r.text,
            signature: format!("0x{}", hex::encode(sig.as_bytes())),
            native: r.native,
        }))
    }

    /// `GET /v1/proxy/models`: authenticated (a session token, or a native envelope whose signer has an
    /// account: a key anyone can make is not enough), not billed; a native envelope's nonce is not consumed.
    ///
    /// The list names the caller's own adapters and no one else's (an upstream such as vLLM lists every LoRA it
    /// loaded: other customers' entries are dropped).
    pub async fn models(&self, creds: &Credentials) -> Result<(u16, String, Bytes)> {
        let user = if let Some(env) = creds.zg_request.as_deref() {
            self.authenticate_native(env).await?.request().user
        } else {
            let auth = creds.authorization.as_deref().ok_or(Error::NoCredentials)?;
            self.authenticate(auth).await?.user()
        };
        let up = self.0.upstream.send(Route::Models, Bytes::new()).await?;
        let bytes = match up.body {
            UpBody::Full(b) => b,
            UpBody::Stream(_) => Bytes::new(),
        };
        if !(200..300).contains(&up.status) {
            return Ok((up.status, up.content_type, bytes));
        }
        let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok((up.status, up.content_type, bytes));
        };
        let own = self.0.adapters.owned_by(user);
        if let Some(data) = list.get_mut("data").and_then(|d| d.as_array_mut()) {
            data.retain(|m| {
                m.get("id")
                    .and_then(|i| i.as_str())
                    .is_none_or(|id| !zg_adapters::is_adapter_name(id) || own.iter().any(|d| d.name == id))
            });
            for d in &own {
                if !data
                    .iter()
                    .any(|m| m.get("id").and_then(|i| i.as_str()) == Some(d.name.as_str()))
                {
                    data.push(
                        serde_json::json!({"id": d.name, "object": "model", "created": d.deployed_at,
                        "owned_by": d.owner.to_checksum(None), "parent": d.base_model}),
                    );
                }
            }
        }
        Ok((
            up.status,
            "application/json".into(),
            Bytes::from(list.to_string()),
        ))
    }

    /// Takes one fresh-quote token of `peer` (a token bucket of [`Limits::quote_burst`], refilled at
    /// [`Limits::quotes_per_minute`]) and a slot among the two quotes generated at once: a quote costs the TEE
    /// real work and anyone may ask for one.
    pub fn quote_permit(&self, peer: IpAddr) -> Result<OwnedSemaphorePermit> {
        let limits = &self.0.config.limits;
        let per_sec = f64::from(limits.quotes_per_minute) / 60.0;
        let burst = f64::from(limits.quote_burst.max(1));
        let retry = |tokens: f64| {
            let secs = if per_sec > 0.0 {
                (1.0 - tokens) / per_sec
            } else {
                60.0
            };
            Error::RateLimited {
                what: "fresh attestation quotes",
                retry_after_secs: secs.ceil().max(1.0) as u64,
            }
        };
        {
            let mut q = self.0.quotes.lock().map_err(|_| retry(0.0))?;
            if q.peers.len() >= QUOTE_PEERS_CAPACITY {
                q.peers.clear();
            }
            let now = Instant::now();
            let (tokens, at) = q.peers.entry(peer).or_insert((burst, now));
            *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(burst);
            *at = now;
            if *tokens < 1.0 {
                return Err(retry(*tokens));
            }
            *tokens -= 1.0;
        }
        Arc::clone(&self.0.quote_slots)
            .try_acquire_owned()
            .map_err(|_| retry(0.0))
    }
}
