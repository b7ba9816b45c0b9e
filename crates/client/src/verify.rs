//! Which providers the client trusts, and with which keys: fresh attestation ([`Providers::verify`]), the
//! verified keys kept per provider, and the on-chain `teeSignerAddress` read again on an interval and after
//! every answer that fails verification. When the signer on chain is no longer the one verified, the
//! provider is refused ([`Error::SignerChanged`]) until a fresh attestation binds the new one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use alloy_primitives::Address;
use serde::Serialize;
use zg_attestation::{Evidence, Timestamp, VerificationReport, Verifier};
use zg_billing::Prices;
use zg_chain::InferenceService;

use crate::config::{ClientConfig, Transport};
use crate::error::{Error, Result};
use crate::http::{http_err, provider_refusal, read_body};
use crate::store::{Store, VerifiedKeys};

/// The longest `Retry-After` (seconds) a quote refusal is waited out once before it is reported.
const MAX_QUOTE_RETRY_AFTER_SECS: u64 = 10;

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

/// A provider the client has looked up and verified: service, prices, keys, and when the chain was last
/// asked whether its signer is still the verified one.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) provider: Address,
    pub(crate) base_url: String,
    /// The gRPC URL native requests go to (`None`: HTTP), chosen by [`crate::ClientConfig::transport`].
    pub(crate) grpc_url: Option<String>,
    pub(crate) model: String,
    pub(crate) prices: Prices,
    pub(crate) response_key: [u8; 32],
    /// The verified settlement signer (equal to the on-chain one at `checked`).
    pub(crate) signer: Address,
    pub(crate) checked: Instant,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s.trim_start_matches("0x"))
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
}

/// The verified providers of one client.
pub(crate) struct Providers {
    chain: zg_chain::Client,
    http: reqwest::Client,
    cfg: ClientConfig,
    store: Store,
    verifier: Verifier,
    targets: Mutex<HashMap<Address, Target>>,
}

impl Providers {
    pub(crate) fn new(
        chain: zg_chain::Client,
        http: reqwest::Client,
        cfg: ClientConfig,
        store: Store,
    ) -> Self {
        Self {
            chain,
            http,
            cfg,
            store,
            verifier: Verifier::new_prod(),
            targets: Mutex::new(HashMap::new()),
        }
    }

    /// One provider's service, read from the chain now.
    pub(crate) async fn service(&self, provider: Address) -> Result<InferenceService> {
        self.chain
            .inference()
            .get_service(provider)
            .await
            .map_err(Error::chain("getService"))?
            .ok_or(Error::UnknownProvider { provider })
    }

    fn base_url(&self, service: &InferenceService) -> String {
        self.cfg
            .url_override
            .clone()
            .unwrap_or_else(|| service.url.clone())
            .trim_end_matches('/')
            .to_owned()
    }

    /// Where native requests go over gRPC: the override, else the `grpc` URL the service advertises in
    /// its on-chain `additionalInfo` JSON; only plaintext `http://` URLs (gRPC over TLS is not built in yet,
    /// so `auto` falls back to HTTP for anything else). `None` under [`Transport::Http`].
    fn grpc_url(&self, service: &InferenceService) -> Option<String> {
        if self.cfg.transport == Transport::Http {
            return None;
        }
        let url = match &self.cfg.grpc_url_override {
            Some(u) => u.clone(),
            None => service.advertised_grpc_url()?,
        };
        let url = url.trim().trim_end_matches('/').to_owned();
        url.starts_with("http://").then_some(url)
    }

