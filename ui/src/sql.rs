//! `POST /api/v1/sql`: run one read-only statement, answer JSON, CSV or Arrow IPC.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::format::{self, OutputFormat};
use crate::tenant::Tenant;
use sightline_store::query::QueryOutput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
    #[serde(default)]
    pub format: Option<String>,
}

/// Answers one SQL statement.
///
/// # Errors
/// 400 for a body that is not `{"sql": ...}`, an unknown format or a refused or failing
/// statement, 408 past the timeout, 429 when too many queries are running and waiting, 500
/// when the answer cannot be encoded.
pub async fn handle(
    state: Tenant,
    principal: Option<axum::Extension<sightline_common::auth::Principal>>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let request: SqlRequest = serde_json::from_str(&body).map_err(|e| {
        ApiError::BadRequest(format!("expected a JSON body {{\"sql\": \"...\"}}: {e}"))
    })?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let output =
        OutputFormat::choose(request.format.as_deref(), accept).map_err(ApiError::BadRequest)?;
    if request.sql.trim().is_empty() {
        return Err(ApiError::BadRequest("the sql field is empty".into()));
    }
    let started = std::time::Instant::now();
    let data_dir = state.store.config().data_dir.display().to_string();
    // The audit is the administrators' to read: other keys' queries cannot name it.
    let admin = principal.is_some_and(|p| p.may(sightline_common::auth::Role::Admin));
    let engine = if admin {
        state.engine.with_audit()
    } else {
        (*state.engine).clone()
    };
    let out = match engine.execute(&request.sql).await {
        Ok(out) => redact(out, &data_dir),
        // Where the files are is no business of the answer's.
        Err(e) => {
            return Err(match ApiError::from(e) {
                ApiError::BadRequest(m) => ApiError::BadRequest(hide(&m, &data_dir)),
                ApiError::Internal(m) => ApiError::Internal(hide(&m, &data_dir)),
                other => other,
            });
        }
    };
    // Encoding an answer of many megabytes is work: off the async threads.
    let elapsed = started.elapsed();
    let (out, rendered) = tokio::task::spawn_blocking(move || {
        let rendered = format::render(&out, output, elapsed);
        (out, rendered)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("could not encode the result: {e}")))?;
    let (content_type, body) =
        rendered.map_err(|e| ApiError::Internal(format!("could not encode the result: {e}")))?;
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if out.truncated
        && let Ok(v) = header::HeaderValue::from_str(&out.num_rows().to_string())
    {
        response.headers_mut().insert("x-sightline-truncated-at", v);
    }
    Ok(response)
}

/// `out` with the data directory's absolute path replaced by `<data_dir>` in its text columns
/// (the plans `EXPLAIN` shows name the files they read).
fn redact(out: QueryOutput, data_dir: &str) -> QueryOutput {
    use arrow::array::{Array, ArrayRef, StringArray};
    if data_dir.is_empty() || data_dir == "/" {
        return out;
    }
    let is_plan = out.schema.fields().iter().any(|f| f.name() == "plan");
    if !is_plan {
        return out;
    }
    let batches = out
        .batches
        .iter()
        .map(|b| {
            let columns: Vec<ArrayRef> = b
                .columns()
                .iter()
                .map(|c| match c.as_any().downcast_ref::<StringArray>() {
                    Some(text) => std::sync::Arc::new(
                        text.iter()
                            .map(|v| v.map(|v| hide(v, data_dir)))
                            .collect::<StringArray>(),
                    ) as ArrayRef,
                    None => c.clone(),
                })
                .collect();
            arrow::record_batch::RecordBatch::try_new(b.schema(), columns)
                .unwrap_or_else(|_| b.clone())
        })
        .collect();
    QueryOutput::new(out.schema.clone(), batches, out.truncated)
}

/// `text` with the data directory's path, absolute or as object store paths write it (without
/// the leading `/`), replaced by `<data_dir>`.
fn hide(text: &str, data_dir: &str) -> String {
    text.replace(data_dir, "<data_dir>")
        .replace(data_dir.trim_start_matches('/'), "<data_dir>")
}
