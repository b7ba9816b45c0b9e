//! Prometheus metrics, hand-rolled: tasks by state (read from the store at scrape time), and histograms of
//! the time tasks spend queued, training, delivering, and waiting for settlement after acknowledgement
//! (fed by the pipeline's state events), plus HTTP requests by route and status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use zg_finetune::{TaskEvent, TaskState};

const BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 3600.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.buckets[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    queue_wait: Histogram,
    training: Histogram,
    delivery: Histogram,
    settlement_lag: Histogram,
    transitions: BTreeMap<(&'static str, &'static str), u64>,
    requests: BTreeMap<(&'static str, u16), u64>,
}

/// The broker's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Feeds one pipeline event.
    pub fn event(&self, e: &TaskEvent) {
        let TaskEvent::State {
            from, to, since_ms, ..
        } = e
        else {
            return;
        };
        let secs = *since_ms as f64 / 1000.0;
        let Ok(mut m) = self.inner.lock() else { return };
        *m.transitions.entry((from.as_str(), to.as_str())).or_default() += 1;
        match (from, to) {
            (TaskState::Init, _) | (TaskState::SettingUp, TaskState::Training) => m.queue_wait.observe(secs),
            (TaskState::Training, TaskState::Trained) => m.training.observe(secs),
            (TaskState::Delivering, TaskState::Delivered) => m.delivery.observe(secs),
            (TaskState::UserAcknowledged, TaskState::Finished) => m.settlement_lag.observe(secs),
            _ => {}
        }
    }

    /// A finished HTTP request.
    pub fn request(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route, status)).or_default() += 1;
        }
    }

    /// Prometheus text exposition; `by_state` are the current task counts.
    pub fn render(&self, by_state: &[(TaskState, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP zg_broker_tasks Tasks by state.\n# TYPE zg_broker_tasks gauge"
        );
        for s in TaskState::ALL {
            let n = by_state.iter().find(|(x, _)| *x == s).map_or(0, |x| x.1);
            let _ = writeln!(out, "zg_broker_tasks{{state=\"{s}\"}} {n}");
        }
        let Ok(m) = self.inner.lock() else { return out };
        let _ = writeln!(
            out,
            "# HELP zg_broker_transitions_total State transitions.\n# TYPE zg_broker_transitions_total counter"
        );
        for ((f, t), n) in &m.transitions {
            let _ = writeln!(out, "zg_broker_transitions_total{{from=\"{f}\",to=\"{t}\"}} {n}");
        }
        m.queue_wait.render(
            &mut out,
            "zg_broker_queue_wait_seconds",
            "Time from acceptance to the start of training (setup included).",
        );
        m.training
            .render(&mut out, "zg_broker_training_seconds", "Time in Training.");
        m.delivery.render(
            &mut out,
            "zg_broker_delivery_seconds",
            "Time in Delivering: package, seal, store, addDeliverable.",
        );
        m.settlement_lag.render(
            &mut out,
            "zg_broker_settlement_lag_seconds",
            "Time from the customer's acknowledgement to the settlement.",
        );
        let _ = writeln!(
            out,
            "# HELP zg_broker_http_requests_total HTTP requests.\n# TYPE zg_broker_http_requests_total counter"
        );
        for ((r, s), n) in &m.requests {
            let _ = writeln!(
                out,
                "zg_broker_http_requests_total{{route=\"{r}\",status=\"{s}\"}} {n}"
            );
        }
        out
    }
}
