//! The native path over gRPC (issue 11 item 5): against the real provider (billed exactly, receipts verified,
//! settled; `transport = http` still works), and against a hostile gRPC provider on loopback that forges
//! receipts, never ends its stream, or sends oversized messages: each ends in a named error, no answer is
//! handed out and nothing is counted as owed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::U256;
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};
use zg_client::{Error, StreamEvent, Transport};
use zg_proto::v1::provider_client::ProviderClient;
use zg_proto::v1::provider_server::{Provider as ProviderRpc, ProviderServer};
use zg_proto::v1::{
    ChatHead, ChatRequest, ChatResponse, GetAttestationRequest, GetAttestationResponse, GetReceiptRequest,
    GetReceiptResponse, GetServiceInfoRequest, GetServiceInfoResponse, GetUnsettledFeeRequest,
    GetUnsettledFeeResponse, chat_response::Event,
};

use crate::common::{Env, chat_body, env, env_with, proxy};

#[tokio::test]
async fn grpc_chat_and_stream_billed_exactly_receipts_verified_and_http_still_works() {
    let mut e = env_with(10, true).await;
    let grpc_addr = e.running.as_ref().unwrap().grpc_addr;

    // The service advertises its gRPC API next to the fields the official SDK reads.
    let c = e.client().await;
    let svc = c.service(e.provider).await.unwrap();
    let info: serde_json::Value = serde_json::from_str(&svc.additional_info).unwrap();
    assert_eq!(info["grpc"], format!("http://{grpc_addr}"));
    assert_eq!(info["description"], "zg-compute provider");
    assert_eq!(info["attestation"], "/v1/attestation");
    drop(c);

    // The HTTP API behind a recording proxy: billed requests over HTTP show up there, gRPC ones do not.
    let p = proxy(&e.provider_url).await;
    let mut cfg = e.config();
    cfg.url_override = Some(p.url.clone());
    assert_eq!(cfg.transport, Transport::Auto);
    let client = e.client_with(cfg.clone()).await;
    client.verify_provider(e.provider).await.unwrap();
    let prices = (svc.input_price, svc.output_price);
    let mut sum = U256::ZERO;
    for i in 0..2 {
        let r = client
            .chat(e.provider, chat_body(&format!("grpc fees {i}"), 20, false))
            .await
            .unwrap();
        let u = r.receipt.receipt.usage;
        assert!(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 20);
        let fee = U256::from(u.prompt_tokens) * prices.0 + U256::from(u.completion_tokens) * prices.1;
        assert_eq!(r.receipt.fee, fee);
        sum += fee;
        assert_eq!(r.receipt.owed_after, sum);
        assert_eq!((r.status, r.transport), (200, Transport::Grpc));
        assert!(!r.text().unwrap().is_empty());
    }
    let mut s = client
        .chat_stream(e.provider, chat_body("a streamed grpc answer", 24, true))
        .await
        .unwrap();
    assert!(s.res_key().is_some());
    assert_eq!(s.transport(), Transport::Grpc);
    let (mut text, mut events, mut receipt) = (String::new(), 0, None);
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            d @ StreamEvent::Data(_) => {
                events += 1;
                text.push_str(&d.delta_text().unwrap_or_default());
            }
            StreamEvent::Receipt(r) => receipt = Some(*r),
        }
    }
    let receipt = receipt.expect("a verified receipt ends the gRPC stream");
    assert!(events > 2 && !text.is_empty(), "{events} events, {text:?}");
    let u = receipt.receipt.usage;
    assert_eq!(
        receipt.fee,
        U256::from(u.prompt_tokens) * prices.0 + U256::from(u.completion_tokens) * prices.1
    );
    sum += receipt.fee;
    assert_eq!(receipt.owed_after, sum);
    assert!(
        p.seen.lock().unwrap().is_empty(),
        "auto went over HTTP although gRPC is advertised"
    );

    // transport = http: the same data dir, over the HTTP API (the proxy sees it), still billed and verified.
    let mut http_cfg = cfg;
    http_cfg.transport = Transport::Http;
    let http_client = e.client_with(http_cfg).await;
    let r = http_client
        .chat(e.provider, chat_body("over http", 16, false))
        .await
        .unwrap();
    sum += r.receipt.fee;
    assert_eq!(r.receipt.owed_after, sum);
    assert_eq!(r.transport, Transport::Http);
    assert_eq!(p.seen.lock().unwrap().len(), 1);

    // A refusal over gRPC is named like over HTTP: the provider's status and type ride in metadata.
    let mut g = ProviderClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let err = g
        .chat(ChatRequest {
            route: "chat/completions".into(),
            body: chat_body("unsigned", 4, false).into_bytes(),
            authorization: String::new(),
            zg_request: "not-a-signed-request".into(),
        })
        .await
        .unwrap_err();
    let http = reqwest::Client::new()
        .post(format!("{}/v1/proxy/chat/completions", e.provider_url))
        .header("zg-request", "not-a-signed-request")
        .header("content-type", "application/json")
        .body(chat_body("unsigned", 4, false))
        .send()
        .await
        .unwrap();
    let status = http.status().as_u16();
    let body: serde_json::Value = http.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["type"].as_str().unwrap()),
        (400, "invalid_request")
    );
    assert_eq!(err.metadata().get("zg-http-status").unwrap(), "400");
    assert_eq!(err.metadata().get("zg-error-type").unwrap(), "invalid_request");

    // The voucher flush (an upstream 4xx passed through the gRPC head, not billed), then settlement pays
    // exactly the receipts of both transports.
    assert_eq!(client.flush_voucher(e.provider).await.unwrap(), sum);
    let running = e.running.take().unwrap();
    let report = running.settle(true).await.unwrap();
    assert_eq!(report.total_paid(), sum, "{report:?}");
    let b = client.balance(e.provider).await.unwrap();
    assert_eq!((b.owed, b.paid, b.receipts), (sum, sum, 4));
    running.shutdown().await;
}

