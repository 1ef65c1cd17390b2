//! `GET /api/v1/traces/{trace_id}`: every span of a trace and its logs, found without a time
//! range. The trace's summary (`traces`, over `trace_fragments`, whose files are sorted by
//! trace id) gives its time span; the span and log queries are then bounded by it, so only the
//! files and row groups of those hours are read (time pruning, then trace-id statistics and
//! bloom filters inside them).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use sightline_store::query::QueryOutput;

use crate::error::ApiError;
use crate::format::json_rows;
use crate::tenant::Tenant;

/// Logs of a trace may be stamped a little before or after its spans (clock skew, batching).
const LOG_MARGIN_NS: i64 = 60_000_000_000;

pub(crate) fn objects(out: &QueryOutput) -> Result<Vec<Value>, ApiError> {
    let names: Vec<String> = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    for b in &out.batches {
        for row in json_rows(b).map_err(|e| ApiError::Internal(e.to_string()))? {
            let obj: Map<String, Value> = names.iter().cloned().zip(row).collect();
            rows.push(Value::Object(obj));
        }
    }
    Ok(rows)
}

fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A trace's spans and logs.
///
/// # Errors
/// 400 for an id that is not 32 hex digits, 404 for an unknown trace, the query's errors.
pub async fn get(state: Tenant, Path(trace_id): Path<String>) -> Result<Response, ApiError> {
    let id = trace_id.to_ascii_lowercase();
    if !is_trace_id(&id) {
        return Err(ApiError::BadRequest(format!(
            "{trace_id:?} is not a trace id: expected 32 hexadecimal digits"
        )));
    }
    // `id` is 32 hex digits: safe to place in SQL.
    let summary = state
        .engine
        .execute(&format!(
            "SELECT CAST(start_time AS BIGINT) AS s, CAST(end_time AS BIGINT) AS e, \
             span_count, error_count, root_service_name, root_span_name \
             FROM traces WHERE trace_id = '{id}'"
        ))
        .await?;
    let Some(summary) = objects(&summary)?.into_iter().next() else {
        return Err(ApiError::NotFound(format!("no trace with id {id}")));
    };
    let start = summary["s"].as_i64().unwrap_or(i64::MIN);
    let end = summary["e"].as_i64().unwrap_or(i64::MAX);
    let spans_sql = format!(
        "SELECT * FROM spans WHERE trace_id = '{id}' \
         AND start_time >= arrow_cast({start}, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
         AND start_time <= arrow_cast({end}, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
         ORDER BY start_time"
    );
    let logs_sql = format!(
        "SELECT * FROM logs WHERE trace_id = '{id}' \
         AND time >= arrow_cast({}, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
         AND time <= arrow_cast({}, 'Timestamp(Nanosecond, Some(\"UTC\"))') \
         ORDER BY time",
        start.saturating_sub(LOG_MARGIN_NS),
        end.saturating_add(LOG_MARGIN_NS)
    );
    let (spans, logs) = tokio::join!(
        state.engine.execute(&spans_sql),
        state.engine.execute(&logs_sql)
    );
    let (spans, logs) = (objects(&spans?)?, objects(&logs?)?);
    Ok(axum::Json(serde_json::json!({
        "trace_id": id,
        "span_count": summary["span_count"],
        "error_count": summary["error_count"],
        "root_service_name": summary["root_service_name"],
        "root_span_name": summary["root_span_name"],
        "spans": spans,
        "logs": logs,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_ids_are_checked_before_reaching_sql() {
        assert!(super::is_trace_id("5b8efff798038103d269b633813fc60c"));
        assert!(!super::is_trace_id("5b8efff798038103d269b633813fc60"));
        assert!(!super::is_trace_id(
            "5b8efff798038103d269b633813fc60' OR 1=1 --"
        ));
        assert!(!super::is_trace_id("zz8efff798038103d269b633813fc60c"));
    }
}
