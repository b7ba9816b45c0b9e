//! The customer SDK: services from the chain, provider verification, funding, signed requests with
//! cumulative vouchers, and receipt-checked chat (plain and streaming).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use zg_attestation::{AttestationPolicy, Collateral, Evidence, Timestamp, VerificationReport, Verifier};
use zg_billing::{Domains, EthSigner, Prices, Request, SessionClaims, SessionToken, Voucher};
use zg_chain::{Amount, InferenceService, ServiceKind, TxOutcome};

use crate::error::{Error, Result};
use crate::receipt::{self, Expectation, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, VerifiedReceipt};
use crate::store::{LoggedReceipt, ProviderState, Store, VerifiedKeys};
use crate::stream::ChatStream;

/// Serialises an amount as a decimal string (JSON numbers cannot hold 256 bits; hex is unreadable).
pub(crate) fn ser_dec<S: serde::Serializer>(v: &U256, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When and how much the client moves from the ledger into a provider's sub-account.
///
/// Before each request the client makes sure that the sub-account's balance, minus pending refunds and
/// minus what it already owes (`owed − paid on chain`), covers the request's fee cap plus `min_headroom`;
/// when it does not, it transfers `refill` (or the shortfall, if larger). The official 0G SDK does the
/// same with "unsettled fee + 2 0G".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUpPolicy {
    /// Top up automatically (off: a short sub-account is an error naming `zg transfer-fund`).
    pub enabled: bool,
    /// Headroom kept above the next request's fee cap, neuron.
    pub min_headroom: U256,
    /// Amount moved per top-up, neuron.
    pub refill: U256,
}

impl Default for TopUpPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            min_headroom: Amount::from_zg(1).0 / U256::from(10u64),
            refill: Amount::from_zg(2).0,
        }
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where nonces, vouchers, verified keys and receipts are kept (one directory per customer).
    pub data_dir: PathBuf,
    /// Attestation policy; the nonce and expected signer are filled in per verification.
    pub policy: AttestationPolicy,
    /// Intel collateral for real TDX quotes (not needed for simulated evidence).
    pub collateral: Option<Arc<Collateral>>,
    /// Funding policy.
    pub top_up: TopUpPolicy,
    /// Completion tokens assumed for the fee cap when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Per-request HTTP timeout: connecting and the response head, and then the whole body of a
    /// non-streamed answer, an attestation document or an error.
    pub timeout: Duration,
    /// A streamed answer must end (with its receipt) within this.
    pub stream_timeout: Duration,
    /// Largest body read from a provider: an answer, a whole stream, an attestation document. A provider is
    /// anyone registered on chain, so nothing it sends is read without a bound.
    pub max_response_bytes: u64,
    /// How often the on-chain `teeSignerAddress` of a provider in use is read again (also after every
    /// receipt that fails verification). When it changed, nothing is sent or topped up until a fresh
    /// attestation binds the new signer.
    pub signer_check_interval: Duration,
    /// Use this base URL instead of the registered service URL (tests, SSH tunnels). The attestation is
    /// still checked against the on-chain signer, so a wrong URL cannot impersonate a provider.
    pub url_override: Option<String>,
}

impl ClientConfig {
    /// Defaults for `data_dir`: production policy, top-up on, 1024 tokens, 120 s per request, 10 min per
    /// stream, 64 MiB per body, the on-chain signer re-read every 30 s.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            policy: AttestationPolicy::default(),
            collateral: None,
            top_up: TopUpPolicy::default(),
            default_max_tokens: 1024,
            timeout: Duration::from_secs(120),
            stream_timeout: Duration::from_secs(600),
            max_response_bytes: 64 * 1024 * 1024,
            signer_check_interval: Duration::from_secs(30),
            url_override: None,
        }
    }

    /// DANGEROUS: accept providers on the simulated TEE backend (local development only). Every
    /// verification of such a provider logs a loud warning and its report says SIMULATED.
    pub fn dangerous_allow_simulated(mut self, allow: bool) -> Self {
        self.policy.dangerous_allow_simulated = allow;
        self
    }
}

/// The outcome of verifying a provider.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderVerification {
    /// The provider.
    pub provider: Address,
    /// Its service as registered on chain.
    pub service: InferenceService,
    /// The verifier's full report.
    pub report: VerificationReport,
    /// Whether the evidence came from the simulated backend (no TEE at all).
    pub simulated: bool,
    /// The settlement signer bound in the quote (equals the on-chain `teeSignerAddress`).
    pub signer: Address,
    /// `0x`-hex ed25519 response key bound in the quote.
    pub response_key: String,
    /// The fresh nonce the quote commits to (hex).
    pub nonce: String,
}

