//! Issue 11 item 4, written as the attacks: LoRA adapters reach the provider only from an attested fine-tuning
//! TEE whose signer the chain names, for a customer's acknowledged deliverable, and are served to that customer
//! only. Real anvil devnet, real gRPC over loopback, the real SmolLM2 GGUF; the broker is a test double built from
//! the real protocol crate (zg-adapters) and the simulated TEE, registered in FineTuningServing.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes as ChainBytes, U256, keccak256};
use base64::Engine as _;
use candle_core::{Device, Tensor};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use zg_adapters::{
    AdapterPackage, DeployAuthorization, DeployStatement, OwnerAction, OwnerRequest, PeerPolicy,
    SignedDeployAuthorization, adapter_name, address_of, challenge_digest,
};
use zg_attestation::{
    AttestationPolicy, EvidenceProducer as _, KeyBinding, SimulatedTee, Timestamp, Verifier,
};
use zg_billing::{EthSigner, ReceiptSigner, SessionClaims, SessionToken};
use zg_chain::{
    Amount, Devnet, DevnetConfig, FineTuningQuota, FineTuningServiceParams, PrivateKeySigner, ServiceKind,
};
use zg_model::{LoraAdapter, LoraConfig, Target};
use zg_proto::v1::adapters_client::AdaptersClient;
use zg_proto::v1::deploy_adapter_chunk::Part;
use zg_proto::v1::{
    AdapterChallengeRequest, DeployAdapterChunk, DeployAdapterHead, ListAdaptersRequest, OwnerAuth,
    RemoveAdapterRequest,
};
use zg_provider::{ReceiptJson, RunArgs, Running, Settings, Upstream, now_ms};

use crate::common::{Opts, fee, offline};

pub(crate) const BASE: &str = "smollm2-135m-instruct";

fn eth(k: &PrivateKeySigner) -> EthSigner {
    EthSigner::from_bytes(&B256::from(k.to_bytes())).unwrap()
}

fn k256_of(k: &PrivateKeySigner) -> SigningKey {
    SigningKey::from_slice(k.to_bytes().as_slice()).unwrap()
}

fn session(c: &PrivateKeySigner, provider: Address) -> String {
    let claims = SessionClaims {
        address: c.address(),
        provider: provider.to_string(),
        timestamp: now_ms(),
        expires_at: now_ms() + 3_600_000,
        nonce: hex::encode(rand::random::<[u8; 8]>()),
        generation: 0,
        token_id: 255,
    };
    SessionToken::create(&eth(c), &claims).unwrap().1
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A fine-tuning broker's TEE: the simulated backend, its signer key registered as the FineTuningServing
/// `teeSignerAddress` of `wallet`'s service.
struct Broker {
    wallet: PrivateKeySigner,
    tee_key: SigningKey,
    sim: SimulatedTee,
}

impl Broker {
    fn new(wallet: PrivateKeySigner) -> Self {
        let sim = SimulatedTee::new().unwrap();
        sim.extend_runtime("compose-hash", &[0x5a; 32]).unwrap();
        Self {
            wallet,
            tee_key: SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap(),
            sim,
        }
    }

    fn address(&self) -> Address {
        self.wallet.address()
    }

    fn signer(&self) -> Address {
        address_of(self.tee_key.verifying_key())
    }

    /// Fresh evidence binding `signer` and `nonce`.
    fn evidence_of(&self, signer: Address, nonce: [u8; 32]) -> String {
        let response = ReceiptSigner::from_seed(&[7; 32]).verifying_key().to_bytes();
        let binding = KeyBinding::new(signer, response, None, Timestamp(now_secs())).unwrap();
        self.sim.evidence_for(&binding, &nonce).unwrap().to_json()
    }
}

/// A random rank-4 PEFT adapter for SmolLM2 on q/v of layers 0, 10 and 29 (one of a wrong shape if asked).
fn adapter_files(model: &zg_model::Model, seed: u64, wrong_shape: bool) -> AdapterPackage {
    random_adapter(model, seed, 4, &[0, 10, 29], wrong_shape)
}

/// The size of the demo's adapter (`examples/finetune/config.lora.json`: rank 8 on q_proj and v_proj of every
/// layer), random weights.
pub(crate) fn demo_sized_adapter(model: &zg_model::Model, seed: u64) -> AdapterPackage {
    let layers: Vec<usize> = (0..model.config().n_layer).collect();
    random_adapter(model, seed, 8, &layers, false)
}

fn random_adapter(
    model: &zg_model::Model,
    seed: u64,
    r: usize,
    layers: &[usize],
    wrong_shape: bool,
) -> AdapterPackage {
    let cfg = model.config().clone();
    let mut s = seed;
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
            })
            .collect()
    };
    let mut w = BTreeMap::new();
    for &layer in layers {
        for t in [Target::Q, Target::V] {
            let (out, inp) = cfg.target_shape(t);
            let inp = if wrong_shape { inp + 1 } else { inp };
            let a = Tensor::from_vec(rnd(r * inp), (r, inp), &Device::Cpu).unwrap();
            let b = Tensor::from_vec(rnd(out * r), (out, r), &Device::Cpu).unwrap();
            w.insert((layer, t), (a, b));
        }
    }
    let adapter = LoraAdapter::new(
        LoraConfig::new(r, 16.0, &[Target::Q, Target::V], zg_model::SMOLLM2_135M_INSTRUCT),
        w,
    );
    let dir = tempfile::tempdir().unwrap();
    adapter.save(dir.path()).unwrap();
    AdapterPackage::from_dir(dir.path()).unwrap()
}

pub(crate) fn llm(r: &Running) -> &zg_model::Model {
    match r.provider.upstream() {
        Upstream::Llm(m) => m.model(),
        other => panic!("not the built-in LLM: {other:?}"),
    }
}

pub(crate) struct Env {
    devnet: Devnet,
    dir: tempfile::TempDir,
    provider: PrivateKeySigner,
    pub(crate) customer: PrivateKeySigner,
    stranger: PrivateKeySigner,
    broker: Broker,
    chain_id: u64,
}

pub(crate) async fn start(env: &Env, allow_simulated: bool) -> Running {
    start_with(env, allow_simulated, None).await
}

