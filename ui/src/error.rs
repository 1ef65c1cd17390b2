//! Every error the API answers, and its HTTP status: decided here, in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sightline_notify::NotifyError;
use sightline_store::query::QueryError;

/// An API error: its status and a message for the caller (`{"error": "..."}`).
#[derive(Debug)]
pub enum ApiError {
    /// The request cannot be served as it is.
    BadRequest(String),
    NotFound(String),
    /// It conflicts with how things are configured.
    Conflict(String),
    /// A query ran out of time.
    Timeout(String),
    /// Try again later.
    Unavailable(String),
    /// Too much asked at once: try again in a moment (429 with `Retry-After`).
    TooManyRequests(String),
    /// Ours to fix; logged.
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Timeout(m)
            | ApiError::Unavailable(m)
            | ApiError::TooManyRequests(m)
            | ApiError::Internal(m) => m,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(m) = &self {
            tracing::error!(error = %m, "API request failed");
        }
        let mut response = (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.message() })),
        )
            .into_response();
        if matches!(
            self,
            ApiError::TooManyRequests(_) | ApiError::Unavailable(_)
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let m = e.to_string();
        match e {
            QueryError::Refused(_) | QueryError::Invalid(_) | QueryError::ResourcesExhausted(_) => {
                ApiError::BadRequest(m)
            }
            QueryError::Timeout(_) => ApiError::Timeout(m),
            QueryError::Busy(_) => ApiError::TooManyRequests(m),
            QueryError::Internal(_) => ApiError::Internal(m),
        }
    }
}

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        let m = e.to_string();
        match e {
            NotifyError::InvalidSilence(_) => ApiError::BadRequest(m),
            NotifyError::SilenceNotFound(_) => ApiError::NotFound(m),
            NotifyError::SilenceFromConfig(_) => ApiError::Conflict(m),
            NotifyError::Config(_) | NotifyError::Io { .. } | NotifyError::File { .. } => {
                ApiError::Internal(m)
            }
        }
    }
}
