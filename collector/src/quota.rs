//! Each tenant's ingest quota: a rate of items and of bytes (token buckets), and a share of
//! the memory ceiling. A tenant past its rate is refused before its body is read (HTTP 429 +
//! `Retry-After`, gRPC `RESOURCE_EXHAUSTED` + `RetryInfo`), so a flood costs the server
//! little and other tenants nothing.
//!
//! The buckets may go into debt: a request is let in while its tenant has any tokens and is
//! charged in full once decoded (its items are known only then), so a request larger than
//! the burst still gets through, and the tenant then waits until the debt is paid. Over any
//! stretch of time a tenant gets its rate plus one burst.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sightline_common::tenant::{TenantLimits, TenantsConfig};

use crate::error::IngestError;
use crate::metrics::QuotaLabels;

/// The longest `Retry-After` a refused tenant is told: its debt can be larger (many requests
/// let in at once), but a sender told to wait minutes would hold its data for as long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The quotas of every tenant that has sent something.
#[derive(Debug)]
pub(crate) struct Quotas {
    config: TenantsConfig,
    tenants: Mutex<HashMap<String, Arc<Quota>>>,
    refused: Family<QuotaLabels, Counter>,
}

impl Quotas {
    pub(crate) fn new(config: TenantsConfig, refused: Family<QuotaLabels, Counter>) -> Self {
        Self {
            config,
            tenants: Mutex::new(HashMap::new()),
            refused,
        }
    }

    /// The quota of `tenant` (a tenant some key or certificate names: the map is as large
    /// as the tenants configured).
    pub(crate) fn of(&self, tenant: &str) -> Arc<Quota> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| {
                let mut quota = Quota::new(self.config.limits(tenant), Instant::now());
                quota.refused = Some((self.refused.clone(), tenant.to_string()));
                Arc::new(quota)
            })
            .clone()
    }
}

/// One tenant's buckets and the memory its requests hold.
#[derive(Debug)]
pub(crate) struct Quota {
    pub(crate) limits: TenantLimits,
    buckets: Mutex<(Bucket, Bucket)>,
    /// Bytes the tenant's requests hold now (part of admission's in-flight bytes).
    pub(crate) inflight: AtomicUsize,
    /// Where refusals are counted, and for which tenant.
    refused: Option<(Family<QuotaLabels, Counter>, String)>,
}

