//! Checking a provider's native receipt against the exact bytes exchanged (fail closed).

use alloy_primitives::{B256, U256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use zg_billing::{Prices, Receipt, ReceiptVerifier, SignedReceipt, Usage};

use crate::error::{Error, Result};

pub use zg_billing::{RECEIPT_EVENT, RECEIPT_HEADER, REQUEST_HEADER, RES_KEY_HEADER, ReceiptJson, UsageJson};

/// A receipt that passed every check: signature by the attested key, hashes of the exact bytes, nonce,
/// model, and a fee equal to usage × the on-chain prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedReceipt {
    /// The receipt as received.
    pub receipt: ReceiptJson,
    /// The fee counted into the amount owed (the receipt's fee, capped at the signed fee cap).
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub fee: U256,
    /// Cumulative amount owed to this provider after this receipt.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub owed_after: U256,
}

impl VerifiedReceipt {
    /// The receipt as a header value (base64url JSON, what `zg serve` returns in `ZG-Receipt`).
    pub fn header_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.receipt).unwrap_or_default())
    }
}

fn parse_dec(field: &str, s: &str) -> Result<U256> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::ReceiptInvalid(format!(
            "{field} is not a decimal integer: {s:?}"
        )));
    }
    U256::from_str_radix(s, 10).map_err(|e| Error::ReceiptInvalid(format!("{field}: {e}")))
}

