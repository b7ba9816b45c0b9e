//! The dstack backend: the guest agent's HTTP API on a Unix socket (`/var/run/dstack.sock`):
//! `POST /GetQuote {"report_data": hex}` → `{quote, event_log, report_data, vm_config}`,
//! `POST /EmitEvent {"event", "payload": hex}` (extends RTMR3), and
//! `POST /GetKey {"path", "purpose"}` → `{key, signature_chain}` (key derivation).

use crate::evidence::{Backend, Evidence, EvidenceProducer};
use crate::{Error, Result};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

/// Largest agent response accepted (a quote plus event log is ~20 KB).
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// Evidence from a dstack CVM's guest agent.
#[derive(Debug, Clone)]
pub struct DstackProducer {
    socket: PathBuf,
    timeout: Duration,
}

/// A key derived by the dstack agent. `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DerivedKey {
    /// The key (hex, as returned by the agent). Secret: never log it.
    pub key: String,
    /// Signatures chaining the key to the app's KMS root (hex).
    #[serde(default)]
    pub signature_chain: Vec<String>,
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKey")
            .field("key", &"<redacted>")
            .field("signature_chain", &self.signature_chain)
            .finish()
    }
}

fn err(reason: String) -> Error {
    Error::Backend {
        backend: "dstack",
        reason,
    }
}

impl DstackProducer {
    /// The agent at `/var/run/dstack.sock`.
    pub fn new() -> Self {
        Self::with_socket("/var/run/dstack.sock")
    }

    /// The agent at another socket path.
    pub fn with_socket(socket: impl Into<PathBuf>) -> Self {
        DstackProducer {
            socket: socket.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends one JSON request and returns the JSON response body.
    fn call(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let sock = self.socket.display();
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).map_err(|e| {
            err(format!(
                "connect {sock}: {e} (is this a dstack CVM? set the socket path)"
            ))
        })?;
        let _ = s.set_read_timeout(Some(self.timeout));
        let _ = s.set_write_timeout(Some(self.timeout));
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: dstack\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .map_err(|e| err(format!("write {sock}: {e}")))?;
        let mut raw = Vec::new();
        s.take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(|e| err(format!("read {sock}: {e}")))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| err(format!("{path}: malformed HTTP response")))?;
        let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default()).to_ascii_lowercase();
        let mut body = raw.get(split.saturating_add(4)..).unwrap_or_default().to_vec();
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(err(format!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body).ok_or_else(|| err(format!("{path}: malformed chunked body")))?;
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("{path}: response is not JSON: {e}")))
    }

    /// Derives a key at `path` for `purpose` (dstack KMS).
    pub fn derive_key(&self, path: &str, purpose: &str) -> Result<DerivedKey> {
        let v = self.call(
            "/GetKey",
            &serde_json::json!({ "path": path, "purpose": purpose }),
        )?;
        serde_json::from_value(v).map_err(|e| err(format!("/GetKey: {e}")))
    }
}

impl Default for DstackProducer {
    fn default() -> Self {
        Self::new()
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(b.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        let start = line_end.checked_add(2)?;
        if size == 0 {
            return Some(out);
        }
        let end = start.checked_add(size)?;
        out.extend_from_slice(b.get(start..end)?);
        b = b.get(end.checked_add(2)?..)?;
    }
}

impl EvidenceProducer for DstackProducer {
    fn backend(&self) -> Backend {
        Backend::Dstack
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let v = self.call(
            "/GetQuote",
            &serde_json::json!({ "report_data": hex::encode(report_data) }),
        )?;
        let ev = Evidence::from_document(v.to_string().as_bytes())?;
        let parsed = crate::TdQuote::parse(&ev.quote)?;
        if parsed.report_data != *report_data {
            return Err(err("/GetQuote returned a quote over different REPORTDATA".into()));
        }
        Ok(ev)
    }

    fn extend_runtime(&self, event: &str, payload: &[u8]) -> Result<()> {
        self.call(
            "/EmitEvent",
            &serde_json::json!({ "event": event, "payload": hex::encode(payload) }),
        )?;
        Ok(())
    }
}
