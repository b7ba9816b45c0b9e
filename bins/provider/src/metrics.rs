//! Prometheus metrics, hand-rolled (a few atomics and one histogram): requests, tokens, fees,
//! settlement lag, upstream latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The provider's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    fees_neuron: Mutex<u128>,
    unbilled: AtomicU64,
    inflight: AtomicI64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    last_settlement_unix: AtomicU64,
    settled_neuron: Mutex<u128>,
    settlement_errors: AtomicU64,
}

impl Metrics {
    /// A finished request on `route` with HTTP `status`.
    pub fn request(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
    }

    /// A request refused before the upstream, by reason code.
    pub fn rejected(&self, code: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(code).or_default() += 1;
        }
    }

    /// A billed response.
    pub fn billed(&self, prompt: u64, completion: u64, fee: u128) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion, Ordering::Relaxed);
        if let Ok(mut f) = self.fees_neuron.lock() {
            *f = f.saturating_add(fee);
        }
    }

    /// A response without usage (not billed).
    pub fn unbilled(&self) {
        self.unbilled.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests in flight changed by `d`.
    pub fn inflight(&self, d: i64) {
        self.inflight.fetch_add(d, Ordering::Relaxed);
    }

    /// Upstream time to response headers.
    pub fn upstream_latency(&self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// A settlement round finished at `unix` seconds, paying `paid` neuron.
    pub fn settled(&self, unix: u64, paid: u128) {
        self.last_settlement_unix.store(unix, Ordering::Relaxed);
        if let Ok(mut f) = self.settled_neuron.lock() {
            *f = f.saturating_add(paid);
        }
    }

    /// A settlement round failed.
    pub fn settlement_error(&self) {
        self.settlement_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests billed so far (from the counters).
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self, now_unix: u64, unsettled_neuron: u128, unsettled_users: usize) -> String {
        let mut s = String::with_capacity(2048);
        let _ = writeln!(
            s,
            "# HELP zg_provider_requests_total Requests finished, by route and HTTP status.\n# TYPE zg_provider_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    s,
                    "zg_provider_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP zg_provider_rejected_total Requests refused before the upstream, by reason.\n# TYPE zg_provider_rejected_total counter"
        );
        if let Ok(m) = self.rejected.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(s, "zg_provider_rejected_total{{reason=\"{code}\"}} {n}");
            }
        }
        let fees = self.fees_neuron.lock().map(|f| *f).unwrap_or(0);
        let settled = self.settled_neuron.lock().map(|f| *f).unwrap_or(0);
        let last = self.last_settlement_unix.load(Ordering::Relaxed);
        let lag = if last == 0 {
            0
        } else {
            now_unix.saturating_sub(last)
        };
        for (name, help, kind, v) in [
            (
                "zg_provider_prompt_tokens_total",
                "Prompt tokens billed.",
                "counter",
                self.prompt_tokens.load(Ordering::Relaxed).to_string(),
            ),
            (
                "zg_provider_completion_tokens_total",
                "Completion tokens billed.",
                "counter",
                self.completion_tokens.load(Ordering::Relaxed).to_string(),
            ),
            (
                "zg_provider_fees_neuron_total",
                "Fees metered, neuron.",
                "counter",
                fees.to_string(),
            ),
            (
                "zg_provider_unbilled_total",
                "Responses without upstream usage (not billed).",
                "counter",
                self.unbilled.load(Ordering::Relaxed).to_string(),
            ),
            (
                "zg_provider_inflight",
                "Requests in flight.",
                "gauge",
                self.inflight.load(Ordering::Relaxed).to_string(),
            ),
            (
                "zg_provider_unsettled_neuron",
                "Fees metered and not yet settled on chain, neuron.",
                "gauge",
                unsettled_neuron.to_string(),
            ),
            (
                "zg_provider_unsettled_customers",
                "Customers with unsettled fees.",
                "gauge",
                unsettled_users.to_string(),
            ),
            (
                "zg_provider_settled_neuron_total",
                "Fees collected by settlement, neuron.",
                "counter",
                settled.to_string(),
            ),
            (
                "zg_provider_settlement_lag_seconds",
                "Seconds since the last successful settlement round (0 = none yet).",
                "gauge",
                lag.to_string(),
            ),
            (
                "zg_provider_settlement_errors_total",
                "Settlement rounds that failed.",
                "counter",
                self.settlement_errors.load(Ordering::Relaxed).to_string(),
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP zg_provider_upstream_latency_seconds Upstream time to response headers.\n# TYPE zg_provider_upstream_latency_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "zg_provider_upstream_latency_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "zg_provider_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "zg_provider_upstream_latency_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "zg_provider_upstream_latency_seconds_count {count}");
        s
    }
}