/// What the customer owes a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Sub-account balance on chain, neuron.
    #[serde(serialize_with = "ser_dec")]
    pub sub_account: U256,
    /// Pending refunds on chain, neuron.
    #[serde(serialize_with = "ser_dec")]
    pub pending_refund: U256,
    /// Sum of verified receipts (cumulative), neuron.
    #[serde(serialize_with = "ser_dec")]
    pub owed: U256,
    /// Largest voucher signed so far, neuron.
    #[serde(serialize_with = "ser_dec")]
    pub vouched: U256,
    /// Paid on chain through vouchers, neuron.
    #[serde(serialize_with = "ser_dec")]
    pub paid: U256,
    /// `owed − paid`: what the provider may still collect.
    #[serde(serialize_with = "ser_dec")]
    pub unsettled: U256,
    /// Verified receipts counted.
    pub receipts: u64,
}

/// The OpenAI routes the client pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/chat/completions`.
    Chat,
    /// `/completions`.
    Completions,
    /// `/embeddings`.
    Embeddings,
}

impl Route {
    /// The path under `/v1/proxy`.
    pub fn path(self) -> &'static str {
        match self {
            Route::Chat => "/chat/completions",
            Route::Completions => "/completions",
            Route::Embeddings => "/embeddings",
        }
    }

    /// The native `service` field of signed requests.
    fn service(self) -> &'static str {
        match self {
            Route::Chat => "chat",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
        }
    }
}

/// A verified, non-streamed answer.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// The response body exactly as received (what the receipt covers).
    pub body: Bytes,
    /// The checked receipt.
    pub receipt: VerifiedReceipt,
}

impl ChatResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::InvalidInput(format!("response is not JSON: {e}")))
    }

    /// `choices[0].message.content` (chat) or `choices[0].text` (completions), if present.
    pub fn text(&self) -> Option<String> {
        let v = self.json().ok()?;
        let c = v.get("choices")?.get(0)?;
        c.get("message")
            .and_then(|m| m.get("content"))
            .or_else(|| c.get("text"))?
            .as_str()
            .map(str::to_owned)
    }
}

/// A provider the client has looked up and verified: service, prices, keys.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) provider: Address,
    pub(crate) base_url: String,
    pub(crate) model: String,
    pub(crate) prices: Prices,
    pub(crate) response_key: [u8; 32],
}

/// Funding view cached between chain reads: the available amount at the last check and `owed` then.
#[derive(Debug, Clone, Copy)]
struct Funding {
    available: U256,
    owed_at_check: U256,
}

pub(crate) struct Inner {
    pub(crate) chain: zg_chain::Client,
    pub(crate) key: EthSigner,
    pub(crate) http: reqwest::Client,
    pub(crate) cfg: ClientConfig,
    pub(crate) store: Store,
    verifier: Verifier,
    domains: Domains,
    targets: Mutex<HashMap<Address, Target>>,
    funding: Mutex<HashMap<Address, Funding>>,
    /// Serialises top-ups per provider (two requests must not both transfer).
    topping: tokio::sync::Mutex<()>,
}

/// The customer SDK. Cheap to clone (shared state); safe to use from many tasks at once.
#[derive(Clone)]
pub struct Client(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("customer", &self.0.key.address())
            .field("chain_id", &self.0.chain.chain_id())
            .field("data_dir", &self.0.cfg.data_dir)
            .finish_non_exhaustive()
    }
}

fn http_err(op: &'static str, url: &str) -> impl FnOnce(reqwest::Error) -> Error {
    let url = url.to_owned();
    move |e| Error::Http {
        op,
        url,
        reason: e.to_string(),
    }
}

/// Turns a non-2xx provider answer into [`Error::Provider`].
pub(crate) fn provider_error(status: u16, body: &[u8]) -> Error {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let e = v.as_ref().and_then(|v| v.get("error"));
    let message = e
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default()).into_owned()
        });
    let kind = e
        .and_then(|e| e.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("http_error")
        .to_owned();
    Error::Provider {
        status,
        kind,
        message,
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s.trim_start_matches("0x"))
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
}