#[tokio::test]
async fn grpc_transport_forced_without_an_advertised_endpoint_is_a_named_error() {
    let e = env(10).await;
    let mut cfg = e.config();
    cfg.transport = Transport::Grpc;
    let client = e.client_with(cfg).await;
    client.verify_provider(e.provider).await.unwrap();
    let err = client
        .chat(e.provider, chat_body("hi", 4, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoGrpcEndpoint { provider } if provider == e.provider),
        "{err:?}"
    );
    // Nothing was signed or sent.
    assert_eq!(client.state(e.provider).await.unwrap().last_nonce, U256::ZERO);
}

/// How the hostile gRPC provider answers `Chat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward to the real provider.
    Honest,
    /// Forward, but flip one byte of the receipt's signature.
    ForgeSignature,
    /// Forward, but raise the receipt's fee by one neuron (signature no longer covers it).
    ForgeFee,
    /// Forward, but flip one byte of the first chunk (the receipt no longer covers the bytes).
    FlipChunk,
    /// Forward, but drop the receipt.
    DropReceipt,
    /// Never answer (no head, ever).
    Silent,
    /// A 200 head, then a small SSE event every 20 ms, forever.
    Endless,
    /// A 200 head, then one chunk of 1 MiB.
    Huge,
    /// A 200 head, then 64 KiB chunks, forever.
    Flood,
    /// A 500 head (an upstream error), then 64 KiB chunks of error body, forever.
    EndlessError,
    /// Refuse like a zg-provider refusing a replayed nonce.
    Refuse,
}

#[derive(Clone)]
struct Hostile {
    real: String,
    mode: Arc<Mutex<Mode>>,
}

type Out = Pin<Box<dyn Stream<Item = Result<ChatResponse, Status>> + Send>>;

fn head() -> Result<ChatResponse, Status> {
    Ok(ChatResponse {
        event: Some(Event::Head(ChatHead {
            status: 200,
            content_type: "text/event-stream".into(),
            res_key: "hostile".into(),
        })),
    })
}

fn chunk(b: Vec<u8>) -> Result<ChatResponse, Status> {
    Ok(ChatResponse {
        event: Some(Event::Chunk(b)),
    })
}

#[tonic::async_trait]
impl ProviderRpc for Hostile {
    async fn get_service_info(
        &self,
        _: Request<GetServiceInfoRequest>,
    ) -> Result<Response<GetServiceInfoResponse>, Status> {
        Err(Status::unimplemented("hostile"))
    }

    async fn get_attestation(
        &self,
        _: Request<GetAttestationRequest>,
    ) -> Result<Response<GetAttestationResponse>, Status> {
        Err(Status::unimplemented("hostile"))
    }

    type ChatStream = Out;

