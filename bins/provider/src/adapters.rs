//! LoRA adapters deployed by fine-tuning brokers (issue 11 item 4, 0G's "deploy-adapter"): the gRPC service
//! `zg.v1.Adapters` (`proto/zg/v1/adapters.proto`), the registry the core consults for every request naming an
//! `ft-…` model, and the adapters' files under `<data_dir>/adapters/<name>/`.
//!
//! [`AdapterService::deploy`] is the one place an adapter is admitted. In order, each refusal a typed
//! [`Error::Adapter`] whose `code` names it, and nothing kept on refusal:
//! 1. the head is well formed and bounded (evidence ≤ 1 MiB, sealed length ≤ the configured package limit);
//! 2. the provider nonce is taken out of the outstanding set (unknown, used, expired or issued to another broker:
//!    refused), so a captured deployment cannot be replayed;
//! 3. the broker's FineTuningServing `teeSignerAddress` is read from chain and its evidence verified under the
//!    operator's peer policy, bound to that nonce and that signer ([`zg_adapters::verify_peer`]);
//! 4. only then are the sealed bytes read (bounded in size and time), and the broker's TEE signature over the
//!    [`DeployStatement`] (head, keccak of the sealed bytes and of the wrapped key) must recover to that signer;
//! 5. the customer's [`SignedDeployAuthorization`] must be for this chain, this provider and that broker, unexpired;
//!    the on-chain deliverable `getDeliverable(user, broker, task)` must exist and be acknowledged; the name must
//!    be `adapter_name(base, task)` and the base this provider's model;
//! 6. the package is opened with the TEE signer's secret key (tags signed by the broker's signer), written to a
//!    temporary directory (fsynced), loaded by the upstream (zg-model refuses wrong shapes or another base; vLLM's
//!    `load_lora_adapter`), renamed into place and served to `user` only.
//!
//! Who can call what, and the worst they can do:
//! - `Challenge`: anyone. Costs a fresh quote (per-IP token bucket shared with `GetAttestation`) and one of at most
//!   [`MAX_OUTSTANDING_CHALLENGES`] nonces, each expiring after [`CHALLENGE_TTL`]. When they are all taken the
//!   oldest gives way (a flood of challenges cannot lock brokers out; it can at worst void a nonce older than
//!   the last 1024 challenges, and that broker asks again).
//! - `Deploy`: anyone can open the stream; without a live nonce and attested evidence of a registered fine-tuning
//!   TEE it is refused after reading the head only (≤ 1 MiB + the message limit). An attested broker can deploy
//!   only adapters its customers authorized, for their acknowledged deliverables. The head must arrive within 30 s;
//!   the sealed bytes are read only in one of [`MAX_DEPLOYS_AT_ONCE`] slots, taken after the attestation passed
//!   (so unattested peers cannot hold them), each bounded by the package limit and the deploy timeout.
//! - `List` / `Remove`: a customer's signed [`OwnerRequest`] (300 s window); it sees and removes its own adapters
//!   only. A replayed `Remove` inside the window removes at most what its signer could remove anyway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, keccak256};
use axum::http::StatusCode;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};
use zg_adapters::{
    AdapterPackage, DeployAuthorization, DeployStatement, OwnerAction, OwnerRequest, PeerPolicy,
    SealedAdapter, SignedDeployAuthorization, adapter_name, challenge_digest, check_name, sig65, verify_peer,
};
use zg_attestation::{Timestamp, Verifier};
use zg_proto::v1::adapters_server::{Adapters as AdaptersRpc, AdaptersServer};
use zg_proto::v1::deploy_adapter_chunk::Part;
use zg_proto::v1::{
    AdapterChallengeRequest, AdapterChallengeResponse, AdapterInfo, DeployAdapterChunk, DeployAdapterHead,
    DeployAdapterResponse, ListAdaptersRequest, ListAdaptersResponse, OwnerAuth, RemoveAdapterRequest,
    RemoveAdapterResponse,
};

use crate::core::{Provider, now_ms};
use crate::error::{Error, Result};
use crate::upstream::Upstream;

/// Directory under the data dir holding one directory per adapter.
pub const ADAPTERS_DIR: &str = "adapters";
/// The deployment record in an adapter's directory.
pub const DEPLOYMENT_FILE: &str = "deployment.json";
/// How long a provider nonce from `Challenge` stays valid.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);
/// Most provider nonces outstanding at once (expired ones are dropped first; beyond it the oldest is dropped).
pub const MAX_OUTSTANDING_CHALLENGES: usize = 1024;
/// Deployments processed at once (each may hold a package in memory).
pub const MAX_DEPLOYS_AT_ONCE: usize = 2;
/// Default most adapters served to one customer (`[adapters] max_per_owner`).
pub const DEFAULT_MAX_PER_OWNER: usize = 8;
/// Default most adapters served in all (`[adapters] max_adapters`).
pub const DEFAULT_MAX_ADAPTERS: usize = 64;
/// The `state` of a served adapter (0G's word).
pub const STATE_ACTIVE: &str = "active";
/// Largest gRPC message the Adapters service decodes: a head (evidence ≤ 1 MiB, the rest small) or one sealed
/// chunk (the broker sends 1 MiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = (1 << 20) + (64 << 10);
/// `Deploy` streams open at once before their head is judged: each may buffer one message
/// ([`MAX_MESSAGE_BYTES`]) unauthenticated for up to the head timeout, so this bounds what anyone can make the
/// provider hold (16 × ~1 MiB); beyond it a new stream is refused at once with `saturated`.
pub const MAX_DEPLOY_STREAMS: usize = 16;

