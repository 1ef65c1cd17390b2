//! An SLO as written, before validation: every value with where it was written and under
//! which field, whichever format it came in (native YAML, [`super::parse`]; OpenSLO,
//! [`crate::openslo`]). [`validate`] turns a draft into an [`Slo`], or reports every problem
//! at the line and field of the user's own file.

use std::collections::BTreeMap;

use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos};
use sightline_store::schema::Table;

use super::{
    Alerting, Expr, Indicator, MetricSelector, Pos, Slo, SpecError, Threshold, Tier, Timeslice,
    parse_duration,
};
use crate::window::{CalendarPeriod, MAX_WINDOW, Window};

/// A value, where it was written, and the field it is known by in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub pos: Pos,
    pub field: String,
}

impl<T> At<T> {
    pub fn new(value: T, pos: Pos, field: impl Into<String>) -> Self {
        Self {
            value,
            pos,
            field: field.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Draft {
    pub name: At<String>,
    pub service: Option<At<String>>,
    pub description: Option<String>,
    /// In percent (99.9).
    pub objective: At<f64>,
    pub window: At<String>,
    pub time_zone: Option<At<String>>,
    pub indicator: At<DraftIndicator>,
    pub group_by: Option<At<String>>,
    pub max_groups: Option<At<usize>>,
    pub alerting: Option<DraftAlerting>,
    pub timeslice: Option<At<DraftTimeslice>>,
    pub exclude_maintenance: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The indicator as written: none, one or several kinds (exactly one is valid).
#[derive(Debug, Clone, Default)]
pub struct DraftIndicator {
    pub spans: Option<DraftEvents>,
    pub logs: Option<DraftEvents>,
    pub metric_ratio: Option<(DraftSelector, DraftSelector)>,
    pub metric_latency: Option<(DraftSelector, At<f64>)>,
}

#[derive(Debug, Clone)]
pub struct DraftEvents {
    pub filter: Option<At<String>>,
    pub good: At<String>,
}

#[derive(Debug, Clone)]
pub struct DraftSelector {
    pub metric: At<String>,
    pub filter: Option<At<String>>,
}

#[derive(Debug, Clone)]
pub struct DraftTimeslice {
    pub slice: At<String>,
    /// A percentage (`99%`).
    pub good_ratio: At<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DraftAlerting {
    pub tiers: Option<Vec<At<DraftTier>>>,
    pub min_events: Option<u64>,
    pub pending_for: Option<At<String>>,
    pub budget_exhausted: Option<bool>,
    pub no_data_after: Option<At<String>>,
}

#[derive(Debug, Clone)]
pub struct DraftTier {
    pub name: At<String>,
    pub severity: At<String>,
    pub long: At<String>,
    pub short: At<String>,
    pub burn_rate: Option<At<f64>>,
    pub budget_spent: Option<At<String>>,
}

/// Checks a draft: the SLO, or every problem found.
pub fn validate(file: &str, draft: Draft) -> Result<Slo, Vec<SpecError>> {
    let mut v = Validator {
        file,
        errors: Vec::new(),
    };
    match v.slo(draft) {
        Some(slo) if v.errors.is_empty() => Ok(slo),
        _ => Err(v.errors),
    }
}

struct Validator<'a> {
    file: &'a str,
    errors: Vec<SpecError>,
}

fn parse_percent(s: &str) -> Option<f64> {
    let v: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    Some(v / 100.0)
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &At<T>, message: impl Into<String>) {
        self.errors
            .push(SpecError::new(self.file, at.pos, &at.field, message));
    }

    fn duration(&mut self, s: &At<String>) -> Option<Nanos> {
        parse_duration(&s.value).map_err(|e| self.error(s, e)).ok()
    }

    fn expr(&mut self, s: &At<String>) -> Option<Expr> {
        if s.value.trim().is_empty() {
            self.error(s, "must be a SQL expression, not empty");
            return None;
        }
        Some(Expr {
            sql: s.value.clone(),
            field: s.field.clone(),
            pos: s.pos,
        })
    }

    fn slo(&mut self, d: Draft) -> Option<Slo> {
        let name = d.name.value.clone();
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid_name {
            self.error(
                &d.name,
                format!(
                    "{name:?} is not a valid name: use 1-128 lowercase letters, digits, '-', '_' \
                     or '.', starting with a letter or digit"
                ),
            );
        }
        let objective = d.objective.value;
        if !(objective > 0.0 && objective < 100.0) {
            self.error(
                &d.objective,
                format!("{objective} is not a percentage between 0 and 100 (exclusive), e.g. 99.9"),
            );
        }
        let window = self.window(&d.window, d.time_zone.as_ref());
        let indicator = self.indicator(&d.indicator);
        let group_by = d.group_by.as_ref().and_then(|g| self.expr(g));
        let max_groups = d.max_groups.as_ref().map_or(100, |m| m.value);
        if let Some(m) = &d.max_groups {
            if d.group_by.is_none() {
                self.error(m, "only meaningful with group_by");
            } else if m.value == 0 || m.value > 10_000 {
                self.error(m, "must be between 1 and 10000");
            }
        }
        let alerting = self.alerting(d.alerting, window.as_ref());
        let timeslice = d.timeslice.as_ref().and_then(|t| self.timeslice(t));
        if let (Some(t), Some(a), Some(raw)) = (timeslice, &alerting, &d.timeslice) {
            let shortest = a.tiers.iter().map(|x| x.short).min().unwrap_or(i64::MAX);
            // A slice is final a minute after it ends; the short window must see finished ones.
            if t.slice + MINUTE >= shortest {
                self.error(
                    &raw.value.slice,
                    format!(
                        "a slice plus the minute it takes to be final must be shorter than the \
                         shortest alert window ({}m), or that tier never sees a finished slice",
                        shortest / MINUTE
                    ),
                );
            }
        }
        let service = d.service.map(|s| s.value).unwrap_or_else(|| name.clone());
        Some(Slo {
            name,
            service,
            description: d.description.unwrap_or_default(),
            objective: objective / 100.0,
            window: window?,
            indicator: indicator?,
            group_by,
            max_groups,
            alerting: alerting?,
            timeslice,
            exclude_maintenance: d.exclude_maintenance,
            labels: d.labels,
            annotations: d.annotations,
            source: self.file.into(),
            pos: d.name.pos,
        })
    }

    fn window(&mut self, w: &At<String>, tz: Option<&At<String>>) -> Option<Window> {
        let zone = match tz {
            Some(t) => match t.value.parse::<chrono_tz::Tz>() {
                Ok(z) => Some((z, t)),
                Err(_) => {
                    self.error(
                        t,
                        format!("{:?} is not an IANA time zone, e.g. Europe/Berlin", t.value),
                    );
                    return None;
                }
            },
            None => None,
        };
        let period = match w.value.trim() {
            "week" => Some(CalendarPeriod::Week),
            "month" => Some(CalendarPeriod::Month),
            "quarter" => Some(CalendarPeriod::Quarter),
            _ => None,
        };
        if let Some(period) = period {
            return Some(Window::Calendar {
                period,
                zone: zone.map_or(chrono_tz::UTC, |(z, _)| z),
            });
        }
        if let Some((_, t)) = zone {
            self.error(
                t,
                "only meaningful with a calendar window (week, month or quarter)",
            );
        }
        let d = match parse_duration(&w.value) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    w,
                    format!("{e}; or a calendar window: week, month or quarter"),
                );
                return None;
            }
        };
        if !(HOUR..=MAX_WINDOW).contains(&d) || d % MINUTE != 0 {
            self.error(w, "a rolling window must be whole minutes, from 1h to 92d");
            return None;
        }
        Some(Window::Rolling(d))
    }

