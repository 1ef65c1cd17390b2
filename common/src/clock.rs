//! Time, injected: the parts whose behaviour depends on time (SLO windows, alert timing,
//! retries and backoff) never read the system clock themselves but take a [`Clock`], so tests
//! can run days of simulated traffic in milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Nanoseconds since the Unix epoch, UTC.
pub type Nanos = i64;

pub const SECOND: Nanos = 1_000_000_000;
pub const MINUTE: Nanos = 60 * SECOND;
pub const HOUR: Nanos = 60 * MINUTE;
pub const DAY: Nanos = 24 * HOUR;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Nanos;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        now()
    }
}

/// The system's wall clock now, for the parts that need no injected time (file names,
/// accepted time windows of incoming data).
pub fn now() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A duration in nanoseconds, at most 100 years (so that `now + nanos(d)` cannot overflow).
pub fn nanos(d: std::time::Duration) -> Nanos {
    const CAP: Nanos = 100 * 365 * DAY;
    i64::try_from(d.as_nanos()).map_or(CAP, |n| n.min(CAP))
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Nanos) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }

    pub fn set(&self, t: Nanos) {
        self.0.store(t, Ordering::Release);
    }

    pub fn advance(&self, by: Nanos) -> Nanos {
        self.0.fetch_add(by, Ordering::AcqRel) + by
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.0.load(Ordering::Acquire)
    }
}

/// `t` rounded down to a multiple of `step`.
pub fn floor(t: Nanos, step: Nanos) -> Nanos {
    t.div_euclid(step) * step
}

/// Renders `t` as RFC 3339 UTC (`2026-11-28T10:00:00Z`).
pub fn rfc3339(t: Nanos) -> String {
    chrono::DateTime::from_timestamp_nanos(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An RFC 3339 time in Unix nanoseconds (`None` if it is not one, or outside 1677–2262).
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_rounds_towards_minus_infinity() {
        assert_eq!(floor(61 * SECOND, MINUTE), MINUTE);
        assert_eq!(floor(-1, MINUTE), -MINUTE);
    }

    #[test]
    fn manual_clocks_share_their_time() {
        let a = ManualClock::new(5);
        let b = a.clone();
        a.advance(10);
        assert_eq!(b.now(), 15);
    }
}