impl Client {
    /// A client for the customer `key`. `chain` must sign transactions with the same key (top-ups,
    /// acknowledgements, token revocation); a read-only chain client works for everything else.
    pub fn new(chain: zg_chain::Client, key: EthSigner, cfg: ClientConfig) -> Result<Self> {
        if let Ok(signer) = chain.signer_address()
            && signer != key.address()
        {
            return Err(Error::SignerMismatch {
                chain: Some(signer),
                key: key.address(),
            });
        }
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        // The timeout covers connecting and the response head; streams are bounded per read instead.
        http = http.read_timeout(cfg.timeout);
        let http = http.build().map_err(|e| Error::Http {
            op: "build client",
            url: String::new(),
            reason: e.to_string(),
        })?;
        let store = Store::open(&cfg.data_dir, key.address())?;
        let domains = Domains::new(chain.chain_id(), chain.addresses().inference);
        Ok(Self(Arc::new(Inner {
            chain,
            key,
            http,
            cfg,
            store,
            verifier: Verifier::new_prod(),
            domains,
            targets: Mutex::new(HashMap::new()),
            funding: Mutex::new(HashMap::new()),
            topping: tokio::sync::Mutex::new(()),
        })))
    }

    /// The customer's address.
    pub fn address(&self) -> Address {
        self.0.key.address()
    }

    /// The chain client.
    pub fn chain(&self) -> &zg_chain::Client {
        &self.0.chain
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.0.cfg
    }

    /// Every inference service registered on chain.
    pub async fn list_services(&self) -> Result<Vec<InferenceService>> {
        self.0
            .chain
            .inference()
            .list_services()
            .await
            .map_err(Error::chain("listServices"))
    }

    /// One provider's service.
    pub async fn service(&self, provider: Address) -> Result<InferenceService> {
        self.0
            .chain
            .inference()
            .get_service(provider)
            .await
            .map_err(Error::chain("getService"))?
            .ok_or(Error::UnknownProvider { provider })
    }

    fn base_url(&self, service: &InferenceService) -> String {
        self.0
            .cfg
            .url_override
            .clone()
            .unwrap_or_else(|| service.url.clone())
            .trim_end_matches('/')
            .to_owned()
    }

    /// Verifies a provider: fetches fresh evidence for a random nonce (`GET /v1/attestation?nonce=`),
    /// checks it under the policy (quote, collateral, TCB, measurements, event-log replay, the nonce),
    /// checks that the bound settlement signer is the on-chain `teeSignerAddress`, and remembers the bound
    /// response key for receipt checks. Simulated evidence passes only with
    /// [`ClientConfig::dangerous_allow_simulated`], and then loudly.
    pub async fn verify_provider(&self, provider: Address) -> Result<ProviderVerification> {
        let service = self.service(provider).await?;
        let base = self.base_url(&service);
        let nonce: [u8; 32] = rand::random();
        let url = format!("{base}/v1/attestation?nonce={}", hex::encode(nonce));
        let resp = self
            .0
            .http
            .get(&url)
            .send()
            .await
            .map_err(http_err("GET", &url))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(http_err("read", &url))?;
        if !(200..300).contains(&status) {
            return Err(provider_error(status, &bytes));
        }
        let evidence = Evidence::from_document(&bytes).map_err(|e| Error::Evidence {
            provider,
            reason: e.to_string(),
        })?;
        let mut policy = self.0.cfg.policy.clone().with_nonce(nonce);
        policy.expected_signer = Some(service.tee_signer);
        let report = self.0.verifier.verify(
            &evidence,
            &policy,
            self.0.cfg.collateral.as_deref(),
            Timestamp::now(),
        );
        let report = (*report).clone();
        if report.simulated && !self.0.cfg.policy.dangerous_allow_simulated {
            return Err(Error::SimulatedRefused { provider });
        }
        if !report.passed() {
            let check = report
                .first_failure()
                .map(|c| format!("{}: expected {}, found {}", c.name, c.expected, c.found))
                .unwrap_or_else(|| "verdict fail".into());
            return Err(Error::AttestationFailed {
                provider,
                check,
                report: Box::new(report),
            });
        }
        let binding = report.binding.clone().ok_or_else(|| Error::Evidence {
            provider,
            reason: "the quote binds no key-binding document (native REPORTDATA layout expected)".into(),
        })?;
        if binding.signer_address != service.tee_signer {
            // The policy checks this too; a second, explicit check keeps the invariant local.
            return Err(Error::AttestationFailed {
                provider,
                check: format!(
                    "signer: expected on-chain teeSignerAddress {}, found bound {}",
                    service.tee_signer, binding.signer_address
                ),
                report: Box::new(report),
            });
        }
        if report.simulated {
            tracing::warn!(
                %provider,
                "!!! provider {provider} runs a SIMULATED TEE — NOT A REAL TEE; accepted only because simulated evidence was explicitly allowed"
            );
        }
        let response_key = format!("0x{}", hex::encode(binding.response_key));
        let keys = VerifiedKeys {
            signer: binding.signer_address,
            response_key: response_key.clone(),
            simulated: report.simulated,
            verified_at: Timestamp::now().as_secs(),
            url: base.clone(),
        };
        self.0.store.update(provider, |st| {
            st.verified = Some(keys);
            Ok(())
        })?;
        self.remember(provider, &service, base, binding.response_key);
        Ok(ProviderVerification {
            provider,
            simulated: report.simulated,
            signer: binding.signer_address,
            response_key,
            nonce: hex::encode(nonce),
            service,
            report,
        })
    }

