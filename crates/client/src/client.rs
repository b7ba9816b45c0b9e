//! The customer SDK's front: a [`Client`] signs requests with cumulative vouchers, sends them to a
//! verified provider it keeps funded, and returns answers only once their receipts verified (plain and
//! streaming). Trust lives in `verify`, money in `funding`, durable state in `store`.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use zg_billing::{Domains, EthSigner, Request, SessionClaims, SessionToken, Voucher};
use zg_chain::{InferenceService, TxOutcome};

use crate::clock::now_ms;
use crate::config::{ClientConfig, Transport};
use crate::error::{Error, Result};
use crate::funding::{Balance, Funder};
use crate::grpc::{self, Channels, GrpcAnswer};
use crate::http::{http_err, provider_refusal, read_body};
use crate::receipt::{self, Expectation, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, VerifiedReceipt};
use crate::store::{ProviderState, Store};
use crate::stream::{ChatStream, StreamCtx, http_pieces};
use crate::verify::{ProviderVerification, Providers, Target};

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
    /// The transport that carried it ([`Transport::Http`] or [`Transport::Grpc`]).
    pub transport: Transport,
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

/// A request the provider accepted (2xx head), on the transport it went over.
pub(crate) enum Sent {
    /// The HTTP response, body unread.
    Http(reqwest::Response),
    /// The gRPC stream after its head.
    Grpc {
        /// The gRPC URL (for error messages).
        url: String,
        /// Head and the rest.
        answer: GrpcAnswer,
    },
}