    /// Fresh evidence for a random nonce, checked under the policy, the bound signer compared with the
    /// on-chain one; on success the keys are stored (durably) and used from now on.
    pub(crate) async fn verify(&self, provider: Address) -> Result<ProviderVerification> {
        let service = self.service(provider).await?;
        let base = self.base_url(&service);
        let nonce: [u8; 32] = rand::random();
        let url = format!("{base}/v1/attestation?nonce={}", hex::encode(nonce));
        let mut resp = self.http.get(&url).send().await.map_err(http_err("GET", &url))?;
        // Providers rate-limit fresh quotes per client (a quote costs them a TDX round trip). A short wait they
        // ask for is honoured once (verify, acknowledge and `zg serve` run back to back); a longer one is an error.
        if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(secs) = wait.filter(|s| *s <= MAX_QUOTE_RETRY_AFTER_SECS) {
                tracing::info!(%provider, secs, "the provider asked to wait before a fresh attestation quote");
                tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                resp = self.http.get(&url).send().await.map_err(http_err("GET", &url))?;
            }
        }
        if !resp.status().is_success() {
            return Err(provider_refusal(resp, self.cfg.timeout).await);
        }
        let bytes = read_body(resp, "attestation", self.cfg.max_response_bytes, self.cfg.timeout).await?;
        let evidence = Evidence::from_document(&bytes).map_err(|e| Error::Evidence {
            provider,
            reason: e.to_string(),
        })?;
        let mut policy = self.cfg.policy.clone().with_nonce(nonce);
        policy.expected_signer = Some(service.tee_signer);
        let report = self.verifier.verify(
            &evidence,
            &policy,
            self.cfg.collateral.as_deref(),
            Timestamp::now(),
        );
        let report = (*report).clone();
        if report.simulated && !self.cfg.policy.dangerous_allow_simulated {
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
            url: base,
        };
        self.store
            .update(provider, move |st| {
                st.verified = Some(keys);
                Ok(())
            })
            .await?;
        self.remember(provider, &service, binding.response_key);
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

    /// Keeps `service` with its verified `response_key` as the provider's target, checked now.
    fn remember(&self, provider: Address, service: &InferenceService, response_key: [u8; 32]) -> Target {
        let t = Target {
            provider,
            base_url: self.base_url(service),
            grpc_url: self.grpc_url(service),
            model: service.model.clone(),
            prices: Prices {
                input: service.input_price,
                output: service.output_price,
            },
            response_key,
            signer: service.tee_signer,
            checked: Instant::now(),
        };
        if let Ok(mut m) = self.targets.lock() {
            m.insert(provider, t.clone());
        }
        t
    }

    /// Forgets the provider's target, so the next use reads the chain again before anything is sent or
    /// paid (called after an answer fails verification, and when the signer changed).
    pub(crate) fn distrust(&self, provider: Address) {
        if let Ok(mut m) = self.targets.lock() {
            m.remove(&provider);
        }
    }

    /// The provider's service and verified keys, current as of the last `signer_check_interval`:
    /// - in memory and checked recently: used as is;
    /// - else the chain is read: the same signer refreshes prices, model and URL; a different signer than
    ///   the one this data dir verified is [`Error::SignerChanged`] (nothing is sent or topped up);
    /// - never verified in this data dir: verified now (fresh attestation).
    pub(crate) async fn target(&self, provider: Address) -> Result<Target> {
        let cached = self.targets.lock().ok().and_then(|m| m.get(&provider).cloned());
        if let Some(t) = &cached
            && t.checked.elapsed() < self.cfg.signer_check_interval
        {
            return Ok(t.clone());
        }
        let service = self.service(provider).await?;
        if let Some(t) = cached
            && t.signer == service.tee_signer
        {
            return Ok(self.remember(provider, &service, t.response_key));
        }
        let st = self.store.load(provider).await?;
        match st.verified {
            Some(k) if k.signer != service.tee_signer => {
                self.distrust(provider);
                tracing::error!(
                    %provider, verified = %k.signer, on_chain = %service.tee_signer,
                    "the provider's on-chain TEE signer changed: refusing to send or top up until it is verified again"
                );
                Err(Error::SignerChanged {
                    provider,
                    verified: k.signer,
                    on_chain: service.tee_signer,
                })
            }
            Some(k) if !k.simulated || self.cfg.policy.dangerous_allow_simulated => {
                let key = hex32(&k.response_key).ok_or(Error::NotVerified { provider })?;
                Ok(self.remember(provider, &service, key))
            }
            _ => {
                self.verify(provider).await?;
                self.targets
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&provider).cloned())
                    .ok_or(Error::NotVerified { provider })
            }
        }
    }
}
