//! `GET /api/v1/slos`, `GET /api/v1/slos/{name}` and `GET /api/v1/slos/{name}/history`: each
//! SLO's objective, window, SLI, budget, burn rates per window and alert state, and its history
//! for charts. See docs/slo.md.

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sightline_common::clock::{MINUTE, Nanos, rfc3339};
use sightline_slo::SloState;
use sightline_slo::alert::{Rule, State as AlertState, window_name};
use sightline_slo::engine::HistoryPoint;
use sightline_slo::spec::Indicator;
use sightline_slo::status::{Budget, BurnRate, Status};

use crate::error::ApiError;
use crate::tenant::Tenant;

pub async fn list(state: Tenant) -> Response {
    let slos: Vec<SloView> = state
        .slos
        .as_ref()
        .map(|e| e.list().iter().map(SloView::from).collect())
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "slos": slos })).into_response()
}

fn no_slo(name: &str) -> ApiError {
    ApiError::NotFound(format!("no SLO named {name:?}"))
}

/// One SLO's view.
///
/// # Errors
/// 404 for an unknown SLO.
pub async fn get(state: Tenant, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = state
        .slos
        .as_ref()
        .and_then(|e| e.get(&name))
        .ok_or_else(|| no_slo(&name))?;
    Ok(axum::Json(SloView::from(&s)).into_response())
}

