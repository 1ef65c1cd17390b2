//! `POST /api/v1/sql`: run one read-only statement, answer JSON, CSV or Arrow IPC.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::format::{self, OutputFormat};

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
/// statement, 408 past the timeout, 500 when the answer cannot be encoded.
pub async fn handle(
    State(state): State<ApiState>,
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
    let out = state.engine.execute(&request.sql).await?;
    let (content_type, body) = format::render(&out, output, started.elapsed())
        .map_err(|e| ApiError::Internal(format!("could not encode the result: {e}")))?;
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if out.truncated
        && let Ok(v) = header::HeaderValue::from_str(&out.num_rows().to_string())
    {
        response.headers_mut().insert("x-sightline-truncated-at", v);
    }
    Ok(response)
}
