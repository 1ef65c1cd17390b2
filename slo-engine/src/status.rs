//! An SLO's state at an instant: SLI, error budget and burn rates, from summed counts.

use serde::Serialize;

use crate::clock::{DAY, HOUR, MINUTE, Nanos};
use crate::rollup::{Counts, Series};
use crate::window::{Window, trailing};

/// The windows burn rates are reported over.
pub const BURN_WINDOWS: [(&str, Nanos); 7] = [
    ("5m", 5 * MINUTE),
    ("30m", 30 * MINUTE),
    ("1h", HOUR),
    ("2h", 2 * HOUR),
    ("6h", 6 * HOUR),
    ("1d", DAY),
    ("3d", 3 * DAY),
];

/// Burn rate: the error ratio over a window as a multiple of the ratio the objective allows
/// (1 spends the budget exactly over the SLO's window). `None` without events.
pub fn burn_rate(c: Counts, objective: f64) -> Option<f64> {
    let allowed = 1.0 - objective;
    (c.total > 0).then(|| (c.bad() as f64 / c.total as f64) / allowed)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Budget {
    /// Bad events the objective allows for the valid events so far.
    pub allowed_bad: f64,
    pub bad: u64,
    /// Fraction of the budget spent (above 1 when overspent).
    pub consumed: f64,
    /// `1 - consumed` (negative when overspent).
    pub remaining: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BurnRate {
    pub window: &'static str,
    pub good: u64,
    pub total: u64,
    /// `None` ("no data") without events.
    pub burn_rate: Option<f64>,
}

/// SLI, budget and burn rates of one SLO group at `at`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub at: Nanos,
    pub window_start: Nanos,
    pub window_end: Nanos,
    pub good: u64,
    pub total: u64,
    /// Good / valid events over the window; `None` ("no data") without events.
    pub sli: Option<f64>,
    pub budget: Option<Budget>,
    pub burn_rates: Vec<BurnRate>,
    /// When the budget runs out if the last hour's burn rate goes on; `None` when it does not
    /// run out within the window (or there is no data).
    pub exhausted_at: Option<Nanos>,
}

pub fn budget(c: Counts, objective: f64) -> Option<Budget> {
    if c.total == 0 {
        return None;
    }
    let allowed_bad = (1.0 - objective) * c.total as f64;
    let consumed = c.bad() as f64 / allowed_bad;
    Some(Budget {
        allowed_bad,
        bad: c.bad(),
        consumed,
        remaining: 1.0 - consumed,
    })
}

/// The status of `series` under `objective` and `window` at `now`.
pub fn status(series: &Series, objective: f64, window: &Window, now: Nanos) -> Status {
    let (start, end) = window.bounds(now);
    let c = series.sum(start, end);
    let burn_rates: Vec<BurnRate> = BURN_WINDOWS
        .iter()
        .map(|(name, w)| {
            let (from, to) = trailing(now, *w);
            let c = series.sum(from, to);
            BurnRate {
                window: name,
                good: c.good,
                total: c.total,
                burn_rate: burn_rate(c, objective),
            }
        })
        .collect();
    let budget = budget(c, objective);
    let hourly = burn_rates
        .iter()
        .find(|b| b.window == "1h")
        .and_then(|b| b.burn_rate);
    let (_, period_end) = window.period(now);
    let length = window.length(now);
    let exhausted_at = match (&budget, hourly) {
        (Some(b), _) if b.remaining <= 0.0 => Some(now),
        (Some(b), Some(rate)) if rate > 0.0 => {
            // A burn rate of 1 spends the whole budget in one window length.
            let at = now as f64 + b.remaining * length as f64 / rate;
            let limit = match window {
                Window::Rolling(_) => now as f64 + length as f64,
                Window::Calendar { .. } => period_end as f64,
            };
            (at < limit).then_some(at as Nanos)
        }
        _ => None,
    };
    Status {
        at: now,
        window_start: start,
        window_end: end,
        good: c.good,
        total: c.total,
        sli: c.ratio(),
        budget,
        burn_rates,
        exhausted_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SECOND;

    #[test]
    fn quiet_services_have_no_data_not_nan() {
        let s = Series::default();
        let st = status(
            &s,
            0.999,
            &Window::Rolling(30 * DAY),
            1_800_000_000 * SECOND,
        );
        assert_eq!(st.sli, None);
        assert_eq!(st.budget, None);
        assert!(st.burn_rates.iter().all(|b| b.burn_rate.is_none()));
        assert_eq!(st.exhausted_at, None);
    }

    #[test]
    fn budget_and_burn_rate_from_counts() {
        let now = 1_800_000_000 * SECOND;
        let mut s = Series::default();
        // 10,000 events in the last hour, 20 bad: error ratio 0.2% = 2x a 99.9% objective.
        s.add(now, 40 * DAY, now - 10 * MINUTE, Counts::new(9_980, 10_000));
        let st = status(&s, 0.999, &Window::Rolling(30 * DAY), now);
        let one_hour = st.burn_rates.iter().find(|b| b.window == "1h").expect("1h");
        assert!((one_hour.burn_rate.expect("data") - 2.0).abs() < 1e-9);
        let b = st.budget.expect("budget");
        assert!((b.allowed_bad - 10.0).abs() < 1e-9);
        assert!((b.consumed - 2.0).abs() < 1e-9);
        assert_eq!(st.exhausted_at, Some(now), "overspent");
        let five = st.burn_rates.iter().find(|b| b.window == "5m").expect("5m");
        assert_eq!(five.total, 0);
        assert_eq!(five.burn_rate, None);
    }
}