    fn timeslice(&mut self, t: &At<DraftTimeslice>) -> Option<Timeslice> {
        let slice = self.duration(&t.value.slice)?;
        if slice % MINUTE != 0 || slice > HOUR || HOUR % slice != 0 {
            self.error(
                &t.value.slice,
                "a slice must be whole minutes that divide an hour: 1m, 2m, 5m, 10m, 15m, 30m or 1h",
            );
            return None;
        }
        let r = &t.value.good_ratio;
        match parse_percent(&r.value) {
            Some(good_ratio) if good_ratio > 0.0 && good_ratio <= 1.0 => {
                Some(Timeslice { slice, good_ratio })
            }
            _ => {
                self.error(
                    r,
                    format!("{:?} is not a percentage in (0%, 100%], e.g. 99%", r.value),
                );
                None
            }
        }
    }

    fn selector(&mut self, s: &DraftSelector) -> Option<MetricSelector> {
        if s.metric.value.trim().is_empty() {
            self.error(&s.metric, "needs a metric name");
            return None;
        }
        Some(MetricSelector {
            metric: s.metric.value.clone(),
            filter: s.filter.as_ref().and_then(|f| self.expr(f)),
        })
    }

    fn indicator(&mut self, ind: &At<DraftIndicator>) -> Option<Indicator> {
        let i = &ind.value;
        let given = usize::from(i.spans.is_some())
            + usize::from(i.logs.is_some())
            + usize::from(i.metric_ratio.is_some())
            + usize::from(i.metric_latency.is_some());
        if given != 1 {
            self.error(
                ind,
                "give exactly one kind of indicator: spans or logs (each with `good` and an \
                 optional `filter`), metric_ratio (`good` and `total` counters) or \
                 metric_latency (a histogram and a `threshold`)",
            );
            return None;
        }
        if let Some((good, total)) = &i.metric_ratio {
            let good = self.selector(good);
            let total = self.selector(total);
            return Some(Indicator::MetricRatio {
                good: good?,
                total: total?,
            });
        }
        if let Some((selector, threshold)) = &i.metric_latency {
            let selector = self.selector(selector);
            if !threshold.value.is_finite() {
                self.error(threshold, "must be a number");
                return None;
            }
            return Some(Indicator::MetricLatency {
                selector: selector?,
                threshold: threshold.value,
            });
        }
        let (events, table) = match (&i.spans, &i.logs) {
            (Some(e), _) => (e, Table::Spans),
            (_, Some(e)) => (e, Table::Logs),
            _ => return None,
        };
        let filter = events.filter.as_ref().and_then(|f| self.expr(f));
        let good = self.expr(&events.good)?;
        Some(Indicator::Events {
            table,
            filter,
            good,
        })
    }

