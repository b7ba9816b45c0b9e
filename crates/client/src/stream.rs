//! Streamed answers: split the provider's SSE bytes into events, hash every byte before the receipt
//! event, and verify the receipt when it arrives (fail closed: a stream without one is an error).
//! A stream is bounded like any body from a provider: in total bytes and in total time. The bytes come
//! from either transport as [`Piece`]s: over HTTP the receipt is the SSE `zg-receipt` event, over gRPC its
//! own message; both are checked by the same code.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use sha2::{Digest as _, Sha256};

use crate::config::Transport;
use crate::error::{Error, Result};
use crate::receipt::{self, Expectation, RECEIPT_EVENT, ReceiptJson, VerifiedReceipt};
use crate::store::Store;
use crate::verify::Providers;

/// Largest SSE event accepted (a longer one without a blank line is not SSE).
const MAX_EVENT: usize = 4 * 1024 * 1024;

/// One piece of a streamed answer as a transport delivers it.
pub(crate) enum Piece {
    /// Response bytes (SSE), hashed for the receipt.
    Bytes(Bytes),
    /// The receipt, delivered out of band (gRPC's `Receipt` message).
    Receipt(ReceiptJson),
}

/// A transport's stream of [`Piece`]s; its errors are already named.
pub(crate) type Pieces = BoxStream<'static, Result<Piece>>;

/// The pieces of an HTTP response body.
pub(crate) fn http_pieces(resp: reqwest::Response) -> Pieces {
    resp.bytes_stream()
        .map(|r| {
            r.map(Piece::Bytes)
                .map_err(|e| Error::StreamIncomplete(format!("the stream broke: {e}")))
        })
        .boxed()
}

/// One item of a [`ChatStream`].
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// One SSE event exactly as the provider sent it (including its terminating blank line).
    Data(Bytes),
    /// The end: the receipt over every `Data` byte, verified.
    Receipt(Box<VerifiedReceipt>),
}

impl StreamEvent {
    /// The JSON of a `data:` event (`None` for `[DONE]`, comments and non-JSON events).
    pub fn json(&self) -> Option<serde_json::Value> {
        let StreamEvent::Data(raw) = self else { return None };
        let data = data_of(raw)?;
        serde_json::from_str(&data).ok()
    }

    /// The text delta of a chat (`choices[0].delta.content`) or completion (`choices[0].text`) chunk.
    pub fn delta_text(&self) -> Option<String> {
        let v = self.json()?;
        let c = v.get("choices")?.get(0)?;
        c.get("delta")
            .and_then(|d| d.get("content"))
            .or_else(|| c.get("text"))?
            .as_str()
            .map(str::to_owned)
    }

    /// Whether this is the `data: [DONE]` event.
    pub fn is_done_marker(&self) -> bool {
        matches!(self, StreamEvent::Data(raw) if data_of(raw).is_some_and(|d| d.trim() == "[DONE]"))
    }
}

/// The concatenated `data:` lines of one SSE event.
fn data_of(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut out {
                Some(s) => {
                    s.push('\n');
                    s.push_str(rest);
                }
                None => out = Some(rest.to_owned()),
            }
        }
    }
    out
}

/// The `event:` name of one SSE event.
fn event_name(raw: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(raw).ok()?;
    text.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim)
}

/// Index just past the first event terminator (a blank line: `\n\n` or `\r\n\r\n`) in `buf`. One pass
/// over the newlines, so splitting a chunk of many small events stays linear.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0usize;
    loop {
        let at = from.checked_add(buf.get(from..)?.iter().position(|&b| b == b'\n')?)?;
        match (buf.get(at.saturating_add(1)), buf.get(at.saturating_add(2))) {
            (Some(b'\n'), _) => return at.checked_add(2),
            (Some(b'\r'), Some(b'\n')) => return at.checked_add(3),
            _ => from = at.checked_add(1)?,
        }
    }
}

/// What a stream needs from its client: where to count the receipt, whom to distrust when it fails, and
/// its bounds.
pub(crate) struct StreamCtx {
    pub(crate) provider: Address,
    pub(crate) store: Store,
    pub(crate) providers: Arc<Providers>,
    /// Most bytes read in total.
    pub(crate) max_bytes: u64,
    /// The whole stream must end within this.
    pub(crate) timeout: Duration,
}

