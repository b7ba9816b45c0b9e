//! The Providers page's API: services from the chain with a live health probe, Verify (the full attestation report,
//! check by check) and Acknowledge (record the TEE signer on chain for the customer's sub-account).
//!
//! Who can call these: only the page holding the session token. Verify costs nothing but a request to the
//! provider; Acknowledge sends one transaction from the customer's key, and only after the provider verified.
//! Everything a provider publishes (model names, URLs, `additionalInfo`, the report's strings) is untrusted text:
//! the page renders it with `textContent` only, never as HTML or as a link target.

use std::time::Instant;

use alloy::primitives::Address;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use zg_chain::{Amount, FineTuningServingContract};

use crate::account::parse_address;
use crate::error::{Error, Result};
use crate::server::AppState;

/// Probes `{url}/healthz`: `(ok, milliseconds)`. Only http(s) URLs are probed (a provider registers the URL, so
/// it is untrusted: no `file:` or other schemes reach the HTTP client).
async fn probe(s: &AppState, url: &str) -> Value {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return json!({"ok": false, "error": "not an http(s) URL"});
    }
    let start = Instant::now();
    let r = s
        .http
        .get(format!("{base}/healthz"))
        .timeout(s.cfg.probe_timeout)
        .send()
        .await;
    let ms = start.elapsed().as_millis() as u64;
    match r {
        Ok(r) if r.status().is_success() => json!({"ok": true, "latency_ms": ms}),
        Ok(r) => json!({"ok": false, "latency_ms": ms, "error": format!("HTTP {}", r.status().as_u16())}),
        Err(e) => {
            json!({"ok": false, "error": if e.is_timeout() { "timed out".to_owned() } else { "unreachable".to_owned() }})
        }
    }
}

/// `GET /api/providers`: inference and fine-tuning services, prices in neuron and 0G, health and latency, and
/// whether this customer acknowledged each signer.
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<Value>> {
    let chain = s.client.chain();
    let me = s.client.address();
    let services = s.client.list_services().await?;
    let inference = futures::future::join_all(services.into_iter().map(|svc| {
        let s = s.clone();
        async move {
            let url = s
                .client
                .config()
                .url_override
                .clone()
                .unwrap_or_else(|| svc.url.clone());
            let inference = s.client.chain().inference();
            let (health, acct) = tokio::join!(probe(&s, &url), inference.get_account(me, svc.provider));
            let acct = acct.ok().flatten();
            json!({
                "provider": svc.provider,
                "model": svc.model,
                "url": svc.url,
                "service_type": svc.service_type,
                "verifiability": svc.verifiability,
                "input_price": Amount(svc.input_price),
                "output_price": Amount(svc.output_price),
                "tee_signer": svc.tee_signer,
                "owner_acknowledged": svc.tee_signer_acknowledged,
                "you_acknowledged": acct.as_ref().is_some_and(|a| a.acknowledged),
                "sub_account": acct.as_ref().map(|a| a.balance),
                "additional_info": svc.additional_info,
                "updated_at": svc.updated_at,
                "health": health,
            })
        }
    }))
    .await;
    let ft = FineTuningServingContract::new(chain.addresses().fine_tuning, chain.provider().clone());
    let fine_tuning = match ft.getAllServices().call().await {
        Ok(list) => {
            futures::future::join_all(list.into_iter().map(|svc| {
                let s = s.clone();
                async move {
                    let health = probe(&s, &svc.url).await;
                    json!({
                        "provider": svc.provider,
                        "url": svc.url,
                        "models": svc.models,
                        "price_per_token": Amount(svc.pricePerToken),
                        "occupied": svc.occupied,
                        "tee_signer": svc.teeSignerAddress,
                        "owner_acknowledged": svc.teeSignerAcknowledged,
                        "health": health,
                    })
                }
            }))
            .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "FineTuningServing.getAllServices failed");
            Vec::new()
        }
    };
    Ok(Json(json!({"inference": inference, "fine_tuning": fine_tuning})))
}

fn provider(addr: &str) -> Result<Address> {
    parse_address("provider", addr)
}

/// `POST /api/providers/{addr}/verify`: fresh evidence for a random nonce, verified under the policy.
/// Answers 200 with `ok: false` and the report when the provider fails, so the page can show each check.
pub(crate) async fn verify(State(s): State<AppState>, Path(addr): Path<String>) -> Result<Json<Value>> {
    let p = provider(&addr)?;
    match s.client.verify_provider(p).await {
        Ok(v) => Ok(Json(json!({"ok": true, "verification": v, "report": v.report}))),
        Err(zg_client::Error::AttestationFailed { report, check, .. }) => Ok(Json(json!({
            "ok": false,
            "error": format!("provider {p} failed verification: {check}"),
            "report": report,
        }))),
        Err(e @ zg_client::Error::SimulatedRefused { .. }) => Ok(Json(json!({
            "ok": false,
            "simulated_refused": true,
            "error": e.to_string(),
        }))),
        Err(e) => Err(Error::Client(e)),
    }
}

/// `POST /api/providers/{addr}/acknowledge`: verifies, then records the TEE signer on chain for this customer.
pub(crate) async fn acknowledge(State(s): State<AppState>, Path(addr): Path<String>) -> Result<Json<Value>> {
    let p = provider(&addr)?;
    let (v, tx) = s.client.acknowledge_provider(p).await?;
    Ok(Json(
        json!({"ok": true, "verification": v, "report": v.report, "tx": tx}),
    ))
}