    fn alerting(
        &mut self,
        raw: Option<DraftAlerting>,
        window: Option<&Window>,
    ) -> Option<Alerting> {
        let mut a = Alerting::default();
        let Some(raw) = raw else {
            return Some(a);
        };
        if let Some(m) = raw.min_events {
            a.min_events = m;
        }
        if let Some(b) = raw.budget_exhausted {
            a.budget_exhausted = b;
        }
        if let Some(p) = &raw.pending_for {
            a.pending_for = if p.value.trim() == "0" || p.value.trim() == "0s" {
                0
            } else {
                self.duration(p)?
            };
        }
        if let Some(n) = &raw.no_data_after {
            a.no_data_after = Some(self.duration(n)?);
        }
        if let Some(tiers) = raw.tiers {
            a.tiers.clear();
            for t in &tiers {
                if let Some(tier) = self.tier(t, window, &a.tiers) {
                    a.tiers.push(tier);
                }
            }
        }
        Some(a)
    }

    fn tier(
        &mut self,
        at: &At<DraftTier>,
        window: Option<&Window>,
        earlier: &[Tier],
    ) -> Option<Tier> {
        let t = &at.value;
        let long = self.duration(&t.long);
        let short = self.duration(&t.short);
        let threshold = match (&t.burn_rate, &t.budget_spent) {
            (Some(r), None) if r.value > 0.0 && r.value.is_finite() => {
                Some(Threshold::BurnRate(r.value))
            }
            (Some(r), None) => {
                self.error(r, "must be positive");
                None
            }
            (None, Some(b)) => match parse_percent(&b.value) {
                Some(f) if f > 0.0 && f <= 1.0 => Some(Threshold::BudgetSpent(f)),
                _ => {
                    self.error(
                        b,
                        format!("{:?} is not a percentage in (0%, 100%], e.g. 2%", b.value),
                    );
                    None
                }
            },
            _ => {
                self.error(
                    at,
                    "give exactly one of burn_rate (e.g. 14.4) or budget_spent (e.g. 2%)",
                );
                None
            }
        };
        if let (Some(l), Some(s)) = (long, short) {
            if s >= l {
                self.error(
                    &t.short,
                    "the short window must be shorter than the long one",
                );
            }
            if l > 3 * DAY {
                self.error(&t.long, "burn-rate windows can be at most 3d");
            }
        }
        if let Some(w) = window
            && let (Some(l), Some(Threshold::BudgetSpent(_))) = (long, threshold)
            && l > w.nominal_length()
        {
            self.error(&t.long, "longer than the SLO's window");
        }
        if !matches!(t.severity.value.as_str(), "page" | "ticket") {
            self.error(
                &t.severity,
                format!("{:?}: use page or ticket", t.severity.value),
            );
        }
        if earlier.iter().any(|x| x.name == t.name.value) {
            self.error(&t.name, "two tiers have this name");
        }
        Some(Tier {
            name: t.name.value.clone(),
            severity: t.severity.value.clone(),
            long: long?,
            short: short?,
            threshold: threshold?,
        })
    }
}
