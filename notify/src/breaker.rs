//! A receiver's circuit breaker, and how long a failed notification waits before its next
//! attempt (exponential backoff with jitter, `Retry-After`, capped by `max_age`). Pure: time
//! is passed in, so both are tested without waiting.

use sightline_common::clock::{Nanos, nanos};

use crate::config::DeliveryConfig;
use crate::outbox::GroupId;

/// A receiver's circuit breaker: after `breaker_failures` retryable failures in a row it
/// opens for `breaker_cooldown`, then lets one trial request through; a failed trial opens it
/// again for twice as long (up to `max_backoff`), a success closes it.
#[derive(Debug)]
pub(crate) struct Breaker {
    failures: u32,
    pub(crate) open_until: Option<Nanos>,
    cooldown: Nanos,
    /// The group whose attempt is the trial request.
    probe: Option<GroupId>,
}

impl Breaker {
    pub(crate) fn new(cooldown: Nanos) -> Self {
        Self {
            failures: 0,
            open_until: None,
            cooldown,
            probe: None,
        }
    }

    pub(crate) fn try_acquire(&mut self, now: Nanos, group: &GroupId) -> bool {
        match self.open_until {
            None => true,
            Some(t) if now < t => false,
            Some(_) if self.probe.is_some() => false,
            Some(_) => {
                self.probe = Some(group.clone());
                true
            }
        }
    }

    pub(crate) fn success(&mut self, base: Nanos) {
        *self = Self::new(base);
    }

    /// Returns true when this failure opened the breaker. Only the trial request's failure
    /// reopens an open breaker; late failures of attempts started before it opened do not.
    pub(crate) fn failure(
        &mut self,
        now: Nanos,
        group: &GroupId,
        threshold: u32,
        max: Nanos,
    ) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.probe.as_ref() == Some(group) {
            self.probe = None;
            self.cooldown = (self.cooldown.saturating_mul(2)).min(max.max(self.cooldown));
            self.open_until = Some(now.saturating_add(self.cooldown));
            return true;
        }
        if self.open_until.is_none() && self.failures >= threshold {
            self.open_until = Some(now.saturating_add(self.cooldown));
            return true;
        }
        false
    }
}

/// How long to wait after the `attempts`th failed attempt: `initial_backoff` doubled per
/// earlier attempt up to `max_backoff`, of which a random half to all (`unit` is uniform in
/// [0, 1)) so that the retries of many groups spread out; at least what the receiver asked for
/// (`Retry-After`), and never longer than `max_age` (waiting longer would only delay giving
/// up).
pub(crate) fn retry_delay(
    policy: &DeliveryConfig,
    attempts: u32,
    retry_after: Option<std::time::Duration>,
    unit: f64,
) -> Nanos {
    let max = nanos(policy.max_backoff);
    let exp = attempts.saturating_sub(1).min(30);
    let backoff = nanos(policy.initial_backoff)
        .saturating_mul(1i64 << exp)
        .min(max);
    let jittered = backoff / 2 + (unit.clamp(0.0, 1.0) * (backoff / 2) as f64) as i64;
    retry_after
        .map_or(jittered, |r| jittered.max(nanos(r)))
        .min(nanos(policy.max_age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_breaker_opens_probes_and_closes() {
        let g = ("r".to_string(), "g1".to_string());
        let other = ("r".to_string(), "g2".to_string());
        let mut b = Breaker::new(10);
        for t in 0..4 {
            assert!(b.try_acquire(t, &g));
            assert!(!b.failure(t, &g, 5, 100));
        }
        assert!(b.failure(4, &g, 5, 100), "fifth failure opens");
        assert!(!b.try_acquire(13, &g));
        assert!(b.try_acquire(14, &g), "one trial after the cooldown");
        assert!(!b.try_acquire(14, &other), "only one");
        // A late failure of another group's older attempt is not the trial's answer.
        assert!(!b.failure(14, &other, 5, 100));
        assert!(b.probe.is_some());
        assert!(b.failure(15, &g, 5, 100));
        assert_eq!(b.open_until, Some(35), "cooldown doubled");
        assert!(b.try_acquire(35, &other));
        b.success(10);
        assert!(b.try_acquire(36, &g) && b.open_until.is_none());
    }

    #[test]
    fn backoff_doubles_with_jitter_within_its_bounds_and_respects_retry_after_and_max_age() {
        let policy = DeliveryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_age: Duration::from_secs(300),
            ..DeliveryConfig::default()
        };
        let s = |n: i64| n * 1_000_000_000;
        for attempts in 1..=10u32 {
            let full = s(1 << (attempts - 1)).min(s(60));
            let low = retry_delay(&policy, attempts, None, 0.0);
            let high = retry_delay(&policy, attempts, None, 0.999_999);
            assert_eq!(low, full / 2, "attempt {attempts}: at least half");
            assert!(
                high <= full && high > full * 99 / 100,
                "attempt {attempts}: at most all"
            );
            for _ in 0..100 {
                let d = retry_delay(&policy, attempts, None, rand::random::<f64>());
                assert!((full / 2..=full).contains(&d), "attempt {attempts}: {d}");
            }
        }
        // Retry-After is honoured when longer, and the wait never passes max_age.
        assert_eq!(
            retry_delay(&policy, 1, Some(Duration::from_secs(30)), 0.5),
            s(30)
        );
        assert_eq!(
            retry_delay(&policy, 1, Some(Duration::from_secs(3600)), 0.5),
            s(300)
        );
        assert_eq!(retry_delay(&policy, 40, None, 1.0), s(60), "no overflow");
    }
}