const MAX_EVIDENCE_BYTES: usize = 1 << 20;
/// Time a `Deploy` stream has to send its head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_WRAPPED_KEY_BYTES: usize = 1024;
/// Sealing adds a header and a tag per chunk on top of the framed package.
const SEAL_OVERHEAD: u64 = 1 << 16;

/// A deployed adapter: who it is served to and where it came from (`deployment.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    /// The model name requests use (`ft-…`).
    pub name: String,
    /// The base model it adapts.
    pub base_model: String,
    /// The customer it is served to.
    pub owner: Address,
    /// The fine-tuning task id.
    pub task_id: String,
    /// The fine-tuning provider that trained and handed it over.
    pub broker: Address,
    /// Unix seconds.
    pub deployed_at: u64,
}

impl Deployment {
    /// The gRPC view.
    pub fn info(&self) -> AdapterInfo {
        AdapterInfo {
            name: self.name.clone(),
            base_model: self.base_model.clone(),
            owner: self.owner.to_checksum(None),
            task_id: self.task_id.clone(),
            broker: self.broker.to_checksum(None),
            deployed_at: self.deployed_at,
            state: STATE_ACTIVE.into(),
        }
    }

    /// The 0G SDK's view (`GET /v1/lora/adapters`).
    pub fn zerog_json(&self) -> serde_json::Value {
        serde_json::json!({
            "adapterName": self.name,
            "taskId": self.task_id,
            "baseModel": self.base_model,
            "state": STATE_ACTIVE,
            "owner": self.owner.to_checksum(None),
            "broker": self.broker.to_checksum(None),
            "deployedAt": self.deployed_at,
        })
    }
}

/// The adapters served, by name. The core consults it for every request whose body names an `ft-…` model.
///
/// A deployment [`reserve`](AdapterRegistry::reserve)s its name before it installs anything: one deployment per
/// name at a time, a name served to one customer only, and at most so many adapters per customer and in all.
#[derive(Debug, Default)]
pub struct AdapterRegistry {
    served: RwLock<HashMap<String, Deployment>>,
    /// Names being deployed, and for whom.
    pending: Mutex<HashMap<String, Address>>,
}

/// Why a name cannot be reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveRefusal {
    /// Another deployment of this name is under way.
    InProgress,
    /// The name is served to another customer.
    Taken,
    /// The customer already has `limit` adapters here.
    OwnerLimit {
        /// The per-customer cap.
        limit: usize,
    },
    /// The provider serves `limit` adapters already.
    TotalLimit {
        /// The cap in all.
        limit: usize,
    },
}

