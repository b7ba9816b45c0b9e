//! The generated client and server talk over real gRPC on loopback.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use zg_proto::v1::{
    GetServiceInfoRequest, GetServiceInfoResponse, Service,
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
            service: Some(Service { model: "demo".into(), input_price: "7".into(), ..Default::default() }),
            chain_id: 31337,
            inference_contract: "0x0165878A594ca255338adfa4d48449f69242Eb8F".into(),
        }))
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
    let resp = client.get_service_info(GetServiceInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(resp.chain_id, 31337);
    let service = resp.service.unwrap();
    assert_eq!(service.model, "demo");
    assert_eq!(service.input_price, "7");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