    async fn chat(&self, req: Request<ChatRequest>) -> Result<Response<Out>, Status> {
        let mode = *self.mode.lock().unwrap();
        let paced = |every: Duration, bytes: &'static [u8]| -> Out {
            let rest = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                Some((chunk(bytes.to_vec()), ()))
            });
            Box::pin(futures::stream::iter([head()]).chain(rest))
        };
        match mode {
            Mode::Silent => {
                futures::future::pending::<()>().await;
                unreachable!()
            }
            Mode::Endless => {
                return Ok(Response::new(paced(
                    Duration::from_millis(20),
                    b"data: {\"choices\":[{\"delta\":{\"content\":\"more \"}}]}\n\n",
                )));
            }
            Mode::Flood => return Ok(Response::new(paced(Duration::from_millis(5), &FLOOD))),
            Mode::EndlessError => {
                let h = Ok(ChatResponse {
                    event: Some(Event::Head(ChatHead {
                        status: 500,
                        content_type: "application/json".into(),
                        res_key: String::new(),
                    })),
                });
                let rest = futures::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((chunk(FLOOD.to_vec()), ()))
                });
                return Ok(Response::new(Box::pin(futures::stream::iter([h]).chain(rest))));
            }
            Mode::Huge => {
                let s = futures::stream::iter([head(), chunk(vec![b'x'; 1024 * 1024])]);
                return Ok(Response::new(Box::pin(s)));
            }
            Mode::Refuse => {
                let mut s = Status::failed_precondition("nonce 7 was used before");
                s.metadata_mut().insert("zg-http-status", "409".parse().unwrap());
                s.metadata_mut()
                    .insert("zg-error-type", "nonce_replayed".parse().unwrap());
                return Err(s);
            }
            _ => {}
        }
        let mut real = ProviderClient::connect(self.real.clone())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let upstream = real.chat(req.into_inner()).await?.into_inner();
        let mut first_chunk = true;
        let out = upstream.filter_map(move |m| {
            let m = match m {
                Ok(m) => m,
                Err(s) => return futures::future::ready(Some(Err(s))),
            };
            let ev = match m.event {
                Some(Event::Receipt(mut r)) => match mode {
                    Mode::DropReceipt => return futures::future::ready(None),
                    Mode::ForgeSignature => {
                        r.signature[0] ^= 1;
                        Some(Event::Receipt(r))
                    }
                    Mode::ForgeFee => {
                        let fee: U256 = r.fee.parse().unwrap();
                        r.fee = (fee + U256::from(1)).to_string();
                        Some(Event::Receipt(r))
                    }
                    _ => Some(Event::Receipt(r)),
                },
                Some(Event::Chunk(mut c)) if mode == Mode::FlipChunk && first_chunk => {
                    first_chunk = false;
                    c[0] ^= 1;
                    Some(Event::Chunk(c))
                }
                other => other,
            };
            futures::future::ready(Some(Ok(ChatResponse { event: ev })))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_receipt(
        &self,
        _: Request<GetReceiptRequest>,
    ) -> Result<Response<GetReceiptResponse>, Status> {
        Err(Status::unimplemented("hostile"))
    }

    async fn get_unsettled_fee(
        &self,
        _: Request<GetUnsettledFeeRequest>,
    ) -> Result<Response<GetUnsettledFeeResponse>, Status> {
        Err(Status::unimplemented("hostile"))
    }
}

static FLOOD: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// The real provider (not advertising gRPC), a hostile gRPC server in front of its gRPC API, and a client
/// pointed at the hostile one with short bounds: 3 s per request and per stream, 256 KiB per answer.
async fn hostile() -> (Env, Arc<Mutex<Mode>>, zg_client::Client) {
    let e = env(10).await;
    let real = format!("http://{}", e.running.as_ref().unwrap().grpc_addr);
    let mode = Arc::new(Mutex::new(Mode::Honest));
    let svc = ProviderServer::new(Hostile {
        real,
        mode: mode.clone(),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
            .await
            .unwrap();
    });
    let mut cfg = e.config();
    cfg.transport = Transport::Grpc;
    cfg.grpc_url_override = Some(format!("http://{addr}"));
    cfg.timeout = Duration::from_secs(3);
    cfg.stream_timeout = Duration::from_secs(3);
    cfg.max_response_bytes = 256 * 1024;
    let client = e.client_with(cfg).await;
    client.verify_provider(e.provider).await.unwrap();
    (e, mode, client)
}

async fn owed(c: &zg_client::Client, e: &Env) -> U256 {
    c.state(e.provider).await.unwrap().owed
}

/// Reads a stream to its end: the error it ends with (an `Ok` receipt is a failure of the test).
async fn stream_error(c: &zg_client::Client, e: &Env) -> Error {
    let mut s = match c.chat_stream(e.provider, chat_body("stream me", 8, true)).await {
        Ok(s) => s,
        Err(err) => return err,
    };
    while let Some(ev) = s.next().await {
        match ev {
            Ok(StreamEvent::Data(_)) => {}
            Ok(StreamEvent::Receipt(r)) => panic!("a hostile stream verified: {r:?}"),
            Err(err) => return err,
        }
    }
    panic!("the stream ended without an item")
}

#[tokio::test]
async fn grpc_forged_or_missing_receipt_rejects_the_answer() {
    let (e, mode, client) = hostile().await;
    // Honest forwarding works (so each refusal below is the attack's doing).
    let ok = client
        .chat(e.provider, chat_body("honest", 8, false))
        .await
        .unwrap();
    let owed0 = owed(&client, &e).await;
    assert_eq!(owed0, ok.receipt.fee);

    for m in [Mode::ForgeSignature, Mode::ForgeFee, Mode::FlipChunk] {
        *mode.lock().unwrap() = m;
        let err = client
            .chat(e.provider, chat_body("forged", 8, false))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ReceiptInvalid(_)), "{m:?} plain: {err:?}");
        let err = stream_error(&client, &e).await;
        assert!(matches!(err, Error::ReceiptInvalid(_)), "{m:?} stream: {err:?}");
        assert_eq!(owed(&client, &e).await, owed0, "{m:?} counted a forged fee");
    }

    *mode.lock().unwrap() = Mode::DropReceipt;
    let err = client
        .chat(e.provider, chat_body("no receipt", 8, false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingReceipt), "{err:?}");
    let err = stream_error(&client, &e).await;
    assert!(matches!(err, Error::StreamIncomplete(_)), "{err:?}");
    assert_eq!(owed(&client, &e).await, owed0);

    // A refusal carries the provider's status and type, as over HTTP.
    *mode.lock().unwrap() = Mode::Refuse;
    let err = client
        .chat(e.provider, chat_body("refused", 8, false))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Provider { status: 409, kind, message }
            if kind == "nonce_replayed" && message.contains("used before")),
        "{err:?}"
    );

    *mode.lock().unwrap() = Mode::Honest;
    let again = client
        .chat(e.provider, chat_body("honest again", 8, false))
        .await
        .unwrap();
    assert_eq!(owed(&client, &e).await, owed0 + again.receipt.fee);
}

