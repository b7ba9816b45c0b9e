//! `FineTuning.DeployAdapter`: the broker hands a customer's LoRA adapter to an inference provider over the
//! provider's `zg.v1.Adapters` gRPC service (0G's deploy-adapter), after checking the customer's permission
//! and the provider's TEE. The message flow and the statements are zg-adapters'; this module is the broker's
//! half of it.
//!
//! Who can call it: anyone who reaches the broker's gRPC port. What it takes: a [`SignedDeployAuthorization`]
//! signed by the task's owner, naming this broker, this chain, one inference provider, and expiring within
//! the hour. The worst a caller can do:
//! - without the owner's signature: nothing (the authorization is checked before any task is read; a task of
//!   another customer answers "not found", as every other read does);
//! - with it: make the broker deploy the owner's own adapter, once the owner acknowledged it on chain, to the
//!   provider the owner named, which then serves it to the owner only; each call costs the broker one chain
//!   read, one gRPC round trip and one sealing, bounded by `[adapters] timeout_secs`. The authorization is not
//!   single use (the provider named in it sees it too), so at most [`MAX_DEPLOYS_AT_ONCE`] deployments run at
//!   once: replaying it in parallel costs the broker at most that many adapters in memory, not one per call.
//!
//! The provider is trusted only after [`zg_adapters::verify_peer`]: fresh evidence bound to the broker's own
//! random nonce, passing the operator's `[adapters]` policy, whose bound signer is the provider's on-chain
//! `teeSignerAddress`, and a challenge signature by that same signer, whose public key the adapter is sealed
//! to. A provider that fails any check receives nothing. Everything the provider sends is bounded: 1 MiB per
//! message, the whole deployment in `[adapters] timeout_secs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, keccak256};
use zg_adapters::{
    AdapterPackage, DeployAuthorization, DeployStatement, PeerPolicy, SignedDeployAuthorization,
    adapter_name, challenge_digest,
};
use zg_attestation::{Collateral, Timestamp, Verifier};
use zg_finetune::{TaskId, TaskState};
use zg_proto::v1 as pb;
use zg_proto::v1::adapters_client::AdaptersClient;

use crate::config::AdapterSettings;
use crate::error::{Error, Result};
use crate::run::App;

/// Largest message read from a provider (its evidence is a few KiB; an answer is small).
pub const MAX_PROVIDER_MESSAGE: usize = 1 << 20;

/// Size of the sealed chunks streamed to the provider.
const CHUNK: usize = 1 << 20;

/// Deployments run at once. Each holds its adapter twice in memory (plain and sealed, up to
/// `[adapters] max_package_bytes` each) for up to `[adapters] timeout_secs`; beyond it a call is answered 429 `busy`.
pub const MAX_DEPLOYS_AT_ONCE: usize = 2;

/// The broker's side of adapter deployment: its peer policy, verifier and bounds.
#[derive(Debug, Clone)]
pub struct Deployer {
    peer: Arc<PeerPolicy>,
    verifier: Arc<Verifier>,
    timeout: Duration,
    max_package_bytes: u64,
    grpc_urls: BTreeMap<Address, String>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Deployer {
    /// From the `[adapters]` settings (reads the collateral file; blocking, at start).
    pub fn new(s: &AdapterSettings) -> Result<Self> {
        let collateral = match &s.collateral {
            Some(p) => Some(Collateral::from_file(p).map_err(|e| Error::Config {
                field: "adapters.collateral",
                value: p.display().to_string(),
                fix: format!("give a DCAP collateral JSON file ({e})"),
            })?),
            None => None,
        };
        Ok(Self {
            peer: Arc::new(PeerPolicy {
                policy: s.policy.clone(),
                collateral,
            }),
            verifier: Arc::new(Verifier::new_prod()),
            timeout: s.timeout,
            max_package_bytes: s.max_package_bytes,
            grpc_urls: s.grpc_urls.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_DEPLOYS_AT_ONCE)),
        })
    }
}

/// The customer's authorization from the wire (shape only; [`deploy`] checks it).
pub fn authorization_from_pb(a: Option<pb::DeployAuthorization>) -> Result<SignedDeployAuthorization> {
    let a = a.ok_or_else(|| Error::BadRequest("`authorization` is missing".into()))?;
    let addr = |field: &str, v: &str| {
        v.parse::<Address>()
            .map_err(|_| Error::BadRequest(format!("authorization.{field} {v:?} is not an address")))
    };
    let authorization = DeployAuthorization {
        chain_id: a.chain_id,
        user: addr("user", &a.user)?,
        broker: addr("broker", &a.broker)?,
        provider: addr("provider", &a.provider)?,
        task_id: a.task_id,
        expires_at: a.expires_at,
    };
    let signature = zg_adapters::sig65("deploy authorization", &a.signature)
        .map_err(|e| Error::DeployAuthorization(e.to_string()))?;
    Ok(SignedDeployAuthorization {
        authorization,
        signature,
    })
}

