//! `FineTuning.DeployAdapter` against the attacks it must refuse: an authorization signed by someone else
//! than the task's owner, for another broker or chain, expired; an n-gram task; a task not acknowledged; and,
//! with a real LoRA task, inference providers (a stand-in `zg.v1.Adapters` server over loopback gRPC,
//! registered on chain) whose evidence does not bind the broker's nonce, whose signer is not the on-chain one,
//! or whose challenge is signed by another key: none of them receives anything. The honest stand-in then
//! checks the broker's side as zg-provider does (evidence bound to its nonce, the on-chain signer, the signed
//! statement) and opens exactly the adapter the customer was delivered.

use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, U256, keccak256};
use serde_json::Value;
use tonic::{Code, Request, Response, Status, Streaming};
use zg_adapters::{
    AdapterPackage, DeployAuthorization, DeployStatement, PeerPolicy, SealedAdapter,
    SignedDeployAuthorization, adapter_name, challenge_digest,
};
use zg_chain::{Amount, ServiceParams};
use zg_finetune::SigningKey;
use zg_proto::v1 as pb;
use zg_proto::v1::adapters_server::{Adapters, AdaptersServer};
use zg_proto::v1::fine_tuning_client::FineTuningClient;

use crate::common::*;

const ADAPTERS_CFG: &str =
    "[adapters]\ndangerous_allow_simulated = true\ndangerous_any_image = true\ntimeout_secs = 8\n";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn authorize(
    owner: &SigningKey,
    signer: &SigningKey,
    chain_id: u64,
    broker: Address,
    provider: Address,
    task: &str,
    expires_at: u64,
) -> pb::DeployAuthorization {
    let a = DeployAuthorization {
        chain_id,
        user: zg_adapters::address_of(owner.verifying_key()),
        broker,
        provider,
        task_id: task.into(),
        expires_at,
    };
    let signature = zg_adapters::sign(signer, &a.digest()).unwrap();
    zg_broker::authorization_pb(&SignedDeployAuthorization {
        authorization: a,
        signature,
    })
}

async fn deploy(b: &Broker, a: pb::DeployAuthorization) -> Result<pb::DeployAdapterResult, Status> {
    deploy_at(b.grpc.clone(), a).await
}

async fn deploy_at(grpc: String, a: pb::DeployAuthorization) -> Result<pb::DeployAdapterResult, Status> {
    let mut c = FineTuningClient::connect(grpc).await.unwrap();
    c.deploy_adapter(pb::DeployAdapterRequest {
        authorization: Some(a),
    })
    .await
    .map(Response::into_inner)
}

#[track_caller]
fn refused(r: Result<pb::DeployAdapterResult, Status>, code: Code, needle: &str) {
    let s = r.expect_err("must be refused");
    assert_eq!(s.code(), code, "{s:?}");
    assert!(
        s.message().contains(needle),
        "{needle:?} not in {:?}",
        s.message()
    );
}

async fn broker_config(net: &Net, extra: &str) -> std::path::PathBuf {
    let cfg = net.dir.path().join("broker.toml");
    std::fs::write(&cfg, format!("{extra}\n{ADAPTERS_CFG}")).unwrap();
    cfg
}

#[tokio::test]
async fn deploy_adapter_refuses_forged_stale_or_foreign_authorizations_and_ngram_tasks() {
    let net = Net::start().await;
    let cfg = broker_config(&net, "").await;
    let b = net.broker(&[], &["-c", cfg.to_str().unwrap()]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let bob = net.customer_handle(2).await;
    let root = net.upload(&baking(8));
    let (st, t) = alice
        .create(&b, &alice.create_body(&root, &model_hash(&b).await, "{}"))
        .await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    alice.wait(&b, &id, 60, |s| s == "Delivered").await;
    let chain_id = net.devnet.chain_id();
    let (broker, provider) = (net.provider(), Address::repeat_byte(0xc1));
    let exp = now() + 600;

    // Delivered but not acknowledged: the customer has not accepted (or paid for) it yet.
    refused(
        deploy(
            &b,
            authorize(&alice.sk, &alice.sk, chain_id, broker, provider, &id, exp),
        )
        .await,
        Code::FailedPrecondition,
        "acknowledge-model",
    );
    alice.acknowledge(net.provider(), &id).await;
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}");

    // Signed by bob in alice's name.
    refused(
        deploy(
            &b,
            authorize(&alice.sk, &bob.sk, chain_id, broker, provider, &id, exp),
        )
        .await,
        Code::PermissionDenied,
        "signed by",
    );
    // Bob's own authorization for alice's task: not his task (answered as any read of it is).
    refused(
        deploy(
            &b,
            authorize(&bob.sk, &bob.sk, chain_id, broker, provider, &id, exp),
        )
        .await,
        Code::NotFound,
        "",
    );
    // For another broker, another chain, expired, too long.
    refused(
        deploy(
            &b,
            authorize(
                &alice.sk,
                &alice.sk,
                chain_id,
                Address::repeat_byte(0xb),
                provider,
                &id,
                exp,
            ),
        )
        .await,
        Code::PermissionDenied,
        "names broker",
    );
    refused(
        deploy(&b, authorize(&alice.sk, &alice.sk, 1, broker, provider, &id, exp)).await,
        Code::PermissionDenied,
        "chain id",
    );
    refused(
        deploy(
            &b,
            authorize(&alice.sk, &alice.sk, chain_id, broker, provider, &id, now() - 5),
        )
        .await,
        Code::PermissionDenied,
        "expired",
    );
    refused(
        deploy(
            &b,
            authorize(
                &alice.sk,
                &alice.sk,
                chain_id,
                broker,
                provider,
                &id,
                now() + 86_400,
            ),
        )
        .await,
        Code::PermissionDenied,
        "ahead",
    );
    // Alice's own, valid authorization for an n-gram task: nothing to deploy, by name.
    refused(
        deploy(
            &b,
            authorize(&alice.sk, &alice.sk, chain_id, broker, provider, &id, exp),
        )
        .await,
        Code::FailedPrecondition,
        &format!("task {id} was trained by the n-gram executor; only LoRA adapters deploy"),
    );
    // A malformed request.
    refused(
        deploy(&b, pb::DeployAuthorization::default()).await,
        Code::InvalidArgument,
        "not an address",
    );
}