/// Tokens of one rate; `rate` 0 means no limit.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: Duration, now: Instant) -> Self {
        let capacity = rate * burst.as_secs_f64();
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// How long until the bucket has a token again, when it has none.
    fn wait(&self) -> Option<Duration> {
        (self.rate > 0.0 && self.tokens <= 0.0)
            .then(|| Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    fn take(&mut self, n: f64) {
        if self.rate > 0.0 {
            self.tokens -= n;
        }
    }
}

impl Quota {
    fn new(limits: TenantLimits, now: Instant) -> Self {
        let burst = limits.ingest_burst;
        Self {
            buckets: Mutex::new((
                Bucket::new(limits.ingest_items_per_second as f64, burst, now),
                Bucket::new(limits.ingest_bytes_per_second as f64, burst, now),
            )),
            limits,
            inflight: AtomicUsize::new(0),
            refused: None,
        }
    }

    /// Counts a refusal for reaching `limit` (`rate`, `memory` or `stored`).
    pub(crate) fn count_refusal(&self, limit: &'static str) {
        if let Some((family, tenant)) = &self.refused {
            family
                .get_or_create(&QuotaLabels {
                    tenant: tenant.clone(),
                    limit,
                })
                .inc();
        }
    }

    /// Refuses while the tenant is over its rate (before anything of the request is read).
    pub(crate) fn check_rate(&self, tenant: &str, now: Instant) -> Result<(), IngestError> {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.0.refill(now);
        b.1.refill(now);
        self.refusal(tenant, &b)
    }

    /// Charges a decoded request's `items` and `bytes`, or refuses it when the tenant went
    /// over its rate since the request was let in.
    pub(crate) fn charge(
        &self,
        tenant: &str,
        items: u64,
        bytes: usize,
        now: Instant,
    ) -> Result<(), IngestError> {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.0.refill(now);
        b.1.refill(now);
        self.refusal(tenant, &b)?;
        b.0.take(items as f64);
        b.1.take(bytes as f64);
        Ok(())
    }

    fn refusal(&self, tenant: &str, b: &(Bucket, Bucket)) -> Result<(), IngestError> {
        let items = |wait| {
            let what = format!(
                "{} items per second (tenants: ingest_items_per_second)",
                self.limits.ingest_items_per_second
            );
            (what, wait)
        };
        let bytes = |wait| {
            let what = format!(
                "{} bytes per second (tenants: ingest_bytes_per_second)",
                self.limits.ingest_bytes_per_second
            );
            (what, wait)
        };
        let (what, wait) = match (b.0.wait(), b.1.wait()) {
            (None, None) => return Ok(()),
            (Some(i), Some(y)) if y > i => bytes(y),
            (Some(i), _) => items(i),
            (None, Some(y)) => bytes(y),
        };
        self.count_refusal("rate");
        // Whole seconds, as Retry-After carries them; at least one.
        let secs = wait.min(MAX_RETRY_AFTER).as_secs_f64().ceil().max(1.0);
        Err(IngestError::OverQuota {
            message: format!(
                "tenant {tenant:?} is sending more than its limit of {what}; retry later"
            ),
            retry_after: Duration::from_secs_f64(secs),
        })
    }
}

/// The memory the tenant may hold of `max_memory_bytes`.
pub(crate) fn memory_share(limits: &TenantLimits, max_memory_bytes: usize) -> usize {
    (max_memory_bytes as f64 * limits.memory_share) as usize
}

impl Quota {
    pub(crate) fn hold(&self, bytes: usize) {
        self.inflight.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn give_back(&self, bytes: usize) {
        self.inflight.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn held(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(items: u64, bytes: usize) -> TenantLimits {
        TenantLimits {
            ingest_items_per_second: items,
            ingest_bytes_per_second: bytes,
            ingest_burst: Duration::from_secs(1),
            ..TenantLimits::default()
        }
    }

    #[test]
    fn a_tenant_gets_its_rate_plus_one_burst_and_is_told_when_to_come_back() {
        let t0 = Instant::now();
        let q = Quota::new(limits(100, 0), t0);
        // The burst (100 items) and one request past it, then refusals until the debt is paid.
        assert!(q.charge("a", 60, 10, t0).is_ok());
        assert!(q.charge("a", 60, 10, t0).is_ok());
        let refused = q.check_rate("a", t0).expect_err("in debt");
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(refused.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.grpc_code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.to_string().contains("ingest_items_per_second"),
            "{refused}"
        );
        assert!(
            q.charge("a", 1, 1, t0).is_err(),
            "a refused tenant is not charged"
        );
        // 20 items in debt: 0.21 s later there is a token again.
        assert!(q.check_rate("a", t0 + Duration::from_millis(150)).is_err());
        assert!(q.check_rate("a", t0 + Duration::from_millis(220)).is_ok());
        // Over ten seconds, what got through is the rate times ten plus the burst.
        let mut sent = 120;
        for ms in (220..10_220).step_by(10) {
            if q.charge("a", 5, 0, t0 + Duration::from_millis(ms)).is_ok() {
                sent += 5;
            }
        }
        assert!(
            (1_100..=1_130).contains(&sent),
            "{sent} items in ~10 s at 100/s"
        );
    }

    #[test]
    fn bytes_have_their_own_rate_and_zero_means_none() {
        let t0 = Instant::now();
        let q = Quota::new(limits(0, 1000), t0);
        assert!(
            q.charge("a", 1_000_000, 999, t0).is_ok(),
            "items are not limited"
        );
        assert!(q.charge("a", 0, 5000, t0).is_ok());
        let refused = q
            .check_rate("a", t0 + Duration::from_secs(1))
            .expect_err("in debt");
        assert!(
            refused.to_string().contains("ingest_bytes_per_second"),
            "{refused}"
        );
        // 3,999 bytes in debt after a second's refill: four more seconds, told as such.
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(4)));
        let open = Quota::new(limits(0, 0), t0);
        for _ in 0..1000 {
            assert!(
                open.charge("a", u64::MAX / 2000, usize::MAX / 2000, t0)
                    .is_ok()
            );
        }
    }

    #[test]
    fn each_tenant_has_its_own_quota_with_its_overrides() {
        let mut config = TenantsConfig::default();
        config.overrides.insert(
            "small".into(),
            sightline_common::tenant::TenantLimitsOverride {
                ingest_items_per_second: Some(10),
                ..Default::default()
            },
        );
        let refused = Family::<QuotaLabels, Counter>::default();
        let quotas = Quotas::new(config, refused.clone());
        let now = Instant::now();
        assert!(quotas.of("small").charge("small", 1000, 0, now).is_ok());
        assert!(quotas.of("small").check_rate("small", now).is_err());
        assert!(quotas.of("big").check_rate("big", now).is_ok());
        assert!(quotas.of("big").charge("big", 1000, 0, now).is_ok());
        assert!(quotas.of("big").check_rate("big", now).is_ok());
        let count = |tenant: &str| {
            refused
                .get_or_create(&QuotaLabels {
                    tenant: tenant.into(),
                    limit: "rate",
                })
                .get()
        };
        assert_eq!((count("small"), count("big")), (1, 0));
    }
}
