//! Streamed answers: split the provider's SSE bytes into events, hash every byte before the receipt
//! event, and verify the receipt when it arrives (fail closed: a stream without one is an error).

use alloy_primitives::{Address, B256};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use sha2::{Digest as _, Sha256};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::receipt::{self, Expectation, RECEIPT_EVENT, ReceiptJson, VerifiedReceipt};

/// Largest SSE event accepted (a longer one without a blank line is not SSE).
const MAX_EVENT: usize = 4 * 1024 * 1024;

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

/// Index just past the first event terminator (`\n\n` or `\r\n\r\n`) in `buf`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i.saturating_add(2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i.saturating_add(4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A streamed answer being received. Call [`ChatStream::next`] until it returns `None`; the item before
/// that is [`StreamEvent::Receipt`], or an error if the stream cannot be verified.
pub struct ChatStream {
    client: Client,
    provider: Address,
    body: Bytes,
    exp: Expectation,
    res_key: Option<String>,
    bytes: BoxStream<'static, reqwest::Result<Bytes>>,
    buf: BytesMut,
    hasher: Sha256,
    finished: bool,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("res_key", &self.res_key)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn new(
        client: Client,
        provider: Address,
        resp: reqwest::Response,
        body: Bytes,
        exp: Expectation,
        res_key: Option<String>,
    ) -> Self {
        Self {
            client,
            provider,
            body,
            exp,
            res_key,
            bytes: resp.bytes_stream().boxed(),
            buf: BytesMut::new(),
            hasher: Sha256::new(),
            finished: false,
        }
    }

    /// The `ZG-Res-Key` the provider stores this exchange's receipts under.
    pub fn res_key(&self) -> Option<&str> {
        self.res_key.as_deref()
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
        Some(r)
    }

    async fn next_inner(&mut self) -> Result<StreamEvent> {
        loop {
            if let Some(end) = event_end(&self.buf) {
                let raw = self.buf.split_to(end).freeze();
                if event_name(&raw) == Some(RECEIPT_EVENT) {
                    return self.finish(&raw);
                }
                self.hasher.update(&raw);
                return Ok(StreamEvent::Data(raw));
            }
            if self.buf.len() > MAX_EVENT {
                return Err(Error::StreamIncomplete(format!(
                    "an SSE event longer than {MAX_EVENT} bytes"
                )));
            }
            match self.bytes.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(Error::StreamIncomplete(format!("the stream broke: {e}"))),
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

    fn finish(&mut self, raw: &[u8]) -> Result<StreamEvent> {
        let data = data_of(raw).ok_or_else(|| Error::ReceiptInvalid("receipt event has no data".into()))?;
        let r: ReceiptJson =
            serde_json::from_str(&data).map_err(|e| Error::ReceiptInvalid(format!("receipt JSON: {e}")))?;
        let response_hash = B256::from(<[u8; 32]>::from(std::mem::take(&mut self.hasher).finalize()));
        let fee = receipt::check(&r, &self.exp, &self.body, response_hash)?;
        let v = self.client.record(self.provider, &r, fee, self.exp.nonce)?;
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
