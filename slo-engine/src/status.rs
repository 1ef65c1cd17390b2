//! An SLO's state at an instant: SLI, error budget and burn rates, from summed counts.

use serde::Serialize;

use crate::rollup::{Counts, Series};
use crate::window::{COARSE, FINE_HORIZON, MAX_WINDOW, Window, trailing};
use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos, floor};

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
    /// While budget remains: when it runs out if the last hour's burn rate goes on; `None`
    /// when it does not run out within the window (or there is no data, or it is spent).
    pub exhausted_at: Option<Nanos>,
    /// While the budget is spent: since when (the start of the minute, or of the 15 minutes
    /// for counts older than the per-minute ones, in which it ran out). `None` otherwise, and
    /// from [`status`]: only the views fill it in (with [`exhausted_since`]), so the
    /// evaluation tick never walks back through the counts.
    pub exhausted_since: Option<Nanos>,
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
        (Some(b), _) if b.remaining <= 0.0 => None,
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
        exhausted_since: None,
    }
}

fn spent(c: Counts, objective: f64) -> bool {
    budget(c, objective).is_some_and(|b| b.remaining <= 0.0)
}

/// While the budget of the window at `now` is spent: the start of the time slice in which it
/// ran out, that is the end of the latest window before `now` that still had budget left.
/// `sum(from, to)` counts events in `[from, to)`; counts are per minute from `fine_from` on
/// and per 15 minutes before. Walks back one slice at a time, adjusting one running sum, so it
/// costs one step per minute of the fine horizon and per 15 minutes before, at most.
pub fn exhausted_since(
    sum: impl Fn(Nanos, Nanos) -> Counts,
    fine_from: Nanos,
    objective: f64,
    window: &Window,
    now: Nanos,
) -> Option<Nanos> {
    let (mut start, mut end) = window.bounds(now);
    let mut c = sum(start, end);
    if !spent(c, objective) {
        return None;
    }
    // One step per minute of the fine counts and per 15 minutes of the longest window.
    let most = FINE_HORIZON / MINUTE + MAX_WINDOW / COARSE + 2;
    for _ in 0..most {
        let earlier = if end - MINUTE >= fine_from {
            end - MINUTE
        } else if end % COARSE != 0 {
            floor(end, COARSE)
        } else {
            end - COARSE
        };
        // The window that ends at `earlier`: its events are this one's, less the slice
        // between the ends, plus what its (earlier or equal) start adds.
        if earlier <= start {
            // Back at the start of a calendar period: spent since its first slice.
            return Some(start);
        }
        let (earlier_start, _) = window.bounds(earlier - 1);
        if earlier_start < fine_from && earlier_start % COARSE != 0 {
            // A short window reaching past the per-minute counts: spent at least since `end`.
            return Some(end);
        }
        if end % COARSE != 0 && earlier < fine_from {
            // From the per-minute counts to the 15-minute ones: a part of a 15-minute slice
            // cannot be taken away, so count this window afresh.
            c = sum(earlier_start, earlier);
        } else {
            let gone = sum(earlier, end);
            c.good = c.good.saturating_sub(gone.good);
            c.total = c.total.saturating_sub(gone.total);
            if earlier_start < start {
                c.add(sum(earlier_start, start));
            }
        }
        if !spent(c, objective) {
            return Some(earlier);
        }
        (start, end) = (earlier_start, earlier);
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_common::clock::SECOND;

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
        assert_eq!(st.exhausted_at, None, "overspent: no forecast");
        let since = exhausted_since(
            |from, to| s.sum(from, to),
            s.fine_from(),
            0.999,
            &Window::Rolling(30 * DAY),
            now,
        );
        assert!(since.is_some_and(|t| t <= now), "overspent: since when");
        let five = st.burn_rates.iter().find(|b| b.window == "5m").expect("5m");
        assert_eq!(five.total, 0);
        assert_eq!(five.burn_rate, None);
    }
}