impl AdapterRegistry {
    fn served(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Deployment>> {
        self.served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Address>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The adapter named `name`.
    pub fn get(&self, name: &str) -> Option<Deployment> {
        self.served().get(name).cloned()
    }

    /// `owner`'s adapters, by name.
    pub fn owned_by(&self, owner: Address) -> Vec<Deployment> {
        let mut v: Vec<Deployment> = self
            .served()
            .values()
            .filter(|d| d.owner == owner)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Number of adapters served.
    pub fn len(&self) -> usize {
        self.served().len()
    }

    /// Whether none is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reserves `name` for a deployment to `owner` until [`AdapterRegistry::release`]: refused while another
    /// deployment of it is under way, when it is served to another customer, or when `owner` would have more
    /// than `max_per_owner` adapters (served or being deployed) or the provider more than `max_total`. A
    /// redeployment of `owner`'s served adapter replaces it and counts against neither cap.
    pub fn reserve(
        &self,
        name: &str,
        owner: Address,
        max_per_owner: usize,
        max_total: usize,
    ) -> std::result::Result<(), ReserveRefusal> {
        // Lock order: pending, then served (insert/remove take served alone).
        let mut pending = self.pending();
        if pending.contains_key(name) {
            return Err(ReserveRefusal::InProgress);
        }
        let served = self.served();
        match served.get(name) {
            Some(d) if d.owner != owner => return Err(ReserveRefusal::Taken),
            Some(_) => {}
            None => {
                let owned = served.values().filter(|d| d.owner == owner).count()
                    + pending.values().filter(|o| **o == owner).count();
                if owned >= max_per_owner {
                    return Err(ReserveRefusal::OwnerLimit { limit: max_per_owner });
                }
                let total = served.len()
                    + pending
                        .keys()
                        .filter(|n| !served.contains_key(n.as_str()))
                        .count();
                if total >= max_total {
                    return Err(ReserveRefusal::TotalLimit { limit: max_total });
                }
            }
        }
        drop(served);
        pending.insert(name.to_owned(), owner);
        Ok(())
    }

    /// Ends the reservation of `name`.
    pub fn release(&self, name: &str) {
        self.pending().remove(name);
    }

    fn insert(&self, d: Deployment) {
        self.served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(d.name.clone(), d);
    }

    fn remove(&self, name: &str) -> Option<Deployment> {
        self.served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
    }
}

/// A reserved name, released when dropped (whatever way the deployment ends).
struct Reservation {
    p: Provider,
    name: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.p.adapters().release(&self.name);
    }
}

/// How the provider judges brokers and bounds deployments (`[adapters]` in the config).
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    /// The brokers' attestation policy and DCAP collateral. The default accepts nobody (no allow-list, no
    /// simulated evidence): deployments are refused until the operator configures one.
    pub policy: PeerPolicy,
    /// Largest adapter package (framed plaintext) accepted.
    pub max_package_bytes: u64,
    /// Longest a deployment may take, head to answer.
    pub deploy_timeout: Duration,
    /// Most adapters served to one customer (a redeployment of one of them does not count).
    pub max_per_owner: usize,
    /// Most adapters served in all (each is held in memory by the built-in model, and on disk).
    pub max_adapters: usize,
    /// Most provider nonces outstanding at once ([`MAX_OUTSTANDING_CHALLENGES`]); beyond it the oldest is
    /// dropped.
    pub max_outstanding_challenges: usize,
}

impl Default for AdapterSettings {
    fn default() -> Self {
        Self {
            policy: PeerPolicy::default(),
            max_package_bytes: zg_adapters::DEFAULT_MAX_PACKAGE_BYTES,
            deploy_timeout: Duration::from_secs(300),
            max_per_owner: DEFAULT_MAX_PER_OWNER,
            max_adapters: DEFAULT_MAX_ADAPTERS,
            max_outstanding_challenges: MAX_OUTSTANDING_CHALLENGES,
        }
    }
}

fn refusal(code: &'static str, status: StatusCode, message: impl Into<String>) -> Error {
    Error::Adapter {
        code,
        status,
        message: message.into(),
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> Error {
    refusal(code, StatusCode::BAD_REQUEST, message)
}

fn denied(code: &'static str, message: impl Into<String>) -> Error {
    refusal(code, StatusCode::FORBIDDEN, message)
}

fn precondition(code: &'static str, message: impl Into<String>) -> Error {
    refusal(code, StatusCode::PRECONDITION_FAILED, message)
}

/// A zg-adapters refusal as the provider answers it.
fn refused(e: zg_adapters::Error) -> Error {
    use zg_adapters::Error as A;
    let (code, status) = match &e {
        A::Attestation { .. } | A::Evidence { .. } => ("peer_attestation_refused", StatusCode::FORBIDDEN),
        A::SimulatedRefused { .. } => ("peer_simulated_refused", StatusCode::FORBIDDEN),
        A::BadSignature { .. } | A::WrongSigner { .. } => ("bad_signature", StatusCode::FORBIDDEN),
        A::Stale { .. } => ("stale", StatusCode::FORBIDDEN),
        A::Mismatch { .. } => ("mismatch", StatusCode::FORBIDDEN),
        A::Package(_) | A::Sealing(_) => ("sealed_package_refused", StatusCode::BAD_REQUEST),
        A::BadName { .. } => ("bad_adapter_name", StatusCode::BAD_REQUEST),
        A::Io { .. } => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        _ => ("refused", StatusCode::FORBIDDEN),
    };
    refusal(code, status, e.to_string())
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Upstream {
        url: "adapter task".into(),
        reason: e.to_string(),
    }
}

fn address(field: &'static str, s: &str) -> Result<Address> {
    s.trim()
        .parse()
        .map_err(|_| invalid("bad_request", format!("{field}: {s:?} is not an address")))
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Whether `base` (as a broker names it: an id or a Hugging Face path) is the model this provider serves: zg-model's
/// rule, the last path segment compared case-insensitively.
pub fn serves_base(served: &str, base: &str) -> bool {
    !base.is_empty() && zg_model::same_model_name(served, base)
}

/// The tonic service `zg.v1.Adapters`.
#[derive(Clone)]
pub struct AdapterService(Arc<ServiceInner>);

struct ServiceInner {
    p: Provider,
    chain: zg_chain::Client,
    chain_id: u64,
    data_dir: PathBuf,
    settings: AdapterSettings,
    verifier: Verifier,
    challenges: Mutex<HashMap<[u8; 32], (Instant, Address)>>,
    deploys: Arc<Semaphore>,
    /// Open `Deploy` streams, authenticated or not ([`MAX_DEPLOY_STREAMS`]).
    streams: Arc<Semaphore>,
}

impl std::fmt::Debug for AdapterService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterService")
            .field("chain_id", &self.0.chain_id)
            .field("data_dir", &self.0.data_dir)
            .field("settings", &self.0.settings)
            .finish_non_exhaustive()
    }
}

/// The Adapters gRPC server over `p` (adapters under `data_dir/adapters`).
pub fn adapter_service(
    p: Provider,
    chain: zg_chain::Client,
    data_dir: PathBuf,
    settings: AdapterSettings,
) -> AdaptersServer<AdapterService> {
    let chain_id = chain.chain_id();
    AdaptersServer::new(AdapterService(Arc::new(ServiceInner {
        p,
        chain,
        chain_id,
        data_dir,
        settings,
        verifier: Verifier::new_prod(),
        challenges: Mutex::new(HashMap::new()),
        deploys: Arc::new(Semaphore::new(MAX_DEPLOYS_AT_ONCE)),
        streams: Arc::new(Semaphore::new(MAX_DEPLOY_STREAMS)),
    })))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
}

impl AdapterService {
    fn issue_nonce(&self, broker: Address) -> Result<[u8; 32]> {
        let mut c = self
            .0
            .challenges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let max = self.0.settings.max_outstanding_challenges.max(1);
        if c.len() >= max {
            let now = Instant::now();
            c.retain(|_, (expires, _)| *expires > now);
        }
        // Still full: the oldest nonce gives way. Anyone may ask for challenges, so refusing new ones when full
        // would let a flood (≈ 9 a second, from a few addresses) lock every broker out; evicting the oldest means
        // a flood must outpace a broker's own challenge-to-deploy round trip (seconds) instead.
        while c.len() >= max {
            let Some(oldest) = c.iter().min_by_key(|(_, (expires, _))| *expires).map(|(n, _)| *n) else {
                break;
            };
            c.remove(&oldest);
        }
        let nonce: [u8; 32] = rand::random();
        c.insert(nonce, (Instant::now() + CHALLENGE_TTL, broker));
        Ok(nonce)
    }

    /// Takes `nonce` out of the outstanding set: single use, unexpired, issued to `broker`.
    fn take_nonce(&self, nonce: &[u8; 32], broker: Address) -> Result<()> {
        let taken = self
            .0
            .challenges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(nonce);
        match taken {
            Some((expires, _)) if expires <= Instant::now() => Err(precondition(
                "provider_nonce_unknown",
                "the provider nonce expired (valid 120 s): call Challenge again",
            )),
            Some((_, issued_to)) if issued_to != broker => Err(denied(
                "provider_nonce_unknown",
                format!("the provider nonce was issued to {issued_to}, not {broker}"),
            )),
            Some(_) => Ok(()),
            None => Err(precondition(
                "provider_nonce_unknown",
                "the provider nonce is unknown or already used: call Challenge again",
            )),
        }
    }

    async fn challenge_inner(
        &self,
        peer: std::net::IpAddr,
        r: AdapterChallengeRequest,
    ) -> Result<AdapterChallengeResponse> {
        let broker_nonce = <[u8; 32]>::try_from(r.broker_nonce.as_slice())
            .map_err(|_| invalid("bad_request", "broker_nonce must be exactly 32 bytes"))?;
        let broker = address("broker", &r.broker)?;
        let _quote = self.0.p.quote_permit(peer)?;
        let provider_nonce = self.issue_nonce(broker)?;
        let doc = crate::http::fresh_evidence(&self.0.p, broker_nonce).await?;
        let me = self.0.p.address();
        let digest = challenge_digest(self.0.chain_id, me, broker, &broker_nonce, &provider_nonce);
        let signature = self.0.p.tee().sign_adapter_digest(&digest).map_err(refused)?;
        Ok(AdapterChallengeResponse {
            provider_nonce: provider_nonce.to_vec(),
            evidence_json: doc.to_string(),
            signature: signature.to_vec(),
            provider: me.to_checksum(None),
            chain_id: self.0.chain_id,
        })
    }

    /// The customer of a signed owner request.
    fn owner(&self, auth: Option<OwnerAuth>, action: OwnerAction) -> Result<Address> {
        let a = auth.ok_or_else(|| invalid("bad_request", "auth (a signed owner request) is required"))?;
        let user = address("auth.user", &a.user)?;
        let signature = sig65("owner request", &a.signature).map_err(refused)?;
        let me = self.0.p.address();
        let req = OwnerRequest {
            chain_id: self.0.chain_id,
            provider: me,
            user,
            action,
            timestamp: a.timestamp,
        };
        req.verify(&signature, self.0.chain_id, me, now_secs())
            .map_err(refused)?;
        Ok(user)
    }

    async fn deploy_inner(&self, mut stream: Streaming<DeployAdapterChunk>) -> Result<Deployment> {
        // The head comes first and soon: a peer that opens a stream and sends nothing holds nothing for long.
        let first = tokio::time::timeout(HEAD_TIMEOUT, stream.message())
            .await
            .map_err(|_| {
                refusal(
                    "deploy_timeout",
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no head within {} s", HEAD_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|e| invalid("bad_request", format!("deploy stream: {}", e.message())))?;
        let Some(DeployAdapterChunk {
            part: Some(Part::Head(head)),
        }) = first
        else {
            return Err(invalid("bad_request", "the first Deploy message must be `head`"));
        };
        let mut checked = self.check_head(head)?;
        if matches!(self.0.p.upstream(), Upstream::Builtin(_)) {
            return Err(precondition(
                "adapters_unsupported",
                "this provider's upstream (the demo n-gram model) cannot serve LoRA adapters",
            ));
        }
        // 2. Single use: a replayed or forged nonce ends here, before any chain read.
        self.take_nonce(&checked.nonce, checked.broker)?;
        // 3. The broker's TEE: its on-chain signer, its evidence bound to our nonce under our policy.
        let ft = self.0.chain.fine_tuning();
        let signer = ft
            .tee_signer(checked.broker)
            .await
            .map_err(|e| chain_err("FineTuningServing.getService", e))?
            .ok_or_else(|| {
                precondition(
                    "broker_not_registered",
                    format!("{} has no FineTuningServing service", checked.broker),
                )
            })?;
        let (svc, evidence, nonce, broker) = (
            self.clone(),
            std::mem::take(&mut checked.evidence),
            checked.nonce,
            checked.broker,
        );
        let verified = tokio::task::spawn_blocking(move || {
            verify_peer(
                &svc.0.verifier,
                &svc.0.settings.policy,
                broker,
                evidence.as_bytes(),
                nonce,
                signer,
                Timestamp(now_secs()),
            )
        })
        .await
        .map_err(blocking_failed)?
        .map_err(refused)?;
        if verified.simulated {
            tracing::warn!(%broker, "accepting SIMULATED evidence of a fine-tuning broker (adapters policy allows it)");
        }
        // 4. Only an attested broker gets its bytes read, in one of the few deployment slots.
        let _slot = Arc::clone(&self.0.deploys)
            .try_acquire_owned()
            .map_err(|_| Error::Saturated {
                limit: MAX_DEPLOYS_AT_ONCE,
                retry_after_secs: 5,
            })?;
        let sealed = read_sealed(&mut stream, checked.sealed_len).await?;
        let statement = DeployStatement {
            chain_id: self.0.chain_id,
            provider: self.0.p.address(),
            broker,
            provider_nonce: nonce,
            authorization_hash: checked.auth.hash(),
            adapter_name: checked.name.clone(),
            base_model: checked.base_model.clone(),
            wrapped_key_hash: keccak256(&checked.wrapped_key),
            // Hashed off the runtime below.
            sealed_hash: alloy_primitives::B256::ZERO,
            sealed_len: checked.sealed_len,
        };
        let (sig, signer_addr) = (checked.broker_signature, verified.signer);
        let (sealed, statement) = tokio::task::spawn_blocking(move || {
            let mut statement = statement;
            statement.sealed_hash = keccak256(&sealed);
            zg_adapters::verify("deploy statement", &statement.digest(), &sig, signer_addr)
                .map(|_| (sealed, statement))
        })
        .await
        .map_err(blocking_failed)?
        .map_err(refused)?;
        // 5. The customer's permission, the chain's deliverable, the name and the base.
        let a = &checked.auth.authorization;
        checked
            .auth
            .verify(self.0.chain_id, self.0.p.address(), now_secs())
            .map_err(refused)?;
        if a.broker != broker {
            return Err(denied(
                "mismatch",
                format!(
                    "the authorization names broker {}, the deployment {broker}",
                    a.broker
                ),
            ));
        }
        let want = adapter_name(&checked.base_model, &a.task_id);
        if checked.name != want {
            return Err(invalid(
                "bad_adapter_name",
                format!(
                    "adapter_name {:?} is not {want:?} (ft-<base>-<task id prefix>)",
                    checked.name
                ),
            ));
        }
        if !serves_base(&self.0.p.config().model, &checked.base_model) {
            return Err(precondition(
                "base_model_not_served",
                format!(
                    "the adapter adapts {:?}; this provider serves {:?}",
                    checked.base_model,
                    self.0.p.config().model
                ),
            ));
        }
        let deliverable = ft
            .get_deliverable(a.user, broker, &a.task_id)
            .await
            .map_err(|e| {
                if e.revert().is_some() {
                    precondition(
                        "deliverable_missing",
                        format!(
                            "FineTuningServing has no deliverable {:?} of {} from {broker}",
                            a.task_id, a.user
                        ),
                    )
                } else {
                    chain_err("FineTuningServing.getDeliverable", e)
                }
            })?;
        if !deliverable.acknowledged {
            return Err(precondition(
                "deliverable_not_acknowledged",
                format!(
                    "the customer has not acknowledged deliverable {:?} on chain",
                    a.task_id
                ),
            ));
        }
        // One deployment per name at a time, one customer per name, bounded per customer and in all: checked
        // and reserved at once, held until the adapter is served (or refused), so two deployments of one name
        // cannot both pass.
        let settings = &self.0.settings;
        self.0
            .p
            .adapters()
            .reserve(
                &checked.name,
                a.user,
                settings.max_per_owner,
                settings.max_adapters,
            )
            .map_err(|r| match r {
                ReserveRefusal::InProgress => refusal(
                    "adapter_deploy_in_progress",
                    StatusCode::CONFLICT,
                    format!(
                        "another deployment of {} is under way; retry when it ends",
                        checked.name
                    ),
                ),
                ReserveRefusal::Taken => precondition(
                    "adapter_name_taken",
                    format!("{} is already served to another customer", checked.name),
                ),
                ReserveRefusal::OwnerLimit { limit } => precondition(
                    "adapter_limit",
                    format!(
                        "{} already has {limit} adapters here (adapters.max_per_owner): remove one first \
                         (zg inference remove-adapter)",
                        a.user
                    ),
                ),
                ReserveRefusal::TotalLimit { limit } => precondition(
                    "adapter_limit",
                    format!("this provider serves {limit} adapters already (adapters.max_adapters)"),
                ),
            })?;
        let _reservation = Reservation {
            p: self.0.p.clone(),
            name: checked.name.clone(),
        };
        // 6. Open in the TEE, persist, load, serve.
        let sealed = SealedAdapter {
            sealed,
            wrapped_key: checked.wrapped_key.clone(),
        };
        let (svc, max) = (self.clone(), self.0.settings.max_package_bytes);
        let package =
            tokio::task::spawn_blocking(move || svc.0.p.tee().open_adapter(&sealed, signer_addr, max))
                .await
                .map_err(blocking_failed)?
                .map_err(refused)?;
        debug_assert_eq!(statement.adapter_name, checked.name);
        let d = Deployment {
            name: checked.name.clone(),
            base_model: checked.base_model.clone(),
            owner: a.user,
            task_id: a.task_id.clone(),
            broker,
            deployed_at: now_secs(),
        };
        install(&self.0.p, &self.0.data_dir, &d, package).await?;
        tracing::info!(name = %d.name, owner = %d.owner, broker = %d.broker, task = %d.task_id, "adapter deployed");
        Ok(d)
    }

    fn check_head(&self, h: DeployAdapterHead) -> Result<CheckedHead> {
        let nonce = <[u8; 32]>::try_from(h.provider_nonce.as_slice())
            .map_err(|_| invalid("bad_request", "provider_nonce must be exactly 32 bytes"))?;
        let broker = address("broker", &h.broker)?;
        if h.broker_evidence_json.len() > MAX_EVIDENCE_BYTES {
            return Err(invalid(
                "bad_request",
                "broker_evidence_json is larger than 1 MiB",
            ));
        }
        if h.wrapped_key.is_empty() || h.wrapped_key.len() > MAX_WRAPPED_KEY_BYTES {
            return Err(invalid("bad_request", "wrapped_key must be 1 to 1024 bytes"));
        }
        let limit = self.0.settings.max_package_bytes.saturating_add(SEAL_OVERHEAD);
        if h.sealed_len == 0 || h.sealed_len > limit {
            return Err(refusal(
                "adapter_too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "sealed_len {} is not within 1..={limit} (adapters.max_package_bytes = {})",
                    h.sealed_len, self.0.settings.max_package_bytes
                ),
            ));
        }
        check_name(&h.adapter_name).map_err(refused)?;
        if h.base_model.is_empty() || h.base_model.len() > 256 {
            return Err(invalid("bad_request", "base_model must be 1 to 256 bytes"));
        }
        let a = h
            .authorization
            .ok_or_else(|| invalid("bad_request", "authorization is required"))?;
        let auth = SignedDeployAuthorization {
            authorization: DeployAuthorization {
                chain_id: a.chain_id,
                user: address("authorization.user", &a.user)?,
                broker: address("authorization.broker", &a.broker)?,
                provider: address("authorization.provider", &a.provider)?,
                task_id: a.task_id,
                expires_at: a.expires_at,
            },
            signature: sig65("deploy authorization", &a.signature).map_err(refused)?,
        };
        Ok(CheckedHead {
            nonce,
            broker,
            evidence: h.broker_evidence_json,
            auth,
            name: h.adapter_name,
            base_model: h.base_model,
            wrapped_key: h.wrapped_key,
            sealed_len: h.sealed_len,
            broker_signature: sig65("broker signature", &h.broker_signature).map_err(refused)?,
        })
    }
}

struct CheckedHead {
    nonce: [u8; 32],
    broker: Address,
    evidence: String,
    auth: SignedDeployAuthorization,
    name: String,
    base_model: String,
    wrapped_key: Vec<u8>,
    sealed_len: u64,
    broker_signature: zg_adapters::Sig65,
}

fn chain_err(op: &'static str, e: zg_chain::Error) -> Error {
    Error::Chain {
        op,
        source: Box::new(e),
    }
}

/// Reads exactly `len` sealed bytes from the rest of the stream (nothing more may follow).
async fn read_sealed(stream: &mut Streaming<DeployAdapterChunk>, len: u64) -> Result<Vec<u8>> {
    let cap =
        usize::try_from(len).map_err(|_| invalid("adapter_too_large", "sealed_len does not fit memory"))?;
    let mut buf = Vec::with_capacity(cap);
    loop {
        let m = stream
            .message()
            .await
            .map_err(|e| invalid("bad_request", format!("deploy stream: {}", e.message())))?;
        match m {
            None => break,
            Some(DeployAdapterChunk {
                part: Some(Part::Sealed(b)),
            }) => {
                if (buf.len() as u64).saturating_add(b.len() as u64) > len {
                    return Err(invalid(
                        "bad_request",
                        format!("more sealed bytes than sealed_len = {len}"),
                    ));
                }
                buf.extend_from_slice(&b);
            }
            Some(_) => {
                return Err(invalid(
                    "bad_request",
                    "after the head only `sealed` chunks may follow",
                ));
            }
        }
    }
    if buf.len() as u64 != len {
        return Err(invalid(
            "bad_request",
            format!("the stream ended after {} of {len} sealed bytes", buf.len()),
        ));
    }
    Ok(buf)
}

/// Writes the adapter to a temporary directory (files and directory fsynced).
fn write_tmp(tmp: &Path, d: &Deployment, package: &AdapterPackage) -> Result<()> {
    use std::io::Write as _;
    package.write_dir(tmp).map_err(refused)?;
    let path = tmp.join(DEPLOYMENT_FILE);
    let json = serde_json::to_vec_pretty(d).map_err(|e| invalid("internal", e.to_string()))?;
    let mut f = zg_adapters::private_file(&path).map_err(refused)?;
    f.write_all(&json).map_err(io("write", &path))?;
    f.sync_all().map_err(io("fsync", &path))?;
    sync_dir(tmp)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("fsync", dir))
}

/// Moves `tmp` to `dir` (replacing an older copy), then fsyncs the parent: after a crash either the old or the
/// new directory is there, never a half-written one.
fn commit(tmp: &Path, dir: &Path) -> Result<()> {
    let root = dir.parent().unwrap_or(Path::new("."));
    if dir.exists() {
        let old = root.join(format!(".old-{:016x}", rand::random::<u64>()));
        std::fs::rename(dir, &old).map_err(io("rename", dir))?;
        std::fs::rename(tmp, dir).map_err(io("rename", tmp))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(tmp, dir).map_err(io("rename", tmp))?;
    }
    sync_dir(root)
}

/// Loads the adapter in `dir` into the upstream under `name`.
async fn activate(p: &Provider, name: &str, dir: &Path) -> Result<()> {
    match p.upstream() {
        Upstream::Llm(m) => {
            let (model, name, dir) = (m.model().clone(), name.to_owned(), dir.to_owned());
            tokio::task::spawn_blocking(move || {
                let adapter = zg_model::LoraAdapter::load(&dir)?;
                model.add_adapter(&name, &adapter)
            })
            .await
            .map_err(blocking_failed)?
            .map_err(|e| invalid("adapter_refused", format!("the model refuses the adapter: {e}")))
        }
        Upstream::Http(h) => {
            // vLLM refuses to load a name it holds (400 "already loaded"): after a provider restart (vLLM kept
            // running) or on a redeployment, the copy it holds is unloaded first, so the files on disk are what is
            // served. Unloading a name it does not hold is a 404, ignored.
            if let Err(e) = h.unload_lora(name).await {
                tracing::debug!(%name, error = %e, "no older copy of the adapter to unload upstream");
            }
            h.load_lora(name, dir).await.map_err(|e| {
                precondition(
                    "adapter_refused",
                    format!("the upstream refuses the adapter: {e}"),
                )
            })
        }
        Upstream::Builtin(_) => Err(precondition(
            "adapters_unsupported",
            "this provider's upstream (the demo n-gram model) cannot serve LoRA adapters",
        )),
    }
}

async fn deactivate(p: &Provider, name: &str) {
    match p.upstream() {
        Upstream::Llm(m) => {
            m.model().remove_adapter(name);
        }
        Upstream::Http(h) => {
            if let Err(e) = h.unload_lora(name).await {
                tracing::warn!(%name, error = %e, "the upstream did not unload the adapter");
            }
        }
        Upstream::Builtin(_) => {}
    }
}

/// Persists and activates a verified adapter: temporary directory, loaded by the upstream (the built-in model
/// from the temporary copy, vLLM from the final one), renamed into place, then served. Nothing is left on refusal.
async fn install(p: &Provider, data_dir: &Path, d: &Deployment, package: AdapterPackage) -> Result<()> {
    let root = data_dir.join(ADAPTERS_DIR);
    let tmp = root.join(format!(".tmp-{}-{:016x}", d.name, rand::random::<u64>()));
    let dir = root.join(&d.name);
    let (t, dd, r) = (tmp.clone(), d.clone(), root.clone());
    tokio::task::spawn_blocking(move || {
        // The adapters are customers' plaintext weights: 0700 root, 0700 directories, 0600 files.
        zg_adapters::private_dir(&r).map_err(refused)?;
        write_tmp(&t, &dd, &package)
    })
    .await
    .map_err(blocking_failed)??;
    let cleanup = |path: PathBuf| async move {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
    };
    let llm = matches!(p.upstream(), Upstream::Llm(_));
    if llm && let Err(e) = activate(p, &d.name, &tmp).await {
        cleanup(tmp).await;
        return Err(e);
    }
    let (t, dd) = (tmp.clone(), dir.clone());
    let committed = tokio::task::spawn_blocking(move || commit(&t, &dd))
        .await
        .map_err(blocking_failed)
        .and_then(|r| r);
    if let Err(e) = committed {
        if llm {
            deactivate(p, &d.name).await;
            p.adapters().remove(&d.name);
        }
        cleanup(tmp).await;
        return Err(e);
    }
    if !llm && let Err(e) = activate(p, &d.name, &dir).await {
        if p.adapters().get(&d.name).is_none() {
            cleanup(dir).await;
        }
        return Err(e);
    }
    p.adapters().insert(d.clone());
    Ok(())
}

/// Loads the adapters persisted under `data_dir/adapters` into the upstream and the registry. A broken one is
/// logged and skipped (not served); leftovers of interrupted deployments are deleted. Returns how many are served.
pub(crate) async fn load_persisted(p: &Provider, data_dir: &Path) -> usize {
    let root = data_dir.join(ADAPTERS_DIR);
    let found = tokio::task::spawn_blocking(move || scan(&root)).await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "could not scan the adapters directory");
            return 0;
        }
    };
    let mut served = 0;
    for (d, dir) in found {
        match activate(p, &d.name, &dir).await {
            Ok(()) => {
                p.adapters().insert(d);
                served += 1;
            }
            Err(e) => {
                tracing::warn!(name = %d.name, dir = %dir.display(), error = %e, "adapter not served")
            }
        }
    }
    served
}

