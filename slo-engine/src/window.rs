//! SLO windows: rolling (the last N days) and calendar (this week, month or quarter in a time
//! zone).
//!
//! A window ends at the end of the current minute, so the minute in progress counts. Counts
//! are kept per minute for the last [`FINE_HORIZON`] and per [`COARSE`] (15 minutes) before
//! that, so a rolling window longer than the fine horizon starts at a 15-minute boundary: a
//! 30d window covers 30 days plus up to 14 minutes. Calendar periods start at a 15-minute
//! boundary in UTC in every time zone, so they are exact.

use chrono::{Datelike, NaiveDate, TimeZone};

use sightline_common::clock::{DAY, MINUTE, Nanos, floor};

/// Counts are per minute this far back (the longest burn-rate window, 3 days, plus margin).
pub const FINE_HORIZON: Nanos = 3 * DAY + 2 * 60 * MINUTE;
/// Resolution of counts older than the fine horizon.
pub const COARSE: Nanos = 15 * MINUTE;
/// The longest window: a quarter.
pub const MAX_WINDOW: Nanos = 92 * DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarPeriod {
    Week,
    Month,
    Quarter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Rolling(Nanos),
    /// Weeks start on Monday.
    Calendar {
        period: CalendarPeriod,
        zone: chrono_tz::Tz,
    },
}

/// The end of the window that contains `now`: the end of its minute.
pub fn window_end(now: Nanos) -> Nanos {
    floor(now, MINUTE) + MINUTE
}

/// `[start, end)` of a window of `length` ending at the minute of `now`, with the rounding
/// described in the module docs.
pub fn trailing(now: Nanos, length: Nanos) -> (Nanos, Nanos) {
    let end = window_end(now);
    let start = end - length;
    if length > FINE_HORIZON {
        (floor(start, COARSE), end)
    } else {
        (start, end)
    }
}

impl Window {
    /// `[start, end)` of the window at `now`.
    pub fn bounds(&self, now: Nanos) -> (Nanos, Nanos) {
        match *self {
            Window::Rolling(d) => trailing(now, d),
            Window::Calendar { .. } => (self.period(now).0, window_end(now)),
        }
    }

    /// The whole budget period containing `now`: for a rolling window the window itself, for a
    /// calendar window the period from its start to its end (in the future).
    pub fn period(&self, now: Nanos) -> (Nanos, Nanos) {
        match *self {
            Window::Rolling(d) => trailing(now, d),
            Window::Calendar { period, zone } => calendar_period(period, zone, now),
        }
    }

    /// The length used to scale burn-rate thresholds.
    pub fn length(&self, now: Nanos) -> Nanos {
        let (s, e) = self.period(now);
        e - s
    }

    /// A length that does not depend on the date (for validation).
    pub fn nominal_length(&self) -> Nanos {
        match *self {
            Window::Rolling(d) => d,
            Window::Calendar { period, .. } => match period {
                CalendarPeriod::Week => 7 * DAY,
                CalendarPeriod::Month => 28 * DAY,
                CalendarPeriod::Quarter => 90 * DAY,
            },
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Window::Rolling(d) if d % DAY == 0 => format!("{}d", d / DAY),
            Window::Rolling(d) => format!("{}m", d / MINUTE),
            Window::Calendar { period, zone } => {
                let p = match period {
                    CalendarPeriod::Week => "week",
                    CalendarPeriod::Month => "month",
                    CalendarPeriod::Quarter => "quarter",
                };
                format!("{p} ({})", zone.name())
            }
        }
    }
}

fn calendar_period(period: CalendarPeriod, zone: chrono_tz::Tz, now: Nanos) -> (Nanos, Nanos) {
    let local = chrono::DateTime::from_timestamp_nanos(now)
        .with_timezone(&zone)
        .date_naive();
    let (first, next) = match period {
        CalendarPeriod::Week => {
            let monday =
                local - chrono::Days::new(u64::from(local.weekday().num_days_from_monday()));
            (monday, monday + chrono::Days::new(7))
        }
        CalendarPeriod::Month => {
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local);
            (first, first + chrono::Months::new(1))
        }
        CalendarPeriod::Quarter => {
            let month = (local.month() - 1) / 3 * 3 + 1;
            let first = NaiveDate::from_ymd_opt(local.year(), month, 1).unwrap_or(local);
            (first, first + chrono::Months::new(3))
        }
    };
    (midnight(zone, first), midnight(zone, next))
}

/// The first instant of `date` in `zone` (the earliest one if midnight is ambiguous; the end of
/// a gap if midnight is skipped by a DST change).
fn midnight(zone: chrono_tz::Tz, date: NaiveDate) -> Nanos {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..8 {
        if let Some(dt) = zone.from_local_datetime(&t).earliest() {
            return dt.timestamp_nanos_opt().unwrap_or_default();
        }
        t += chrono::Duration::minutes(15);
    }
    date.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_common::clock::HOUR;

    fn at(s: &str) -> Nanos {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_nanos_opt()
            .expect("range")
    }

    #[test]
    fn rolling_windows_end_with_the_current_minute() {
        let now = at("2026-11-28T12:00:30Z");
        assert_eq!(
            trailing(now, 5 * MINUTE),
            (at("2026-11-28T11:56:00Z"), at("2026-11-28T12:01:00Z"))
        );
        // Longer than the fine horizon: starts at a 15-minute boundary.
        let now = at("2026-11-28T12:07:30Z");
        assert_eq!(
            trailing(now, 30 * DAY),
            (at("2026-10-29T12:00:00Z"), at("2026-11-28T12:08:00Z"))
        );
    }

    #[test]
    fn calendar_months_and_quarters_in_a_time_zone() {
        let w = Window::Calendar {
            period: CalendarPeriod::Month,
            zone: chrono_tz::Europe::Berlin,
        };
        // 23:30 UTC on Nov 30 is already December in Berlin.
        let (s, e) = w.period(at("2026-11-30T23:30:00Z"));
        assert_eq!(s, at("2026-11-30T23:00:00Z"));
        assert_eq!(e, at("2026-12-31T23:00:00Z"));
        let q = Window::Calendar {
            period: CalendarPeriod::Quarter,
            zone: chrono_tz::UTC,
        };
        assert_eq!(
            q.period(at("2026-05-17T08:00:00Z")),
            (at("2026-04-01T00:00:00Z"), at("2026-07-01T00:00:00Z"))
        );
        let wk = Window::Calendar {
            period: CalendarPeriod::Week,
            zone: chrono_tz::Asia::Kathmandu,
        };
        let (s, e) = wk.period(at("2026-11-28T12:00:00Z"));
        assert_eq!(s, at("2026-11-22T18:15:00Z"), "Monday 00:00 at +05:45");
        assert_eq!(e - s, 7 * DAY);
        assert_eq!(s % COARSE, 0);
    }

    #[test]
    fn a_month_across_a_dst_change_is_not_a_whole_number_of_days() {
        let w = Window::Calendar {
            period: CalendarPeriod::Month,
            zone: chrono_tz::Europe::Berlin,
        };
        let len = w.length(at("2026-10-15T12:00:00Z"));
        assert_eq!(len, 31 * DAY + HOUR);
    }
}