/// Parses the `ZG-Receipt` header value.
pub fn parse_receipt_header(value: &str) -> Result<ReceiptJson> {
    let json = URL_SAFE_NO_PAD
        .decode(value.trim())
        .map_err(|e| Error::ReceiptInvalid(format!("receipt header is not base64url: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| Error::ReceiptInvalid(format!("receipt JSON: {e}")))
}

/// What a receipt must match, known before the request is sent.
#[derive(Debug, Clone)]
pub(crate) struct Expectation {
    pub(crate) response_key: [u8; 32],
    pub(crate) nonce: U256,
    pub(crate) model: String,
    pub(crate) prices: Prices,
    pub(crate) fee_cap: U256,
}

/// The model a receipt must name for a request `body` to a service registering `service_model`: the
/// provider's rule. A request whose `model` is an adapter name (`ft-…`, a customer's deployed LoRA adapter) is
/// answered by that adapter, and its receipt names it; any other request is answered (and receipted) as the
/// service's model, whatever `model` it sends. The fee rule does not change: the service's prices.
///
/// The body is read with zg-billing's parse, the one the provider decides with.
pub fn expected_model(service_model: &str, body: &[u8]) -> String {
    match zg_billing::upstream_body(zg_billing::Endpoint::Chat, body, 0).map(|u| u.model) {
        Ok(Some(m)) if zg_adapters::is_adapter_name(&m) => m,
        _ => service_model.to_owned(),
    }
}

/// Checks `r` against the bytes exchanged; returns the fee to count (fail closed on any mismatch).
pub(crate) fn check(r: &ReceiptJson, exp: &Expectation, request: &[u8], response_hash: B256) -> Result<U256> {
    let key_hex = format!("0x{}", hex::encode(exp.response_key));
    if !r.response_key.eq_ignore_ascii_case(&key_hex) {
        return Err(Error::ReceiptInvalid(format!(
            "signed by {} but the attested response key is {key_hex}",
            r.response_key
        )));
    }
    let sig = hex::decode(r.signature.trim_start_matches("0x"))
        .ok()
        .and_then(|v| <[u8; 64]>::try_from(v).ok())
        .ok_or_else(|| {
            Error::ReceiptInvalid(format!("signature is not 64 bytes of hex: {:?}", r.signature))
        })?;
    let fee = parse_dec("fee", &r.fee)?;
    let nonce = parse_dec("nonce", &r.nonce)?;
    let usage = Usage {
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: r.usage.completion_tokens,
    };
    let signed = SignedReceipt {
        receipt: Receipt {
            request_hash: r.request_hash,
            response_hash: r.response_hash,
            model: r.model.clone(),
            usage,
            fee,
            nonce,
        },
        signature: sig,
    };
    let verifier = ReceiptVerifier::from_bytes(&exp.response_key)?;
    verifier.verify(&signed).map_err(|_| {
        Error::ReceiptInvalid("the ed25519 signature does not verify under the attested key".into())
    })?;
    let req = zg_billing::body_hash(request);
    if req != r.request_hash {
        return Err(Error::ReceiptInvalid(format!(
            "receipt covers request {} but we sent {req}",
            r.request_hash
        )));
    }
    if response_hash != r.response_hash {
        return Err(Error::ReceiptInvalid(format!(
            "receipt covers response {} but we received {response_hash}",
            r.response_hash
        )));
    }
    if nonce != exp.nonce {
        return Err(Error::ReceiptInvalid(format!(
            "receipt nonce {nonce}, our request's is {}",
            exp.nonce
        )));
    }
    if r.model != exp.model {
        return Err(Error::ReceiptInvalid(format!(
            "receipt names model {:?}, the request was for {:?}",
            r.model, exp.model
        )));
    }
    // The provider's rule, from zg-billing: usage × prices, never above the signed cap, zero when not billed.
    let expected = zg_billing::billed_fee(&exp.prices, r.billed.then_some(usage), exp.fee_cap)?;
    if fee != expected {
        return Err(Error::FeeMismatch {
            charged: fee,
            expected,
            usage_prompt: usage.prompt_tokens,
            usage_completion: usage.completion_tokens,
        });
    }
    Ok(fee)
}

/// Checks a receipt on its own: the ed25519 signature by `response_key` (from the provider's verified
/// attestation) and that it covers exactly `request` and `response`. [`crate::Client`] additionally checks
/// the nonce, the model and the fee against the on-chain prices.
pub fn verify_receipt(
    r: &ReceiptJson,
    response_key: &[u8; 32],
    request: &[u8],
    response: &[u8],
) -> Result<()> {
    let exp = Expectation {
        response_key: *response_key,
        nonce: parse_dec("nonce", &r.nonce)?,
        model: r.model.clone(),
        // Prices are unknown here: accept the receipt's own fee by checking it against itself below.
        prices: Prices {
            input: U256::ZERO,
            output: U256::ZERO,
        },
        fee_cap: U256::MAX,
    };
    let response_hash = zg_billing::body_hash(response);
    match check(r, &exp, request, response_hash) {
        Ok(_) => Ok(()),
        // Only the fee comparison can fail with zero prices; everything before it passed.
        Err(Error::FeeMismatch { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zg_billing::ReceiptSigner;

    /// A receipt as an honest provider sends it for `usage`, billing `fee`.
    fn receipt(signer: &ReceiptSigner, usage: Usage, fee: U256) -> ReceiptJson {
        let signed = signer.sign(Receipt {
            request_hash: zg_billing::body_hash(b"{}"),
            response_hash: zg_billing::body_hash(b"answer"),
            model: "m".into(),
            usage,
            fee,
            nonce: U256::from(1),
        });
        ReceiptJson {
            key: "k".into(),
            request_hash: signed.receipt.request_hash,
            response_hash: signed.receipt.response_hash,
            model: "m".into(),
            usage: usage.into(),
            billed: true,
            fee: fee.to_string(),
            nonce: "1".into(),
            signature: format!("0x{}", hex::encode(signed.signature)),
            response_key: format!("0x{}", hex::encode(signer.verifying_key().to_bytes())),
        }
    }

    /// A request for an adapter (`"model": "ft-…"`) expects a receipt naming that adapter; a request naming any
    /// other model (or none, or not JSON) expects the service's model, as before.
    #[test]
    fn an_adapter_request_expects_the_adapter_in_its_receipt() {
        let svc = "smollm2-135m-instruct";
        let ft = br#"{"model":"ft-smollm2-135m-instruct-0d4c6a52-9f7","messages":[]}"#;
        assert_eq!(expected_model(svc, ft), "ft-smollm2-135m-instruct-0d4c6a52-9f7");
        for other in [
            &br#"{"model":"gpt-4","messages":[]}"#[..],
            br#"{"messages":[]}"#,
            br#"{"model":7}"#,
            b"not json",
            br#"{"model":"fthis"}"#,
        ] {
            assert_eq!(
                expected_model(svc, other),
                svc,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        // A receipt naming the base model for an adapter request fails closed, and the other way round.
        let signer = ReceiptSigner::random();
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        };
        let r = receipt(&signer, usage, U256::from(3));
        let exp = |model: &str| Expectation {
            response_key: signer.verifying_key().to_bytes(),
            nonce: U256::from(1),
            model: model.into(),
            prices: Prices {
                input: U256::from(1),
                output: U256::from(2),
            },
            fee_cap: U256::from(1000),
        };
        let resp = zg_billing::body_hash(b"answer");
        assert_eq!(check(&r, &exp("m"), b"{}", resp).unwrap(), U256::from(3));
        let e = check(&r, &exp("ft-m-0123"), b"{}", resp).unwrap_err();
        assert!(e.to_string().contains("\"ft-m-0123\""), "{e}");
    }

    /// The provider and the client apply one rule: fee = min(usage × prices, signed cap). An honest `n: 2`
    /// answer whose usage is above a cap is billed the cap, and the client counts exactly that.
    #[test]
    fn the_fee_rule_is_the_providers() {
        let signer = ReceiptSigner::random();
        let prices = Prices {
            input: U256::from(1),
            output: U256::from(2),
        };
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 100,
        };
        let exp = |fee_cap| Expectation {
            response_key: signer.verifying_key().to_bytes(),
            nonce: U256::from(1),
            model: "m".into(),
            prices,
            fee_cap: U256::from(fee_cap),
        };
        let resp = zg_billing::body_hash(b"answer");
        // Metered 210, cap 150: billed 150.
        let r = receipt(&signer, usage, U256::from(150));
        assert_eq!(check(&r, &exp(150), b"{}", resp).unwrap(), U256::from(150));
        // Metered 210 under a cap of 1000: billed 210; anything else is a mismatch.
        let r = receipt(&signer, usage, U256::from(210));
        assert_eq!(check(&r, &exp(1000), b"{}", resp).unwrap(), U256::from(210));
        for wrong in [150u64, 209, 211, 1000] {
            let r = receipt(&signer, usage, U256::from(wrong));
            assert!(
                matches!(check(&r, &exp(1000), b"{}", resp), Err(Error::FeeMismatch { .. })),
                "fee {wrong}"
            );
        }
    }
}
