//! The native request over gRPC (`zg.v1.Provider/Chat`, a server stream of `Head`, `Chunk`s, `Receipt`):
//! the same signed request, voucher and receipt checks as HTTP, with the bytes read under the same bounds.
//!
//! # Who can call what, and the worst a hostile provider can do
//!
//! The client calls out; nobody calls it. It connects only to the gRPC URL a provider's on-chain service
//! advertises (`"grpc"` in `additionalInfo`, plaintext `http://` only) or the one its user configured, and
//! sends there what it would send over HTTP: the body and the signed `zg-request` envelope (a request for
//! one fee cap, and a voucher for what is already owed: nothing an eavesdropper can spend elsewhere, as the
//! signatures bind provider, nonce and chain). A provider is anyone registered on chain, so everything it
//! sends back is untrusted:
//! - **Oversized messages**: every message is decoded under a limit of
//!   [`crate::ClientConfig::max_response_bytes`] (plus framing), and the bytes of all chunks together
//!   under that same limit: a larger message or answer ends in [`Error::ResponseTooLarge`], nothing
//!   larger is buffered.
//! - **A stream that never ends, or never starts**: the call and its head must arrive within
//!   [`crate::ClientConfig::timeout`]; a plain answer's chunks and receipt within another `timeout`; a
//!   streamed answer must end with its receipt within [`crate::ClientConfig::stream_timeout`]. Past those:
//!   [`Error::ResponseTimeout`]. Messages after the receipt are never read.
//! - **A missing or forged receipt**: a stream that ends without one is [`Error::MissingReceipt`] (plain)
//!   or [`Error::StreamIncomplete`] (streamed); a receipt that does not verify (signature under the
//!   attested response key, sha256 of the exact request and of every chunk byte, nonce, model, fee =
//!   usage × on-chain prices, fee ≤ the signed cap) is [`Error::ReceiptInvalid`] / [`Error::FeeMismatch`].
//!   Either way the answer is never handed to the caller and nothing is counted as owed.
//! - **Lying statuses**: a refusal (gRPC status, or a non-2xx head) becomes [`Error::Provider`] with at most
//!   [`ERROR_BODY_LIMIT`] bytes of body read and a 512-byte message; it charges nothing locally.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use alloy_primitives::B256;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use tonic::transport::{Channel, Endpoint};
use zg_proto::v1::provider_client::ProviderClient;
use zg_proto::v1::{ChatRequest, ChatResponse, NativeReceipt, chat_response::Event};

use crate::error::{Error, Result};
use crate::http::{ERROR_BODY_LIMIT, provider_error};
use crate::receipt::{ReceiptJson, UsageJson};
use crate::stream::{Piece, Pieces};

/// Metadata key of the HTTP status a zg-provider puts on its gRPC refusals.
pub(crate) const STATUS_METADATA: &str = "zg-http-status";
/// Metadata key of the error type (`insufficient_balance`, ...) a zg-provider puts on its gRPC refusals.
pub(crate) const KIND_METADATA: &str = "zg-error-type";

/// Room for a message's own framing around `max_response_bytes` of chunk bytes.
const FRAMING: usize = 64 * 1024;

/// Lazily connected channels, one per gRPC URL (a channel multiplexes requests over HTTP/2).
#[derive(Default)]
pub(crate) struct Channels(Mutex<HashMap<String, Channel>>);

impl Channels {
    fn get(&self, url: &str) -> Result<Channel> {
        let mut m = self.0.lock().map_err(|_| Error::Grpc {
            op: "connect",
            url: url.to_owned(),
            reason: "channel cache poisoned".into(),
        })?;
        if let Some(c) = m.get(url) {
            return Ok(c.clone());
        }
        let c = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Grpc {
                op: "connect",
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(10))
            .connect_lazy();
        m.insert(url.to_owned(), c.clone());
        Ok(c)
    }
}