/// The customer's authorization for the wire.
pub fn authorization_pb(a: &SignedDeployAuthorization) -> pb::DeployAuthorization {
    let x = &a.authorization;
    pb::DeployAuthorization {
        chain_id: x.chain_id,
        user: x.user.to_checksum(None),
        broker: x.broker.to_checksum(None),
        provider: x.provider.to_checksum(None),
        task_id: x.task_id.clone(),
        expires_at: x.expires_at,
        signature: a.signature.to_vec(),
    }
}

fn now_secs() -> u64 {
    u64::try_from(zg_finetune::now_ms() / 1000).unwrap_or(0)
}

/// Why a task's state does not allow deployment, and what to do; `None` when it does.
fn state_refusal(id: &TaskId, state: TaskState) -> Option<String> {
    match state {
        TaskState::UserAcknowledged | TaskState::Finished => None,
        TaskState::Delivered => Some(format!(
            "task {id} is delivered but not acknowledged: acknowledge it first (zg fine-tuning acknowledge-model --task-id {id})"
        )),
        TaskState::PenaltySettled => Some(format!(
            "task {id} was never acknowledged and was settled at the penalty fee: its adapter is not deployable"
        )),
        TaskState::Cancelled | TaskState::Failed => {
            Some(format!("task {id} is {state}: there is no adapter to deploy"))
        }
        _ => Some(format!(
            "task {id} is {state}: wait until it is delivered, then acknowledge it"
        )),
    }
}

/// Serves one `DeployAdapter` call: checks the authorization and the task, then deploys to the provider.
pub async fn deploy(
    app: &App,
    d: &Deployer,
    req: pb::DeployAdapterRequest,
) -> Result<pb::DeployAdapterResult> {
    let auth = authorization_from_pb(req.authorization)?;
    let chain = app.pipeline.chain();
    let broker = zg_finetune::FineTuningChain::provider(chain);
    let chain_id = zg_finetune::FineTuningChain::domain(chain).chain_id;
    let a = &auth.authorization;
    // The customer's signature, chain, lifetime; then that it names this broker.
    auth.verify(chain_id, a.provider, now_secs())
        .map_err(|e| Error::DeployAuthorization(e.to_string()))?;
    if a.broker != broker {
        return Err(Error::DeployAuthorization(format!(
            "it names broker {}, this broker is {broker}",
            a.broker
        )));
    }
    let id = TaskId::parse(&a.task_id)?;
    let task = app.pipeline.store().get_for(a.user, &id).await?;
    if let Some(reason) = state_refusal(&id, task.state) {
        // The customer may have acknowledged on chain a moment ago, before this broker's poll saw it: the
        // chain decides (acknowledged, and not settled at the penalty).
        let acknowledged = task.state == TaskState::Delivered
            && zg_finetune::FineTuningChain::deliverable(chain, a.user, id.as_str())
                .await
                .ok()
                .flatten()
                .is_some_and(|d| d.acknowledged && (!d.settled || d.secret_revealed));
        if !acknowledged {
            return Err(Error::NotDeployable {
                task: id.to_string(),
                reason,
            });
        }
    }
    let kind = app
        .pipeline
        .model(&task.model)
        .map(|m| m.executor.kind())
        .map_err(|_| Error::NotDeployable {
            task: id.to_string(),
            reason: format!(
                "task {id} was trained on {:?}, which this broker no longer offers",
                task.model
            ),
        })?;
    if kind != "lora" {
        let by = if kind == "builtin" { "n-gram" } else { kind };
        return Err(Error::NotDeployable {
            task: id.to_string(),
            reason: format!("task {id} was trained by the {by} executor; only LoRA adapters deploy"),
        });
    }
    // Only now, for the owner of a deployable LoRA task, a slot: a valid authorization can be replayed by whoever
    // holds it (the customer, the provider it names) for an hour, and each call reads and seals the adapter.
    let _slot = Arc::clone(&d.slots).try_acquire_owned().map_err(|_| {
        Error::Task(zg_finetune::Error::Busy {
            what: "adapter deployments",
            count: MAX_DEPLOYS_AT_ONCE as u64,
            max: MAX_DEPLOYS_AT_ONCE as u64,
        })
    })?;
    let dir = app.pipeline.adapter_dir(&id);
    let max = d.max_package_bytes;
    let package = tokio::task::spawn_blocking(move || {
        if !dir.is_dir() {
            return Ok(None);
        }
        let p = AdapterPackage::from_dir(&dir).map_err(|e| e.to_string())?;
        let len = (p.config_json.len() + p.safetensors.len()) as u64;
        if len > max {
            return Err(format!(
                "{len} bytes, more than [adapters] max_package_bytes = {max}"
            ));
        }
        Ok(Some(p))
    })
    .await
    .map_err(|e| Error::BadRequest(format!("reading the adapter: {e}")))?
    .map_err(|e| Error::NotDeployable {
        task: id.to_string(),
        reason: format!("task {id}'s adapter is not deployable: {e}"),
    })?
    .ok_or_else(|| Error::NotDeployable {
        task: id.to_string(),
        reason: format!(
            "task {id} has no adapter kept on this broker (delivered by an older version?); train it again"
        ),
    })?;
    let base_model = task.model.clone();
    let name = adapter_name(&base_model, &a.task_id);
    let provider = a.provider;
    let (url, signer) = provider_endpoint(app, d, provider).await?;
    let run = to_provider(
        app,
        d,
        &auth,
        broker,
        chain_id,
        &url,
        signer,
        package,
        &name,
        &base_model,
    );
    let (info, simulated) =
        tokio::time::timeout(d.timeout, run)
            .await
            .map_err(|_| Error::ProviderFailed {
                provider,
                url: url.clone(),
                op: "deploy",
                reason: format!(
                    "no answer within {} s ([adapters] timeout_secs)",
                    d.timeout.as_secs()
                ),
            })??;
    tracing::info!(task = %id, %provider, adapter = %info.name, "adapter deployed");
    Ok(pb::DeployAdapterResult {
        adapter: Some(info),
        provider_grpc_url: url,
        provider_simulated: simulated,
    })
}

