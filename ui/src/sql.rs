//! `POST /api/v1/sql`: run one read-only statement, answer JSON, CSV or Arrow IPC.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sightline_store::query::QueryError;

use crate::ApiState;
use crate::format::{self, OutputFormat};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
    #[serde(default)]
    pub format: Option<String>,
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

pub fn query_error(e: &QueryError) -> Response {
    let status = match e {
        QueryError::Refused(_) | QueryError::Invalid(_) | QueryError::ResourcesExhausted(_) => {
            StatusCode::BAD_REQUEST
        }
        QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        QueryError::Internal(_) => {
            tracing::error!(error = %e, "query failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: String) -> Response {
    let request: SqlRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected a JSON body {{\"sql\": \"...\"}}: {e}"),
            );
        }
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let output = match OutputFormat::choose(request.format.as_deref(), accept) {
        Ok(f) => f,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if request.sql.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "the sql field is empty");
    }
    let started = std::time::Instant::now();
    let result = state.engine.execute(&request.sql).await;
    match result {
        Ok(out) => match format::render(&out, output, started.elapsed()) {
            Ok((content_type, body)) => {
                let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
                if out.truncated
                    && let Ok(v) = header::HeaderValue::from_str(&out.num_rows().to_string())
                {
                    response.headers_mut().insert("x-sightline-truncated-at", v);
                }
                response
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the result: {e}"),
            ),
        },
        Err(e) => query_error(&e),
    }
}
