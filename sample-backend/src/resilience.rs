//! What keeps a caller up when what it calls is not: a circuit breaker and a token bucket.

use std::time::{Duration, Instant};

/// A circuit breaker: after `threshold` consecutive failures, calls fail at once for
/// `cooldown`; then one trial call decides. A trial that never reports back (its request was
/// cancelled) expires after another cooldown, so the breaker cannot stay stuck open.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial_since: Option<Instant>,
    threshold: u32,
    cooldown: Duration,
}

/// What [`Breaker::allow`] granted: a normal call, or the trial of an open breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Normal,
    Trial,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            failures: 0,
            open_until: None,
            trial_since: None,
            threshold,
            cooldown,
        }
    }

    /// Whether a call may go out now, and as what.
    pub fn allow(&mut self, now: Instant) -> Option<Permit> {
        match self.open_until {
            None => Some(Permit::Normal),
            Some(t) if now < t => None,
            Some(_) if self.trial_since.is_some_and(|s| now < s + self.cooldown) => None,
            Some(_) => {
                self.trial_since = Some(now);
                Some(Permit::Trial)
            }
        }
    }

    /// A call's result. While the breaker is open only the trial's result counts (a late
    /// answer to a call made before it opened does not close it).
    pub fn record(&mut self, permit: Permit, ok: bool, now: Instant) -> &'static str {
        let open = self.open_until.is_some();
        if open && permit != Permit::Trial {
            return "";
        }
        if ok {
            *self = Self::new(self.threshold, self.cooldown);
            return if open { "closed" } else { "" };
        }
        self.failures += 1;
        if open || self.failures >= self.threshold {
            self.trial_since = None;
            self.open_until = Some(now + self.cooldown);
            return "opened";
        }
        ""
    }

    pub fn state(&self, now: Instant) -> &'static str {
        match self.open_until {
            None => "closed",
            Some(t) if now < t => "open",
            Some(_) => "half-open",
        }
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_and_closes_after_a_good_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        let s = Duration::from_secs;
        for _ in 0..2 {
            assert_eq!(b.allow(t0), Some(Permit::Normal));
            assert_eq!(b.record(Permit::Normal, false, t0), "");
        }
        assert_eq!(b.record(Permit::Normal, false, t0), "opened");
        assert_eq!(b.allow(t0 + s(5)), None);
        // A late success of a call made before it opened does not close it.
        assert_eq!(b.record(Permit::Normal, true, t0 + s(6)), "");
        assert_eq!(b.allow(t0 + s(11)), Some(Permit::Trial), "a trial");
        assert_eq!(b.allow(t0 + s(11)), None, "only one");
        // A trial that never reports back expires after a cooldown.
        assert_eq!(b.allow(t0 + s(22)), Some(Permit::Trial));
        assert_eq!(b.record(Permit::Trial, true, t0 + s(22)), "closed");
        assert_eq!(b.state(t0 + s(22)), "closed");
    }

    #[test]
    fn the_token_bucket_refills() {
        let mut r = RateLimiter::new(10.0, 2.0);
        let t = Instant::now();
        assert!(r.take(t) && r.take(t));
        assert!(!r.take(t));
        assert!(r.take(t + Duration::from_millis(150)));
    }
}
