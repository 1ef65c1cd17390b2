//! `GET /api/v1/slos`, `GET /api/v1/slos/{name}` and `GET /api/v1/slos/{name}/history`: each
//! SLO's objective, window, SLI, budget, burn rates per window and alert state, and its history
//! for charts. See docs/slo.md.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sightline_common::clock::{DAY, HOUR, Nanos};

use crate::ApiState;
use crate::sql::error;

pub async fn list(State(state): State<ApiState>) -> Response {
    let slos = state.slos.as_ref().map(|e| e.list()).unwrap_or_default();
    axum::Json(serde_json::json!({ "slos": slos })).into_response()
}

pub async fn get(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.slos.as_ref().and_then(|e| e.get(&name)) {
        Some(view) => axum::Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no SLO named {name:?}")),
    }
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    /// RFC 3339 or Unix seconds; default: 7 days before `to`.
    from: Option<String>,
    /// Default: now.
    to: Option<String>,
    /// e.g. 15m, 1h, 1d; default 1h (rounded up to 15 minutes).
    step: Option<String>,
}

fn parse_time(s: &str) -> Result<Nanos, String> {
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

pub async fn history(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Response {
    let Some(engine) = state.slos.as_ref() else {
        return error(StatusCode::NOT_FOUND, format!("no SLO named {name:?}"));
    };
    let now = sightline_slo::Clock::now(&sightline_slo::SystemClock);
    let to = match p.to.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(now),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("to: {e}")),
    };
    let from = match p.from.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(to.saturating_sub(7 * DAY)),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("from: {e}")),
    };
    let step = match p.step.as_deref().map(sightline_slo::spec::parse_duration) {
        None => HOUR,
        Some(Ok(s)) => s,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("step: {e}")),
    };
    if from > to {
        return error(StatusCode::BAD_REQUEST, "from is after to");
    }
    match engine.history(&name, from, to, step) {
        Some(points) => {
            axum::Json(serde_json::json!({ "slo": name, "points": points })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no SLO named {name:?}")),
    }
}