    fn remember(
        &self,
        provider: Address,
        service: &InferenceService,
        base_url: String,
        response_key: [u8; 32],
    ) {
        let t = Target {
            provider,
            base_url,
            model: service.model.clone(),
            prices: Prices {
                input: service.input_price,
                output: service.output_price,
            },
            response_key,
        };
        if let Ok(mut m) = self.0.targets.lock() {
            m.insert(provider, t);
        }
    }

    /// The provider's service and keys: from memory, else from the chain plus the keys verified earlier in
    /// this data dir (if the on-chain signer changed since, the provider must be verified again), else a
    /// fresh verification.
    pub(crate) async fn target(&self, provider: Address) -> Result<Target> {
        if let Some(t) = self.0.targets.lock().ok().and_then(|m| m.get(&provider).cloned()) {
            return Ok(t);
        }
        let service = self.service(provider).await?;
        let st = self.0.store.load(provider)?;
        match st.verified {
            Some(k)
                if k.signer == service.tee_signer
                    && (!k.simulated || self.0.cfg.policy.dangerous_allow_simulated) =>
            {
                let key = hex32(&k.response_key).ok_or(Error::NotVerified { provider })?;
                let base = self.base_url(&service);
                self.remember(provider, &service, base, key);
            }
            _ => {
                self.verify_provider(provider).await?;
            }
        }
        self.0
            .targets
            .lock()
            .ok()
            .and_then(|m| m.get(&provider).cloned())
            .ok_or(Error::NotVerified { provider })
    }

    /// Verifies the provider (fresh attestation) and acknowledges its TEE signer on chain for this
    /// customer's sub-account (`acknowledgeTEESigner`), as the official CLI's `acknowledge-provider` does.
    pub async fn acknowledge_provider(&self, provider: Address) -> Result<(ProviderVerification, TxOutcome)> {
        let v = self.verify_provider(provider).await?;
        self.ensure_sub_account(provider).await?;
        let tx = self
            .0
            .chain
            .inference()
            .acknowledge_tee_signer(provider, true)
            .await
            .map_err(Error::chain("acknowledgeTEESigner"))?;
        Ok((v, tx))
    }

    async fn ensure_sub_account(&self, provider: Address) -> Result<()> {
        let acct = self
            .0
            .chain
            .inference()
            .get_account(self.address(), provider)
            .await
            .map_err(Error::chain("getAccount"))?;
        if acct.is_none() {
            if !self.0.cfg.top_up.enabled {
                return Err(Error::NoSubAccount { provider });
            }
            self.transfer(provider, self.0.cfg.top_up.refill).await?;
        }
        Ok(())
    }

    async fn transfer(&self, provider: Address, amount: U256) -> Result<TxOutcome> {
        let me = self.address();
        let ledger = self
            .0
            .chain
            .ledger()
            .get_ledger(me)
            .await
            .map_err(Error::chain("getLedger"))?;
        let available = ledger.map(|l| l.available.0).unwrap_or_default();
        if available < amount {
            return Err(Error::InsufficientFunds {
                provider,
                needed: amount,
                available,
            });
        }
        tracing::info!(%provider, amount = %Amount(amount), "topping up the sub-account");
        self.0
            .chain
            .ledger()
            .transfer_fund(provider, ServiceKind::Inference, Amount(amount))
            .await
            .map_err(Error::chain("transferFund"))
    }