/// A successful (2xx) head and the rest of the stream.
pub(crate) struct GrpcAnswer {
    pub(crate) status: u16,
    pub(crate) res_key: Option<String>,
    /// The chunks and the receipt, bounded in size by the decoder.
    pub(crate) rest: tonic::Streaming<ChatResponse>,
}

/// The gRPC status of a refusal or failure, as a named error. A zg-provider says its HTTP status and
/// error type in metadata; other servers get the closest HTTP status for their code.
pub(crate) fn status_error(url: &str, s: &tonic::Status, limit: u64) -> Error {
    if s.code() == tonic::Code::OutOfRange && s.message().contains("message length too large") {
        return Error::ResponseTooLarge {
            what: "gRPC message",
            limit,
        };
    }
    let meta = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok());
    let declared = meta(STATUS_METADATA)
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|c| (400..600).contains(c));
    use tonic::Code as C;
    let status = match (declared, s.code()) {
        (Some(c), _) => c,
        (None, C::InvalidArgument | C::OutOfRange) => 400,
        (None, C::Unauthenticated) => 401,
        (None, C::PermissionDenied) => 403,
        (None, C::NotFound) => 404,
        (None, C::AlreadyExists | C::Aborted) => 409,
        (None, C::FailedPrecondition) => 412,
        (None, C::ResourceExhausted) => 429,
        (None, C::Unimplemented) => 501,
        (None, C::DeadlineExceeded) => 504,
        // Connection refused, reset, protocol errors: the transport, not the provider's word.
        (None, _) => {
            return Error::Grpc {
                op: "Chat",
                url: url.to_owned(),
                reason: cut(&format!("{}: {}", s.code(), s.message())),
            };
        }
    };
    Error::Provider {
        status,
        kind: meta(KIND_METADATA)
            .map(cut)
            .unwrap_or_else(|| format!("grpc_{:?}", s.code()).to_ascii_lowercase()),
        message: cut(s.message()),
    }
}

