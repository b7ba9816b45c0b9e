//! The native gRPC API (`zg.v1.FineTuning`, proto/zg/v1/finetune.proto) over the same pipeline as HTTP.
//! Unlike the 0G routes, every read needs the owner's signature ([`ReadAuth`](zg_proto::v1::ReadAuth)), and
//! creates sign the model, the config and a maximum fee. Transport types stop here: conversion by hand.

use std::pin::Pin;

use alloy_primitives::{Address, U256};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use zg_finetune::{CreateTask, TaskEvent, TaskId, TaskRecord, sig};
use zg_proto::v1 as pb;
use zg_proto::v1::fine_tuning_server::{FineTuning, FineTuningServer};

use crate::error::Error;
use crate::run::App;

/// The gRPC service value.
pub type GrpcService = FineTuningServer<Grpc>;

/// Builds the service.
pub fn grpc_service(app: App) -> GrpcService {
    FineTuningServer::new(Grpc { app })
}

/// The `FineTuning` implementation.
#[derive(Debug, Clone)]
pub struct Grpc {
    app: App,
}

fn status(e: impl Into<Error>) -> Status {
    Status::from(e.into())
}

fn addr(s: &str) -> Result<Address, Status> {
    s.parse()
        .map_err(|_| status(Error::BadRequest(format!("{s:?} is not an address"))))
}

fn sig65(what: &'static str, b: &[u8]) -> Result<[u8; 65], Status> {
    <[u8; 65]>::try_from(b).map_err(|_| {
        status(zg_finetune::Error::BadSignature {
            what,
            reason: format!("{} bytes, expected 65", b.len()),
        })
    })
}

/// Converts a task for the wire.
pub fn task_pb(t: &TaskRecord, ack_timeout: std::time::Duration) -> pb::Task {
    let s = |v: Option<U256>| v.map(|x| x.to_string()).unwrap_or_default();
    pb::Task {
        id: t.id.to_string(),
        user: t.user.to_checksum(None),
        created_at_ms: t.created_at,
        updated_at_ms: t.updated_at,
        state: t.state.to_string(),
        fail_reason: t.fail_reason.clone().unwrap_or_default(),
        model: t.model.clone(),
        model_hash: t.model_hash.clone(),
        dataset_hash: t.dataset_hash.clone(),
        training_params: t.training_params.clone(),
        nonce: t.nonce.to_string(),
        tokens: t.tokens.unwrap_or_default(),
        epochs: t.epochs.unwrap_or_default(),
        price_per_token: s(t.price),
        fee: s(t.fee),
        progress: t.progress,
        model_root_hash: t.model_root_hash.clone().unwrap_or_default(),
        storage_root: t.storage_root.clone().unwrap_or_default(),
        sealed_len: t.sealed_len.unwrap_or_default(),
        deliver_tx: t.deliver_tx.clone().unwrap_or_default(),
        settle_tx: t.settle_tx.clone().unwrap_or_default(),
        charged: s(t.charged),
        ack_deadline_ms: t
            .delivered_at
            .map(|d| d.saturating_add(i64::try_from(ack_timeout.as_millis()).unwrap_or(i64::MAX)))
            .unwrap_or_default(),
    }
}

fn log_pb(l: &zg_finetune::LogLine) -> pb::LogLine {
    pb::LogLine {
        seq: l.seq,
        at_ms: l.at,
        kind: l.kind.clone(),
        line: l.line.clone(),
    }
}

