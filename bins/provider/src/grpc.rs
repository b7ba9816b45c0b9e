//! The gRPC API (`proto/zg/v1/provider.proto`): the same operations as HTTP, over the same [`Provider`].
//! Domain types are converted to prost messages here, at the edge.

use std::pin::Pin;

use axum::body::Bytes;
use futures::Stream;
use tonic::{Request, Response, Status};
use zg_proto::v1::provider_server::{Provider as ProviderRpc, ProviderServer};
use zg_proto::v1::{
    ChatHead, ChatRequest, ChatResponse, GetAttestationRequest, GetAttestationResponse, GetReceiptRequest,
    GetReceiptResponse, GetServiceInfoRequest, GetServiceInfoResponse, GetUnsettledFeeRequest,
    GetUnsettledFeeResponse, NativeReceipt, Service, chat_response::Event,
};

use crate::core::{Credentials, ExchangeBody, Provider, ReceiptJson, StreamItem};
use crate::error::Error;
use crate::upstream::Route;

/// What `GetServiceInfo` reports beyond the core's own settings.
#[derive(Debug, Clone, Default)]
pub struct ServiceInfo {
    /// Chain id.
    pub chain_id: u64,
    /// InferenceServing address.
    pub inference_contract: String,
    /// Public URL registered on chain.
    pub url: String,
    /// `serviceType` registered on chain.
    pub service_type: String,
    /// `additionalInfo` registered on chain.
    pub additional_info: String,
    /// Whether the contract owner acknowledged the TEE signer (as last read).
    pub tee_signer_acknowledged: bool,
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct GrpcService {
    p: Provider,
    info: ServiceInfo,
}

/// A tonic server for `p`.
pub fn grpc_service(p: Provider, info: ServiceInfo) -> ProviderServer<GrpcService> {
    ProviderServer::new(GrpcService { p, info }).max_decoding_message_size(crate::http::MAX_BODY)
}

fn native(r: &ReceiptJson) -> NativeReceipt {
    NativeReceipt {
        key: r.key.clone(),
        request_hash: r.request_hash.to_vec(),
        response_hash: r.response_hash.to_vec(),
        model: r.model.clone(),
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: r.usage.completion_tokens,
        billed: r.billed,
        fee: r.fee.clone(),
        nonce: r.nonce.clone(),
        signature: hex::decode(r.signature.trim_start_matches("0x")).unwrap_or_default(),
        response_key: hex::decode(r.response_key.trim_start_matches("0x")).unwrap_or_default(),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatResponse, Status>> + Send>>;

fn msg(e: Event) -> Result<ChatResponse, Status> {
    Ok(ChatResponse { event: Some(e) })
}

#[tonic::async_trait]
impl ProviderRpc for GrpcService {
    async fn get_service_info(
        &self,
        _: Request<GetServiceInfoRequest>,
    ) -> Result<Response<GetServiceInfoResponse>, Status> {
        let c = self.p.config();
        let tee = self.p.tee();
        Ok(Response::new(GetServiceInfoResponse {
            service: Some(Service {
                provider: self.p.address().to_checksum(None),
                service_type: self.info.service_type.clone(),
                url: self.info.url.clone(),
                model: c.model.clone(),
                verifiability: "TeeML".into(),
                input_price: c.prices.input.to_string(),
                output_price: c.prices.output.to_string(),
                additional_info: self.info.additional_info.clone(),
                tee_signer_address: tee.signer().to_checksum(None),
                tee_signer_acknowledged: self.info.tee_signer_acknowledged,
                updated_at: 0,
            }),
            chain_id: self.info.chain_id,
            inference_contract: self.info.inference_contract.clone(),
            response_key: tee.keys().response.verifying_key().to_bytes().to_vec(),
            tee_backend: serde_json::to_value(tee.backend())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        }))
    }

    async fn get_attestation(
        &self,
        req: Request<GetAttestationRequest>,
    ) -> Result<Response<GetAttestationResponse>, Status> {
        // Anyone may ask: a fresh quote is TEE work, so each peer gets a small allowance (as over HTTP).
        let peer = req
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let nonce = <[u8; 32]>::try_from(req.into_inner().nonce.as_slice())
            .map_err(|_| Status::from(Error::BadRequest("nonce must be exactly 32 bytes".into())))?;
        let _quote = self.p.quote_permit(peer)?;
        let doc = crate::http::fresh_evidence(&self.p, nonce).await?;
        let s = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        Ok(Response::new(GetAttestationResponse {
            quote: hex::decode(s("quote")).unwrap_or_default(),
            event_log: s("event_log"),
            gpu_evidence: s("gpu_evidence"),
            binding: doc.get("binding").map(|b| b.to_string()).unwrap_or_default(),
            evidence_json: doc.to_string(),
            simulated: doc.get("simulated").and_then(|v| v.as_bool()).unwrap_or(false),
        }))
    }

    type ChatStream = ChatStream;

    async fn chat(&self, req: Request<ChatRequest>) -> Result<Response<ChatStream>, Status> {
        let r = req.into_inner();
        let route = Route::parse(&r.route)
            .filter(|r| *r != Route::Models)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "route {:?}: use chat/completions, completions or embeddings",
                    r.route
                ))
            })?;
        let creds = Credentials {
            authorization: non_empty(r.authorization),
            zg_request: non_empty(r.zg_request),
        };
        let x = self.p.exchange(route, creds, Bytes::from(r.body)).await?;
        let head = msg(Event::Head(ChatHead {
            status: u32::from(x.status),
            content_type: x.content_type,
            res_key: x.res_key.unwrap_or_default(),
        }));
        let out: ChatStream = match x.body {
            ExchangeBody::Full { bytes, receipt } => {
                let mut items = vec![head, msg(Event::Chunk(bytes.to_vec()))];
                if let Some(r) = receipt {
                    items.push(msg(Event::Receipt(native(&r))));
                }
                Box::pin(futures::stream::iter(items))
            }
            ExchangeBody::Stream(rx) => {
                let rest = futures::stream::unfold(rx, |mut rx| async move {
                    let item = match rx.recv().await? {
                        StreamItem::Data(b) => msg(Event::Chunk(b.to_vec())),
                        StreamItem::Receipt(r) => msg(Event::Receipt(native(&r))),
                        StreamItem::Failed(e) => Err(Status::unavailable(e)),
                    };
                    Some((item, rx))
                });
                Box::pin(futures::StreamExt::chain(futures::stream::iter([head]), rest))
            }
        };
        Ok(Response::new(out))
    }

    async fn get_receipt(
        &self,
        req: Request<GetReceiptRequest>,
    ) -> Result<Response<GetReceiptResponse>, Status> {
        let key = req.into_inner().key;
        let r = self
            .p
            .zg_receipt(key.clone())
            .await?
            .ok_or_else(|| Error::NotFound(format!("receipt {key:?} (chat_id_not_found)")))?;
        let receipt = serde_json::from_str::<ReceiptJson>(&r.native)
            .ok()
            .map(|n| native(&n));
        Ok(Response::new(GetReceiptResponse {
            text: r.text,
            signature: r.signature,
            signing_address: self.p.tee().signer().to_checksum(None),
            signing_algo: "ecdsa".into(),
            receipt,
        }))
    }

    async fn get_unsettled_fee(
        &self,
        req: Request<GetUnsettledFeeRequest>,
    ) -> Result<Response<GetUnsettledFeeResponse>, Status> {
        let auth = req.into_inner().authorization;
        let (user, fee) = self.p.own_unsettled_fee(&auth).await?;
        Ok(Response::new(GetUnsettledFeeResponse {
            user: user.to_checksum(None),
            unsettled_fee: fee.to_string(),
        }))
    }
}