    /// The customer's balance with a provider: on-chain sub-account, and the amounts owed and paid.
    pub async fn balance(&self, provider: Address) -> Result<Balance> {
        let st = self.0.store.load(provider)?;
        let inf = self.0.chain.inference();
        let acct = inf
            .get_account(self.address(), provider)
            .await
            .map_err(Error::chain("getAccount"))?;
        let (paid, _) = inf
            .voucher_state(self.address(), provider)
            .await
            .map_err(Error::chain("getVoucherState"))?;
        let (sub_account, pending_refund) = acct
            .map(|a| (a.balance.0, a.pending_refund.0))
            .unwrap_or_default();
        Ok(Balance {
            sub_account,
            pending_refund,
            owed: st.owed,
            vouched: st.vouched,
            paid,
            unsettled: st.owed.saturating_sub(paid),
            receipts: st.receipts,
        })
    }

    /// The local state kept for a provider (nonces, amounts, verified keys).
    pub async fn state(&self, provider: Address) -> Result<ProviderState> {
        self.0.store.load(provider)
    }

    /// Makes sure the sub-account covers `fee_cap` on top of what is owed (see [`TopUpPolicy`]).
    /// Reads the chain only when the locally tracked headroom runs low. Returns whether it transferred.
    pub async fn ensure_funded(&self, provider: Address, fee_cap: U256) -> Result<bool> {
        let policy = self.0.cfg.top_up;
        let need = fee_cap.saturating_add(policy.min_headroom);
        let owed = self.0.store.load(provider)?.owed;
        let estimate = self.0.funding.lock().ok().and_then(|m| m.get(&provider).copied());
        if let Some(f) = estimate
            && f.available.saturating_sub(owed.saturating_sub(f.owed_at_check)) >= need
        {
            return Ok(false);
        }
        let _one = self.0.topping.lock().await;
        let b = self.balance(provider).await?;
        let available = b
            .sub_account
            .saturating_sub(b.pending_refund)
            .saturating_sub(b.unsettled);
        let mut transferred = false;
        let available = if available < need {
            if !policy.enabled {
                return Err(if b.sub_account.is_zero() {
                    Error::NoSubAccount { provider }
                } else {
                    Error::Provider {
                        status: 402,
                        kind: "insufficient_balance".into(),
                        message: format!(
                            "sub-account has {available} neuron free, the request may cost {fee_cap}: \
                             `zg transfer-fund --provider {provider} --amount <0G>`"
                        ),
                    }
                });
            }
            let amount = policy.refill.max(need.saturating_sub(available));
            self.transfer(provider, amount).await?;
            transferred = true;
            available.saturating_add(amount)
        } else {
            available
        };
        if let Ok(mut m) = self.0.funding.lock() {
            m.insert(
                provider,
                Funding {
                    available,
                    owed_at_check: b.owed,
                },
            );
        }
        Ok(transferred)
    }