/// What the API shows of an SLO.
#[derive(Debug, Clone, Serialize)]
pub struct SloView {
    pub name: String,
    pub service: String,
    pub description: String,
    /// As a fraction (0.999).
    pub objective: f64,
    pub window: String,
    pub indicator: IndicatorView,
    pub group_by: Option<String>,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    /// For timeslice SLOs: `good` and `total` count slices, not events.
    pub timeslice: Option<TimesliceView>,
    /// firing, pending or ok (the worst of its alerts).
    pub alert_state: &'static str,
    #[serde(flatten)]
    pub status: StatusView,
    pub alerts: Vec<AlertView>,
    /// One status per group (grouped SLOs only).
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimesliceView {
    pub slice: String,
    pub good_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndicatorView {
    /// spans, logs, metric_ratio or metric_latency.
    pub kind: &'static str,
    /// Valid events (metric_ratio: the total counter's filter).
    pub filter: Option<String>,
    /// Good events (metric_ratio: the good counter's filter).
    pub good: Option<String>,
    /// metric_ratio: the good and the total metric; metric_latency: the histogram.
    pub metrics: Vec<String>,
    /// metric_latency: the bucket bound at or under which an observation is good.
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub at: String,
    pub window_start: String,
    pub window_end: String,
    pub good: u64,
    pub total: u64,
    pub sli: Option<f64>,
    pub budget: Option<Budget>,
    pub burn_rates: Vec<BurnRate>,
    /// While budget remains: when it runs out at the last hour's burn rate (if within the
    /// window).
    pub exhausted_at: Option<String>,
    /// While the budget is spent: since when.
    pub exhausted_since: Option<String>,
}

impl From<&Status> for StatusView {
    fn from(s: &Status) -> Self {
        Self {
            at: rfc3339(s.at),
            window_start: rfc3339(s.window_start),
            window_end: rfc3339(s.window_end),
            good: s.good,
            total: s.total,
            sli: s.sli,
            budget: s.budget.clone(),
            burn_rates: s.burn_rates.clone(),
            exhausted_at: s.exhausted_at.map(rfc3339),
            exhausted_since: s.exhausted_since.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: String,
    #[serde(flatten)]
    pub status: StatusView,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub rule: String,
    pub group: String,
    pub state: AlertState,
    pub severity: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub since: Option<String>,
    pub firing_since: Option<String>,
    pub values: BTreeMap<String, f64>,
    /// Burn-rate tiers: their windows (`1h`, `5m`).
    pub long_window: Option<String>,
    pub short_window: Option<String>,
}

/// One point of an SLO's history as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryView {
    pub at: String,
    pub good: u64,
    pub total: u64,
    pub sli: Option<f64>,
    pub budget_remaining: Option<f64>,
    /// Burn rate over the hour before `at`.
    pub burn_rate_1h: Option<f64>,
}

impl From<&HistoryPoint> for HistoryView {
    fn from(p: &HistoryPoint) -> Self {
        Self {
            at: rfc3339(p.at),
            good: p.good,
            total: p.total,
            sli: p.sli,
            budget_remaining: p.budget_remaining,
            burn_rate_1h: p.burn_rate_1h,
        }
    }
}

impl From<&SloState> for SloView {
    fn from(s: &SloState) -> Self {
        let slo = &s.slo;
        let indicator = match &slo.indicator {
            Indicator::Events {
                table,
                filter,
                good,
            } => IndicatorView {
                kind: table.name(),
                filter: filter.as_ref().map(|f| f.sql.clone()),
                good: Some(good.sql.clone()),
                metrics: Vec::new(),
                threshold: None,
            },
            Indicator::MetricRatio { good, total } => IndicatorView {
                kind: "metric_ratio",
                filter: total.filter.as_ref().map(|f| f.sql.clone()),
                good: good.filter.as_ref().map(|f| f.sql.clone()),
                metrics: vec![good.metric.clone(), total.metric.clone()],
                threshold: None,
            },
            Indicator::MetricLatency {
                selector,
                threshold,
            } => IndicatorView {
                kind: "metric_latency",
                filter: selector.filter.as_ref().map(|f| f.sql.clone()),
                good: None,
                metrics: vec![selector.metric.clone()],
                threshold: Some(*threshold),
            },
        };
        let tier = |rule: &Rule| match rule {
            Rule::Tier(name) => slo.alerting.tiers.iter().find(|t| &t.name == name),
            _ => None,
        };
        let alerts = s
            .alerts
            .iter()
            .map(|a| AlertView {
                rule: a.rule.name().into(),
                group: a.group.clone(),
                state: a.state,
                severity: a.labels.get("severity").cloned().unwrap_or_default(),
                fingerprint: a.fingerprint.clone(),
                labels: a.labels.clone(),
                since: a.since.map(rfc3339),
                firing_since: a.firing_since.map(rfc3339),
                values: a
                    .last
                    .as_ref()
                    .map(|o| o.values.clone())
                    .unwrap_or_default(),
                long_window: tier(&a.rule).map(|t| window_name(t.long)),
                short_window: tier(&a.rule).map(|t| window_name(t.short)),
            })
            .collect();
        SloView {
            name: slo.name.clone(),
            service: slo.service.clone(),
            description: slo.description.clone(),
            objective: slo.objective,
            window: slo.window.describe(),
            indicator,
            group_by: slo.group_by.as_ref().map(|g| g.sql.clone()),
            version: s.version.clone(),
            labels: slo.labels.clone(),
            timeslice: slo.timeslice.map(|t| TimesliceView {
                slice: format!("{}m", t.slice / MINUTE),
                good_ratio: t.good_ratio,
            }),
            alert_state: s.alert_state(),
            status: StatusView::from(&s.status),
            alerts,
            groups: s
                .groups
                .iter()
                .map(|(g, st)| GroupView {
                    group: g.clone(),
                    status: StatusView::from(st),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    /// RFC 3339 or Unix seconds; default: the start of the SLO's window, or a minute before
    /// its first events if they are younger.
    from: Option<String>,
    /// Default: now.
    to: Option<String>,
    /// e.g. 1m, 15m, 1h; default: the range in about 500 points (at least a minute). Points
    /// older than the per-minute counts (3 days) come at most every 15 minutes.
    step: Option<String>,
}

pub(crate) fn parse_time(s: &str) -> Result<Nanos, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| format!("{s:?} is out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!("{s:?} is not a time: use RFC 3339 (2026-11-28T10:00:00Z) or Unix seconds")
        })
}

/// A range's `from` (if given) and `to` (default now), RFC 3339 or Unix seconds each.
///
/// # Errors
/// 400 naming the parameter that does not parse.
pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<Nanos>, Nanos), ApiError> {
    let parse = |what: &str, v: Option<&str>| {
        v.map(parse_time)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("{what}: {e}")))
    };
    let to = parse("to", to)?.unwrap_or_else(sightline_common::clock::now);
    Ok((parse("from", from)?, to))
}

/// One SLO's history between `from` and `to`.
///
/// # Errors
/// 400 for times or a step that do not parse (or `from` after `to`), 404 for an unknown SLO.
pub async fn history(
    state: Tenant,
    Path(name): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let engine = state.slos.as_ref().ok_or_else(|| no_slo(&name))?;
    let bad = |what: &str, e: String| ApiError::BadRequest(format!("{what}: {e}"));
    let (from, to) = time_range(p.from.as_deref(), p.to.as_deref())?;
    let from = match from {
        Some(from) => from,
        None => engine.history_start(&name).ok_or_else(|| no_slo(&name))?,
    };
    let step = p
        .step
        .as_deref()
        .map(sightline_slo::spec::parse_duration)
        .transpose()
        .map_err(|e| bad("step", e))?
        .unwrap_or((to.saturating_sub(from) / 500).max(MINUTE));
    if from > to {
        return Err(ApiError::BadRequest("from is after to".into()));
    }
    // A pass over every group's counts: off the async threads.
    let (e, n) = (engine.clone(), name.clone());
    let history = tokio::task::spawn_blocking(move || e.history(&n, from, to, step))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| no_slo(&name))?;
    let points: Vec<HistoryView> = history.points.iter().map(HistoryView::from).collect();
    Ok(axum::Json(serde_json::json!({
        "slo": name,
        "first_event": history.first_event.map(rfc3339),
        "points": points,
    }))
    .into_response())
}
