//! Delivery self-metrics, labelled by receiver (bounded by the config).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub receiver: String,
    /// queued, sent, retried, failed (refused for good) or dropped (given up after max_age).
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    pub notifications: Family<OutcomeLabel, Counter>,
    pub attempt_seconds: Family<ReceiverLabel, Histogram>,
    pub pending: Family<ReceiverLabel, Gauge>,
    pub circuit_open: Family<ReceiverLabel, Gauge>,
}

impl NotifyMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            notifications: Family::default(),
            attempt_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            pending: Family::default(),
            circuit_open: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("sightline");
        r.register(
            "notifications",
            "Notifications by receiver and outcome: queued, sent, retried (a retryable failure), failed (refused for good, not retried), dropped (given up after max_age)",
            m.notifications.clone(),
        );
        r.register(
            "notification_attempt_seconds",
            "Duration of delivery attempts",
            m.attempt_seconds.clone(),
        );
        r.register(
            "notifications_pending",
            "Notifications in the outbox, not yet delivered",
            m.pending.clone(),
        );
        r.register(
            "notify_circuit_open",
            "1 while a receiver's circuit breaker holds deliveries back",
            m.circuit_open.clone(),
        );
        m
    }

    pub fn count(&self, receiver: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabel {
                receiver: receiver.into(),
                outcome,
            })
            .inc();
    }
}