impl Grpc {
    fn auth(&self, a: Option<pb::ReadAuth>) -> Result<Address, Status> {
        let a = a.ok_or_else(|| {
            status(zg_finetune::Error::Unauthenticated(
                "reads need `auth` (ReadAuth)".into(),
            ))
        })?;
        let user = addr(&a.user)?;
        self.app
            .check_read(user, a.timestamp, &sig65("read", &a.signature)?)
            .map_err(status)?;
        Ok(user)
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FineTuning for Grpc {
    async fn get_info(
        &self,
        _r: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        let p = &self.app.pipeline;
        let penalty = zg_finetune::FineTuningChain::penalty_percentage(p.chain())
            .await
            .unwrap_or(0);
        let domain = zg_finetune::FineTuningChain::domain(p.chain());
        Ok(Response::new(pb::GetInfoResponse {
            provider: zg_finetune::FineTuningChain::provider(p.chain()).to_checksum(None),
            tee_signer: p.tee_signer().to_checksum(None),
            chain_id: domain.chain_id,
            fine_tuning_contract: domain.contract.to_checksum(None),
            price_per_token: p.config().price_per_token.to_string(),
            models: p
                .models()
                .iter()
                .map(|m| pb::ModelInfo {
                    name: m.name.clone(),
                    hash: m.hash.clone(),
                    description: m.description.clone(),
                    tokenizer: m.tokenizer.name().to_owned(),
                    executor: m.executor.kind().to_owned(),
                })
                .collect(),
            tee_backend: format!("{:?}", self.app.tee.backend()).to_lowercase(),
            ack_timeout_secs: p.config().ack_timeout.as_secs(),
            penalty_percentage: penalty,
        }))
    }

    async fn create_task(&self, r: Request<pb::CreateTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let r = r.into_inner();
        let parse = |field: &'static str, v: &str| {
            v.parse::<U256>().map_err(|_| {
                status(zg_finetune::Error::InvalidField {
                    field,
                    reason: format!("{v:?} is not a decimal integer"),
                })
            })
        };
        let t = self
            .app
            .pipeline
            .create_task(CreateTask {
                user: addr(&r.user)?,
                dataset_hash: r.dataset_hash,
                training_params: r.training_params,
                model: r.model,
                nonce: parse("nonce", &r.nonce)?,
                signature: format!("0x{}", hex::encode(&r.signature)),
                wait: false,
                max_fee: Some(parse("max_fee", &r.max_fee)?),
            })
            .await
            .map_err(status)?;
        self.app.crash.hit("accepted");
        Ok(Response::new(task_pb(&t, self.app.pipeline.config().ack_timeout)))
    }

    async fn get_task(&self, r: Request<pb::GetTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let r = r.into_inner();
        let user = self.auth(r.auth)?;
        let id = TaskId::parse(&r.id).map_err(status)?;
        let t = self
            .app
            .pipeline
            .store()
            .get_for(user, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(task_pb(&t, self.app.pipeline.config().ack_timeout)))
    }

    async fn list_tasks(
        &self,
        r: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let r = r.into_inner();
        let user = self.auth(r.auth)?;
        let limit = if r.limit == 0 { 50 } else { r.limit.min(500) };
        let tasks = self
            .app
            .pipeline
            .store()
            .list(user, limit)
            .await
            .map_err(status)?;
        let ack = self.app.pipeline.config().ack_timeout;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: tasks.iter().map(|t| task_pb(t, ack)).collect(),
        }))
    }

    type WatchTaskStream = Boxed<pb::TaskUpdate>;

    async fn watch_task(
        &self,
        r: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let r = r.into_inner();
        let user = self.auth(r.auth)?;
        let id = TaskId::parse(&r.id).map_err(status)?;
        // Subscribe before the first read: nothing that happens in between is missed.
        let mut events = self.app.pipeline.subscribe();
        let store = self.app.pipeline.store().clone();
        let first = store.get_for(user, &id).await.map_err(status)?;
        let ack = self.app.pipeline.config().ack_timeout;
        let (tx, rx) = mpsc::channel::<Result<pb::TaskUpdate, Status>>(256);
        tokio::spawn(async move {
            let task_update = |t: &TaskRecord| pb::TaskUpdate {
                update: Some(pb::task_update::Update::Task(task_pb(t, ack))),
            };
            let mut last_seq = r.after_seq;
            let mut last_state = first.state;
            if tx.send(Ok(task_update(&first))).await.is_err() {
                return;
            }
            loop {
                let lines = store.log_since(&id, last_seq).await.unwrap_or_default();
                for l in &lines {
                    last_seq = last_seq.max(l.seq);
                    let u = pb::TaskUpdate {
                        update: Some(pb::task_update::Update::Log(log_pb(l))),
                    };
                    if tx.send(Ok(u)).await.is_err() {
                        return;
                    }
                }
                if let Ok(Some(t)) = store.get(&id).await
                    && t.state != last_state
                {
                    last_state = t.state;
                    if tx.send(Ok(task_update(&t))).await.is_err() {
                        return;
                    }
                }
                if last_state.is_terminal() {
                    return;
                }
                // Wake on this task's events; re-read at least every second in any case.
                let wait = async {
                    loop {
                        match events.recv().await {
                            Ok(e) if e.id() == &id => return true,
                            Ok(TaskEvent::State { .. } | TaskEvent::Activity { .. }) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => return true,
                            Err(broadcast::error::RecvError::Closed) => return false,
                        }
                    }
                };
                if let Ok(false) = tokio::time::timeout(std::time::Duration::from_secs(1), wait).await {
                    return;
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_task(&self, r: Request<pb::CancelTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let r = r.into_inner();
        let user = addr(&r.user)?;
        let id = TaskId::parse(&r.id).map_err(status)?;
        let s = format!("0x{}", hex::encode(sig65("cancel", &r.signature)?));
        let t = self
            .app
            .pipeline
            .cancel_task(user, &id, &s)
            .await
            .map_err(status)?;
        Ok(Response::new(task_pb(&t, self.app.pipeline.config().ack_timeout)))
    }

    /// See [`crate::adapters`] for who can call it and the worst they can do.
    async fn deploy_adapter(
        &self,
        r: Request<pb::DeployAdapterRequest>,
    ) -> Result<Response<pb::DeployAdapterResult>, Status> {
        crate::adapters::deploy(&self.app, &self.app.deployer, r.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    type GetDeliverableStream = Boxed<pb::DeliverableChunk>;

    async fn get_deliverable(
        &self,
        r: Request<pb::GetDeliverableRequest>,
    ) -> Result<Response<Self::GetDeliverableStream>, Status> {
        let r = r.into_inner();
        let user = self.auth(r.auth)?;
        let id = TaskId::parse(&r.id).map_err(status)?;
        let t = self
            .app
            .pipeline
            .store()
            .get_for(user, &id)
            .await
            .map_err(status)?;
        let (path, len) = self.app.pipeline.sealed_of(&t).map_err(status)?;
        let info = pb::DeliverableInfo {
            model_root_hash: t.model_root_hash.clone().unwrap_or_default(),
            storage_root: t.storage_root.clone().unwrap_or_default(),
            size: len,
            tee_signer: self.app.pipeline.tee_signer().to_checksum(None),
        };
        let (tx, rx) = mpsc::channel::<Result<pb::DeliverableChunk, Status>>(8);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let first = pb::DeliverableChunk {
                chunk: Some(pb::deliverable_chunk::Chunk::Info(info)),
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut f = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the sealed model");
                    let _ = tx
                        .send(Err(Status::internal("the sealed model is unavailable")))
                        .await;
                    return;
                }
            };
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match f.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let c = pb::DeliverableChunk {
                            chunk: Some(pb::deliverable_chunk::Chunk::Data(buf[..n].to_vec())),
                        };
                        if tx.send(Ok(c)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the sealed model");
                        let _ = tx
                            .send(Err(Status::internal("reading the sealed model failed")))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Signs a [`pb::ReadAuth`] for `key` now (for clients and tests).
pub fn read_auth(key: &zg_finetune::SigningKey) -> Result<pb::ReadAuth, zg_finetune::Error> {
    let user = sig::address_of(key);
    let ts = zg_finetune::now_ms() / 1000;
    let s = sig::sign_personal(key, &sig::read_digest(user, ts))?;
    Ok(pb::ReadAuth {
        user: user.to_checksum(None),
        timestamp: ts,
        signature: s.to_vec(),
    })
}
