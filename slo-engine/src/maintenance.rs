//! Maintenance windows: planned periods (one-off, or recurring daily or on given weekdays in a
//! time zone) during which matching alerts are not notified and, for SLOs that say
//! `exclude_maintenance: true`, events do not count against the error budget.
//!
//! A window applies to an SLO when its matchers match the SLO's alert labels (`slo`,
//! `service` and the SLO's own labels); to an alert when they match the alert's labels.
//! Budget exclusion works on whole minutes: a minute whose start lies in a window is left out
//! of the SLO's counts (the counts stay stored; they are skipped when read).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveTime, TimeZone, Weekday};
use serde::{Deserialize, Serialize};

use crate::matcher::{Matcher, matches_all};
use sightline_common::clock::{DAY, Nanos};

/// A maintenance window as written in the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    pub name: String,
    /// Which SLOs and alerts it covers (every one when empty).
    pub matchers: Vec<Matcher>,
    /// One-off: RFC 3339 start and end.
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// Recurring: `day` or `week`.
    pub every: Option<String>,
    /// For `every = "week"`: the weekdays it starts on (`mon` … `sun`).
    pub days: Vec<String>,
    /// Local start time, `HH:MM`.
    pub start: Option<String>,
    /// How long each occurrence lasts (`2h`).
    pub duration: Option<String>,
    /// IANA time zone of `start` (default UTC).
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Once {
        start: Nanos,
        end: Nanos,
    },
    Recurring {
        /// Weekdays it starts on (all seven for daily windows).
        days: Vec<Weekday>,
        start: NaiveTime,
        duration: Nanos,
        zone: chrono_tz::Tz,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub schedule: Schedule,
}

fn parse_time(s: &str, field: &str) -> Result<Nanos, String> {
    sightline_common::clock::parse_rfc3339(s)
        .ok_or_else(|| format!("{field} {s:?} is not an RFC 3339 time (2026-12-01T02:00:00Z)"))
}

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn weekday(s: &str) -> Result<Weekday, String> {
    let l = s.trim().to_ascii_lowercase();
    WEEK.into_iter()
        .find(|d| {
            let short = d.to_string().to_ascii_lowercase();
            let long = chrono_weekday_name(*d);
            l == short || l == long
        })
        .ok_or_else(|| format!("{s:?} is not a weekday (mon … sun)"))
}

fn chrono_weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

