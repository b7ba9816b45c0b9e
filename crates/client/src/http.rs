//! HTTP to providers: the one place a provider's bytes are read whole, always bounded in size and time
//! (a provider is anyone registered on chain), and where a refusal becomes [`Error::Provider`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};

/// How much of an error body is read: enough for any OpenAI-style error, and the message is cut to
/// 512 bytes anyway.
pub(crate) const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Maps a transport error to [`Error::Http`].
pub(crate) fn http_err(op: &'static str, url: &str) -> impl FnOnce(reqwest::Error) -> Error {
    let url = url.to_owned();
    move |e| Error::Http {
        op,
        url,
        reason: e.to_string(),
    }
}

/// Reads a whole body: at most `limit` bytes, all of it within `deadline`, else a named error
/// ([`Error::ResponseTooLarge`], [`Error::ResponseTimeout`]). `what` names the body in the error.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    what: &'static str,
    limit: u64,
    deadline: Duration,
) -> Result<Bytes> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(Error::ResponseTooLarge { what, limit });
    }
    let url = resp.url().to_string();
    let read = async move {
        let mut buf = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err("read", &url))? {
            let len = u64::try_from(buf.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
            if len > limit {
                return Err(Error::ResponseTooLarge { what, limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| Error::ResponseTimeout {
            what,
            after: deadline,
        })?
}

/// Reads the start of an error body (at most [`ERROR_BODY_LIMIT`] bytes, within `deadline`) and turns it
/// into [`Error::Provider`]. An endless or slow error body is cut: the status is what counts.
pub(crate) async fn provider_refusal(mut resp: reqwest::Response, deadline: Duration) -> Error {
    let status = resp.status().as_u16();
    let mut buf = BytesMut::new();
    let read = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = usize::try_from(ERROR_BODY_LIMIT)
                .unwrap_or(usize::MAX)
                .saturating_sub(buf.len());
            buf.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
            if chunk.len() >= room {
                break;
            }
        }
    };
    // Whatever arrived in time is enough to name the problem.
    let _ = tokio::time::timeout(deadline, read).await;
    provider_error(status, &buf)
}

/// Turns a non-2xx provider answer into [`Error::Provider`].
pub(crate) fn provider_error(status: u16, body: &[u8]) -> Error {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let e = v.as_ref().and_then(|v| v.get("error"));
    let message = e
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default()).into_owned()
        });
    let kind = e
        .and_then(|e| e.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("http_error")
        .to_owned();
    Error::Provider {
        status,
        kind,
        message,
    }
}
