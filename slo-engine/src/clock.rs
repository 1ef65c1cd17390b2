//! Time, injected: the engine never reads the system clock itself, so tests can run days of
//! simulated traffic in milliseconds.

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
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }
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
