//! `GET /api/v1/services/map`: the calls between services in a time range, from parent/child
//! spans whose services differ (a client span of the caller and the server span of the
//! callee, a producer and its consumer). Per edge: calls, their rate, errors and error rate
//! (from the callee's span status) and latency percentiles (the callee's spans' durations).

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sightline_common::clock::{HOUR, Nanos, rfc3339};

use crate::error::ApiError;
use crate::slos::time_range;
use crate::tenant::Tenant;

/// The longest range one map may cover: the join reads both sides of every call in it.
pub const MAX_RANGE: Nanos = 24 * HOUR;
/// How long before the range a parent span may have started (a child starts inside it).
const PARENT_LEAD: Nanos = HOUR;

#[derive(Debug, Deserialize)]
pub struct MapParams {
    /// RFC 3339 or Unix seconds; default: an hour before `to`.
    from: Option<String>,
    /// Default: now.
    to: Option<String>,
}

/// The SQL behind the map (the same as the docs show), for `[from, to)` in nanoseconds.
pub fn map_sql(from: Nanos, to: Nanos) -> String {
    let ts = |n: Nanos| format!("arrow_cast({n}, 'Timestamp(Nanosecond, Some(\"UTC\"))')");
    format!(
        "SELECT p.service_name AS caller, c.service_name AS callee, count(*) AS calls, \
         sum(CASE WHEN c.status_code = 'error' THEN 1 ELSE 0 END) AS errors, \
         approx_percentile_cont(c.duration_ns, 0.5) / 1e6 AS p50_ms, \
         approx_percentile_cont(c.duration_ns, 0.95) / 1e6 AS p95_ms, \
         approx_percentile_cont(c.duration_ns, 0.99) / 1e6 AS p99_ms \
         FROM spans c JOIN spans p \
         ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
         WHERE c.start_time >= {} AND c.start_time < {} \
         AND p.start_time >= {} AND p.start_time < {} \
         AND c.service_name <> p.service_name \
         GROUP BY 1, 2 ORDER BY calls DESC, caller, callee",
        ts(from),
        ts(to),
        ts(from.saturating_sub(PARENT_LEAD)),
        ts(to),
    )
}

/// The calls between services from `from` to `to`.
///
/// # Errors
/// 400 for times that do not parse, `from` after `to`, or a range over a day; the query's
/// errors (its timeout and memory limits apply).
pub async fn map(state: Tenant, Query(p): Query<MapParams>) -> Result<Response, ApiError> {
    let (from, to) = time_range(p.from.as_deref(), p.to.as_deref())?;
    let from = from.unwrap_or(to.saturating_sub(HOUR));
    if from >= to {
        return Err(ApiError::BadRequest("from must be before to".into()));
    }
    // Saturating: times far apart on both sides of 1970 must not wrap around.
    let span = to.saturating_sub(from);
    if span > MAX_RANGE {
        return Err(ApiError::BadRequest(format!(
            "the range is over a day ({} s): a map covers at most 86400 s; pick a shorter one",
            span / 1_000_000_000
        )));
    }
    let out = state.engine.execute(&map_sql(from, to)).await?;
    let seconds = span as f64 / 1e9;
    let mut edges = Vec::new();
    for row in crate::traces::objects(&out)? {
        let calls = row["calls"].as_f64().unwrap_or(0.0);
        let errors = row["errors"].as_f64().unwrap_or(0.0);
        edges.push(serde_json::json!({
            "caller": row["caller"],
            "callee": row["callee"],
            "calls": row["calls"],
            "rate_per_s": calls / seconds,
            "errors": row["errors"],
            "error_rate": if calls > 0.0 { Value::from(errors / calls) } else { Value::Null },
            "p50_ms": row["p50_ms"],
            "p95_ms": row["p95_ms"],
            "p99_ms": row["p99_ms"],
        }));
    }
    Ok(axum::Json(serde_json::json!({
        "from": rfc3339(from),
        "to": rfc3339(to),
        "edges": edges,
    }))
    .into_response())
}