impl Sent {
    fn transport(&self) -> Transport {
        match self {
            Sent::Http(_) => Transport::Http,
            Sent::Grpc { .. } => Transport::Grpc,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) chain: zg_chain::Client,
    pub(crate) key: EthSigner,
    pub(crate) http: reqwest::Client,
    channels: Channels,
    pub(crate) cfg: ClientConfig,
    pub(crate) store: Store,
    providers: Arc<Providers>,
    funder: Funder,
    domains: Domains,
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
        // Per read: the response head and each chunk. Whole bodies and streams have their own deadlines.
        http = http.read_timeout(cfg.timeout);
        let http = http.build().map_err(|e| Error::Http {
            op: "build client",
            url: String::new(),
            reason: e.to_string(),
        })?;
        let store = Store::open(&cfg.data_dir, key.address())?;
        let domains = Domains::new(chain.chain_id(), chain.addresses().inference);
        let providers = Arc::new(Providers::new(
            chain.clone(),
            http.clone(),
            cfg.clone(),
            store.clone(),
        ));
        let funder = Funder::new(chain.clone(), store.clone(), key.address(), cfg.top_up);
        Ok(Self(Arc::new(Inner {
            chain,
            key,
            http,
            channels: Channels::default(),
            cfg,
            store,
            providers,
            funder,
            domains,
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
        self.0.providers.service(provider).await
    }

    /// Verifies a provider: fetches fresh evidence for a random nonce (`GET /v1/attestation?nonce=`),
    /// checks it under the policy (quote, collateral, TCB, measurements, event-log replay, the nonce),
    /// checks that the bound settlement signer is the on-chain `teeSignerAddress`, and remembers the bound
    /// response key for receipt checks. Simulated evidence passes only with
    /// [`ClientConfig::dangerous_allow_simulated`], and then loudly.
    ///
    /// This is also how a provider refused with [`Error::SignerChanged`] is accepted again: the fresh
    /// attestation must bind the new on-chain signer.
    pub async fn verify_provider(&self, provider: Address) -> Result<ProviderVerification> {
        self.0.providers.verify(provider).await
    }

    /// Verifies the provider (fresh attestation) and acknowledges the TEE signer that attestation bound, on
    /// chain, for this customer's sub-account (`acknowledgeTEESignerAddress`), as the official CLI's
    /// `acknowledge-provider` does. The address is pinned: if the provider swapped its signer between the
    /// verification and the transaction, the contract refuses (`TEESignerChanged`) instead of acknowledging
    /// a signer nobody verified. TEE-signed batches can charge this sub-account only while that signer is
    /// current (and owner-acknowledged).
    pub async fn acknowledge_provider(&self, provider: Address) -> Result<(ProviderVerification, TxOutcome)> {
        let v = self.verify_provider(provider).await?;
        self.0.funder.ensure_sub_account(provider).await?;
        let tx = self
            .0
            .chain
            .inference()
            .acknowledge_tee_signer_address(provider, v.signer)
            .await
            .map_err(Error::chain("acknowledgeTEESignerAddress"))?;
        Ok((v, tx))
    }

    /// Acknowledges `provider`'s TEE signer (as [`Client::acknowledge_provider`]: verified first, pinned) unless the
    /// sub-account already acknowledges its current signer. 0G session tokens need it: they settle only through
    /// TEE-signed batches, which the contract refuses for a customer who has not acknowledged the signer, so
    /// providers refuse such tokens. Returns the verification and transaction when it acknowledged now.
    pub async fn ensure_acknowledged(
        &self,
        provider: Address,
    ) -> Result<Option<(ProviderVerification, TxOutcome)>> {
        if self.acknowledged(provider).await? {
            return Ok(None);
        }
        self.acknowledge_provider(provider).await.map(Some)
    }

    /// Whether this customer's sub-account with `provider` acknowledges its *current* TEE signer on chain
    /// (`Account.acknowledged`; false without a sub-account).
    pub async fn acknowledged(&self, provider: Address) -> Result<bool> {
        let acct = self
            .0
            .chain
            .inference()
            .get_account(self.address(), provider)
            .await
            .map_err(Error::chain("getAccount"))?;
        Ok(acct.is_some_and(|a| a.acknowledged))
    }

    /// The customer's balance with a provider: on-chain sub-account, and the amounts owed and paid.
    pub async fn balance(&self, provider: Address) -> Result<Balance> {
        self.0.funder.balance(provider).await
    }

    /// The local state kept for a provider (nonces, amounts, verified keys).
    pub async fn state(&self, provider: Address) -> Result<ProviderState> {
        self.0.store.load(provider).await
    }

    /// Makes sure the sub-account covers `fee_cap` on top of what is owed (see [`crate::TopUpPolicy`]).
    /// Reads the chain only when the locally tracked headroom runs low. Returns whether it transferred.
    /// Refuses ([`Error::SignerChanged`]) to fund a provider whose on-chain signer is not the verified one.
    pub async fn ensure_funded(&self, provider: Address, fee_cap: U256) -> Result<bool> {
        self.0.providers.target(provider).await?;
        self.0.funder.ensure_funded(provider, fee_cap).await
    }

    /// The fee cap of a request: its worst-case fee by zg-billing's one rule ([`zg_billing::worst_case_fee`]: body
    /// bytes bound the prompt, `max_tokens` in any form or the default × `n`/`best_of` the completion), which the
    /// provider refuses to go below.
    pub(crate) fn fee_cap(&self, t: &Target, route: Route, body: &[u8]) -> Result<U256> {
        let endpoint = match route {
            Route::Chat => zg_billing::Endpoint::Chat,
            Route::Completions => zg_billing::Endpoint::Completions,
            Route::Embeddings => zg_billing::Endpoint::Embeddings,
        };
        zg_billing::worst_case_fee(&t.prices, endpoint, body, self.0.cfg.default_max_tokens).map_err(|e| {
            // A body the provider would refuse (not JSON, a non-boolean `stream`, a bad `max_tokens`) is the
            // caller's input error.
            if e.is_client_fault() {
                Error::InvalidInput(e.to_string())
            } else {
                Error::Signing(e)
            }
        })
    }

    /// Reserves a fresh nonce durably and signs the request and a voucher over everything owed so far.
    pub(crate) async fn sign(
        &self,
        t: &Target,
        route: Route,
        body: &[u8],
        fee_cap: U256,
    ) -> Result<(String, Expectation)> {
        let me = self.address();
        let provider = t.provider;
        let key = self.0.key.clone();
        let domains = self.0.domains.clone();
        let body_hash = zg_billing::body_hash(body);
        // The signing runs under the state file's lock, on the blocking pool (the store's rule).
        let (header, nonce) = self
            .0
            .store
            .update(provider, move |st| {
                // Nonces: strictly increasing, and at least the current time in microseconds so a lost data
                // dir still never replays an old nonce (the provider keeps a 1024-wide window).
                let floor = U256::from(now_ms()).saturating_mul(U256::from(1000u64));
                let nonce = st.last_nonce.saturating_add(U256::from(1u64)).max(floor);
                st.last_nonce = nonce;
                let request = Request {
                    user: me,
                    provider,
                    service: route.service().into(),
                    nonce,
                    bodyHash: body_hash,
                    feeCap: fee_cap,
                };
                let mut signed = domains.sign_request(&key, request)?;
                if !st.owed.is_zero() {
                    // Never below a voucher signed before (the store refuses a regressing write as well).
                    let amount = st.owed.max(st.vouched);
                    let v = Voucher {
                        user: me,
                        provider,
                        cumulativeAmount: amount,
                        nonce,
                    };
                    signed = signed.with_voucher(domains.sign_voucher(&key, v)?);
                    st.vouched = amount;
                    st.voucher_nonce = nonce;
                }
                Ok((signed.to_header(), nonce))
            })
            .await?;
        let exp = Expectation {
            response_key: t.response_key,
            nonce,
            model: receipt::expected_model(&t.model, body),
            prices: t.prices,
            fee_cap,
        };
        Ok((header, exp))
    }

    /// Sends a signed request to a provider whose on-chain signer is still the verified one, after the
    /// sub-account was topped up, over gRPC when the target has a gRPC URL (see
    /// [`ClientConfig::transport`]), HTTP otherwise; retries once after a fresh top-up if the provider has
    /// not seen the new balance yet (it caches accounts for a moment).
    pub(crate) async fn send(
        &self,
        provider: Address,
        route: Route,
        body: &Bytes,
    ) -> Result<(Sent, Expectation, Target)> {
        let t = self.0.providers.target(provider).await?;
        if self.0.cfg.transport == Transport::Grpc && t.grpc_url.is_none() {
            return Err(Error::NoGrpcEndpoint { provider });
        }
        let fee_cap = self.fee_cap(&t, route, body)?;
        let topped = self.0.funder.ensure_funded(provider, fee_cap).await?;
        let url = format!("{}/v1/proxy{}", t.base_url, route.path());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (header, exp) = self.sign(&t, route, body, fee_cap).await?;
            let err = match &t.grpc_url {
                Some(g) => {
                    let sent = grpc::chat(
                        &self.0.channels,
                        g,
                        route.path().trim_start_matches('/'),
                        header,
                        body,
                        self.0.cfg.max_response_bytes,
                        self.0.cfg.timeout,
                    )
                    .await;
                    match sent {
                        Ok(answer) => {
                            let sent = Sent::Grpc {
                                url: g.clone(),
                                answer,
                            };
                            return Ok((sent, exp, t));
                        }
                        Err(e) => e,
                    }
                }
                None => {
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
                        return Ok((Sent::Http(resp), exp, t));
                    }
                    provider_refusal(resp, self.0.cfg.timeout).await
                }
            };
            if matches!(err, Error::Provider { status: 402, .. }) && attempt == 1 {
                // Our view of the balance may be stale (or the provider's): re-read, top up, retry once.
                self.0.funder.forget(provider);
                let again = self.0.funder.ensure_funded(provider, fee_cap).await?;
                if topped || again {
                    tokio::time::sleep(Duration::from_millis(2100)).await;
                    continue;
                }
            }
            return Err(err);
        }
    }

    /// Sends a request (`stream` must be absent or `false` in the body) and returns the answer once its
    /// receipt verified: signature by the attested key, hashes of the exact bytes, nonce, model, and fee.
    /// The answer is read whole within [`ClientConfig::timeout`] and up to
    /// [`ClientConfig::max_response_bytes`], over either transport.
    pub async fn request(
        &self,
        provider: Address,
        route: Route,
        body: impl Into<Bytes>,
    ) -> Result<ChatResponse> {
        let body = body.into();
        let (sent, exp, _) = self.send(provider, route, &body).await?;
        let (max, deadline) = (self.0.cfg.max_response_bytes, self.0.cfg.timeout);
        let transport = sent.transport();
        let (status, bytes, receipt) = match sent {
            Sent::Http(resp) => {
                let status = resp.status().as_u16();
                let header = resp
                    .headers()
                    .get(RECEIPT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = read_body(resp, "answer", max, deadline).await?;
                let receipt = header.map(|h| receipt::parse_receipt_header(&h)).transpose();
                (status, bytes, receipt)
            }
            Sent::Grpc { url, answer } => {
                let (bytes, r) = grpc::read_answer(&url, answer.rest, max, deadline).await?;
                (answer.status, bytes, Ok(r))
            }
        };
        let checked = receipt.and_then(|r| {
            let r = r.ok_or(Error::MissingReceipt)?;
            let response_hash = B256::from(<[u8; 32]>::from(Sha256::digest(&bytes)));
            let fee = receipt::check(&r, &exp, &body, response_hash)?;
            Ok((r, fee))
        });
        let (r, fee) = checked.inspect_err(|e| {
            if e.is_verification_failure() {
                // Read the provider's on-chain signer again before the next request.
                self.0.providers.distrust(provider);
            }
        })?;
        let receipt = self.0.store.record(provider, r, fee, exp.nonce).await?;
        Ok(ChatResponse {
            status,
            body: bytes,
            receipt,
            transport,
        })
    }

    /// A chat completion (`/v1/proxy/chat/completions`), verified.
    pub async fn chat(&self, provider: Address, body: impl Into<Bytes>) -> Result<ChatResponse> {
        self.request(provider, Route::Chat, body).await
    }

    /// A chat completion with `model` set in the body: a deployed adapter's name (`ft-…`, see
    /// [`zg_adapters::adapter_name`]) is answered by that adapter, to its owner only, and its receipt must name
    /// it; billing is the service's prices as for any request. `body` must be a JSON object.
    pub async fn chat_model(&self, provider: Address, model: &str, body: &[u8]) -> Result<ChatResponse> {
        self.request(provider, Route::Chat, with_model(body, model)?)
            .await
    }

    /// [`Client::chat_model`], streamed.
    pub async fn chat_stream_model(&self, provider: Address, model: &str, body: &[u8]) -> Result<ChatStream> {
        self.request_stream(provider, Route::Chat, with_model(body, model)?)
            .await
    }

    /// A streamed request: the body should set `"stream": true`. Yields the provider's SSE events as they
    /// arrive; the last item is the verified receipt (an error if it does not verify, or if the stream
    /// exceeds [`ClientConfig::max_response_bytes`] or [`ClientConfig::stream_timeout`]).
    pub async fn request_stream(
        &self,
        provider: Address,
        route: Route,
        body: impl Into<Bytes>,
    ) -> Result<ChatStream> {
        let body = body.into();
        let (sent, exp, _) = self.send(provider, route, &body).await?;
        let transport = sent.transport();
        let (pieces, res_key) = match sent {
            Sent::Http(resp) => {
                let res_key = resp
                    .headers()
                    .get(RES_KEY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (http_pieces(resp), res_key)
            }
            Sent::Grpc { url, answer } => (
                grpc::pieces(&url, answer.rest, self.0.cfg.max_response_bytes),
                answer.res_key,
            ),
        };
        let ctx = StreamCtx {
            provider,
            store: self.0.store.clone(),
            providers: Arc::clone(&self.0.providers),
            max_bytes: self.0.cfg.max_response_bytes,
            timeout: self.0.cfg.stream_timeout,
        };
        Ok(ChatStream::new(ctx, pieces, body, exp, res_key, transport))
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
        if self.0.store.load(provider).await?.owed.is_zero() {
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
        Ok(self.0.store.load(provider).await?.vouched)
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
            (_, Some(d)) => now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
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

/// `body` (a JSON object) with its `model` set to `model`, for [`Client::chat_model`] and callers who build
/// bodies themselves. Refuses a body that is not a JSON object, or an empty model.
pub fn with_model(body: &[u8], model: &str) -> Result<Bytes> {
    if model.is_empty() || model.len() > 256 {
        return Err(Error::InvalidInput(format!(
            "model {model:?}: give 1 to 256 characters"
        )));
    }
    let mut v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidInput(format!("the request body is not JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| Error::InvalidInput("the request body is not a JSON object".into()))?;
    obj.insert("model".into(), serde_json::Value::String(model.to_owned()));
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| Error::InvalidInput(format!("the request body: {e}")))
}