fn scan(root: &Path) -> Vec<(Deployment, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            tracing::info!(dir = %dir.display(), "removing the leftover of an interrupted adapter deployment");
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        let record = std::fs::read(dir.join(DEPLOYMENT_FILE))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Deployment>(&b).map_err(|e| e.to_string()))
            .and_then(|d| {
                check_name(&d.name).map_err(|e| e.to_string())?;
                if d.name == name {
                    Ok(d)
                } else {
                    Err(format!("{DEPLOYMENT_FILE} names {:?}", d.name))
                }
            });
        match record {
            Ok(d) => out.push((d, dir)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "adapter directory is broken; not served")
            }
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    out
}

/// Stops serving `owner`'s adapter `name` and deletes its files; false if `owner` has none of that name.
pub(crate) async fn remove(p: &Provider, data_dir: &Path, owner: Address, name: &str) -> Result<bool> {
    match p.adapters().get(name) {
        Some(d) if d.owner == owner => {}
        _ => return Ok(false),
    }
    p.adapters().remove(name);
    deactivate(p, name).await;
    let root = data_dir.join(ADAPTERS_DIR);
    let dir = root.join(name);
    tokio::task::spawn_blocking(move || {
        let old = root.join(format!(".old-{:016x}", rand::random::<u64>()));
        std::fs::rename(&dir, &old).map_err(io("rename", &dir))?;
        sync_dir(&root)?;
        std::fs::remove_dir_all(&old).map_err(io("remove", &old))
    })
    .await
    .map_err(blocking_failed)??;
    tracing::info!(%name, %owner, "adapter removed by its owner");
    Ok(true)
}