/// How the stand-in provider behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Replays evidence bound to another nonce.
    StaleEvidence,
    /// Evidence and signature by a TEE signer other than the on-chain one.
    OffChainSigner,
    /// Right evidence, challenge signed by another key.
    ForeignSignature,
    /// Answers the challenge with 2 MiB of evidence.
    Huge,
    /// Never answers the challenge.
    Silent,
    /// Checks the broker as zg-provider does and accepts.
    Honest,
}

struct StandIn {
    mode: Mutex<Mode>,
    chain_id: u64,
    provider: Address,
    /// The on-chain signer's TEE, and another one.
    tee: zg_broker::Tee,
    other: zg_broker::Tee,
    /// FineTuningServing teeSignerAddress of the broker.
    broker_signer: Address,
    nonces: Mutex<Vec<([u8; 32], [u8; 32])>>,
    deploys: Mutex<u32>,
    received: Mutex<Option<AdapterPackage>>,
}

/// The gRPC service over the shared stand-in state.
struct Svc(Arc<StandIn>);

impl std::ops::Deref for Svc {
    type Target = StandIn;
    fn deref(&self) -> &StandIn {
        &self.0
    }
}

fn secret(tee: &zg_broker::Tee) -> k256::SecretKey {
    k256::SecretKey::from_slice(&tee.key().to_bytes()).unwrap()
}

