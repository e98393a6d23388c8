//! Prometheus metrics: SMS delivery counters, outbox queue gauges, and per-route request
//! latencies, kept by `prometheus-client`. Every label value comes from a fixed set, so no
//! client can add series (STYLE 18).
use std::fmt::Write as _;

use poem::http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::{Region, Rule};
use crate::store::QueueStats;

/// What `render` writes: the OpenMetrics text format, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A request's method as a label: the methods HTTP APIs use, and `other` for the rest,
/// which a client can make up without end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodLabel {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl MethodLabel {
    pub fn of(method: &Method) -> Self {
        match method.as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "PATCH" => Self::Patch,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Other => "other",
        }
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// One request series; the field order is the label order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// A route template (`startup::route_label`), never the raw path.
    route: &'static str,
    method: MethodLabel,
    status: u16,
}

type RequestHistograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// One gRPC series: a method of the served set and a gRPC status code (0 to 16).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: i32,
}

type GrpcHistograms = Family<GrpcLabels, Histogram, fn() -> Histogram>;

impl EncodeLabelValue for Rule {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// A number's region as a label: ISO 3166 codes and non-geographic calling codes, both
/// from libphonenumber's fixed tables, and `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct RegionLabel(Option<Region>);

impl EncodeLabelValue for RegionLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(region) => write!(encoder, "{region}"),
            None => encoder.write_str("unknown"),
        }
    }
}

/// One refused send: the rule that refused it and the destination's region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    rule: Rule,
    region: RegionLabel,
}

pub struct Metrics {
    pub sms_sent: Counter,
    pub sms_failed: Counter,
    pub sms_retried: Counter,
    pub sms_parked: Counter,
    pub sms_dropped: Counter,
    requests: RequestHistograms,
    grpc: GrpcHistograms,
    refused: Family<RefusalLabels, Counter>,
    /// Handles to the metrics above, for `render`.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            sms_sent: Counter::default(),
            sms_failed: Counter::default(),
            sms_retried: Counter::default(),
            sms_parked: Counter::default(),
            sms_dropped: Counter::default(),
            requests: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            grpc: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            refused: Family::default(),
            registry: Registry::default(),
        };
        // Counters are named without `_total`: the encoder adds it to the sample.
        for (name, help, counter) in [
            (
                "phoneproof_sms_sent",
                "SMS accepted by the provider",
                &m.sms_sent,
            ),
            (
                "phoneproof_sms_failed",
                "SMS delivery attempts that failed",
                &m.sms_failed,
            ),
            (
                "phoneproof_sms_retried",
                "SMS scheduled for another attempt",
                &m.sms_retried,
            ),
            (
                "phoneproof_sms_parked",
                "SMS parked after a permanent failure or too many attempts",
                &m.sms_parked,
            ),
            (
                "phoneproof_sms_dropped",
                "SMS dropped because their code was replaced, used or expired",
                &m.sms_dropped,
            ),
        ] {
            m.registry.register(name, help, counter.clone());
        }
        m.registry.register(
            "phoneproof_sms_refused",
            "Codes not sent because an anti-abuse rule refused them, by rule and region",
            m.refused.clone(),
        );
        m.registry.register(
            "phoneproof_http_request_duration_seconds",
            "HTTP requests by route, method and status",
            m.requests.clone(),
        );
        m.registry.register(
            "phoneproof_grpc_request_duration_seconds",
            "gRPC and gRPC-web calls by method and status code",
            m.grpc.clone(),
        );
        m
    }
}

impl Metrics {
    /// Once a series exists this allocates nothing: a shared read of the series map and
    /// the series' own lock.
    pub fn observe_request(
        &self,
        route: &'static str,
        method: MethodLabel,
        status: u16,
        secs: f64,
    ) {
        let labels = RequestLabels {
            route,
            method,
            status,
        };
        self.requests.get_or_create(&labels).observe(secs);
    }

    /// `method` comes from `grpc::METHODS`, `code` is a gRPC status code.
    pub fn observe_grpc(&self, method: &'static str, code: i32, secs: f64) {
        let labels = GrpcLabels { method, code };
        self.grpc.get_or_create(&labels).observe(secs);
    }

    pub fn count_refusal(&self, rule: Rule, region: Option<Region>) {
        let labels = RefusalLabels {
            rule,
            region: RegionLabel(region),
        };
        self.refused.get_or_create(&labels).inc();
    }

    /// The exposition; the queue gauges are left out when the store could not count.
    pub fn render(&self, queue: Option<QueueStats>) -> String {
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry).expect("writing to a String");
        if let Some(q) = queue {
            // Read from the store for this scrape, so they are constants, not kept state.
            let mut gauges = Registry::default();
            gauges.register(
                "phoneproof_outbox_due",
                "Messages due for delivery now",
                ConstGauge::new(q.due),
            );
            gauges.register(
                "phoneproof_outbox_pending",
                "Messages not yet delivered, due or scheduled",
                ConstGauge::new(q.pending),
            );
            gauges.register(
                "phoneproof_outbox_parked",
                "Messages parked for an operator",
                ConstGauge::new(q.parked),
            );
            gauges.register(
                "phoneproof_outbox_oldest_due_age_seconds",
                "Age of the oldest due message",
                ConstGauge::new(q.oldest_due_age_ms as f64 / 1000.0),
            );
            text::encode_registry(&mut out, &gauges).expect("writing to a String");
        }
        text::encode_eof(&mut out).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_are_label_values() {
        for (method, label) in [
            (Method::GET, "GET"),
            (Method::HEAD, "HEAD"),
            (Method::POST, "POST"),
            (Method::PUT, "PUT"),
            (Method::DELETE, "DELETE"),
            (Method::PATCH, "PATCH"),
            (Method::OPTIONS, "OPTIONS"),
            (Method::TRACE, "other"),
            (Method::CONNECT, "other"),
            (Method::from_bytes(b"get").unwrap(), "other"),
            (Method::from_bytes(b"MADEUP").unwrap(), "other"),
        ] {
            assert_eq!(MethodLabel::of(&method).as_str(), label, "{method}");
        }
    }
}