/// A provider of [`BASE`]: the built-in SmolLM2, or the OpenAI server at `upstream` (a vLLM stand-in).
async fn start_with(env: &Env, allow_simulated: bool, upstream: Option<String>) -> Running {
    start_tuned(env, allow_simulated, upstream, |_| {}).await
}

/// [`start_with`], its settings changed by `tune` before the provider starts.
async fn start_tuned(
    env: &Env,
    allow_simulated: bool,
    upstream: Option<String>,
    tune: impl FnOnce(&mut Settings),
) -> Running {
    let gguf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../")
        .join(zg_provider::DEFAULT_MODEL_PATH);
    assert!(gguf.is_file(), "{} is missing: run `just setup`", gguf.display());
    let mut s = Settings::resolve(RunArgs {
        data_dir: Some(env.dir.path().to_path_buf()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
        rpc_url: Some(env.devnet.rpc_url()),
        provider_key: Some(zg_test_utils::keys::hex_key(&env.provider.to_bytes().0)),
        tee: Some(zg_provider::BackendChoice::Simulated),
        settle_interval: Some(0),
        account_ttl_ms: Some(0),
        model: Some(BASE.into()),
        model_path: Some(gguf),
        max_streams: Some(1),
        upstream,
        adapters_dangerous_allow_simulated: allow_simulated,
        adapters_dangerous_any_image: true,
        ..RunArgs::default()
    })
    .unwrap();
    // Every deploy attempt below asks for a challenge (a fresh quote) from 127.0.0.1.
    s.limits.quote_burst = 64;
    tune(&mut s);
    zg_provider::start(s).await.unwrap()
}

/// A provider challenge as the broker sees it, checked the way zg-broker checks it.
pub(crate) struct Challenge {
    provider_nonce: [u8; 32],
    provider_key: k256::PublicKey,
}

pub(crate) async fn challenge(
    g: &mut AdaptersClient<tonic::transport::Channel>,
    env: &Env,
    r: &Running,
) -> Challenge {
    let broker_nonce: [u8; 32] = rand::random();
    let c = g
        .challenge(AdapterChallengeRequest {
            broker_nonce: broker_nonce.to_vec(),
            broker: env.broker.address().to_checksum(None),
        })
        .await
        .unwrap()
        .into_inner();
    let provider = env.provider.address();
    assert_eq!(c.provider.parse::<Address>().unwrap(), provider);
    assert_eq!(c.chain_id, env.chain_id);
    let provider_nonce: [u8; 32] = c.provider_nonce.as_slice().try_into().unwrap();
    // The provider's evidence binds the broker's nonce and its on-chain signer; its signature recovers to it.
    let signer = r.provider.tee().signer();
    let peer = PeerPolicy {
        policy: AttestationPolicy {
            dangerous_allow_simulated: true,
            dangerous_any_image: true,
            ..AttestationPolicy::default()
        },
        collateral: None,
    };
    zg_adapters::verify_peer(
        &Verifier::new_prod(),
        &peer,
        provider,
        c.evidence_json.as_bytes(),
        broker_nonce,
        signer,
        Timestamp(now_secs()),
    )
    .unwrap();
    let digest = challenge_digest(
        env.chain_id,
        provider,
        env.broker.address(),
        &broker_nonce,
        &provider_nonce,
    );
    let key = zg_adapters::verify(
        "challenge",
        &digest,
        &zg_adapters::sig65("challenge", &c.signature).unwrap(),
        signer,
    )
    .unwrap();
    Challenge {
        provider_nonce,
        provider_key: key.into(),
    }
}

pub(crate) fn authorize(env: &Env, user: &PrivateKeySigner, task: &str) -> SignedDeployAuthorization {
    DeployAuthorization {
        chain_id: env.chain_id,
        user: user.address(),
        broker: env.broker.address(),
        provider: env.provider.address(),
        task_id: task.into(),
        expires_at: now_secs() + 600,
    }
    .sign(&k256_of(user))
    .unwrap()
}

/// What the broker sends: head and sealed bytes, each part open to tampering before [`send`].
pub(crate) struct Deploy {
    head: DeployAdapterHead,
    sealed: Vec<u8>,
}

pub(crate) fn prepare(
    env: &Env,
    ch: &Challenge,
    auth: &SignedDeployAuthorization,
    package: &AdapterPackage,
) -> Deploy {
    prepare_with(env, ch, auth, package, &env.broker.tee_key)
}

fn prepare_with(
    env: &Env,
    ch: &Challenge,
    auth: &SignedDeployAuthorization,
    package: &AdapterPackage,
    statement_key: &SigningKey,
) -> Deploy {
    let sealed = package.seal_for(&env.broker.tee_key, &ch.provider_key).unwrap();
    let name = adapter_name(BASE, &auth.authorization.task_id);
    let statement = DeployStatement {
        chain_id: env.chain_id,
        provider: env.provider.address(),
        broker: env.broker.address(),
        provider_nonce: ch.provider_nonce,
        authorization_hash: auth.hash(),
        adapter_name: name.clone(),
        base_model: BASE.into(),
        wrapped_key_hash: keccak256(&sealed.wrapped_key),
        sealed_hash: keccak256(&sealed.sealed),
        sealed_len: sealed.sealed.len() as u64,
    };
    let a = &auth.authorization;
    Deploy {
        head: DeployAdapterHead {
            provider_nonce: ch.provider_nonce.to_vec(),
            broker: env.broker.address().to_checksum(None),
            broker_evidence_json: env.broker.evidence_of(env.broker.signer(), ch.provider_nonce),
            authorization: Some(zg_proto::v1::DeployAuthorization {
                chain_id: a.chain_id,
                user: a.user.to_checksum(None),
                broker: a.broker.to_checksum(None),
                provider: a.provider.to_checksum(None),
                task_id: a.task_id.clone(),
                expires_at: a.expires_at,
                signature: auth.signature.to_vec(),
            }),
            adapter_name: name,
            base_model: BASE.into(),
            wrapped_key: sealed.wrapped_key.clone(),
            sealed_len: sealed.sealed.len() as u64,
            broker_signature: zg_adapters::sign(statement_key, &statement.digest())
                .unwrap()
                .to_vec(),
        },
        sealed: sealed.sealed,
    }
}

pub(crate) async fn send(
    g: &mut AdaptersClient<tonic::transport::Channel>,
    d: &Deploy,
) -> Result<zg_proto::v1::AdapterInfo, tonic::Status> {
    let mut msgs = vec![DeployAdapterChunk {
        part: Some(Part::Head(d.head.clone())),
    }];
    for c in d.sealed.chunks(64 * 1024) {
        msgs.push(DeployAdapterChunk {
            part: Some(Part::Sealed(c.to_vec())),
        });
    }
    g.deploy(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner().adapter.unwrap())
}

/// Asserts a refusal's gRPC code and the provider's `zg-error-type`.
fn refused(r: Result<zg_proto::v1::AdapterInfo, tonic::Status>, code: tonic::Code, kind: &str) {
    let s = r.expect_err("the deployment must be refused");
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(
        s.metadata().get("zg-error-type").map(|v| v.to_str().unwrap()),
        Some(kind),
        "{s:?}"
    );
}

fn adapter_dirs(env: &Env) -> Vec<String> {
    let root = env.dir.path().join(zg_provider::ADAPTERS_DIR);
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The native receipt a provider answer carries in `zg-receipt` (base64url JSON), if any.
fn receipt_of(headers: &reqwest::header::HeaderMap) -> Option<ReceiptJson> {
    headers.get("zg-receipt").map(|h| {
        serde_json::from_slice::<ReceiptJson>(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h.as_bytes())
                .unwrap(),
        )
        .unwrap()
    })
}

/// A chat with `model` over HTTP with a session token: status, answer text, receipt (if any), usage.
async fn chat(r: &Running, token: &str, model: &str) -> (u16, Value, Option<ReceiptJson>) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                      "max_tokens": 12, "temperature": 0, "seed": 1});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/proxy/chat/completions", r.http_addr))
        .header("authorization", token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let receipt = receipt_of(resp.headers());
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    (status, v, receipt)
}

