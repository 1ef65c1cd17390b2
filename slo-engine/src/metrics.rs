//! The SLO engine's self-metrics (Prometheus). Per-SLO series are labelled by SLO name (bounded
//! by the number of SLOs), never by group.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabel {
    pub slo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BurnLabel {
    pub slo: String,
    pub window: &'static str,
}

#[derive(Debug, Clone)]
pub struct SloMetrics {
    pub slos: Gauge,
    pub evaluation_seconds: Histogram,
    pub backfill_seconds: Histogram,
    pub transitions: Family<StateLabel, Counter>,
    pub firing: Family<SloLabel, Gauge>,
    pub counting_errors: Counter,
    pub budget_remaining: Family<SloLabel, Gauge<f64, AtomicU64>>,
    pub sli: Family<SloLabel, Gauge<f64, AtomicU64>>,
    pub burn_rate: Family<BurnLabel, Gauge<f64, AtomicU64>>,
}

impl Default for SloMetrics {
    fn default() -> Self {
        Self {
            slos: Gauge::default(),
            evaluation_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            backfill_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            transitions: Family::default(),
            firing: Family::default(),
            counting_errors: Counter::default(),
            budget_remaining: Family::default(),
            sli: Family::default(),
            burn_rate: Family::default(),
        }
    }
}

impl SloMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sightline_slo");
        r.register("slos", "SLOs loaded", m.slos.clone());
        r.register(
            "evaluation_seconds",
            "Time to evaluate every SLO and alert rule on a tick",
            m.evaluation_seconds.clone(),
        );
        r.register(
            "backfill_seconds",
            "Time to count a new or changed SLO from stored events",
            m.backfill_seconds.clone(),
        );
        r.register(
            "alert_transitions",
            "Alert state changes (pending, firing, resolved)",
            m.transitions.clone(),
        );
        r.register("alerts_firing", "Alerts firing, per SLO", m.firing.clone());
        r.register(
            "counting_errors",
            "Batches an SLO's expressions could not be evaluated on",
            m.counting_errors.clone(),
        );
        r.register(
            "budget_remaining_ratio",
            "Share of the error budget left in the SLO's window (negative when overspent)",
            m.budget_remaining.clone(),
        );
        r.register(
            "sli_ratio",
            "Good / valid events over the SLO's window",
            m.sli.clone(),
        );
        r.register(
            "burn_rate",
            "Error ratio over a window as a multiple of the ratio the objective allows",
            m.burn_rate.clone(),
        );
        m
    }
}