#[tokio::test]
async fn grpc_stream_that_never_ends_is_a_named_timeout() {
    let (e, mode, client) = hostile().await;

    *mode.lock().unwrap() = Mode::Silent;
    let t = std::time::Instant::now();
    let err = client
        .chat(e.provider, chat_body("silence", 8, false))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResponseTimeout {
                what: "gRPC head",
                ..
            }
        ),
        "{err:?}"
    );
    let err = stream_error(&client, &e).await;
    assert!(
        matches!(
            err,
            Error::ResponseTimeout {
                what: "gRPC head",
                ..
            }
        ),
        "{err:?}"
    );

    *mode.lock().unwrap() = Mode::Endless;
    let err = client
        .chat(e.provider, chat_body("endless", 8, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ResponseTimeout { what: "answer", .. }),
        "{err:?}"
    );
    let err = stream_error(&client, &e).await;
    assert!(
        matches!(err, Error::ResponseTimeout { what: "stream", .. }),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(owed(&client, &e).await, U256::ZERO);

    // An endless error body is cut (64 KiB, within the request timeout): the status is what counts.
    *mode.lock().unwrap() = Mode::EndlessError;
    let t = std::time::Instant::now();
    let err = client
        .chat(e.provider, chat_body("error", 8, false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Provider { status: 500, .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn grpc_oversize_message_or_answer_is_refused() {
    let (e, mode, client) = hostile().await;

    // One message larger than the bound: refused by the decoder, never buffered whole.
    *mode.lock().unwrap() = Mode::Huge;
    let err = client
        .chat(e.provider, chat_body("huge", 8, false))
        .await
        .unwrap_err();
    let decoder = |err: &Error| {
        matches!(
            err,
            Error::ResponseTooLarge {
                what: "gRPC message",
                limit: 262_144
            }
        )
    };
    assert!(decoder(&err), "{err:?}");
    let err = stream_error(&client, &e).await;
    assert!(decoder(&err), "{err:?}");

    // Many messages within the bound each, past it together.
    *mode.lock().unwrap() = Mode::Flood;
    let err = client
        .chat(e.provider, chat_body("flood", 8, false))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResponseTooLarge {
                what: "answer",
                limit: 262_144
            }
        ),
        "{err:?}"
    );
    let err = stream_error(&client, &e).await;
    assert!(
        matches!(
            err,
            Error::ResponseTooLarge {
                what: "stream",
                limit: 262_144
            }
        ),
        "{err:?}"
    );
    assert_eq!(owed(&client, &e).await, U256::ZERO);
}