#[tonic::async_trait]
impl Adapters for Svc {
    async fn challenge(
        &self,
        r: Request<pb::AdapterChallengeRequest>,
    ) -> Result<Response<pb::AdapterChallengeResponse>, Status> {
        let r = r.into_inner();
        let bn: [u8; 32] = r.broker_nonce.as_slice().try_into().unwrap();
        let broker: Address = r.broker.parse().unwrap();
        let pn: [u8; 32] = rand::random();
        self.nonces.lock().unwrap().push((bn, pn));
        let mode = *self.mode.lock().unwrap();
        if mode == Mode::Silent {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        let (evidence_tee, signing_key) = match mode {
            Mode::StaleEvidence | Mode::Honest | Mode::Huge | Mode::Silent => {
                (&self.tee, self.tee.key().clone())
            }
            Mode::OffChainSigner => (&self.other, self.other.key().clone()),
            Mode::ForeignSignature => (&self.tee, self.other.key().clone()),
        };
        let nonce = if mode == Mode::StaleEvidence { [7; 32] } else { bn };
        let mut evidence = evidence_tee.fresh(&nonce).unwrap().to_string();
        if mode == Mode::Huge {
            evidence.push_str(&" ".repeat(2 << 20));
        }
        let d = challenge_digest(self.chain_id, self.provider, broker, &bn, &pn);
        Ok(Response::new(pb::AdapterChallengeResponse {
            provider_nonce: pn.to_vec(),
            evidence_json: evidence,
            signature: zg_adapters::sign(&signing_key, &d).unwrap().to_vec(),
            provider: self.provider.to_checksum(None),
            chain_id: self.chain_id,
        }))
    }

    async fn deploy(
        &self,
        r: Request<Streaming<pb::DeployAdapterChunk>>,
    ) -> Result<Response<pb::DeployAdapterResponse>, Status> {
        *self.deploys.lock().unwrap() += 1;
        let mut s = r.into_inner();
        let Some(pb::deploy_adapter_chunk::Part::Head(h)) = s.message().await?.and_then(|c| c.part) else {
            return Err(Status::invalid_argument("head first"));
        };
        let mut sealed = Vec::new();
        while let Some(c) = s.message().await? {
            if let Some(pb::deploy_adapter_chunk::Part::Sealed(b)) = c.part {
                sealed.extend_from_slice(&b);
            }
        }
        let pn: [u8; 32] = h.provider_nonce.as_slice().try_into().unwrap();
        assert!(
            self.nonces.lock().unwrap().iter().any(|(_, p)| *p == pn),
            "unknown provider nonce"
        );
        let broker: Address = h.broker.parse().unwrap();
        // The broker's evidence: bound to our nonce, its signer the on-chain one.
        let peer = PeerPolicy {
            policy: zg_attestation::AttestationPolicy {
                dangerous_allow_simulated: true,
                dangerous_any_image: true,
                ..Default::default()
            },
            collateral: None,
        };
        zg_adapters::verify_peer(
            &zg_attestation::Verifier::new_prod(),
            &peer,
            broker,
            h.broker_evidence_json.as_bytes(),
            pn,
            self.broker_signer,
            zg_attestation::Timestamp::now(),
        )
        .map_err(|e| Status::permission_denied(e.to_string()))?;
        let auth = zg_broker::authorization_from_pb(h.authorization).unwrap();
        auth.verify(self.chain_id, self.provider, now()).unwrap();
        let statement = DeployStatement {
            chain_id: self.chain_id,
            provider: self.provider,
            broker,
            provider_nonce: pn,
            authorization_hash: auth.hash(),
            adapter_name: h.adapter_name.clone(),
            base_model: h.base_model.clone(),
            wrapped_key_hash: keccak256(&h.wrapped_key),
            sealed_hash: keccak256(&sealed),
            sealed_len: h.sealed_len,
        };
        let sig = zg_adapters::sig65("broker", &h.broker_signature).unwrap();
        zg_adapters::verify("deploy statement", &statement.digest(), &sig, self.broker_signer)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        assert_eq!(sealed.len() as u64, h.sealed_len);
        let package = SealedAdapter {
            sealed,
            wrapped_key: h.wrapped_key,
        }
        .open(&secret(&self.tee), self.broker_signer, 1 << 28)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        *self.received.lock().unwrap() = Some(package);
        Ok(Response::new(pb::DeployAdapterResponse {
            adapter: Some(pb::AdapterInfo {
                name: h.adapter_name,
                base_model: h.base_model,
                owner: auth.authorization.user.to_checksum(None),
                task_id: auth.authorization.task_id,
                broker: broker.to_checksum(None),
                deployed_at: now(),
                state: "active".into(),
            }),
        }))
    }

    async fn list(
        &self,
        _r: Request<pb::ListAdaptersRequest>,
    ) -> Result<Response<pb::ListAdaptersResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }

    async fn remove(
        &self,
        _r: Request<pb::RemoveAdapterRequest>,
    ) -> Result<Response<pb::RemoveAdapterResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
}