fn owner_auth(env: &Env, who: &PrivateKeySigner, action: OwnerAction) -> Option<OwnerAuth> {
    let req = OwnerRequest {
        chain_id: env.chain_id,
        provider: env.provider.address(),
        user: who.address(),
        action,
        timestamp: now_secs(),
    };
    Some(OwnerAuth {
        user: who.address().to_checksum(None),
        timestamp: req.timestamp,
        signature: req.sign(&k256_of(who)).unwrap().to_vec(),
    })
}

/// `GET /v1/proxy/models` names the base and the customer's adapter `name` to the customer, only the base to the
/// stranger.
async fn assert_models_listed_to_their_owner_only(
    running: &Running,
    env: &Env,
    provider: Address,
    name: &str,
) {
    let ids = |who: &PrivateKeySigner| {
        let url = format!("http://{}/v1/proxy/models", running.http_addr);
        let auth = session(who, provider);
        async move {
            let v: Value = reqwest::Client::new()
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(ids(&env.customer).await, vec![BASE.to_owned(), name.to_owned()]);
    assert_eq!(ids(&env.stranger).await, vec![BASE.to_owned()]);
}

pub(crate) async fn grpc(r: &Running) -> AdaptersClient<tonic::transport::Channel> {
    AdaptersClient::connect(format!("http://{}", r.grpc_addr))
        .await
        .unwrap()
}

pub(crate) const TASK: &str = "0d4c6a52-9f7e-4b1a-8c3d-2e5f6a7b8c9d";
const UNACKED_TASK: &str = "7e7e7e7e-0000-4b1a-8c3d-2e5f6a7b8c9d";

/// A devnet where the broker (keys[6]) registered its TEE signer in FineTuningServing and delivered two tasks to
/// the customer (keys[4]), who acknowledged [`TASK`] only; the inference provider is `keys[provider]`.
pub(crate) async fn setup(provider: usize) -> (Env, Vec<PrivateKeySigner>) {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let keys = devnet.keys().to_vec();
    let env = Env {
        chain_id: devnet.chain_id(),
        dir: tempfile::tempdir().unwrap(),
        provider: keys[provider].clone(),
        customer: keys[4].clone(),
        stranger: keys[5].clone(),
        broker: Broker::new(keys[6].clone()),
        devnet,
    };
    let broker = env.broker.address();
    // The fine-tuning broker registers its TEE signer; the customer's task is delivered and acknowledged.
    let ft_broker = env.devnet.client(Some(env.broker.wallet.clone())).await.unwrap();
    ft_broker
        .fine_tuning()
        .add_or_update_service(
            &FineTuningServiceParams {
                url: "http://127.0.0.1:1".into(),
                quota: FineTuningQuota {
                    cpu_count: U256::from(2),
                    node_memory: U256::from(8),
                    gpu_count: U256::ZERO,
                    node_storage: U256::from(10),
                    gpu_type: "cpu".into(),
                },
                price_per_token: U256::from(1),
                occupied: false,
                models: vec![BASE.into()],
                tee_signer: env.broker.signer(),
            },
            Amount::from_zg(1),
        )
        .await
        .unwrap();
    let customer = env.devnet.client(Some(env.customer.clone())).await.unwrap();
    customer
        .ledger()
        .add_ledger(Amount::from_zg(10), "")
        .await
        .unwrap();
    customer
        .ledger()
        .transfer_fund(broker, ServiceKind::FineTuning, Amount::from_zg(1))
        .await
        .unwrap();
    for t in [TASK, UNACKED_TASK] {
        ft_broker
            .fine_tuning()
            .add_deliverable(env.customer.address(), t, ChainBytes::from(vec![0xaa; 32]))
            .await
            .unwrap();
    }
    customer
        .fine_tuning()
        .acknowledge_deliverable(broker, TASK)
        .await
        .unwrap();
    (env, keys)
}

/// The owner acknowledges the provider's TEE signer; the customer and the stranger (keys[5]) fund sub-accounts
/// with it and acknowledge it too.
async fn fund_inference(env: &Env, keys: &[PrivateKeySigner]) {
    let provider = env.provider.address();
    let owner = env.devnet.client(Some(keys[0].clone())).await.unwrap();
    owner
        .inference()
        .acknowledge_tee_signer_by_owner(provider)
        .await
        .unwrap();
    for c in [&env.customer, &env.stranger] {
        let cl = env.devnet.client(Some(c.clone())).await.unwrap();
        if c.address() != env.customer.address() {
            cl.ledger().add_ledger(Amount::from_zg(5), "").await.unwrap();
        }
        cl.ledger()
            .transfer_fund(provider, ServiceKind::Inference, Amount::from_zg(2))
            .await
            .unwrap();
        env.devnet
            .acknowledge_tee_signer(ServiceKind::Inference, provider, std::slice::from_ref(c))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn anvil_adapters_deploy_only_attested_serve_only_the_owner_bill_exactly_and_survive_restart() {
    let (env, keys) = setup(3).await;
    let (provider, task) = (env.provider.address(), TASK);
    let name = adapter_name(BASE, task);

    // 1. A provider whose policy does not allow simulated evidence refuses the (simulated) broker; nothing kept.
    let running = start(&env, false).await;
    // The demo's size (1.8 MB: rank 8, q/v of all 30 layers): two 1 MiB chunks, as the broker sends them.
    let package = demo_sized_adapter(llm(&running), 1);
    let mut g = grpc(&running).await;
    let ch = challenge(&mut g, &env, &running).await;
    let auth = authorize(&env, &env.customer, task);
    refused(
        send(&mut g, &prepare(&env, &ch, &auth, &package)).await,
        tonic::Code::PermissionDenied,
        "peer_simulated_refused",
    );
    assert!(adapter_dirs(&env).is_empty(), "{:?}", adapter_dirs(&env));
    running.shutdown().await;

    // 2. Simulated brokers allowed (the devnet setting): every other check still holds.
    let running = start(&env, true).await;
    fund_inference(&env, &keys).await;
    let mut g = grpc(&running).await;

    // Evidence bound to another nonce than the provider's.
    let ch = challenge(&mut g, &env, &running).await;
    let mut d = prepare(&env, &ch, &auth, &package);
    d.head.broker_evidence_json = env.broker.evidence_of(env.broker.signer(), [9; 32]);
    refused(
        send(&mut g, &d).await,
        tonic::Code::PermissionDenied,
        "peer_attestation_refused",
    );
    // Evidence of a TEE whose signer is not the broker's FineTuningServing teeSignerAddress.
    let ch = challenge(&mut g, &env, &running).await;
    let mut d = prepare(&env, &ch, &auth, &package);
    let rogue = SigningKey::from_slice(&[0x66; 32]).unwrap();
    d.head.broker_evidence_json = env
        .broker
        .evidence_of(address_of(rogue.verifying_key()), ch.provider_nonce);
    refused(
        send(&mut g, &d).await,
        tonic::Code::PermissionDenied,
        "peer_attestation_refused",
    );
    // The statement signed by a key outside the TEE (the broker's wallet).
    let ch = challenge(&mut g, &env, &running).await;
    let d = prepare_with(&env, &ch, &auth, &package, &k256_of(&env.broker.wallet));
    refused(
        send(&mut g, &d).await,
        tonic::Code::PermissionDenied,
        "bad_signature",
    );
    // Sealed bytes changed after the broker signed them.
    let ch = challenge(&mut g, &env, &running).await;
    let mut d = prepare(&env, &ch, &auth, &package);
    let mid = d.sealed.len() / 2;
    d.sealed[mid] ^= 1;
    refused(
        send(&mut g, &d).await,
        tonic::Code::PermissionDenied,
        "bad_signature",
    );
    // A provider nonce it never issued.
    let ch = challenge(&mut g, &env, &running).await;
    let forged = Challenge {
        provider_nonce: [0x42; 32],
        provider_key: ch.provider_key,
    };
    refused(
        send(&mut g, &prepare(&env, &forged, &auth, &package)).await,
        tonic::Code::FailedPrecondition,
        "provider_nonce_unknown",
    );
    // Another customer authorizes the owner's task: it has no such deliverable.
    let ch = challenge(&mut g, &env, &running).await;
    let theirs = authorize(&env, &env.stranger, task);
    refused(
        send(&mut g, &prepare(&env, &ch, &theirs, &package)).await,
        tonic::Code::FailedPrecondition,
        "deliverable_missing",
    );
    // A deliverable the customer has not acknowledged.
    let ch = challenge(&mut g, &env, &running).await;
    refused(
        send(
            &mut g,
            &prepare(&env, &ch, &authorize(&env, &env.customer, UNACKED_TASK), &package),
        )
        .await,
        tonic::Code::FailedPrecondition,
        "deliverable_not_acknowledged",
    );
    // An adapter whose shapes do not fit the base: zg-model's named refusal, nothing kept.
    let ch = challenge(&mut g, &env, &running).await;
    let bad = adapter_files(llm(&running), 2, true);
    let e = send(&mut g, &prepare(&env, &ch, &auth, &bad)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("shape"), "{e:?}");
    assert!(adapter_dirs(&env).is_empty(), "{:?}", adapter_dirs(&env));
    assert!(running.provider.adapters().is_empty());

    // The real deployment.
    let base = chat(&running, &session(&env.customer, provider), BASE).await;
    assert_eq!(base.0, 200, "{}", base.1);
    let ch = challenge(&mut g, &env, &running).await;
    let d = prepare(&env, &ch, &auth, &package);
    let started = std::time::Instant::now();
    let info = send(&mut g, &d).await.unwrap();
    eprintln!(
        "deploy of a {} byte adapter: {:?}",
        package.safetensors.len(),
        started.elapsed()
    );
    assert_eq!(info.name, name);
    assert_eq!(info.owner.parse::<Address>().unwrap(), env.customer.address());
    assert_eq!((info.task_id.as_str(), info.state.as_str()), (task, "active"));
    assert_eq!(adapter_dirs(&env), vec![name.clone()]);
    let files = env.dir.path().join(zg_provider::ADAPTERS_DIR).join(&name);
    assert_eq!(
        std::fs::read(files.join("adapter_model.safetensors")).unwrap(),
        package.safetensors
    );
    // The same deployment again: its nonce was used.
    refused(
        send(&mut g, &d).await,
        tonic::Code::FailedPrecondition,
        "provider_nonce_unknown",
    );

    // Served to its owner, billed at the provider's prices, and it changes the answer.
    let (status, v, receipt) = chat(&running, &session(&env.customer, provider), &name).await;
    assert_eq!(status, 200, "{v}");
    let receipt = receipt.unwrap();
    assert_eq!(receipt.model, name);
    assert_eq!(v["model"], name);
    let (p, c) = (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(receipt.fee.parse::<U256>().unwrap(), fee(p, c));
    let adapted = v["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let plain = base.1["choices"][0]["message"]["content"].as_str().unwrap();
    assert_ne!(adapted, plain, "the adapter must change the greedy answer");
    // The native path (signed request): the same answer, a receipt signed by the TEE over these bytes naming the
    // adapter; another customer's signed request is refused the same way.
    let domains = zg_billing::Domains::new(env.chain_id, env.devnet.addresses().inference);
    let native = |who: &PrivateKeySigner, nonce: u64| {
        let body = json!({"model": name, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                          "max_tokens": 12, "temperature": 0, "seed": 1})
        .to_string();
        let req = zg_billing::Request {
            user: who.address(),
            provider,
            service: "chat".into(),
            nonce: U256::from(nonce),
            bodyHash: zg_billing::body_hash(body.as_bytes()),
            feeCap: U256::from(10u64.pow(15)),
        };
        let header = domains.sign_request(&eth(who), req).unwrap().to_header();
        let url = format!("http://{}/v1/proxy/chat/completions", running.http_addr);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("zg-request", header)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let receipt = receipt_of(r.headers());
            (status, body, r.bytes().await.unwrap(), receipt)
        }
    };
    let (status, body, bytes, receipt) = native(&env.customer, 1).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let receipt = receipt.unwrap();
    assert_eq!(receipt.model, name);
    let signed = receipt.to_signed().unwrap();
    assert_eq!(signed.receipt.model, name);
    running
        .provider
        .tee()
        .keys()
        .response
        .verifying_key()
        .verify_exchange(&signed, body.as_bytes(), &bytes)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"].as_str().unwrap(), adapted);
    let (status, _, bytes, receipt) = native(&env.stranger, 1).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&bytes));
    assert!(receipt.is_none());
    // The base is unchanged by the adapter next to it.
    let again = chat(&running, &session(&env.customer, provider), BASE).await;
    assert_eq!(
        again.1["choices"][0]["message"]["content"].as_str().unwrap(),
        plain
    );
    assert_eq!(base.2.unwrap().model, BASE);
    // Another customer: refused before anything is reserved or generated, exactly as an unknown adapter is (404
    // `model_not_found`): adapter names are public (0G's rule over task ids that are on chain), so a 403 would
    // tell anyone with an account which provider serves whose adapter.
    let owed = running.provider.ledger().unsettled_fee(env.stranger.address());
    let (status, v, receipt) = chat(&running, &session(&env.stranger, provider), &name).await;
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(!msg.contains("owner"), "{msg}");
    assert!(receipt.is_none());
    let (status, v, _) = chat(
        &running,
        &session(&env.stranger, provider),
        "ft-smollm2-135m-instruct-ffffffff-fff",
    )
    .await;
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    assert_eq!(
        running.provider.ledger().unsettled_fee(env.stranger.address()),
        owed
    );

    // The 0G SDK's LoRA routes: the caller's adapters only.
    let http = reqwest::Client::new();
    let url = format!("http://{}", running.http_addr);
    let get = |path: String, who: &PrivateKeySigner| {
        http.get(format!("{url}{path}"))
            .header("authorization", session(who, provider))
            .send()
    };
    let mine: Value = get("/v1/lora/adapters".into(), &env.customer)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["adapters"][0]["adapterName"], name);
    assert_eq!(mine["adapters"][0]["taskId"], task);
    assert_eq!(mine["adapters"][0]["state"], "active");
    let theirs: Value = get("/v1/lora/adapters".into(), &env.stranger)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!({"adapters": []}));
    assert_eq!(
        get(format!("/v1/lora/adapters/{name}"), &env.stranger)
            .await
            .unwrap()
            .status(),
        404
    );
    let st: Value = get(format!("/v1/lora/adapters/{name}"), &env.customer)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["state"], "active");
    let deploy = |who: &PrivateKeySigner| {
        http.post(format!("{url}/v1/lora/adapters/deploy"))
            .header("authorization", session(who, provider))
            .body(json!({"taskId": task, "baseModel": BASE}).to_string())
            .send()
    };
    let r: Value = deploy(&env.customer).await.unwrap().json().await.unwrap();
    assert_eq!(r["message"], "Adapter is already deployed and active!");
    let r = deploy(&env.stranger).await.unwrap();
    assert_eq!(r.status(), 412);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["error"]["type"], "deploy_through_broker");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zg fine-tuning deploy-adapter"),
        "{r}"
    );

    // The model list names the caller's own adapters, no one else's.
    assert_models_listed_to_their_owner_only(&running, &env, provider, &name).await;

    // 3. A real restart keeps the adapter: same greedy answer, same owner rule. A broken adapter directory and
    // the leftover of an interrupted deployment do not stop the start; the broken one is not served.
    running.shutdown().await;
    let root = env.dir.path().join(zg_provider::ADAPTERS_DIR);
    std::fs::create_dir_all(root.join("ft-broken-0000")).unwrap();
    std::fs::write(root.join("ft-broken-0000").join("deployment.json"), b"{not json").unwrap();
    std::fs::create_dir_all(root.join(".tmp-ft-x-1234")).unwrap();
    let running = start(&env, true).await;
    assert_eq!(running.provider.adapters().len(), 1);
    assert!(!root.join(".tmp-ft-x-1234").exists());
    std::fs::remove_dir_all(root.join("ft-broken-0000")).unwrap();
    let (status, v, receipt) = chat(&running, &session(&env.customer, provider), &name).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"].as_str().unwrap(), adapted);
    assert_eq!(receipt.unwrap().model, name);
    let (status, ..) = chat(&running, &session(&env.stranger, provider), &name).await;
    assert_eq!(status, 404);

    // List and Remove: the caller's own only; removing stops serving it.
    let mut g = grpc(&running).await;
    let list = |who: &PrivateKeySigner| ListAdaptersRequest {
        auth: owner_auth(&env, who, OwnerAction::List),
    };
    let l = g.list(list(&env.customer)).await.unwrap().into_inner().adapters;
    assert_eq!(
        l.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        vec![name.as_str()]
    );
    assert!(
        g.list(list(&env.stranger))
            .await
            .unwrap()
            .into_inner()
            .adapters
            .is_empty()
    );
    // A list request signed by someone else than the user it names is refused.
    let mut forged = list(&env.stranger);
    forged.auth.as_mut().unwrap().user = env.customer.address().to_checksum(None);
    assert_eq!(
        g.list(forged).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let remove = |who: &PrivateKeySigner| RemoveAdapterRequest {
        auth: owner_auth(&env, who, OwnerAction::Remove(name.clone())),
        name: name.clone(),
    };
    assert!(
        !g.remove(remove(&env.stranger))
            .await
            .unwrap()
            .into_inner()
            .removed
    );
    assert_eq!(
        chat(&running, &session(&env.customer, provider), &name).await.0,
        200
    );
    assert!(
        g.remove(remove(&env.customer))
            .await
            .unwrap()
            .into_inner()
            .removed
    );
    let (status, v, _) = chat(&running, &session(&env.customer, provider), &name).await;
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    assert!(adapter_dirs(&env).is_empty(), "{:?}", adapter_dirs(&env));
    running.shutdown().await;
}

