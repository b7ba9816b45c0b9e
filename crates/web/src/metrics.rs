//! The Provider view: samples a provider's Prometheus `/metrics` (requests, tokens, earnings, unsettled fees) for
//! small charts, and reads its settlement history from the chain (`VoucherSettled` events).
//!
//! Who can call these: only the page holding the session token. `set_target` makes this server fetch one URL every
//! few seconds; the worst is pointing it at another local HTTP server, which it then GETs (no body is sent, nothing
//! but the parsed numbers of a Prometheus text answer reaches the page, each answer is read up to 1 MiB, and only
//! `http(s)` URLs are accepted).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent as _;
use axum::Json;
use axum::extract::State;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zg_chain::{Amount, InferenceServingContract};

use crate::account::now_secs;
use crate::error::{Error, Result};
use crate::server::AppState;

/// Samples kept per target (an hour at the default 5 s).
const KEEP: usize = 720;
/// Largest metrics answer read.
const MAX_METRICS: usize = 1024 * 1024;
/// Settlement events shown.
const MAX_SETTLEMENTS: usize = 50;

/// One sample of the provider's counters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    at: u64,
    requests: f64,
    prompt_tokens: f64,
    completion_tokens: f64,
    fees_neuron: f64,
    settled_neuron: f64,
    unsettled_neuron: f64,
    inflight: f64,
}

/// What the Provider view knows.
#[derive(Debug, Default)]
pub(crate) struct ProviderView {
    /// The metrics URL being sampled.
    pub(crate) target: Option<String>,
    samples: VecDeque<Sample>,
    /// The latest answer, every series (for the table).
    latest: BTreeMap<String, f64>,
    last_error: Option<String>,
}

impl ProviderView {
    pub(crate) fn new(target: Option<String>) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }
}

/// Parses Prometheus text: the sum of every series per metric name (labels summed away), plus each labelled
/// series under its full name. Lines that do not parse are skipped (a metrics page is not trusted input).
pub(crate) fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some((s, v)) => (s.trim(), v.trim()),
            None => continue,
        };
        let Ok(v) = value.parse::<f64>() else { continue };
        if !v.is_finite() {
            continue;
        }
        let name = series.split('{').next().unwrap_or(series);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        if series.len() != name.len() {
            out.insert(series.to_owned(), v);
        }
        *out.entry(name.to_owned()).or_default() += v;
    }
    out
}

fn sample(at: u64, m: &BTreeMap<String, f64>) -> Sample {
    let g = |k: &str| m.get(k).copied().unwrap_or(0.0);
    Sample {
        at,
        requests: g("zg_provider_requests_total"),
        prompt_tokens: g("zg_provider_prompt_tokens_total"),
        completion_tokens: g("zg_provider_completion_tokens_total"),
        fees_neuron: g("zg_provider_fees_neuron_total"),
        settled_neuron: g("zg_provider_settled_neuron_total"),
        unsettled_neuron: g("zg_provider_unsettled_neuron"),
        inflight: g("zg_provider_inflight"),
    }
}

fn check_url(url: &str) -> Result<()> {
    if url.len() > 2048 || !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::BadRequest(format!(
            "metrics URL {url:?} must be an http(s) URL such as http://127.0.0.1:8080/metrics"
        )));
    }
    Ok(())
}

