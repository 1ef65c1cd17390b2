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

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;
use sightline_store::schema::Table;

use crate::window::{CalendarPeriod, Window};
use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos, SECOND};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    #[serde(rename = "apiVersion")]
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    name: Spanned<String>,
    service: Option<Spanned<String>>,
    description: Option<String>,
    objective: Spanned<f64>,
    window: Spanned<String>,
    time_zone: Option<Spanned<String>>,
    indicator: Spanned<RawIndicator>,
    group_by: Option<Spanned<String>>,
    max_groups: Option<Spanned<usize>>,
    alerting: Option<RawAlerting>,
    timeslice: Option<Spanned<RawTimeslice>>,
    #[serde(default)]
    exclude_maintenance: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndicator {
    spans: Option<RawEvents>,
    logs: Option<RawEvents>,
    metric_ratio: Option<RawMetricRatio>,
    metric_latency: Option<RawMetricLatency>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricRatio {
    good: RawSelector,
    total: RawSelector,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    metric: Spanned<String>,
    filter: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricLatency {
    metric: Spanned<String>,
    filter: Option<Spanned<String>>,
    threshold: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    filter: Option<Spanned<String>>,
    good: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeslice {
    slice: Spanned<String>,
    good_ratio: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    tiers: Option<Vec<Spanned<RawTier>>>,
    min_events: Option<u64>,
    pending_for: Option<Spanned<String>>,
    budget_exhausted: Option<bool>,
    no_data_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    name: Spanned<String>,
    severity: Spanned<String>,
    long: Spanned<String>,
    short: Spanned<String>,
    burn_rate: Option<Spanned<f64>>,
    budget_spent: Option<Spanned<String>>,
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

/// Parses every SLO in `text` (one per YAML document). `file` names the source in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Slo>, Vec<SpecError>> {
    let docs: Vec<RawSlo> = serde_saphyr::from_multiple(text).map_err(|e| {
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
        let message = message.to_string();
        vec![SpecError {
            file: file.into(),
            line,
            column,
            field: String::new(),
            message,
        }]
    })?;
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    for raw in docs {
        let mut v = Validator {
            file,
            errors: Vec::new(),
        };
        if let Some(slo) = v.slo(raw) {
            slos.push(slo);
        }
        errors.extend(v.errors);
    }
    let mut seen = BTreeMap::new();
    for slo in &slos {
        if let Some(first) = seen.insert(slo.name.clone(), slo.pos) {
            errors.push(SpecError {
                file: file.into(),
                line: slo.pos.line,
                column: slo.pos.column,
                field: "name".into(),
                message: format!(
                    "{:?} is already the name of the SLO at line {}",
                    slo.name, first.line
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(slos)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

/// Parses a spec file: native, or OpenSLO v1 documents (imported, see [`crate::openslo`]).
pub fn parse_file(path: &Path) -> Result<Vec<Slo>, Vec<SpecError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![SpecError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    if crate::openslo::is_openslo(&text) {
        return crate::openslo::import(&name, &text);
    }
    parse(&name, &text)
}

struct Validator<'a> {
    file: &'a str,
    errors: Vec<SpecError>,
}

impl Validator<'_> {
    fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.errors
            .push(SpecError::new(self.file, pos, field, message));
    }

    fn duration(&mut self, s: &Spanned<String>, field: &str) -> Option<Nanos> {
        parse_duration(&s.value)
            .map_err(|e| self.error(s.into(), field, e))
            .ok()
    }

    fn expr(&mut self, s: &Spanned<String>, field: &str) -> Option<Expr> {
        if s.value.trim().is_empty() {
            self.error(s.into(), field, "must be a SQL expression, not empty");
            return None;
        }
        Some(Expr {
            sql: s.value.clone(),
            field: field.into(),
            pos: s.into(),
        })
    }

    fn slo(&mut self, raw: RawSlo) -> Option<Slo> {
        let pos = Pos::from(&raw.name);
        if let Some(v) = &raw.api_version
            && v.value != "sightline/v1"
        {
            self.error(
                v.into(),
                "apiVersion",
                format!(
                    "{:?} is not supported: use sightline/v1 (OpenSLO documents are imported \
                     with `sightline slo import`)",
                    v.value
                ),
            );
        }
        if let Some(k) = &raw.kind
            && k.value != "SLO"
        {
            self.error(
                k.into(),
                "kind",
                format!("{:?}: only SLO is supported", k.value),
            );
        }
        let name = raw.name.value.clone();
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid_name {
            self.error(
                pos,
                "name",
                format!(
                    "{name:?} is not a valid name: use 1-128 lowercase letters, digits, '-', '_' \
                     or '.', starting with a letter or digit"
                ),
            );
        }
        let objective = raw.objective.value;
        if !(objective > 0.0 && objective < 100.0) {
            self.error(
                (&raw.objective).into(),
                "objective",
                format!("{objective} is not a percentage between 0 and 100 (exclusive), e.g. 99.9"),
            );
        }
        let window = self.window(&raw.window, raw.time_zone.as_ref());
        let indicator = self.indicator(&raw.indicator);
        let group_by = raw.group_by.as_ref().and_then(|g| self.expr(g, "group_by"));
        let max_groups = raw.max_groups.as_ref().map_or(100, |m| m.value);
        if let Some(m) = &raw.max_groups {
            if raw.group_by.is_none() {
                self.error(m.into(), "max_groups", "only meaningful with group_by");
            } else if m.value == 0 || m.value > 10_000 {
                self.error(m.into(), "max_groups", "must be between 1 and 10000");
            }
        }
        let alerting = self.alerting(raw.alerting, window.as_ref());
        let timeslice = raw.timeslice.as_ref().and_then(|t| self.timeslice(t));
        if let (Some(t), Some(a), Some(raw_t)) = (timeslice, &alerting, &raw.timeslice) {
            let shortest = a.tiers.iter().map(|x| x.short).min().unwrap_or(i64::MAX);
            // A slice is final a minute after it ends; the short window must see finished ones.
            if t.slice + MINUTE >= shortest {
                self.error(
                    (&raw_t.value.slice).into(),
                    "timeslice.slice",
                    format!(
                        "a slice plus the minute it takes to be final must be shorter than the \
                         shortest alert window ({}m), or that tier never sees a finished slice",
                        shortest / MINUTE
                    ),
                );
            }
        }
        let service = raw.service.map(|s| s.value).unwrap_or_else(|| name.clone());
        Some(Slo {
            name,
            service,
            description: raw.description.unwrap_or_default(),
            objective: objective / 100.0,
            window: window?,
            indicator: indicator?,
            group_by,
            max_groups,
            alerting: alerting?,
            timeslice,
            exclude_maintenance: raw.exclude_maintenance,
            labels: raw.labels,
            annotations: raw.annotations,
            source: self.file.into(),
            pos,
        })
        .filter(|_| self.errors.is_empty())
    }

    fn window(&mut self, w: &Spanned<String>, tz: Option<&Spanned<String>>) -> Option<Window> {
        let zone = match tz {
            Some(t) => match t.value.parse::<chrono_tz::Tz>() {
                Ok(z) => Some((z, t)),
                Err(_) => {
                    self.error(
                        t.into(),
                        "time_zone",
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
                t.into(),
                "time_zone",
                "only meaningful with a calendar window (week, month or quarter)",
            );
        }
        let d = match parse_duration(&w.value) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    w.into(),
                    "window",
                    format!("{e}; or a calendar window: week, month or quarter"),
                );
                return None;
            }
        };
        if !(HOUR..=crate::window::MAX_WINDOW).contains(&d) || d % MINUTE != 0 {
            self.error(
                w.into(),
                "window",
                "a rolling window must be whole minutes, from 1h to 92d",
            );
            return None;
        }
        Some(Window::Rolling(d))
    }

    fn timeslice(&mut self, t: &Spanned<RawTimeslice>) -> Option<Timeslice> {
        let slice = self.duration(&t.value.slice, "timeslice.slice")?;
        if slice % MINUTE != 0 || slice > HOUR || HOUR % slice != 0 {
            self.error(
                (&t.value.slice).into(),
                "timeslice.slice",
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
                    r.into(),
                    "timeslice.good_ratio",
                    format!("{:?} is not a percentage in (0%, 100%], e.g. 99%", r.value),
                );
                None
            }
        }
    }

    fn selector(
        &mut self,
        metric: &Spanned<String>,
        filter: Option<&Spanned<String>>,
        field: &str,
    ) -> Option<MetricSelector> {
        if metric.value.trim().is_empty() {
            self.error(
                metric.into(),
                &format!("{field}.metric"),
                "needs a metric name",
            );
            return None;
        }
        Some(MetricSelector {
            metric: metric.value.clone(),
            filter: filter.and_then(|f| self.expr(f, &format!("{field}.filter"))),
        })
    }

    fn indicator(&mut self, ind: &Spanned<RawIndicator>) -> Option<Indicator> {
        let pos = Pos::from(ind);
        let i = &ind.value;
        let given = usize::from(i.spans.is_some())
            + usize::from(i.logs.is_some())
            + usize::from(i.metric_ratio.is_some())
            + usize::from(i.metric_latency.is_some());
        if given != 1 {
            self.error(
                pos,
                "indicator",
                "give exactly one kind of indicator: spans or logs (each with `good` and an \
                 optional `filter`), metric_ratio (`good` and `total` counters) or \
                 metric_latency (a histogram and a `threshold`)",
            );
            return None;
        }
        if let Some(r) = &i.metric_ratio {
            let good = self.selector(
                &r.good.metric,
                r.good.filter.as_ref(),
                "indicator.metric_ratio.good",
            );
            let total = self.selector(
                &r.total.metric,
                r.total.filter.as_ref(),
                "indicator.metric_ratio.total",
            );
            return Some(Indicator::MetricRatio {
                good: good?,
                total: total?,
            });
        }
        if let Some(l) = &i.metric_latency {
            let selector = self.selector(&l.metric, l.filter.as_ref(), "indicator.metric_latency");
            if !(l.threshold.value.is_finite()) {
                self.error(
                    (&l.threshold).into(),
                    "indicator.metric_latency.threshold",
                    "must be a number",
                );
                return None;
            }
            return Some(Indicator::MetricLatency {
                selector: selector?,
                threshold: l.threshold.value,
            });
        }
        let (kind, events, table) = match (&i.spans, &i.logs) {
            (Some(e), _) => ("spans", e, Table::Spans),
            (_, Some(e)) => ("logs", e, Table::Logs),
            _ => return None,
        };
        let filter = events
            .filter
            .as_ref()
            .and_then(|f| self.expr(f, &format!("indicator.{kind}.filter")));
        let good = self.expr(&events.good, &format!("indicator.{kind}.good"))?;
        Some(Indicator::Events {
            table,
            filter,
            good,
        })
    }

    fn alerting(&mut self, raw: Option<RawAlerting>, window: Option<&Window>) -> Option<Alerting> {
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
                self.duration(p, "alerting.pending_for")?
            };
        }
        if let Some(n) = &raw.no_data_after {
            a.no_data_after = Some(self.duration(n, "alerting.no_data_after")?);
        }
        if let Some(tiers) = raw.tiers {
            a.tiers.clear();
            for (i, t) in tiers.iter().enumerate() {
                let field = format!("alerting.tiers[{i}]");
                let tpos = Pos::from(t);
                let t = &t.value;
                let long = self.duration(&t.long, &format!("{field}.long"));
                let short = self.duration(&t.short, &format!("{field}.short"));
                let threshold = match (&t.burn_rate, &t.budget_spent) {
                    (Some(r), None) if r.value > 0.0 && r.value.is_finite() => {
                        Some(Threshold::BurnRate(r.value))
                    }
                    (Some(r), None) => {
                        self.error(r.into(), &format!("{field}.burn_rate"), "must be positive");
                        None
                    }
                    (None, Some(b)) => match parse_percent(&b.value) {
                        Some(f) if f > 0.0 && f <= 1.0 => Some(Threshold::BudgetSpent(f)),
                        _ => {
                            self.error(
                                b.into(),
                                &format!("{field}.budget_spent"),
                                format!("{:?} is not a percentage in (0%, 100%], e.g. 2%", b.value),
                            );
                            None
                        }
                    },
                    _ => {
                        self.error(
                            tpos,
                            &field,
                            "give exactly one of burn_rate (e.g. 14.4) or budget_spent (e.g. 2%)",
                        );
                        None
                    }
                };
                if let (Some(l), Some(s)) = (long, short) {
                    if s >= l {
                        self.error(
                            (&t.short).into(),
                            &format!("{field}.short"),
                            "the short window must be shorter than the long one",
                        );
                    }
                    if l > 3 * DAY {
                        self.error(
                            (&t.long).into(),
                            &format!("{field}.long"),
                            "burn-rate windows can be at most 3d",
                        );
                    }
                }
                if let Some(w) = window
                    && let (Some(l), Some(Threshold::BudgetSpent(_))) = (long, threshold)
                    && l > w.nominal_length()
                {
                    self.error(
                        (&t.long).into(),
                        &format!("{field}.long"),
                        "longer than the SLO's window",
                    );
                }
                if !matches!(t.severity.value.as_str(), "page" | "ticket") {
                    self.error(
                        (&t.severity).into(),
                        &format!("{field}.severity"),
                        format!("{:?}: use page or ticket", t.severity.value),
                    );
                }
                if a.tiers.iter().any(|x| x.name == t.name.value) {
                    self.error(
                        (&t.name).into(),
                        &format!("{field}.name"),
                        "two tiers have this name",
                    );
                }
                if let (Some(long), Some(short), Some(threshold)) = (long, short, threshold) {
                    a.tiers.push(Tier {
                        name: t.name.value.clone(),
                        severity: t.severity.value.clone(),
                        long,
                        short,
                        threshold,
                    });
                }
            }
        }
        Some(a)
    }
}

fn parse_percent(s: &str) -> Option<f64> {
    let v: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    Some(v / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