/// At most 512 bytes of a peer's text.
fn cut(s: &str) -> String {
    let mut end = s.len().min(512);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// The wire receipt as the JSON receipt [`crate::receipt`] checks (hex as the HTTP API writes it).
pub(crate) fn receipt_json(r: NativeReceipt) -> Result<ReceiptJson> {
    let hash = |what: &str, v: &[u8]| {
        <[u8; 32]>::try_from(v)
            .map(B256::from)
            .map_err(|_| Error::ReceiptInvalid(format!("{what} is {} bytes, not 32", v.len())))
    };
    Ok(ReceiptJson {
        request_hash: hash("request_hash", &r.request_hash)?,
        response_hash: hash("response_hash", &r.response_hash)?,
        key: r.key,
        model: r.model,
        usage: UsageJson {
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        },
        billed: r.billed,
        fee: r.fee,
        nonce: r.nonce,
        signature: format!("0x{}", hex::encode(&r.signature)),
        response_key: format!("0x{}", hex::encode(&r.response_key)),
    })
}

/// Sends one signed request and reads its head within `timeout`. A 2xx head is returned with the rest
/// of the stream; anything else becomes [`Error::Provider`].
pub(crate) async fn chat(
    channels: &Channels,
    url: &str,
    route: &str,
    zg_request: String,
    body: &Bytes,
    max_bytes: u64,
    timeout: Duration,
) -> Result<GrpcAnswer> {
    let limit = usize::try_from(max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(FRAMING);
    let mut client = ProviderClient::new(channels.get(url)?).max_decoding_message_size(limit);
    let req = ChatRequest {
        route: route.to_owned(),
        body: body.to_vec(),
        authorization: String::new(),
        zg_request,
    };
    let head = async {
        let mut rest = client
            .chat(req)
            .await
            .map_err(|s| status_error(url, &s, max_bytes))?
            .into_inner();
        let first = rest
            .message()
            .await
            .map_err(|s| status_error(url, &s, max_bytes))?;
        match first.and_then(|m| m.event) {
            Some(Event::Head(h)) => Ok((h, rest)),
            Some(_) => Err(Error::StreamIncomplete(
                "the provider's gRPC answer did not start with its head".into(),
            )),
            None => Err(Error::StreamIncomplete(
                "the provider's gRPC answer was empty".into(),
            )),
        }
    };
    let (h, mut rest) = tokio::time::timeout(timeout, head)
        .await
        .map_err(|_| Error::ResponseTimeout {
            what: "gRPC head",
            after: timeout,
        })??;
    let status = u16::try_from(h.status).unwrap_or(0);
    if (200..300).contains(&status) {
        return Ok(GrpcAnswer {
            status,
            res_key: Some(h.res_key).filter(|k| !k.is_empty()),
            rest,
        });
    }
    // An upstream error passed through (not billed): its body names the problem. Whatever arrives in time
    // and within the bound is enough; the status is what counts.
    let mut buf = BytesMut::new();
    let read = async {
        while let Ok(Some(ChatResponse {
            event: Some(Event::Chunk(c)),
        })) = rest.message().await
        {
            let room = usize::try_from(ERROR_BODY_LIMIT)
                .unwrap_or(usize::MAX)
                .saturating_sub(buf.len());
            buf.extend_from_slice(c.get(..c.len().min(room)).unwrap_or_default());
            if c.len() >= room {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    Err(provider_error(if status == 0 { 502 } else { status }, &buf))
}

/// A 2xx answer's chunks and receipt as [`Piece`]s, each chunk bounded by the decoder and the total by
/// the reader (the caller counts bytes). Stops after the receipt.
pub(crate) fn pieces(url: &str, rest: tonic::Streaming<ChatResponse>, max_bytes: u64) -> Pieces {
    let url = url.to_owned();
    futures::stream::unfold(Some(rest), move |state| {
        let url = url.clone();
        async move {
            let mut rest = state?;
            let item = match rest.message().await {
                Ok(Some(ChatResponse {
                    event: Some(Event::Chunk(c)),
                })) => Ok(Piece::Bytes(Bytes::from(c))),
                Ok(Some(ChatResponse {
                    event: Some(Event::Receipt(r)),
                })) => {
                    // Nothing after the receipt is read.
                    return Some((receipt_json(r).map(Piece::Receipt), None));
                }
                Ok(Some(_)) => Err(Error::StreamIncomplete(
                    "a second head or an empty message in the provider's gRPC answer".into(),
                )),
                Ok(None) => return None,
                Err(s) => Err(match status_error(&url, &s, max_bytes) {
                    e @ Error::ResponseTooLarge { .. } => e,
                    e => Error::StreamIncomplete(format!("the stream broke: {e}")),
                }),
            };
            let next = item.is_ok().then_some(rest);
            Some((item, next))
        }
    })
    .boxed()
}

/// Reads a plain answer whole: its chunks (at most `max_bytes` in total) and its receipt, within
/// `deadline`. `None` for the receipt when the stream ended without one.
pub(crate) async fn read_answer(
    url: &str,
    rest: tonic::Streaming<ChatResponse>,
    max_bytes: u64,
    deadline: Duration,
) -> Result<(Bytes, Option<ReceiptJson>)> {
    let mut p = pieces(url, rest, max_bytes);
    let read = async move {
        let mut buf = BytesMut::new();
        while let Some(piece) = p.next().await {
            match piece? {
                Piece::Bytes(c) => {
                    let len = u64::try_from(buf.len().saturating_add(c.len())).unwrap_or(u64::MAX);
                    if len > max_bytes {
                        return Err(Error::ResponseTooLarge {
                            what: "answer",
                            limit: max_bytes,
                        });
                    }
                    buf.extend_from_slice(&c);
                }
                Piece::Receipt(r) => return Ok((buf.freeze(), Some(r))),
            }
        }
        Ok((buf.freeze(), None))
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| Error::ResponseTimeout {
            what: "answer",
            after: deadline,
        })?
}