/// A streamed answer being received. Call [`ChatStream::next`] until it returns `None`; the item before
/// that is [`StreamEvent::Receipt`], or an error if the stream cannot be verified, exceeds
/// [`crate::ClientConfig::max_response_bytes`] or lasts longer than [`crate::ClientConfig::stream_timeout`].
pub struct ChatStream {
    ctx: StreamCtx,
    body: Bytes,
    exp: Expectation,
    res_key: Option<String>,
    transport: Transport,
    pieces: Pieces,
    /// A receipt received out of band, checked once the bytes before it are delivered.
    pending: Option<ReceiptJson>,
    buf: BytesMut,
    hasher: Sha256,
    /// Bytes received so far.
    read: u64,
    deadline: tokio::time::Instant,
    finished: bool,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.ctx.provider)
            .field("res_key", &self.res_key)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn new(
        ctx: StreamCtx,
        pieces: Pieces,
        body: Bytes,
        exp: Expectation,
        res_key: Option<String>,
        transport: Transport,
    ) -> Self {
        let deadline = tokio::time::Instant::now() + ctx.timeout;
        Self {
            ctx,
            body,
            exp,
            res_key,
            transport,
            pieces,
            pending: None,
            buf: BytesMut::new(),
            hasher: Sha256::new(),
            read: 0,
            deadline,
            finished: false,
        }
    }

    /// The `ZG-Res-Key` the provider stores this exchange's receipts under.
    pub fn res_key(&self) -> Option<&str> {
        self.res_key.as_deref()
    }

    /// The transport carrying this stream ([`Transport::Http`] or [`Transport::Grpc`]).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The next event; `None` after the receipt (or after an error).
    pub async fn next(&mut self) -> Option<Result<StreamEvent>> {
        if self.finished {
            return None;
        }
        let r = self.next_inner().await;
        if !matches!(r, Ok(StreamEvent::Data(_))) {
            self.finished = true;
        }
        if let Err(e) = &r
            && e.is_verification_failure()
        {
            // Read the provider's on-chain signer again before the next request.
            self.ctx.providers.distrust(self.ctx.provider);
        }
        Some(r)
    }

    async fn next_inner(&mut self) -> Result<StreamEvent> {
        loop {
            if let Some(end) = event_end(&self.buf) {
                let raw = self.buf.split_to(end).freeze();
                if event_name(&raw) == Some(RECEIPT_EVENT) {
                    return self.finish(&raw).await;
                }
                self.hasher.update(&raw);
                return Ok(StreamEvent::Data(raw));
            }
            if let Some(r) = self.pending.take() {
                if !self.buf.is_empty() {
                    // Bytes without a final blank line: still part of the answer the receipt covers.
                    let raw = self.buf.split().freeze();
                    self.hasher.update(&raw);
                    self.pending = Some(r);
                    return Ok(StreamEvent::Data(raw));
                }
                return self.check_receipt(r).await;
            }
            if self.buf.len() > MAX_EVENT {
                return Err(Error::StreamIncomplete(format!(
                    "an SSE event longer than {MAX_EVENT} bytes"
                )));
            }
            let next = tokio::time::timeout_at(self.deadline, self.pieces.next())
                .await
                .map_err(|_| Error::ResponseTimeout {
                    what: "stream",
                    after: self.ctx.timeout,
                })?;
            match next {
                Some(Ok(Piece::Receipt(r))) => self.pending = Some(r),
                Some(Ok(Piece::Bytes(chunk))) => {
                    self.read = self
                        .read
                        .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
                    if self.read > self.ctx.max_bytes {
                        return Err(Error::ResponseTooLarge {
                            what: "stream",
                            limit: self.ctx.max_bytes,
                        });
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::StreamIncomplete(if self.buf.is_empty() {
                        "no receipt event (fail closed: the answer is unverified)".into()
                    } else {
                        format!("{} trailing bytes and no receipt event", self.buf.len())
                    }));
                }
            }
        }
    }

    async fn finish(&mut self, raw: &[u8]) -> Result<StreamEvent> {
        let data = data_of(raw).ok_or_else(|| Error::ReceiptInvalid("receipt event has no data".into()))?;
        let r: ReceiptJson =
            serde_json::from_str(&data).map_err(|e| Error::ReceiptInvalid(format!("receipt JSON: {e}")))?;
        self.check_receipt(r).await
    }

    async fn check_receipt(&mut self, r: ReceiptJson) -> Result<StreamEvent> {
        let response_hash = B256::from(<[u8; 32]>::from(std::mem::take(&mut self.hasher).finalize()));
        let fee = receipt::check(&r, &self.exp, &self.body, response_hash)?;
        let v = self
            .ctx
            .store
            .record(self.ctx.provider, r, fee, self.exp.nonce)
            .await?;
        Ok(StreamEvent::Receipt(Box::new(v)))
    }

    /// Reads the whole stream: the concatenated text deltas and the verified receipt.
    pub async fn collect_text(mut self) -> Result<(String, VerifiedReceipt)> {
        let mut text = String::new();
        while let Some(ev) = self.next().await {
            match ev? {
                e @ StreamEvent::Data(_) => {
                    if let Some(d) = e.delta_text() {
                        text.push_str(&d);
                    }
                }
                StreamEvent::Receipt(r) => return Ok((text, *r)),
            }
        }
        Err(Error::StreamIncomplete("ended without a receipt".into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sse_helpers() {
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(event_end(b"data: a\n"), None);
        assert_eq!(event_end(b"data: a\r\n"), None);
        assert_eq!(event_end(b"a\nb\n\nc\n\n"), Some(5));
        assert_eq!(event_end(b"a\r\nb\r\n\r\n"), Some(8));
        assert_eq!(event_end(b""), None);
        assert_eq!(
            data_of(b"event: x\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(event_name(b"event: zg-receipt\ndata: {}\n\n"), Some("zg-receipt"));
        let ev = StreamEvent::Data(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        ));
        assert_eq!(ev.delta_text().as_deref(), Some("hi"));
        assert!(StreamEvent::Data(Bytes::from_static(b"data: [DONE]\n\n")).is_done_marker());
        assert!(!ev.is_done_marker());
    }
}