/// GETs `url`, reading at most `max` bytes.
async fn get_bounded(s: &AppState, url: &str, max: usize) -> Result<String> {
    let up = |reason: String| Error::Upstream {
        what: format!("GET {url}"),
        reason,
    };
    let resp = s
        .http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| up(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(up(format!("HTTP {}", resp.status().as_u16())));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| up(e.to_string()))?;
        if body.len().saturating_add(chunk.len()) > max {
            return Err(up(format!("answer larger than {max} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| up("answer is not UTF-8".into()))
}

async fn sample_once(s: &AppState) {
    let Some(target) = s.view.lock().ok().and_then(|v| v.target.clone()) else {
        return;
    };
    let r = get_bounded(s, &target, MAX_METRICS).await;
    if let Ok(mut v) = s.view.lock() {
        if v.target.as_deref() != Some(target.as_str()) {
            return; // the page switched targets meanwhile
        }
        match r {
            Ok(text) => {
                let m = parse_prometheus(&text);
                v.samples.push_back(sample(now_secs(), &m));
                while v.samples.len() > KEEP {
                    v.samples.pop_front();
                }
                v.latest = m;
                v.last_error = None;
            }
            Err(e) => v.last_error = Some(e.to_string()),
        }
    }
}

/// Samples the target every `metrics_every` for as long as the server runs.
pub(crate) fn spawn_sampler(s: AppState) {
    let every = s.cfg.metrics_every.max(Duration::from_millis(200));
    // The task holds only a weak reference, so it ends when the server (and its state) goes away.
    let weak = std::sync::Arc::downgrade(&s.0);
    drop(s);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            sample_once(&AppState(inner)).await;
        }
    });
}

/// The provider's address, from its `/v1/service` next to `/metrics`.
async fn provider_of(s: &AppState, metrics_url: &str) -> Option<Address> {
    let base = metrics_url.strip_suffix("/metrics")?;
    let text = get_bounded(s, &format!("{base}/v1/service"), 64 * 1024)
        .await
        .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("provider")?.as_str()?.parse().ok()
}

/// The newest `VoucherSettled` events paid to `provider`.
async fn settlements(s: &AppState, provider: Address) -> Result<Vec<Value>> {
    let chain = s.client.chain();
    let rpc = chain.provider();
    let filter = Filter::new()
        .address(chain.addresses().inference)
        .event_signature(InferenceServingContract::VoucherSettled::SIGNATURE_HASH)
        .topic2(B256::left_padding_from(provider.as_slice()))
        .from_block(0u64);
    let logs = rpc.get_logs(&filter).await.map_err(|e| Error::Upstream {
        what: "reading VoucherSettled events".into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut times: BTreeMap<u64, u64> = BTreeMap::new();
    for log in logs.iter().rev().take(MAX_SETTLEMENTS) {
        let Ok(ev) = InferenceServingContract::VoucherSettled::decode_log(&log.inner) else {
            continue;
        };
        let block = log.block_number.unwrap_or_default();
        let at = match log.block_timestamp {
            Some(t) => t,
            None => match times.get(&block) {
                Some(t) => *t,
                None => {
                    let t = rpc
                        .get_block_by_number(block.into())
                        .await
                        .ok()
                        .flatten()
                        .map(|b| b.header.timestamp)
                        .unwrap_or_default();
                    times.insert(block, t);
                    t
                }
            },
        };
        out.push(json!({
            "at": at,
            "block": block,
            "tx": log.transaction_hash,
            "user": ev.user,
            "paid": Amount(ev.paid),
            "cumulative": Amount(ev.cumulativeAmount),
            "status": zg_chain::SettlementStatus::from_code(ev.status),
        }));
    }
    Ok(out)
}

fn neuron_amount(v: f64) -> Amount {
    // Counters arrive as floats in Prometheus text; exact up to 2^53 neuron, which the table labels as approximate
    // beyond that. Negative or non-finite values never reach here (parse_prometheus drops non-finite ones).
    Amount(U256::from(v.max(0.0) as u128))
}

/// `GET /api/provider-view`: the latest numbers, the samples for the charts, and the settlement history.
pub(crate) async fn view(State(s): State<AppState>) -> Result<Json<Value>> {
    if s.view.lock().map(|v| v.samples.is_empty()).unwrap_or(true) {
        sample_once(&s).await;
    }
    let (target, samples, latest, last_error) = {
        let v = s
            .view
            .lock()
            .map_err(|_| Error::BadRequest("provider view state poisoned".into()))?;
        (
            v.target.clone(),
            v.samples.iter().cloned().collect::<Vec<_>>(),
            v.latest.clone(),
            v.last_error.clone(),
        )
    };
    let Some(target) = target else {
        return Ok(Json(json!({"target": null})));
    };
    let provider = provider_of(&s, &target).await;
    let history = match provider {
        Some(p) => settlements(&s, p).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "settlement history unavailable");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let last = samples.last().cloned().unwrap_or_else(|| sample(0, &latest));
    let requests_by_status: BTreeMap<&String, &f64> = latest
        .iter()
        .filter(|(k, _)| k.starts_with("zg_provider_requests_total{"))
        .collect();
    Ok(Json(json!({
        "target": target,
        "provider": provider,
        "error": last_error,
        "totals": {
            "requests": last.requests,
            "prompt_tokens": last.prompt_tokens,
            "completion_tokens": last.completion_tokens,
            "earned": neuron_amount(last.fees_neuron),
            "settled": neuron_amount(last.settled_neuron),
            "unsettled": neuron_amount(last.unsettled_neuron),
            "inflight": last.inflight,
        },
        "requests_by_route": requests_by_status,
        "samples": samples,
        "settlements": history,
    })))
}

/// `POST /api/provider-view/target` body.
#[derive(Debug, Deserialize)]
pub(crate) struct Target {
    url: String,
}

/// `POST /api/provider-view/target`: sample another metrics endpoint (clears the old samples).
pub(crate) async fn set_target(State(s): State<AppState>, Json(t): Json<Target>) -> Result<Json<Value>> {
    let url = t.url.trim().to_owned();
    check_url(&url)?;
    if let Ok(mut v) = s.view.lock() {
        *v = ProviderView::new(Some(url.clone()));
    }
    sample_once(&s).await;
    Ok(Json(json!({"target": url})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prometheus_text_is_summed_per_name_and_garbage_skipped() {
        let m = parse_prometheus(
            "# HELP x y\nzg_provider_requests_total{route=\"chat\",status=\"200\"} 3\n\
             zg_provider_requests_total{route=\"chat\",status=\"402\"} 2\nzg_provider_fees_neuron_total 1e3\n\
             bad line\nzg_provider_inflight NaN\n<script> 1\n",
        );
        assert_eq!(m["zg_provider_requests_total"], 5.0);
        assert_eq!(
            m["zg_provider_requests_total{route=\"chat\",status=\"402\"}"],
            2.0
        );
        assert_eq!(m["zg_provider_fees_neuron_total"], 1000.0);
        assert!(!m.contains_key("zg_provider_inflight"));
        assert!(!m.keys().any(|k| k.contains("script")));
    }

    #[test]
    fn only_http_targets() {
        assert!(check_url("http://127.0.0.1:1/metrics").is_ok());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("javascript:alert(1)").is_err());
    }
}