impl MaintenanceConfig {
    /// Checks the window and turns it into a schedule; errors name the window and field.
    pub fn compile(&self) -> Result<MaintenanceWindow, String> {
        let name = if self.name.is_empty() {
            return Err("a maintenance window needs a name".into());
        } else {
            &self.name
        };
        let err = |m: String| format!("maintenance window {name:?}: {m}");
        let once = self.starts_at.is_some() || self.ends_at.is_some();
        let recurring = self.every.is_some()
            || self.start.is_some()
            || self.duration.is_some()
            || !self.days.is_empty()
            || self.time_zone.is_some();
        let schedule = match (once, recurring) {
            (true, true) => {
                return Err(err(
                    "give either starts_at/ends_at (one-off) or every/start/duration (recurring), not both".into(),
                ));
            }
            (false, false) => {
                return Err(err(
                    "no schedule: give starts_at and ends_at, or every, start and duration".into(),
                ));
            }
            (true, false) => {
                let (Some(s), Some(e)) = (&self.starts_at, &self.ends_at) else {
                    return Err(err(
                        "a one-off window needs both starts_at and ends_at".into()
                    ));
                };
                let start = parse_time(s, "starts_at").map_err(err)?;
                let end = parse_time(e, "ends_at").map_err(err)?;
                if end <= start {
                    return Err(err("ends_at must be after starts_at".into()));
                }
                Schedule::Once { start, end }
            }
            (false, true) => {
                let every = self.every.as_deref().unwrap_or("");
                let days = match every {
                    "day" => {
                        if !self.days.is_empty() {
                            return Err(err("days only applies to every = \"week\"".into()));
                        }
                        WEEK.to_vec()
                    }
                    "week" => {
                        if self.days.is_empty() {
                            return Err(err("every = \"week\" needs days, e.g. [\"sat\"]".into()));
                        }
                        self.days
                            .iter()
                            .map(|d| weekday(d))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(err)?
                    }
                    other => {
                        return Err(err(format!(
                            "every must be \"day\" or \"week\", not {other:?}"
                        )));
                    }
                };
                let start = self
                    .start
                    .as_deref()
                    .ok_or_else(|| err("a recurring window needs start (HH:MM)".into()))?;
                let start = NaiveTime::parse_from_str(start.trim(), "%H:%M")
                    .map_err(|_| err(format!("start {start:?} is not HH:MM")))?;
                let duration = self
                    .duration
                    .as_deref()
                    .ok_or_else(|| err("a recurring window needs duration (e.g. 2h)".into()))?;
                let duration = crate::spec::parse_duration(duration).map_err(err)?;
                if duration > DAY {
                    return Err(err("a recurring window lasts at most 1d".into()));
                }
                let zone = match &self.time_zone {
                    None => chrono_tz::UTC,
                    Some(z) => z
                        .parse::<chrono_tz::Tz>()
                        .map_err(|_| err(format!("unknown time zone {z:?}")))?,
                };
                Schedule::Recurring {
                    days,
                    start,
                    duration,
                    zone,
                }
            }
        };
        Ok(MaintenanceWindow {
            name: name.clone(),
            matchers: self.matchers.clone(),
            schedule,
        })
    }
}

/// The instant of a local time; a time that does not exist (skipped by a DST change) starts
/// at the first instant after the gap.
fn local_start(zone: &chrono_tz::Tz, local: chrono::NaiveDateTime) -> Option<Nanos> {
    let mut t = local;
    for _ in 0..=16 {
        if let Some(dt) = zone.from_local_datetime(&t).earliest() {
            return dt.timestamp_nanos_opt();
        }
        t += chrono::Duration::minutes(15);
    }
    None
}

impl MaintenanceWindow {
    /// The occurrence in effect at `t`, as `[start, end)`.
    pub fn occurrence_at(&self, t: Nanos) -> Option<(Nanos, Nanos)> {
        match &self.schedule {
            Schedule::Once { start, end } => (*start <= t && t < *end).then_some((*start, *end)),
            Schedule::Recurring {
                days,
                start,
                duration,
                zone,
            } => {
                let local = zone.timestamp_nanos(t).date_naive();
                // An occurrence lasts at most a day: it began today or yesterday (local).
                [local.pred_opt(), Some(local)]
                    .into_iter()
                    .flatten()
                    .filter(|d| days.contains(&d.weekday()))
                    .filter_map(|d| {
                        let s = local_start(zone, d.and_time(*start))?;
                        (s <= t && t < s + duration).then_some((s, s + duration))
                    })
                    .next()
            }
        }
    }

    pub fn active_at(&self, t: Nanos) -> bool {
        self.occurrence_at(t).is_some()
    }

