//! SLO specs: the native YAML format (documented in `docs/slo.md`), parsed with positions so
//! that every problem is reported with its line and field.
//!
//! A file holds one or more YAML documents (separated by `---`), each one SLO:
//!
//! ```yaml
//! name: checkout-availability
//! service: checkout
//! objective: 99.9          # percent of valid events that must be good
//! window: 30d              # rolling (e.g. 7d, 28d, 4w) or calendar: week, month, quarter
//! indicator:
//!   spans:
//!     filter: "service_name = 'checkout' AND kind = 'server'"
//!     good: "status_code != 'error'"
//! ```

pub mod draft;
mod native;
pub mod render;

use std::collections::BTreeMap;
use std::fmt;

use serde_saphyr::Spanned;
use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos, SECOND};
use sightline_store::schema::Table;

use crate::window::Window;

/// A problem in a spec file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The field, as a dotted path (`indicator.spans.good`); empty for syntax errors.
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(file: &str, pos: Pos, field: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: pos.line,
            column: pos.column,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Where a value was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Self {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// A SQL expression from a spec, with its position (for errors found when it is compiled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub sql: String,
    pub field: String,
    pub pos: Pos,
}

/// A validated SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub service: String,
    pub description: String,
    /// The fraction of valid events that must be good, in (0, 1).
    pub objective: f64,
    pub window: Window,
    pub indicator: Indicator,
    /// One budget per value of this expression (e.g. `http_route`).
    pub group_by: Option<Expr>,
    /// Groups past this many are counted together as [`OTHER_GROUP`].
    pub max_groups: usize,
    pub alerting: Alerting,
    /// A timeslice SLO: the budget counts slices, not events.
    pub timeslice: Option<Timeslice>,
    /// Events in minutes covered by a matching maintenance window do not count.
    pub exclude_maintenance: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The file it came from, and where.
    pub source: String,
    pub pos: Pos,
}

impl Slo {
    /// The labels maintenance windows of the whole SLO are matched against: `slo`,
    /// `service` and the SLO's own labels.
    pub fn match_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("slo".into(), self.name.clone());
        l.insert("service".into(), self.service.clone());
        l
    }
}

/// Timeslice SLOs: time is cut into slices; a slice is good when the share of good events in
/// it reaches `good_ratio` (with a latency indicator, "p99 under 300 ms in this minute"), and
/// the objective is the share of good slices. Slices without valid events do not count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeslice {
    pub slice: Nanos,
    pub good_ratio: f64,
}

/// Where several groups past `max_groups` are counted.
pub const OTHER_GROUP: &str = "__other__";

/// Good and valid events.
#[derive(Debug, Clone, PartialEq)]
pub enum Indicator {
    /// Events are rows of a table (spans or logs): valid when `filter` holds (every row when
    /// absent), good when `good` also holds. Both are SQL expressions on the table's columns.
    Events {
        table: Table,
        filter: Option<Expr>,
        good: Expr,
    },
    /// Good and valid events are the increases of two monotonic counters (OTLP sums, delta or
    /// cumulative temporality; cumulative resets are detected).
    MetricRatio {
        good: MetricSelector,
        total: MetricSelector,
    },
    /// Valid events are a histogram's observations; good ones are those at or under
    /// `threshold`, which must be one of the histogram's bucket bounds.
    MetricLatency {
        selector: MetricSelector,
        threshold: f64,
    },
}

/// Data points of one metric, optionally filtered by an SQL condition on `metrics` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSelector {
    pub metric: String,
    pub filter: Option<Expr>,
}

impl Indicator {
    pub fn table(&self) -> Table {
        match self {
            Indicator::Events { table, .. } => *table,
            Indicator::MetricRatio { .. } | Indicator::MetricLatency { .. } => Table::Metrics,
        }
    }

