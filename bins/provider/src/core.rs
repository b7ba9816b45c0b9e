//! The one core that HTTP and gRPC share: the one place a request is authenticated
//! ([`Provider::admit`]), the one place a fee is charged and the keys sign ([`Provider::finish`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use axum::body::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use serde::Deserialize as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zg_billing::{
    Admission, BoxError, ChainAccount, Completion, Ledger, Meter, Prices, Receipt, SessionToken,
    SessionVerifier, SignedRequest, StreamUsage, Usage, force_include_usage, usage_from_json,
};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::{ReceiptStore, StoredReceipt};
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

/// The customer's credentials as they arrived (HTTP headers or gRPC fields).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `Authorization` (0G session token).
    pub authorization: Option<String>,
    /// `ZG-Request` (native signed request + voucher).
    pub zg_request: Option<String>,
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
    /// Completion tokens reserved for a 0G session request that sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Allowed client clock skew for session tokens.
    pub max_skew_ms: u64,
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

struct Inner {
    provider: Address,
    config: CoreConfig,
    ledger: Ledger,
    verifier: SessionVerifier,
    meter: Meter,
    tee: Arc<Tee>,
    upstream: Upstream,
    receipts: ReceiptStore,
    accounts: Arc<dyn AccountSource>,
    refreshed: Mutex<HashMap<Address, Instant>>,
    /// When an admission refused for balance last re-read the customer's account (one re-read per TTL).
    reread: Mutex<HashMap<Address, Instant>>,
    limiter: Arc<Semaphore>,
    metrics: Arc<Metrics>,
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

/// The completion bound of an OpenAI request: `None` = field absent, `Some(None)` = present but not
/// a `u64` (then `max_completion_tokens` still wins over `max_tokens`, as it always did).
#[derive(serde::Deserialize)]
struct MaxTokens {
    #[serde(default, deserialize_with = "present_u64")]
    max_completion_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_u64")]
    max_tokens: Option<Option<u64>>,
}

fn present_u64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<u64>>, D::Error> {
    Ok(Some(serde_json::Value::deserialize(d)?.as_u64()))
}

/// A `ZG-Res-Key`: 32 hex = 6 bytes of big-endian Unix milliseconds, then 80 random bits. Keys
/// that grow with time land at the right edge of the receipt store's B-tree, so a group commit
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
    _permit: OwnedSemaphorePermit,
}