#[cfg(test)]
mod reference {
    //! Budgets and burn rates against a brute-force reference computed from raw events, for
    //! random traffic: uneven, with gaps and long zero-traffic periods.
    use super::*;
    use crate::window::CalendarPeriod;
    use proptest::prelude::*;
    use sightline_common::clock::SECOND;

    fn in_window(events: &[(Nanos, bool)], from: Nanos, to: Nanos) -> Counts {
        let mut c = Counts::default();
        for (t, good) in events {
            if *t >= from && *t < to {
                c.total += 1;
                c.good += u64::from(*good);
            }
        }
        c
    }

    fn close(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            _ => false,
        }
    }

    /// Bursts: (start offset, length, events, error share in percent).
    fn traffic() -> impl Strategy<Value = Vec<(i64, i64, u32, u32)>> {
        prop::collection::vec(
            (0i64..(34 * DAY), 0i64..(6 * HOUR), 0u32..300, 0u32..101),
            0..25,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn status_matches_brute_force(
            bursts in traffic(),
            objective in prop::sample::select(vec![0.9, 0.99, 0.995, 0.999, 0.9999]),
            calendar in any::<bool>(),
            now_offset in 0i64..DAY,
        ) {
            let base = 1_790_000_000 * SECOND;
            let now = base + 34 * DAY + now_offset;
            let mut events = Vec::new();
            for (start, len, n, err) in bursts {
                for i in 0..n {
                    let t = base + start + len * i64::from(i) / i64::from(n.max(1));
                    let good = (i * 100 / n.max(1)) >= err;
                    events.push((t, good));
                }
            }
            let mut series = Series::default();
            for (t, good) in &events {
                series.add(now, 40 * DAY, *t, Counts::new(u64::from(*good), 1));
            }
            series.trim(now, 40 * DAY);
            let window = if calendar {
                Window::Calendar { period: CalendarPeriod::Month, zone: chrono_tz::America::New_York }
            } else {
                Window::Rolling(30 * DAY)
            };
            let st = status(&series, objective, &window, now);
            let (from, to) = window.bounds(now);
            let c = in_window(&events, from, to);
            prop_assert_eq!((st.good, st.total), (c.good, c.total));
            prop_assert!(close(st.sli, (c.total > 0).then(|| c.good as f64 / c.total as f64)));
            let consumed = (c.total > 0)
                .then(|| (c.total - c.good) as f64 / ((1.0 - objective) * c.total as f64));
            prop_assert!(close(st.budget.as_ref().map(|b| b.consumed), consumed));
            for b in &st.burn_rates {
                let w = BURN_WINDOWS.iter().find(|(n, _)| *n == b.window).map(|(_, w)| *w);
                let (f, t) = trailing(now, w.unwrap_or_default());
                let c = in_window(&events, f, t);
                let want = (c.total > 0)
                    .then(|| ((c.total - c.good) as f64 / c.total as f64) / (1.0 - objective));
                prop_assert!(close(b.burn_rate, want), "{} {:?} {:?}", b.window, b.burn_rate, want);
                prop_assert!(b.burn_rate.is_none_or(|r| r.is_finite()));
            }
            // Spent since: every window end on the slice grid from then to now has its
            // budget spent, and the one ending then does not (or begins the period).
            let spent_at = |end: Nanos| {
                let (f, _) = window.bounds(end - 1);
                spent(in_window(&events, f, end), objective)
            };
            let since = exhausted_since(
                |f, t| series.sum(f, t),
                series.fine_from(),
                objective,
                &window,
                now,
            );
            prop_assert_eq!(since.is_some(), spent_at(to));
            if let Some(since) = since {
                prop_assert!(since == from || !spent_at(since), "not spent at {since}");
                let mut end = to;
                while end > since {
                    prop_assert!(spent_at(end), "spent at {end}, since {since}");
                    end = if end - MINUTE >= series.fine_from() {
                        end - MINUTE
                    } else if end % COARSE != 0 {
                        floor(end, COARSE)
                    } else {
                        end - COARSE
                    };
                }
                prop_assert!(st.exhausted_at.is_none());
            }
        }
    }
}