    pub fn applies_to(&self, labels: &BTreeMap<String, String>) -> bool {
        matches_all(&self.matchers, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_common::clock::{HOUR, MINUTE};

    fn at(s: &str) -> Nanos {
        parse_time(s, "t").expect("valid in this test")
    }

    #[test]
    fn one_off_windows_are_half_open() {
        let w = MaintenanceConfig {
            name: "db-upgrade".into(),
            starts_at: Some("2026-12-01T02:00:00Z".into()),
            ends_at: Some("2026-12-01T04:00:00Z".into()),
            ..Default::default()
        }
        .compile()
        .expect("valid in this test");
        assert!(!w.active_at(at("2026-12-01T01:59:59Z")));
        assert!(w.active_at(at("2026-12-01T02:00:00Z")));
        assert!(!w.active_at(at("2026-12-01T04:00:00Z")));
    }

    #[test]
    fn weekly_windows_follow_their_zone_across_midnight_and_dst() {
        let w = MaintenanceConfig {
            name: "sat-night".into(),
            every: Some("week".into()),
            days: vec!["sat".into()],
            start: Some("23:00".into()),
            duration: Some("2h".into()),
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        }
        .compile()
        .expect("valid in this test");
        // Winter (UTC+1): Saturday 23:00 local = 22:00Z, lasting into Sunday.
        assert!(w.active_at(at("2026-11-28T22:00:00Z")));
        assert!(w.active_at(at("2026-11-28T23:59:00Z")));
        assert!(!w.active_at(at("2026-11-29T00:00:00Z")));
        assert!(!w.active_at(at("2026-11-28T21:59:00Z")));
        assert!(!w.active_at(at("2026-11-27T22:30:00Z"))); // a Friday
        // Summer (UTC+2): 21:00Z.
        assert!(w.active_at(at("2026-07-04T21:00:00Z")));
        assert!(!w.active_at(at("2026-07-04T23:00:00Z")));
        assert_eq!(
            w.occurrence_at(at("2026-07-04T21:30:00Z")),
            Some((
                at("2026-07-04T21:00:00Z"),
                at("2026-07-04T21:00:00Z") + 2 * HOUR
            ))
        );
        let daily = MaintenanceConfig {
            name: "nightly".into(),
            every: Some("day".into()),
            start: Some("03:00".into()),
            duration: Some("30m".into()),
            ..Default::default()
        }
        .compile()
        .expect("valid in this test");
        assert!(daily.active_at(at("2026-11-25T03:29:00Z")));
        // 02:30 does not exist in Berlin on 2027-03-28 (clocks jump 02:00 → 03:00): that
        // night's window starts at 03:00 local (01:00Z) instead of being skipped.
        let gap = MaintenanceConfig {
            name: "gap".into(),
            every: Some("day".into()),
            start: Some("02:30".into()),
            duration: Some("1h".into()),
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        }
        .compile()
        .expect("valid in this test");
        assert!(gap.active_at(at("2027-03-28T01:10:00Z")));
        assert!(!gap.active_at(at("2027-03-28T00:50:00Z")));
        assert!(!daily.active_at(at("2026-11-25T03:30:00Z") + MINUTE));
    }

    #[test]
    fn bad_windows_are_explained() {
        let base = MaintenanceConfig {
            name: "w".into(),
            ..Default::default()
        };
        for (c, want) in [
            (base.clone(), "no schedule"),
            (
                MaintenanceConfig {
                    starts_at: Some("2026-12-01T02:00:00Z".into()),
                    ..base.clone()
                },
                "needs both",
            ),
            (
                MaintenanceConfig {
                    starts_at: Some("2026-12-01T02:00:00Z".into()),
                    ends_at: Some("2026-12-01T01:00:00Z".into()),
                    ..base.clone()
                },
                "after starts_at",
            ),
            (
                MaintenanceConfig {
                    every: Some("week".into()),
                    days: vec!["éé".into(), "caturday".into()],
                    start: Some("02:00".into()),
                    duration: Some("1h".into()),
                    ..base.clone()
                },
                "not a weekday",
            ),
            (
                MaintenanceConfig {
                    every: Some("day".into()),
                    start: Some("2am".into()),
                    duration: Some("1h".into()),
                    ..base.clone()
                },
                "HH:MM",
            ),
            (
                MaintenanceConfig {
                    every: Some("day".into()),
                    start: Some("02:00".into()),
                    duration: Some("1h".into()),
                    time_zone: Some("Mars/Olympus".into()),
                    ..base.clone()
                },
                "unknown time zone",
            ),
        ] {
            let e = c.compile().expect_err("must be refused");
            assert!(e.contains(want) && e.contains("\"w\""), "{e}");
        }
    }
}