impl Guard {
    fn take(&mut self) -> Option<Admission> {
        self.admission.take()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.p.0.metrics.inflight(-1);
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

impl Provider {
    /// Assembles the core.
    #[allow(clippy::too_many_arguments, reason = "constructed once, in run() and tests")]
    pub fn new(
        provider: Address,
        config: CoreConfig,
        ledger: Ledger,
        tee: Arc<Tee>,
        upstream: Upstream,
        receipts: ReceiptStore,
        accounts: Arc<dyn AccountSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let verifier = SessionVerifier::new(provider, config.max_skew_ms);
        let meter = Meter::new(config.prices);
        let limiter = Arc::new(Semaphore::new(config.max_concurrency));
        Provider(Arc::new(Inner {
            provider,
            config,
            ledger,
            verifier,
            meter,
            tee,
            upstream,
            receipts,
            accounts,
            refreshed: Mutex::new(HashMap::new()),
            reread: Mutex::new(HashMap::new()),
            limiter,
            metrics,
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

    /// The receipt store.
    pub fn receipts(&self) -> &ReceiptStore {
        &self.0.receipts
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }

    /// Reads the customer's on-chain account if the cached one is older than the TTL.
    async fn refresh_account(&self, user: Address) -> Result<()> {
        let fresh = self
            .0
            .refreshed
            .lock()
            .ok()
            .and_then(|m| m.get(&user).map(|t| t.elapsed() < self.0.config.account_ttl))
            .unwrap_or(false);
        if fresh && self.0.ledger.chain_account(user).is_some() {
            return Ok(());
        }
        match self.0.accounts.account(user).await {
            Ok(Some(a)) => {
                self.0.ledger.set_chain_account(user, a)?;
                if let Ok(mut m) = self.0.refreshed.lock() {
                    m.insert(user, Instant::now());
                }
                Ok(())
            }
            Ok(None) => Err(zg_billing::Error::UnknownAccount { user }.into()),
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

    /// Authenticates a 0G session token (signature, provider, time, generation, revocation).
    pub async fn authenticate(&self, authorization: &str) -> Result<Arc<SessionToken>> {
        let token = self.0.verifier.authenticate(authorization)?;
        self.refresh_account(token.user()).await?;
        let ledger = &self.0.ledger;
        Ok(self
            .0
            .verifier
            .verify(authorization, now_ms(), |u| ledger.token_state(u))?)
    }

    /// `unsettledfee`: fees `user` owes that are not settled yet, for an authenticated caller.
    pub async fn unsettled_fee(&self, creds: &Credentials, user: &str) -> Result<U256> {
        let auth = creds.authorization.as_deref().ok_or(Error::NoCredentials)?;
        let token = self.authenticate(auth).await?;
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

    /// The fee a 0G session request reserves: bytes of body bound the prompt tokens (every tokenizer
    /// we know spends at least one byte per token), `max_tokens` (or the default) the completion.
    fn session_fee_cap(&self, route: Route, body: &[u8]) -> Result<U256> {
        let completion = match route {
            Route::Embeddings | Route::Models => 0,
            // Only the two fields are read (the rest is skipped, not built into a `Value` tree).
            _ => serde_json::from_slice::<MaxTokens>(body)
                .ok()
                .and_then(|m| match m.max_completion_tokens {
                    Some(present) => present,
                    None => m.max_tokens.flatten(),
                })
                .unwrap_or(self.0.config.default_max_tokens),
        };
        let bound = Usage {
            prompt_tokens: body.len() as u64,
            completion_tokens: completion,
        };
        Ok(self.0.config.prices.fee(&bound)?)
    }

    /// Authenticates and admits a billed request: the only place a request gets in.
    async fn admit(&self, route: Route, creds: &Credentials, body: &[u8]) -> Result<Admission> {
        let now = now_ms();
        if let Some(env) = creds.zg_request.as_deref() {
            let signed = SignedRequest::from_header(env)?;
            let user = signed.request.user;
            self.refresh_account(user).await?;
            return match self.0.ledger.admit_native(&signed, body, now).await {
                Err(zg_billing::Error::InsufficientBalance { .. }) if self.reread_account(user).await? => {
                    Ok(self.0.ledger.admit_native(&signed, body, now).await?)
                }
                r => Ok(r?),
            };
        }
        let auth = creds.authorization.as_deref().ok_or(Error::NoCredentials)?;
        let token = self.authenticate(auth).await?;
        let cap = self.session_fee_cap(route, body)?;
        match self.0.ledger.admit_session(&token, cap, now).await {
            Err(zg_billing::Error::InsufficientBalance { .. })
                if self.reread_account(token.user()).await? =>
            {
                Ok(self.0.ledger.admit_session(&token, cap, now).await?)
            }
            r => Ok(r?),
        }
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
            m.insert(user, Instant::now());
        }
        if let Ok(mut m) = self.0.refreshed.lock() {
            m.remove(&user);
        }
        self.refresh_account(user).await?;
        Ok(true)
    }

    /// Serves a billed OpenAI request end to end: limit, authenticate + admit, forward, meter, sign.
    pub async fn exchange(&self, route: Route, creds: Credentials, body: Bytes) -> Result<Exchange> {
        let r = self.exchange_inner(route, creds, body).await;
        if let Err(e) = &r {
            self.0.metrics.rejected(e.code());
        }
        r
    }

    async fn exchange_inner(&self, route: Route, creds: Credentials, body: Bytes) -> Result<Exchange> {
        let permit = Arc::clone(&self.0.limiter)
            .try_acquire_owned()
            .map_err(|_| Error::Saturated {
                limit: self.0.config.max_concurrency,
                retry_after_secs: self.0.config.retry_after_secs,
            })?;
        self.0.metrics.inflight(1);
        // Fees come from the upstream's usage only: make streams report it.
        let forward = match route {
            Route::Chat | Route::Completions => match force_include_usage(&body) {
                Ok(Some(b)) => Bytes::from(b),
                Ok(None) => body.clone(),
                Err(e) => {
                    self.0.metrics.inflight(-1);
                    return Err(Error::BadRequest(e.to_string()));
                }
            },
            _ => body.clone(),
        };
        let admitted = self.admit(route, &creds, &body).await;
        let admission = match admitted {
            Ok(a) => a,
            Err(e) => {
                self.0.metrics.inflight(-1);
                return Err(e);
            }
        };
        let native = admission.nonce.is_some();
        let mut guard = Guard {
            p: self.clone(),
            admission: Some(admission),
            _permit: permit,
        };
        let started = Instant::now();
        let up = self.0.upstream.send(route, forward).await?; // guard releases on error
        self.0.metrics.upstream_latency(started.elapsed().as_secs_f64());
        let request_hash = B256::from(<[u8; 32]>::from(Sha256::digest(&body)));
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
                let response_hash = B256::from(<[u8; 32]>::from(Sha256::digest(&bytes)));
                let receipt = self
                    .finish(admission, key.clone(), request_hash, response_hash, usage)
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
            UpBody::Stream(mut stream) => {
                let (tx, rx) = mpsc::channel::<StreamItem>(16);
                let p = self.clone();
                let idle = self.0.config.upstream_timeout;
                let key2 = key.clone();
                tokio::spawn(async move {
                    let mut hasher = Sha256::new();
                    let mut usage = StreamUsage::default();
                    loop {
                        match tokio::time::timeout(idle, stream.next()).await {
                            Ok(Some(Ok(chunk))) => {
                                hasher.update(&chunk);
                                usage.push(&chunk);
                                if tx.send(StreamItem::Data(chunk)).await.is_err() {
                                    // The client left: stop the upstream, bill nothing (guard releases).
                                    tracing::info!(key = %key2, "client disconnected mid-stream; not billed");
                                    p.0.metrics.request(route.label(), 499);
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Ok(Some(Err(e))) => {
                                let _ = tx
                                    .send(StreamItem::Failed(format!("upstream stream broke: {e}")))
                                    .await;
                                p.0.metrics.request(route.label(), 502);
                                return;
                            }
                            Err(_) => {
                                let _ = tx
                                    .send(StreamItem::Failed(format!(
                                        "upstream idle for {} s",
                                        idle.as_secs()
                                    )))
                                    .await;
                                p.0.metrics.request(route.label(), 504);
                                return;
                            }
                        }
                    }
                    let response_hash = B256::from(<[u8; 32]>::from(hasher.finalize()));
                    let Some(admission) = guard.take() else { return };
                    match p
                        .finish(admission, key2, request_hash, response_hash, usage.finish())
                        .await
                    {
                        Ok(r) => {
                            p.0.metrics.request(route.label(), 200);
                            let _ = tx.send(StreamItem::Receipt(Box::new(r))).await;
                        }
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
                });
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

    /// Meters, signs (0G EIP-191 text + native ed25519 receipt), records in the ledger and stores the
    /// receipt: the only place a fee is charged and the TEE keys sign responses.
    async fn finish(
        &self,
        admission: Admission,
        key: String,
        request_hash: B256,
        response_hash: B256,
        usage: Option<Usage>,
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
        // A native request's fee never exceeds the cap the customer signed: the receipt states the fee the
        // ledger bills, so the customer's count and ours agree (the ledger also clamps, as a second line).
        let fee = match admission.kind {
            zg_billing::RequestKind::Native => fee.unwrap_or_default().min(admission.fee_cap),
            _ => fee.unwrap_or_default(),
        };
        let nonce = admission.nonce.unwrap_or_default();
        // The 0G EIP-191 signature is made when `GET /v1/proxy/signature/{key}` asks for it
        // ([`Provider::zg_receipt`]): it is a deterministic function (RFC 6979) of the stored text and
        // the TEE's settlement key, so signing per request only cost CPU. The text is durable below.
        let text = format!("{}:{}", hex::encode(request_hash), hex::encode(response_hash));
        let signed = keys.response.sign(Receipt {
            request_hash,
            response_hash,
            model: self.0.config.model.clone(),
            usage: usage.unwrap_or_default(),
            fee,
            nonce,
        });
        let receipt = ReceiptJson {
            key: key.clone(),
            request_hash,
            response_hash,
            model: self.0.config.model.clone(),
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
        let stored = StoredReceipt {
            text,
            signature: String::new(),
            native: serde_json::to_string(&receipt).unwrap_or_default(),
        };
        let now = now_ms();
        let completion = Completion {
            request_hash,
            response_hash,
            model: self.0.config.model.clone(),
            usage,
            fee,
            receipt_signature: signed.signature.to_vec(),
        };
        let (a, b) = tokio::join!(
            self.0.ledger.complete(admission, completion, now),
            self.0.receipts.put(key, stored, now)
        );
        a?;
        b?;
        Ok(receipt)
    }

    /// The stored receipts under `key`, with the 0G EIP-191 signature of `text` filled in: receipts
    /// are stored unsigned (see [`StoredReceipt::signature`]) and signed here, on demand, with the
    /// TEE's settlement key (deterministic, RFC 6979: the same text always gets the same signature).
    pub async fn zg_receipt(&self, key: String) -> Result<Option<StoredReceipt>> {
        let Some(mut r) = self.0.receipts.get(key).await? else {
            return Ok(None);
        };
        if r.signature.is_empty() {
            let sig = self.0.tee.keys().settlement.sign_message(r.text.as_bytes())?;
            r.signature = format!("0x{}", hex::encode(sig.as_bytes()));
        }
        Ok(Some(r))
    }

    /// `GET /v1/proxy/models`: authenticated, not billed.
    pub async fn models(&self, creds: &Credentials) -> Result<(u16, String, Bytes)> {
        let auth = creds
            .authorization
            .as_deref()
            .or(creds.zg_request.as_deref().map(|_| ""))
            .ok_or(Error::NoCredentials)?;
        if let Some(env) = creds.zg_request.as_deref() {
            // A native envelope authenticates by its signature; the nonce is not consumed.
            let signed = SignedRequest::from_header(env)?;
            let d = self.0.ledger.domains();
            d.verify_request(&zg_billing::KeyCache::default(), &signed)?;
        } else {
            self.authenticate(auth).await?;
        }
        let up = self.0.upstream.send(Route::Models, Bytes::new()).await?;
        let bytes = match up.body {
            UpBody::Full(b) => b,
            UpBody::Stream(_) => Bytes::new(),
        };
        Ok((up.status, up.content_type, bytes))
    }
}
