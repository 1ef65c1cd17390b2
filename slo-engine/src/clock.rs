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

/// An RFC 3339 time in Unix nanoseconds (`None` if it is not one, or outside 1677–2262).
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`, or a bare number of seconds.
pub fn parse_std_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let units: [(&str, u64); 5] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    let (num, unit_ms) = units
        .iter()
        .find_map(|(suffix, ms)| t.strip_suffix(suffix).map(|n| (n, *ms)))
        .unwrap_or((t, 1_000));
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration {s:?}: expected e.g. 500ms, 30s, 5m, 2h or 7d"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    let ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
    Ok(std::time::Duration::from_millis(ms))
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
