//! The generated client and server talk over real gRPC on loopback.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use zg_proto::v1::{
    ChatRequest, ChatResponse, GetAttestationRequest, GetAttestationResponse, GetReceiptRequest,
    GetReceiptResponse, GetServiceInfoRequest, GetServiceInfoResponse, GetUnsettledFeeRequest,
    GetUnsettledFeeResponse, Service,
    provider_client::ProviderClient,
    provider_server::{Provider, ProviderServer},
};

struct Fixed;

#[tonic::async_trait]
impl Provider for Fixed {
    async fn get_service_info(
        &self,
        _req: Request<GetServiceInfoRequest>,
    ) -> Result<Response<GetServiceInfoResponse>, Status> {
        Ok(Response::new(GetServiceInfoResponse {
            service: Some(Service {
                model: "demo".into(),
                input_price: "7".into(),
                ..Default::default()
            }),
            chain_id: 31337,
            inference_contract: "0x0165878A594ca255338adfa4d48449f69242Eb8F".into(),
            ..Default::default()
        }))
    }

    // The rest of the service is exercised by zg-provider's tests; this file checks the codegen wiring.
    async fn get_attestation(
        &self,
        _req: Request<GetAttestationRequest>,
    ) -> Result<Response<GetAttestationResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type ChatStream = tokio_stream::Empty<Result<ChatResponse, Status>>;

    async fn chat(&self, _req: Request<ChatRequest>) -> Result<Response<Self::ChatStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_receipt(
        &self,
        _req: Request<GetReceiptRequest>,
    ) -> Result<Response<GetReceiptResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_unsettled_fee(
        &self,
        _req: Request<GetUnsettledFeeRequest>,
    ) -> Result<Response<GetUnsettledFeeResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

#[tokio::test]
async fn get_service_info_round_trips_over_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ProviderServer::new(Fixed))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            }),
    );
    let mut client = ProviderClient::connect(format!("http://{addr}")).await.unwrap();
    let resp = client
        .get_service_info(GetServiceInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.chain_id, 31337);
    let service = resp.service.unwrap();
    assert_eq!(service.model, "demo");
    assert_eq!(service.input_price, "7");
    let err = client
        .get_receipt(GetReceiptRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