#[tokio::test]
async fn deploy_adapter_sends_nothing_to_an_unattested_provider_and_the_delivered_adapter_to_an_attested_one_e2e()
 {
    let gguf = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.is_file(), "{} is missing: run `just setup`", gguf.display());
    let net = Net::start().await;
    let model = "smollm2-135m-instruct";
    let cfg = broker_config(
        &net,
        &format!(
            "[[models]]\nname = \"{model}\"\nexecutor = \"lora\"\nmodel_path = {:?}\n",
            gguf.display().to_string()
        ),
    )
    .await;
    let b = net.broker(&[], &["-c", cfg.to_str().unwrap()]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let chain_id = net.devnet.chain_id();

    // The stand-in inference provider, on chain with its TEE signer and gRPC URL.
    let provider_key = net.devnet.keys()[7].clone();
    let provider = provider_key.address();
    let port = free_port();
    let tee = |n: &str| {
        let d = net.dir.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        zg_broker::Tee::start(zg_broker::BackendChoice::Simulated, &d, None, "stand-in".into()).unwrap()
    };
    let broker_signer = alice
        .chain
        .fine_tuning()
        .tee_signer(net.provider())
        .await
        .unwrap()
        .unwrap();
    let standin = Arc::new(StandIn {
        mode: Mutex::new(Mode::StaleEvidence),
        chain_id,
        provider,
        tee: tee("standin-tee"),
        other: tee("other-tee"),
        broker_signer,
        nonces: Mutex::default(),
        deploys: Mutex::default(),
        received: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdaptersServer::new(Svc(Arc::clone(&standin))))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    net.devnet
        .client(Some(provider_key.clone()))
        .await
        .unwrap()
        .inference()
        .add_or_update_service(
            &ServiceParams {
                service_type: "chatbot".into(),
                url: "http://127.0.0.1:9".into(),
                model: model.into(),
                verifiability: "TeeML".into(),
                input_price: U256::from(1),
                output_price: U256::from(2),
                additional_info: format!(r#"{{"grpc":"http://127.0.0.1:{port}"}}"#),
                tee_signer: standin.tee.signer(),
            },
            "1".parse::<Amount>().unwrap(),
        )
        .await
        .unwrap();

    // A real LoRA task, delivered and acknowledged.
    let m: Value = reqwest::get(format!("{}/v1/model/{model}", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = baking(6);
    let root = net.upload(&data);
    let params = r#"{"max_steps": 2, "per_device_train_batch_size": 2, "max_seq_length": 64, "validation_split": 0.34}"#;
    let (st, t) = alice
        .create(&b, &alice.create_body(&root, m["hash"].as_str().unwrap(), params))
        .await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let t = alice
        .wait(&b, &id, 240, |s| s == "Delivered" || terminal(s))
        .await;
    assert_eq!(t["progress"], "Delivered", "{t}\n{}", alice.log(&b, &id).await);
    let (st, sealed) = alice.download(&b, &id).await;
    assert_eq!(st, 200);
    alice.acknowledge(net.provider(), &id).await;
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}");
    let auth = || {
        authorize(
            &alice.sk,
            &alice.sk,
            chain_id,
            net.provider(),
            provider,
            &id,
            now() + 600,
        )
    };

    // Not an inference provider on chain.
    refused(
        deploy(
            &b,
            authorize(
                &alice.sk,
                &alice.sk,
                chain_id,
                net.provider(),
                Address::repeat_byte(0xc1),
                &id,
                now() + 600,
            ),
        )
        .await,
        Code::NotFound,
        "no InferenceServing service",
    );
    // Hostile or misconfigured providers: refused before anything is sent.
    for (mode, needle) in [
        (Mode::StaleEvidence, "nonce"),
        (Mode::OffChainSigner, "signer"),
        (Mode::ForeignSignature, "the challenge is signed by"),
    ] {
        *standin.mode.lock().unwrap() = mode;
        let r = deploy(&b, auth()).await;
        refused(r, Code::PermissionDenied, needle);
    }
    assert_eq!(
        *standin.deploys.lock().unwrap(),
        0,
        "an unattested provider received a deploy"
    );
    // Reads from the provider are bounded in size and time.
    *standin.mode.lock().unwrap() = Mode::Huge;
    refused(deploy(&b, auth()).await, Code::Unavailable, "Challenge");
    *standin.mode.lock().unwrap() = Mode::Silent;
    let started = std::time::Instant::now();
    // Red team: the authorization is not single use, and whoever holds it (the customer, the provider it names)
    // may replay it in parallel. Each call would read and seal the adapter; at most two run, the rest are refused
    // at once, before the adapter is read.
    let slow = tokio::spawn(deploy_at(b.grpc.clone(), auth()));
    let slow2 = tokio::spawn(deploy_at(b.grpc.clone(), auth()));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let third = std::time::Instant::now();
    refused(
        deploy(&b, auth()).await,
        Code::ResourceExhausted,
        "adapter deployments",
    );
    assert!(
        third.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        third.elapsed()
    );
    refused(slow.await.unwrap(), Code::Unavailable, "timeout_secs");
    refused(slow2.await.unwrap(), Code::Unavailable, "timeout_secs");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(*standin.deploys.lock().unwrap(), 0);

    // The honest one gets exactly the adapter the customer was delivered.
    *standin.mode.lock().unwrap() = Mode::Honest;
    let r = deploy(&b, auth()).await.unwrap();
    let info = r.adapter.unwrap();
    assert_eq!(info.name, adapter_name(model, &id));
    assert_eq!(info.base_model, model);
    assert_eq!(info.owner, alice.addr.to_checksum(None));
    assert_eq!(r.provider_grpc_url, format!("http://127.0.0.1:{port}"));
    assert!(r.provider_simulated);
    let got = standin.received.lock().unwrap().clone().unwrap();
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    let secret = zg_sealing::k256::SecretKey::from_slice(alice.key.to_bytes().as_slice()).unwrap();
    let key = zg_sealing::EncryptedSecret::from_bytes(d.encrypted_secret.to_vec())
        .unwrap_with(&secret)
        .unwrap();
    let plain = zg_sealing::Unsealer::new(&key, broker_signer)
        .unseal_bytes(&sealed)
        .unwrap();
    let out = net.dir.path().join("delivered");
    zg_finetune::unpack(&mut plain.as_slice(), &out, 1 << 30).unwrap();
    assert_eq!(got, AdapterPackage::from_dir(&out).unwrap());
}
