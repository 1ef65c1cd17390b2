//! Ingest self-metrics: items accepted and rejected per signal and transport, requests by
//! outcome. Labels are bounded: signal × transport × a fixed set of outcomes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub signal: &'static str,
    pub transport: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub signal: &'static str,
    pub transport: &'static str,
    pub outcome: &'static str,
}

/// A tenant refused for its quota, and which limit it reached (`rate` or `memory`). The
/// tenants are those keys or certificates name, so the label set is bounded by them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    pub tenant: String,
    pub limit: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct CollectorMetrics {
    pub over_quota: Family<QuotaLabels, Counter>,
    pub accepted: Family<ItemLabels, Counter>,
    pub rejected: Family<ItemLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub received_bytes: Family<ItemLabels, Counter>,
}

impl CollectorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sightline_ingest");
        r.register(
            "accepted_items",
            "Spans, log records and metric data points stored",
            m.accepted.clone(),
        );
        r.register(
            "rejected_items",
            "Items refused as invalid (reported to the sender as partial success)",
            m.rejected.clone(),
        );
        r.register(
            "requests",
            "Export requests by outcome (ok, partial, malformed, unsupported_media_type, \
             too_large, too_costly, timeout, unavailable, internal, unauthenticated, \
             permission_denied, throttled, over_quota)",
            m.requests.clone(),
        );
        r.register(
            "over_quota",
            "Requests refused because their tenant was over its ingest rate (limit=rate), \
             its share of the memory ceiling (limit=memory) or its stored bytes \
             (limit=stored)",
            m.over_quota.clone(),
        );
        r.register(
            "received_bytes",
            "Request body bytes received, before decompression",
            m.received_bytes.clone(),
        );
        m
    }
}