    /// The metric names it reads (metric indicators only).
    pub fn metrics(&self) -> Vec<&str> {
        match self {
            Indicator::Events { .. } => Vec::new(),
            Indicator::MetricRatio { good, total } => {
                let mut m = vec![good.metric.as_str(), total.metric.as_str()];
                m.dedup();
                m
            }
            Indicator::MetricLatency { selector, .. } => vec![selector.metric.as_str()],
        }
    }
}

/// When and how an SLO alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    pub tiers: Vec<Tier>,
    /// Minimum-traffic gate: a burn-rate tier fires only with at least this many valid events
    /// in its long window.
    pub min_events: u64,
    /// How long a condition must hold before the alert fires.
    pub pending_for: Nanos,
    /// Alert when the whole budget of the window is spent.
    pub budget_exhausted: bool,
    /// Alert when no valid event arrived for this long.
    pub no_data_after: Option<Nanos>,
}

/// A multiwindow burn-rate alert: fires when the burn rate is at or above the threshold over
/// both the long and the short window.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub severity: String,
    pub long: Nanos,
    pub short: Nanos,
    pub threshold: Threshold,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A fixed burn rate.
    BurnRate(f64),
    /// The burn rate that spends this fraction of the window's budget in the long window:
    /// `fraction × window / long` (the SRE Workbook's way, so tiers scale with the window).
    BudgetSpent(f64),
}

impl Tier {
    /// The burn-rate threshold for an SLO whose window is `window` long.
    pub fn burn_rate(&self, window: Nanos) -> f64 {
        match self.threshold {
            Threshold::BurnRate(r) => r,
            Threshold::BudgetSpent(f) => f * window as f64 / self.long as f64,
        }
    }
}

/// The SRE Workbook's tiers: with a 30-day window, page at 14.4× over 1h and 5m and at 6× over
/// 6h and 30m; ticket at 3× over 1d and 2h and at 1× over 3d and 6h.
pub fn default_tiers() -> Vec<Tier> {
    let tier = |name: &str, severity: &str, fraction: f64, long: Nanos, short: Nanos| Tier {
        name: name.into(),
        severity: severity.into(),
        long,
        short,
        threshold: Threshold::BudgetSpent(fraction),
    };
    vec![
        tier("page-1h", "page", 0.02, HOUR, 5 * MINUTE),
        tier("page-6h", "page", 0.05, 6 * HOUR, 30 * MINUTE),
        tier("ticket-1d", "ticket", 0.10, DAY, 2 * HOUR),
        tier("ticket-3d", "ticket", 0.10, 3 * DAY, 6 * HOUR),
    ]
}

impl Default for Alerting {
    fn default() -> Self {
        Self {
            tiers: default_tiers(),
            min_events: 10,
            pending_for: 0,
            budget_exhausted: true,
            no_data_after: None,
        }
    }
}

/// Parses `30s`, `5m`, `1h`, `7d`, `4w` into nanoseconds.
pub fn parse_duration(s: &str) -> Result<Nanos, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_ns = match unit.trim() {
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => {
            return Err(format!(
                "{s:?} is not a duration: expected a whole number and a unit (s, m, h, d, w), \
                 e.g. 5m or 30d"
            ));
        }
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: the number is missing or too large"))?;
    if n <= 0 {
        return Err(format!("{s:?}: a duration must be positive"));
    }
    n.checked_mul(unit_ns)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A YAML syntax or shape error, at its position (no field).
pub(crate) fn yaml_error(file: &str, e: &serde_saphyr::Error) -> SpecError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = e.to_string();
    // The rendered error may repeat the position and quote the source; keep its first line.
    let mut message = message.lines().next().unwrap_or_default();
    message = message.strip_prefix("error: ").unwrap_or(message);
    if message.starts_with("line ")
        && let Some((_, rest)) = message.split_once(": ")
    {
        message = rest;
    }
    SpecError {
        file: file.into(),
        line,
        column,
        field: String::new(),
        message: message.to_string(),
    }
}