/// The provider's gRPC URL (override, else its advertised `grpc`) and on-chain TEE signer.
async fn provider_endpoint(app: &App, d: &Deployer, provider: Address) -> Result<(String, Address)> {
    let client = app.pipeline.chain().client();
    let service = client
        .inference()
        .get_service(provider)
        .await
        .map_err(|e| Error::Chain {
            op: "InferenceServing.getService",
            source: Box::new(e),
        })?
        .ok_or_else(|| Error::ProviderUnknown {
            provider,
            reason: "it has no InferenceServing service on chain; check --provider (the INFERENCE provider)"
                .into(),
        })?;
    let url = match d.grpc_urls.get(&provider) {
        Some(u) => u.clone(),
        None => service.advertised_grpc_url().ok_or_else(|| Error::ProviderUnknown {
            provider,
            reason: "its service advertises no gRPC endpoint (`grpc` in additionalInfo), so it cannot take adapters"
                .into(),
        })?,
    };
    if service.tee_signer == Address::ZERO {
        return Err(Error::ProviderUntrusted {
            provider,
            reason: "its service registers no teeSignerAddress".into(),
        });
    }
    Ok((url, service.tee_signer))
}

#[allow(clippy::too_many_arguments)] // one call site; the values are the deployment's facts
async fn to_provider(
    app: &App,
    d: &Deployer,
    auth: &SignedDeployAuthorization,
    broker: Address,
    chain_id: u64,
    url: &str,
    signer: Address,
    package: AdapterPackage,
    name: &str,
    base_model: &str,
) -> Result<(pb::AdapterInfo, bool)> {
    let provider = auth.authorization.provider;
    let failed = |op: &'static str| {
        let url = url.to_owned();
        move |reason: String| Error::ProviderFailed {
            provider,
            url,
            op,
            reason,
        }
    };
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| failed("connect")(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        // No per-request timeout here: the caller bounds the whole deployment by `[adapters] timeout_secs`.
        .connect()
        .await
        .map_err(|e| failed("connect")(format!("{e}; is its gRPC API reachable?")))?;
    let mut client = AdaptersClient::new(channel).max_decoding_message_size(MAX_PROVIDER_MESSAGE);

    // 1. Challenge with our nonce; the provider's evidence must bind it.
    let broker_nonce: [u8; 32] = rand::random();
    let ch = client
        .challenge(pb::AdapterChallengeRequest {
            broker_nonce: broker_nonce.to_vec(),
            broker: broker.to_checksum(None),
        })
        .await
        .map_err(|s| failed("Challenge")(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();
    let untrusted = |reason: String| Error::ProviderUntrusted { provider, reason };
    let provider_nonce: [u8; 32] = ch.provider_nonce.as_slice().try_into().map_err(|_| {
        untrusted(format!(
            "provider nonce of {} bytes, expected 32",
            ch.provider_nonce.len()
        ))
    })?;
    if ch.provider.parse::<Address>().ok() != Some(provider) {
        return Err(untrusted(format!(
            "its challenge names provider {:?}",
            ch.provider
        )));
    }
    if ch.chain_id != chain_id {
        return Err(untrusted(format!(
            "its challenge names chain {}, this broker is on chain {chain_id}",
            ch.chain_id
        )));
    }
    let (verifier, peer, evidence) = (Arc::clone(&d.verifier), Arc::clone(&d.peer), ch.evidence_json);
    let verified = tokio::task::spawn_blocking(move || {
        zg_adapters::verify_peer(
            &verifier,
            &peer,
            provider,
            evidence.as_bytes(),
            broker_nonce,
            signer,
            Timestamp::now(),
        )
    })
    .await
    .map_err(|e| untrusted(format!("verification task: {e}")))?
    .map_err(|e| untrusted(e.to_string()))?;
    let sig = zg_adapters::sig65("provider challenge signature", &ch.signature)
        .map_err(|e| untrusted(e.to_string()))?;
    let digest = challenge_digest(chain_id, provider, broker, &broker_nonce, &provider_nonce);
    let key = zg_adapters::recover("provider challenge signature", &digest, &sig)
        .map_err(|e| untrusted(e.to_string()))?;
    let by = zg_adapters::address_of(&key);
    if by != verified.signer {
        return Err(untrusted(format!(
            "the challenge is signed by {by}, not by its attested on-chain signer {}",
            verified.signer
        )));
    }

    // 2. Seal for that key, prove ourselves bound to the provider's nonce, sign the statement.
    let tee = Arc::clone(&app.tee);
    let provider_key = k256::PublicKey::from(&key);
    let sealed = tokio::task::spawn_blocking(move || package.seal_for(tee.key(), &provider_key))
        .await
        .map_err(|e| Error::BadRequest(format!("sealing task: {e}")))?
        .map_err(|e| Error::NotDeployable {
            task: auth.authorization.task_id.clone(),
            reason: format!("sealing the adapter failed: {e}"),
        })?;
    let evidence = app.tee.fresh(&provider_nonce)?.to_string();
    let statement = DeployStatement {
        chain_id,
        provider,
        broker,
        provider_nonce,
        authorization_hash: auth.hash(),
        adapter_name: name.to_owned(),
        base_model: base_model.to_owned(),
        wrapped_key_hash: keccak256(&sealed.wrapped_key),
        sealed_hash: keccak256(&sealed.sealed),
        sealed_len: sealed.sealed.len() as u64,
    };
    let broker_signature = zg_adapters::sign(app.tee.key(), &statement.digest())
        .map_err(|e| Error::BadRequest(format!("signing the deploy statement: {e}")))?;
    let head = pb::DeployAdapterHead {
        provider_nonce: provider_nonce.to_vec(),
        broker: broker.to_checksum(None),
        broker_evidence_json: evidence,
        authorization: Some(authorization_pb(auth)),
        adapter_name: name.to_owned(),
        base_model: base_model.to_owned(),
        wrapped_key: sealed.wrapped_key.clone(),
        sealed_len: statement.sealed_len,
        broker_signature: broker_signature.to_vec(),
    };

    // 3. Head, then the sealed package in chunks.
    let mut parts = vec![pb::DeployAdapterChunk {
        part: Some(pb::deploy_adapter_chunk::Part::Head(head)),
    }];
    parts.extend(sealed.sealed.chunks(CHUNK).map(|c| pb::DeployAdapterChunk {
        part: Some(pb::deploy_adapter_chunk::Part::Sealed(c.to_vec())),
    }));
    let answer = client
        .deploy(tokio_stream::iter(parts))
        .await
        .map_err(|s| failed("Deploy")(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();
    let info = answer
        .adapter
        .ok_or_else(|| failed("Deploy")("the answer holds no adapter".into()))?;
    if info.name != name {
        return Err(failed("Deploy")(format!(
            "it says it serves {:?}, expected {name:?}",
            info.name
        )));
    }
    Ok((info, verified.simulated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_that_refuse_say_what_to_do() {
        let id = TaskId::parse("0d4c6a52-9f7e-4b1a-8c3d-2e5f6a7b8c9d").unwrap();
        assert!(state_refusal(&id, TaskState::UserAcknowledged).is_none());
        assert!(state_refusal(&id, TaskState::Finished).is_none());
        let r = state_refusal(&id, TaskState::Delivered).unwrap();
        assert!(r.contains("acknowledge-model"), "{r}");
        for s in [TaskState::Training, TaskState::PenaltySettled, TaskState::Failed] {
            assert!(state_refusal(&id, s).is_some(), "{s}");
        }
    }
}