    /// The fee cap of a request: every byte of the body bounds one prompt token (the provider's own rule),
    /// `max_tokens` (or the configured default) bounds the completion.
    pub(crate) fn fee_cap(&self, t: &Target, route: Route, body: &[u8]) -> Result<U256> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| Error::InvalidInput(format!("request body is not JSON: {e}")))?;
        if !v.is_object() {
            return Err(Error::InvalidInput("request body must be a JSON object".into()));
        }
        let completion = match route {
            Route::Embeddings => 0,
            _ => v
                .get("max_completion_tokens")
                .or_else(|| v.get("max_tokens"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(self.0.cfg.default_max_tokens),
        };
        let bound = zg_billing::Usage {
            prompt_tokens: body.len() as u64,
            completion_tokens: completion,
        };
        Ok(t.prices.fee(&bound)?)
    }

    /// Reserves a fresh nonce durably and signs the request and a voucher over everything owed so far.
    pub(crate) fn sign(
        &self,
        t: &Target,
        route: Route,
        body: &[u8],
        fee_cap: U256,
    ) -> Result<(String, Expectation)> {
        let me = self.address();
        let key = &self.0.key;
        let domains = &self.0.domains;
        let (header, nonce) = self.0.store.update(t.provider, |st| {
            // Nonces: strictly increasing, and at least the current time in microseconds so a lost data dir
            // still never replays an old nonce (the provider keeps a 1024-wide window).
            let floor = U256::from(now_ms()).saturating_mul(U256::from(1000u64));
            let nonce = st.last_nonce.saturating_add(U256::from(1u64)).max(floor);
            st.last_nonce = nonce;
            let request = Request {
                user: me,
                provider: t.provider,
                service: route.service().into(),
                nonce,
                bodyHash: zg_billing::body_hash(body),
                feeCap: fee_cap,
            };
            let mut signed = domains.sign_request(key, request)?;
            if !st.owed.is_zero() {
                // Never below a voucher signed before (the store refuses a regressing write as well).
                let amount = st.owed.max(st.vouched);
                let v = Voucher {
                    user: me,
                    provider: t.provider,
                    cumulativeAmount: amount,
                    nonce,
                };
                signed = signed.with_voucher(domains.sign_voucher(key, v)?);
                st.vouched = amount;
                st.voucher_nonce = nonce;
            }
            Ok((signed.to_header(), nonce))
        })?;
        let exp = Expectation {
            response_key: t.response_key,
            nonce,
            model: t.model.clone(),
            prices: t.prices,
            fee_cap,
        };
        Ok((header, exp))
    }

    /// Counts a verified receipt into the amount owed (durably) and logs it.
    pub(crate) fn record(
        &self,
        provider: Address,
        r: &receipt::ReceiptJson,
        fee: U256,
        nonce: U256,
    ) -> Result<VerifiedReceipt> {
        let owed_after = self.0.store.update(provider, |st| {
            st.owed = st.owed.saturating_add(fee);
            st.receipts = st.receipts.saturating_add(1);
            Ok(st.owed)
        })?;
        let logged = LoggedReceipt {
            at_ms: now_ms(),
            key: r.key.clone(),
            nonce,
            fee,
            prompt_tokens: r.usage.prompt_tokens,
            completion_tokens: r.usage.completion_tokens,
            request_hash: r.request_hash.to_string(),
            response_hash: r.response_hash.to_string(),
            owed_after,
        };
        if let Err(e) = self.0.store.log(provider, &logged) {
            tracing::warn!(error = %e, "could not append to the receipt log (the amount owed is recorded)");
        }
        Ok(VerifiedReceipt {
            receipt: r.clone(),
            fee,
            owed_after,
        })
    }

    /// Sends a signed request; retries once after a fresh top-up if the provider has not seen the new
    /// balance yet (it caches accounts for a moment).
    pub(crate) async fn send(
        &self,
        provider: Address,
        route: Route,
        body: &Bytes,
    ) -> Result<(reqwest::Response, Expectation, Target)> {
        let t = self.target(provider).await?;
        let fee_cap = self.fee_cap(&t, route, body)?;
        let topped = self.ensure_funded(provider, fee_cap).await?;
        let url = format!("{}/v1/proxy{}", t.base_url, route.path());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (header, exp) = self.sign(&t, route, body, fee_cap)?;
            let resp = self
                .0
                .http
                .post(&url)
                .header(REQUEST_HEADER, header)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(http_err("POST", &url))?;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok((resp, exp, t));
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            let err = provider_error(status, &bytes);
            if status == 402 && attempt == 1 {
                // Our view of the balance may be stale (or the provider's): re-read, top up, retry once.
                if let Ok(mut m) = self.0.funding.lock() {
                    m.remove(&provider);
                }
                let again = self.ensure_funded(provider, fee_cap).await?;
                if topped || again {
                    tokio::time::sleep(Duration::from_millis(2100)).await;
                    continue;
                }
            }
            return Err(err);
        }
    }

    /// Sends a request (`stream` must not be true in the body) and returns the answer once its receipt
    /// verified: signature by the attested key, hashes of the exact bytes, nonce, model, and fee.
    pub async fn request(
        &self,
        provider: Address,
        route: Route,
        body: impl Into<Bytes>,
    ) -> Result<ChatResponse> {
        let body = body.into();
        let (resp, exp, _) = self.send(provider, route, &body).await?;
        let status = resp.status().as_u16();
        let header = resp
            .headers()
            .get(RECEIPT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| Error::Http {
            op: "read",
            url: String::new(),
            reason: e.to_string(),
        })?;
        let header = header.ok_or(Error::MissingReceipt)?;
        let r = receipt::parse_receipt_header(&header)?;
        let response_hash = B256::from(<[u8; 32]>::from(Sha256::digest(&bytes)));
        let fee = receipt::check(&r, &exp, &body, response_hash)?;
        let receipt = self.record(provider, &r, fee, exp.nonce)?;
        Ok(ChatResponse {
            status,
            body: bytes,
            receipt,
        })
    }

    /// A chat completion (`/v1/proxy/chat/completions`), verified.
    pub async fn chat(&self, provider: Address, body: impl Into<Bytes>) -> Result<ChatResponse> {
        self.request(provider, Route::Chat, body).await
    }

    /// A streamed request: the body should set `"stream": true`. Yields the provider's SSE events as they
    /// arrive; the last item is the verified receipt (an error if it does not verify).
    pub async fn request_stream(
        &self,
        provider: Address,
        route: Route,
        body: impl Into<Bytes>,
    ) -> Result<ChatStream> {
        let body = body.into();
        let (resp, exp, _) = self.send(provider, route, &body).await?;
        let res_key = resp
            .headers()
            .get(RES_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(ChatStream::new(self.clone(), provider, resp, body, exp, res_key))
    }

    /// A streamed chat completion, verified at its end.
    pub async fn chat_stream(&self, provider: Address, body: impl Into<Bytes>) -> Result<ChatStream> {
        self.request_stream(provider, Route::Chat, body).await
    }

    /// Delivers a voucher over every verified receipt so far, so the provider can settle all of it.
    ///
    /// Vouchers ride on requests, so the fee of the latest answer is vouched by the next request. This sends
    /// a request that costs nothing: a chat whose `messages` is empty, which OpenAI-compatible servers
    /// refuse (upstream errors are not billed), while the provider records the voucher at admission.
    /// Returns the amount vouched. (A dedicated voucher endpoint on the provider would make this cleaner.)
    pub async fn flush_voucher(&self, provider: Address) -> Result<U256> {
        if self.0.store.load(provider)?.owed.is_zero() {
            return Ok(U256::ZERO);
        }
        let body = Bytes::from_static(br#"{"messages":[],"max_tokens":1,"zg_voucher_flush":true}"#);
        match self.request(provider, Route::Chat, body).await {
            Ok(r) => {
                tracing::warn!(fee = %r.receipt.fee, "the upstream served the voucher flush; it was billed like any request");
            }
            Err(Error::Provider { status, .. })
                if (400..500).contains(&status) && status != 402 && status != 409 => {}
            Err(e) => return Err(e),
        }
        Ok(self.0.store.load(provider)?.vouched)
    }

    /// Creates a 0G session token (`app-sk-…`, for the official SDK, `curl` or any OpenAI client sent
    /// straight to the provider). Token id 255 is ephemeral (at most 24 h); 0–254 are revocable API keys.
    /// `duration` `None`: 24 h for id 255, never expiring otherwise.
    pub async fn session_token(
        &self,
        provider: Address,
        token_id: u8,
        duration: Option<Duration>,
    ) -> Result<String> {
        let acct = self
            .0
            .chain
            .inference()
            .get_account(self.address(), provider)
            .await
            .map_err(Error::chain("getAccount"))?;
        let generation = acct.map(|a| a.generation).unwrap_or_default();
        let now = now_ms();
        let expires_at = match (token_id, duration) {
            (_, Some(d)) => now.saturating_add(d.as_millis() as u64),
            (255, None) => now.saturating_add(zg_billing::MAX_EPHEMERAL_LIFETIME_MS),
            (_, None) => 0,
        };
        let claims = SessionClaims {
            address: self.address(),
            provider: format!("{provider:#x}"),
            timestamp: now,
            expires_at,
            nonce: hex::encode(rand::random::<[u8; 8]>()),
            generation: generation
                .try_into()
                .map_err(|_| Error::InvalidInput(format!("generation {generation} overflows u64")))?,
            token_id,
        };
        let (_, header) = SessionToken::create(&self.0.key, &claims)?;
        Ok(header.trim_start_matches("Bearer ").to_owned())
    }

    /// Revokes one session-token id on chain (`revokeToken`).
    pub async fn revoke_token(&self, provider: Address, token_id: u8) -> Result<TxOutcome> {
        self.0
            .chain
            .inference()
            .revoke_token(provider, token_id)
            .await
            .map_err(Error::chain("revokeToken"))
    }
}