/// An `ft-…` model nobody deployed: 404 `model_not_found` before admission, the upstream never called, nothing
/// billed.
#[tokio::test]
async fn unknown_adapter_model_is_404_before_the_upstream_and_unbilled() {
    let fake = zg_test_utils::fake_upstream::start().await;
    let o = offline(Opts {
        upstream: Some(fake.base.clone()),
        ..Opts::default()
    })
    .await;
    let (c, token) = crate::common::customer(&o, 10u128.pow(18));
    let r = reqwest::Client::new()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(
            r#"{"model":"ft-fake-0d4c6a52-9f7","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "model_not_found");
    assert_eq!(fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(o.provider.ledger().unsettled_fee(c.address()), U256::ZERO);
    // The base model is still served (the upstream is called once).
    let r = reqwest::Client::new()
        .post(format!("{}/v1/proxy/chat/completions", o.url))
        .header("authorization", &token)
        .body(r#"{"model":"fake","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fake.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// vLLM's runtime LoRA API as the provider calls it, against a loopback stand-in that checks each request (a real
/// vLLM is not available on this machine).
#[tokio::test]
async fn vllm_upstream_loads_and_unloads_adapters_through_its_lora_api() {
    use axum::response::IntoResponse as _;
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let s2 = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/v1/{op}",
        post(
            move |axum::extract::Path(op): axum::extract::Path<String>, body: String| {
                let seen = std::sync::Arc::clone(&s2);
                async move {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let refuse = v["lora_name"] == "ft-refused";
                    seen.lock().unwrap().push((op, v));
                    if refuse {
                        (axum::http::StatusCode::BAD_REQUEST, "adapter shapes do not match").into_response()
                    } else {
                        (axum::http::StatusCode::OK, "ok").into_response()
                    }
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let up = Upstream::http(
        &format!("http://{addr}/v1"),
        Some("k".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    let Upstream::Http(h) = &up else { panic!() };
    let dir = std::path::Path::new("/data/adapters/ft-m-abc");
    h.load_lora("ft-m-abc", dir).await.unwrap();
    h.unload_lora("ft-m-abc").await.unwrap();
    let e = h.load_lora("ft-refused", dir).await.unwrap_err();
    assert!(e.to_string().contains("adapter shapes do not match"), "{e}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (
                "load_lora_adapter".into(),
                json!({"lora_name": "ft-m-abc", "lora_path": "/data/adapters/ft-m-abc"})
            ),
            ("unload_lora_adapter".into(), json!({"lora_name": "ft-m-abc"})),
            (
                "load_lora_adapter".into(),
                json!({"lora_name": "ft-refused", "lora_path": "/data/adapters/ft-m-abc"})
            ),
        ]
    );
}

/// What the vLLM stand-in saw.
#[derive(Default)]
struct Seen {
    /// `(op, body)` of each `load_lora_adapter` / `unload_lora_adapter`.
    lora: Vec<(String, Value)>,
    /// The `model` of each chat completion it served.
    chats: Vec<String>,
    /// LoRA calls it refused as vLLM would (a load of a loaded name, an unload of an unknown one).
    refused: Vec<(String, Value)>,
}

/// An OpenAI server standing in for vLLM (a real one is not available here): chat completions with a fixed usage
/// (5 prompt, 3 completion tokens), a model list naming the base, loaded LoRAs and another customer's, and the
/// runtime LoRA API, recording what it is asked.
async fn vllm_stand_in(seen: std::sync::Arc<std::sync::Mutex<Seen>>) -> String {
    use axum::routing::{get, post};
    let (s1, s2, s3) = (
        std::sync::Arc::clone(&seen),
        std::sync::Arc::clone(&seen),
        std::sync::Arc::clone(&seen),
    );
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(move |body: String| async move {
                let v: Value = serde_json::from_str(&body).unwrap();
                let model = v["model"].as_str().unwrap_or_default().to_owned();
                s1.lock().unwrap().chats.push(model.clone());
                axum::Json(
                    json!({"id": "c", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "from the lora"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}),
                )
            }),
        )
        .route(
            "/v1/models",
            get(move || async move {
                let loaded: Vec<Value> = s3
                    .lock()
                    .unwrap()
                    .lora
                    .iter()
                    .filter(|(op, _)| op == "load_lora_adapter")
                    .map(|(_, b)| json!({"id": b["lora_name"], "object": "model"}))
                    .collect();
                let mut data = vec![
                    json!({"id": BASE, "object": "model"}),
                    json!({"id": "ft-smollm2-135m-instruct-someone-else", "object": "model"}),
                ];
                data.extend(loaded);
                axum::Json(json!({"object": "list", "data": data}))
            }),
        )
        .route(
            "/v1/{op}",
            post(
                move |axum::extract::Path(op): axum::extract::Path<String>, body: String| async move {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    // As vLLM (serving_models.py): a name already loaded is refused (400), unloading one that is
                    // not loaded is 404. A restarted provider meets the LoRAs its previous run loaded.
                    let name = v["lora_name"].as_str().unwrap_or_default().to_owned();
                    let loaded = s2
                        .lock()
                        .unwrap()
                        .lora
                        .iter()
                        .rev()
                        .find(|(_, b)| b["lora_name"] == name.as_str())
                        .is_some_and(|(o, _)| o == "load_lora_adapter");
                    let refusal = match op.as_str() {
                        "load_lora_adapter" if loaded => Some((
                            axum::http::StatusCode::BAD_REQUEST,
                            format!("The lora adapter '{name}' has already been loaded."),
                        )),
                        "unload_lora_adapter" if !loaded => Some((
                            axum::http::StatusCode::NOT_FOUND,
                            format!("The lora adapter '{name}' cannot be found."),
                        )),
                        _ => None,
                    };
                    if let Some((status, message)) = refusal {
                        s2.lock().unwrap().refused.push((op, v));
                        return (status, message);
                    }
                    if op == "load_lora_adapter" {
                        // vLLM reads the adapter from lora_path when asked: it must be complete by then.
                        let dir = std::path::Path::new(v["lora_path"].as_str().unwrap());
                        assert!(dir.join("adapter_config.json").is_file(), "{}", dir.display());
                        assert!(
                            dir.join("adapter_model.safetensors").is_file(),
                            "{}",
                            dir.display()
                        );
                    }
                    s2.lock().unwrap().lora.push((op, v));
                    (axum::http::StatusCode::OK, "ok".to_owned())
                },
            ),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// With a vLLM upstream the adapter is loaded through vLLM's LoRA API (again after a restart, unloaded on removal),
/// requests for it are forwarded with its name as the model for its owner only, billed at the provider's prices, and
/// the model list hides other customers' LoRAs.
#[tokio::test]
async fn anvil_adapters_vllm_upstream_loads_through_its_lora_api_and_serves_the_owner_only() {
    let (env, keys) = setup(7).await;
    let provider = env.provider.address();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let upstream = vllm_stand_in(std::sync::Arc::clone(&seen)).await;
    let running = start_with(&env, true, Some(upstream.clone())).await;
    fund_inference(&env, &keys).await;
    let package = AdapterPackage {
        config_json: serde_json::to_vec(&LoraConfig::new(
            8,
            16.0,
            &[Target::Q, Target::V],
            zg_model::SMOLLM2_135M_INSTRUCT,
        ))
        .unwrap(),
        safetensors: vec![0x5a; 4096],
    };
    let mut g = grpc(&running).await;
    let ch = challenge(&mut g, &env, &running).await;
    let info = send(
        &mut g,
        &prepare(&env, &ch, &authorize(&env, &env.customer, TASK), &package),
    )
    .await
    .unwrap();
    let name = adapter_name(BASE, TASK);
    assert_eq!(info.name, name);
    let dir = env.dir.path().join(zg_provider::ADAPTERS_DIR).join(&name);
    let load = (
        "load_lora_adapter".to_owned(),
        json!({"lora_name": name, "lora_path": dir.display().to_string()}),
    );
    assert_eq!(seen.lock().unwrap().lora, vec![load.clone()]);

    let (status, v, receipt) = chat(&running, &session(&env.customer, provider), &name).await;
    assert_eq!(status, 200, "{v}");
    let receipt = receipt.unwrap();
    assert_eq!(receipt.model, name);
    assert_eq!(receipt.fee.parse::<U256>().unwrap(), fee(5, 3));
    assert_eq!(seen.lock().unwrap().chats, vec![name.clone()]);
    let (status, v, _) = chat(&running, &session(&env.stranger, provider), &name).await;
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    assert_eq!(
        seen.lock().unwrap().chats.len(),
        1,
        "the upstream is not called for a stranger"
    );
    assert_models_listed_to_their_owner_only(&running, &env, provider, &name).await;

    // A restart (vLLM keeps running, the LoRA loaded) loads it into the upstream again, fresh from the files: the
    // old copy is unloaded first (vLLM refuses to load a name twice), and the owner is still served.
    running.shutdown().await;
    let running = start_with(&env, true, Some(upstream)).await;
    let unload = ("unload_lora_adapter".to_owned(), json!({"lora_name": name}));
    assert_eq!(
        seen.lock().unwrap().lora,
        vec![load.clone(), unload.clone(), load.clone()]
    );
    let (status, v, _) = chat(&running, &session(&env.customer, provider), &name).await;
    assert_eq!(status, 200, "{v}");
    // A redeployment of the same adapter replaces the loaded copy the same way.
    let mut g = grpc(&running).await;
    let ch = challenge(&mut g, &env, &running).await;
    send(
        &mut g,
        &prepare(&env, &ch, &authorize(&env, &env.customer, TASK), &package),
    )
    .await
    .unwrap();
    assert_eq!(seen.lock().unwrap().lora[3..], [unload.clone(), load.clone()]);
    let mut g = grpc(&running).await;
    let removed = g
        .remove(RemoveAdapterRequest {
            auth: owner_auth(&env, &env.customer, OwnerAction::Remove(name.clone())),
            name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert!(removed);
    assert_eq!(
        seen.lock().unwrap().lora.last().unwrap(),
        &("unload_lora_adapter".to_owned(), json!({"lora_name": name}))
    );
    assert!(!dir.exists());
    running.shutdown().await;
}

/// Red team (attacks on the registry, not the handshake): an attested broker with customers cannot make the
/// provider hold unbounded adapters (a cap per customer, a replacement does not count); two deployments of one
/// name for two customers (task ids sharing their first 12 characters, e.g. from two brokers) cannot both pass the
/// "name taken" check and leave the model serving one customer's weights under the other's ownership; and the
/// plaintext adapter files on disk are the provider's alone (0700 directories, 0600 files).
#[tokio::test]
async fn anvil_adapters_capped_per_owner_one_name_one_owner_under_races_and_private_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let (env, _keys) = setup(3).await;
    let broker = env.broker.address();
    // The customer has three more acknowledged tasks; the stranger one whose id shares TASK's first 12 characters.
    let more = [
        "1a1a1a1a-0000-4b1a-8c3d-2e5f6a7b8c9d",
        "2b2b2b2b-0000-4b1a-8c3d-2e5f6a7b8c9d",
        "3c3c3c3c-0000-4b1a-8c3d-2e5f6a7b8c9d",
    ];
    let collide = "0d4c6a52-9f7f-4000-8000-000000000000";
    assert_eq!(adapter_name(BASE, collide), adapter_name(BASE, TASK));
    let ft_broker = env.devnet.client(Some(env.broker.wallet.clone())).await.unwrap();
    let stranger = env.devnet.client(Some(env.stranger.clone())).await.unwrap();
    stranger
        .ledger()
        .add_ledger(Amount::from_zg(5), "")
        .await
        .unwrap();
    stranger
        .ledger()
        .transfer_fund(broker, ServiceKind::FineTuning, Amount::from_zg(1))
        .await
        .unwrap();
    let customer = env.devnet.client(Some(env.customer.clone())).await.unwrap();
    for t in more {
        ft_broker
            .fine_tuning()
            .add_deliverable(env.customer.address(), t, ChainBytes::from(vec![0xaa; 32]))
            .await
            .unwrap();
        customer
            .fine_tuning()
            .acknowledge_deliverable(broker, t)
            .await
            .unwrap();
    }
    ft_broker
        .fine_tuning()
        .add_deliverable(env.stranger.address(), collide, ChainBytes::from(vec![0xbb; 32]))
        .await
        .unwrap();
    stranger
        .fine_tuning()
        .acknowledge_deliverable(broker, collide)
        .await
        .unwrap();

    let running = start_tuned(&env, true, None, |s| {
        s.adapters.max_per_owner = 2;
        // 1024 in production; a small set keeps the flood below quick.
        s.adapters.max_outstanding_challenges = 16;
    })
    .await;
    let package = adapter_files(llm(&running), 3, false);

    // 0. Anyone may ask for challenges: a flood of them (never answered with a deployment) must not lock the
    // brokers out. The oldest outstanding nonce gives way, so a broker that deploys right after its challenge
    // (as zg-broker does) still gets through.
    let mut flood = grpc(&running).await;
    let started = std::time::Instant::now();
    for _ in 0..24 {
        flood
            .challenge(AdapterChallengeRequest {
                broker_nonce: vec![7; 32],
                broker: Address::repeat_byte(0xee).to_checksum(None),
            })
            .await
            .expect("a challenge flood must not refuse challenges");
    }
    eprintln!("24 challenges: {:?}", started.elapsed());

    // 1. The race: both deployments are in flight at once; exactly one customer gets the name.
    let (mut g1, mut g2) = (grpc(&running).await, grpc(&running).await);
    let (c1, c2) = (
        challenge(&mut g1, &env, &running).await,
        challenge(&mut g2, &env, &running).await,
    );
    let d1 = prepare(&env, &c1, &authorize(&env, &env.customer, TASK), &package);
    let d2 = prepare(&env, &c2, &authorize(&env, &env.stranger, collide), &package);
    let (r1, r2) = tokio::join!(send(&mut g1, &d1), send(&mut g2, &d2));
    let name = adapter_name(BASE, TASK);
    let winner = match (&r1, &r2) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
            assert!(matches!(e.code(), tonic::Code::FailedPrecondition), "{e:?}");
            let kind = e
                .metadata()
                .get("zg-error-type")
                .map(|v| v.to_str().unwrap().to_owned());
            assert!(
                matches!(
                    kind.as_deref(),
                    Some("adapter_name_taken" | "adapter_deploy_in_progress")
                ),
                "{e:?}"
            );
            if r1.is_ok() {
                env.customer.address()
            } else {
                env.stranger.address()
            }
        }
        other => panic!("exactly one of two owners may get {name}: {other:?}"),
    };
    assert_eq!(running.provider.adapters().get(&name).unwrap().owner, winner);
    assert_eq!(running.provider.adapters().len(), 1);

    // 2. The cap: two adapters per customer here; a third is refused by name, a replacement is not.
    let mut g = grpc(&running).await;
    let already = usize::from(winner == env.customer.address());
    for (i, t) in more.iter().enumerate() {
        let ch = challenge(&mut g, &env, &running).await;
        let r = send(
            &mut g,
            &prepare(&env, &ch, &authorize(&env, &env.customer, t), &package),
        )
        .await;
        if already + i < 2 {
            r.unwrap();
        } else {
            refused(r, tonic::Code::FailedPrecondition, "adapter_limit");
            assert!(running.provider.adapters().get(&adapter_name(BASE, t)).is_none());
        }
    }
    assert_eq!(
        running.provider.adapters().owned_by(env.customer.address()).len(),
        2
    );
    let again = if already == 1 { TASK } else { more[0] };
    let ch = challenge(&mut g, &env, &running).await;
    send(
        &mut g,
        &prepare(&env, &ch, &authorize(&env, &env.customer, again), &package),
    )
    .await
    .unwrap();

    // 3. The plaintext adapters on disk: the provider's user only.
    let root = env.dir.path().join(zg_provider::ADAPTERS_DIR);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700, "{}", root.display());
    let dirs = adapter_dirs(&env);
    // The race's adapter and the customer's two (one of which may be the race's).
    assert_eq!(dirs.len(), 3 - already, "{dirs:?}");
    assert_eq!(dirs.len(), running.provider.adapters().len());
    for d in dirs {
        let dir = root.join(&d);
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
        }
    }
    running.shutdown().await;
}

/// Silent `Deploy` streams (no head, no attestation) hold at most [`zg_provider::MAX_DEPLOY_STREAMS`] places: the
/// next is refused at once with `saturated` (before, each was buffered unauthenticated for the head timeout, with
/// no limit on how many), and a place comes back when one of them goes away.
#[tokio::test]
async fn anvil_adapters_silent_deploy_streams_are_capped_before_authentication() {
    let (env, _keys) = setup(3).await;
    let running = start(&env, true).await;
    let mut held = Vec::new();
    for _ in 0..zg_provider::MAX_DEPLOY_STREAMS {
        let mut c = grpc(&running).await;
        held.push(tokio::spawn(async move {
            c.deploy(futures::stream::pending::<DeployAdapterChunk>()).await
        }));
    }
    // Let the server take every place.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = grpc(&running).await;
    let started = std::time::Instant::now();
    let e = c
        .deploy(futures::stream::pending::<DeployAdapterChunk>())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("already open"), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not after the head timeout"
    );
    // One silent stream leaves: its place is free again (the next stream is judged on its content).
    held.pop().unwrap().abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = c
        .deploy(futures::stream::empty::<DeployAdapterChunk>())
        .await
        .unwrap_err();
    assert_ne!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    for h in held {
        h.abort();
    }
    running.shutdown().await;
}