#[tonic::async_trait]
impl AdaptersRpc for AdapterService {
    async fn challenge(
        &self,
        req: Request<AdapterChallengeRequest>,
    ) -> std::result::Result<Response<AdapterChallengeResponse>, Status> {
        let peer = req
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        Ok(Response::new(self.challenge_inner(peer, req.into_inner()).await?))
    }

    async fn deploy(
        &self,
        req: Request<Streaming<DeployAdapterChunk>>,
    ) -> std::result::Result<Response<DeployAdapterResponse>, Status> {
        // Taken before a byte of the stream is read, held until it ends: unauthenticated streams cannot pile up.
        let Ok(_stream) = Arc::clone(&self.0.streams).try_acquire_owned() else {
            let e = refusal(
                "saturated",
                StatusCode::TOO_MANY_REQUESTS,
                format!("{MAX_DEPLOY_STREAMS} deployments are already open here; retry shortly"),
            );
            self.0.p.metrics().rejected(e.code());
            return Err(e.into());
        };
        let timeout = self.0.settings.deploy_timeout;
        let r = tokio::time::timeout(timeout, self.deploy_inner(req.into_inner()))
            .await
            .map_err(|_| {
                refusal(
                    "deploy_timeout",
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the deployment did not complete within {} s", timeout.as_secs()),
                )
            })
            .and_then(|r| r);
        match r {
            Ok(d) => Ok(Response::new(DeployAdapterResponse {
                adapter: Some(d.info()),
            })),
            Err(e) => {
                tracing::info!(code = e.code(), error = %e, "adapter deployment refused");
                self.0.p.metrics().rejected(e.code());
                Err(e.into())
            }
        }
    }

    async fn list(
        &self,
        req: Request<ListAdaptersRequest>,
    ) -> std::result::Result<Response<ListAdaptersResponse>, Status> {
        let user = self.owner(req.into_inner().auth, OwnerAction::List)?;
        Ok(Response::new(ListAdaptersResponse {
            adapters: self
                .0
                .p
                .adapters()
                .owned_by(user)
                .iter()
                .map(Deployment::info)
                .collect(),
        }))
    }

    async fn remove(
        &self,
        req: Request<RemoveAdapterRequest>,
    ) -> std::result::Result<Response<RemoveAdapterResponse>, Status> {
        let r = req.into_inner();
        let user = self.owner(r.auth, OwnerAction::Remove(r.name.clone()))?;
        let removed = remove(&self.0.p, &self.0.data_dir, user, &r.name).await?;
        Ok(Response::new(RemoveAdapterResponse { removed }))
    }
}
