//! The native protocol's HTTP wire forms, shared by the provider that sends them and the client that checks
//! them: header and SSE event names, and the receipt as JSON.

use crate::{Receipt, SignedReceipt, Usage};
use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

/// Response header with the key under which the provider stores the exchange's receipts (0G's `ZG-Res-Key`).
pub const RES_KEY_HEADER: &str = "zg-res-key";
/// Response header with the native receipt (base64url of [`ReceiptJson`]) on non-streamed responses.
pub const RECEIPT_HEADER: &str = "zg-receipt";
/// Request header with the native signed-request envelope ([`crate::SignedRequest::to_header`]).
pub const REQUEST_HEADER: &str = "zg-request";
/// SSE event name of the native receipt that ends a native stream.
pub const RECEIPT_EVENT: &str = "zg-receipt";

/// A native receipt as sent to clients (`zg-receipt` header, SSE `zg-receipt` event, gRPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptJson {
    /// The `ZG-Res-Key` of this exchange.
    pub key: String,
    /// `0x`-hex sha256 of the request body as received.
    pub request_hash: B256,
    /// `0x`-hex sha256 of the response bytes as sent (streams: every SSE byte before the receipt event).
    pub response_hash: B256,
    /// The model that served it.
    pub model: String,
    /// Usage the fee was computed from (zeros when the upstream reported none).
    pub usage: UsageJson,
    /// Whether the upstream reported usage (false = not billed).
    pub billed: bool,
    /// Fee in neuron, decimal: what the provider bills (for native requests, never above the signed cap).
    pub fee: String,
    /// The native request's nonce (0 for 0G session requests), decimal.
    pub nonce: String,
    /// `0x`-hex 64-byte ed25519 signature over [`Receipt::encode`].
    pub signature: String,
    /// `0x`-hex 32-byte ed25519 public key that signed (bound in the attestation).
    pub response_key: String,
}

/// Token usage as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UsageJson {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

impl ReceiptJson {
    /// The signed receipt for verification, or `None` when a field does not parse (a malformed receipt).
    pub fn to_signed(&self) -> Option<SignedReceipt> {
        let sig = hex::decode(self.signature.trim_start_matches("0x")).ok()?;
        Some(SignedReceipt {
            receipt: Receipt {
                request_hash: self.request_hash,
                response_hash: self.response_hash,
                model: self.model.clone(),
                usage: Usage {
                    prompt_tokens: self.usage.prompt_tokens,
                    completion_tokens: self.usage.completion_tokens,
                },
                fee: self.fee.parse().ok()?,
                nonce: self.nonce.parse().ok()?,
            },
            signature: sig.try_into().ok()?,
        })
    }
}