/// Validates drafts of one file: their SLOs, or every problem of every draft (and of names
/// used twice), sorted by position.
pub(crate) fn validate_all(
    file: &str,
    drafts: Vec<(draft::Draft, Vec<SpecError>)>,
) -> Result<Vec<Slo>, Vec<SpecError>> {
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    for (d, mut found) in drafts {
        match draft::validate(file, d) {
            Ok(slo) if found.is_empty() => slos.push(slo),
            Ok(_) => {}
            Err(e) => found.extend(e),
        }
        errors.extend(found);
    }
    let mut seen = BTreeMap::new();
    for slo in &slos {
        if let Some(first) = seen.insert(slo.name.clone(), slo.pos) {
            errors.push(SpecError::new(
                file,
                slo.pos,
                "name",
                format!(
                    "{:?} is already the name of the SLO at line {}",
                    slo.name, first.line
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(slos)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

/// Parses every SLO in `text` (native format, one per YAML document). `file` names the source
/// in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Slo>, Vec<SpecError>> {
    validate_all(file, native::read(file, text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::CalendarPeriod;

    const GOOD: &str = "\
name: checkout-availability
service: checkout
objective: 99.9
window: 30d
indicator:
  spans:
    filter: \"service_name = 'checkout'\"
    good: \"status_code != 'error'\"
";

    #[test]
    fn a_complete_spec_parses_with_default_tiers() {
        let slos = parse("a.yaml", GOOD).expect("valid");
        assert_eq!(slos.len(), 1);
        let s = &slos[0];
        assert_eq!(s.name, "checkout-availability");
        assert!((s.objective - 0.999).abs() < 1e-12);
        assert_eq!(s.window, Window::Rolling(30 * DAY));
        let rates: Vec<f64> = s
            .alerting
            .tiers
            .iter()
            .map(|t| t.burn_rate(30 * DAY))
            .collect();
        for (got, want) in rates.iter().zip([14.4, 6.0, 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{rates:?}");
        }
        match &s.indicator {
            Indicator::Events { table, good, .. } => {
                assert_eq!(*table, Table::Spans);
                assert_eq!(good.pos.line, 8);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn several_documents_and_calendar_windows() {
        let text = format!(
            "{GOOD}---\nname: b\nobjective: 99\nwindow: month\ntime_zone: Europe/Berlin\n\
             indicator:\n  logs:\n    good: \"severity_number < 17\"\n"
        );
        let slos = parse("b.yaml", &text).expect("valid");
        assert_eq!(slos.len(), 2);
        assert_eq!(
            slos[1].window,
            Window::Calendar {
                period: CalendarPeriod::Month,
                zone: chrono_tz::Europe::Berlin
            }
        );
        assert_eq!(slos[1].service, "b");
    }

    #[test]
    fn every_problem_is_reported_with_line_and_field() {
        let text = "\
name: Bad Name
objective: 120
window: 30x
indicator:
  spans:
    good: \"\"
alerting:
  tiers:
    - {name: a, severity: urgent, long: 5m, short: 1h, burn_rate: 2}
";
        let errors = parse("c.yaml", text).expect_err("invalid");
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1, "name"),
                (2, "objective"),
                (3, "window"),
                (6, "indicator.spans.good"),
                (9, "alerting.tiers[0].severity"),
                (9, "alerting.tiers[0].short"),
            ],
            "{errors:#?}"
        );
        assert!(
            errors[0].to_string().starts_with("c.yaml:1:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn unknown_fields_and_syntax_errors_have_positions() {
        let errors = parse("d.yaml", &format!("{GOOD}objectiv: 3\n")).expect_err("unknown");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("objectiv"), "{}", errors[0]);
        assert!(errors[0].line >= 9, "{}", errors[0]);

        let errors = parse("e.yaml", "name: [unclosed\n").expect_err("syntax");
        assert!(errors[0].line >= 1, "{}", errors[0]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let errors = parse("f.yaml", &format!("{GOOD}---\n{GOOD}")).expect_err("dup");
        assert!(errors[0].message.contains("already"), "{}", errors[0]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(5 * MINUTE));
        assert_eq!(parse_duration("4w"), Ok(28 * DAY));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
