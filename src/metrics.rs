//! Prometheus metrics: SMS delivery counters, outbox queue gauges, and per-route request
//! counts and latencies. Hand-rolled to keep the request path to a few atomic adds.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::QueueStats;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    pub sms_sent: Counter,
    pub sms_failed: Counter,
    pub sms_retried: Counter,
    pub sms_parked: Counter,
    pub sms_dropped: Counter,
    /// (route, method, status) → latency histogram.
    requests: Mutex<BTreeMap<(&'static str, String, u16), Histogram>>,
}

impl Metrics {
    pub fn observe_request(&self, route: &'static str, method: &str, status: u16, secs: f64) {
        let mut map = self.requests.lock().expect("metrics lock");
        let h = map.entry((route, method.to_owned(), status)).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    pub fn render(&self, queue: Option<QueueStats>) -> String {
        let mut out = String::new();
        let counters = [
            (
                "phoneproof_sms_sent_total",
                "SMS accepted by the provider.",
                &self.sms_sent,
            ),
            (
                "phoneproof_sms_failed_total",
                "SMS delivery attempts that failed.",
                &self.sms_failed,
            ),
            (
                "phoneproof_sms_retried_total",
                "SMS scheduled for another attempt.",
                &self.sms_retried,
            ),
            (
                "phoneproof_sms_parked_total",
                "SMS parked after a permanent failure or too many attempts.",
                &self.sms_parked,
            ),
            (
                "phoneproof_sms_dropped_total",
                "SMS dropped because their code was replaced, used or expired.",
                &self.sms_dropped,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        if let Some(q) = queue {
            let gauges = [
                (
                    "phoneproof_outbox_due",
                    "Messages due for delivery now.",
                    q.due as f64,
                ),
                (
                    "phoneproof_outbox_pending",
                    "Messages not yet delivered, due or scheduled.",
                    q.pending as f64,
                ),
                (
                    "phoneproof_outbox_parked",
                    "Messages parked for an operator.",
                    q.parked as f64,
                ),
                (
                    "phoneproof_outbox_oldest_due_age_seconds",
                    "Age of the oldest due message.",
                    q.oldest_due_age_ms as f64 / 1000.0,
                ),
            ];
            for (name, help, v) in gauges {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
        }
        let name = "phoneproof_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests by route, method and status.\n# TYPE {name} histogram"
        );
        let map = self.requests.lock().expect("metrics lock").clone();
        for ((route, method, status), h) in map {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
        out
    }
}
