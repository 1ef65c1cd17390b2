//! HTTP API: silences (Alertmanager's JSON shape), maintenance windows and the outbox.
//!
//! - `GET /api/v1/silences`, `GET /api/v1/silences/{id}`
//! - `POST /api/v1/silences` → `{"silenceID": …}` (with an `id`: replaces that silence)
//! - `DELETE /api/v1/silences/{id}`: ends it now
//! - `GET /api/v1/maintenance`: the configured windows and whether each is in effect
//! - `GET /api/v1/notifications/pending`: what the outbox still has to deliver

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sightline_common::clock::rfc3339;

use crate::Notifier;
use crate::silence::{ApiSilence, SilenceError};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

fn silence_error(e: SilenceError) -> Response {
    let status = match &e {
        SilenceError::Invalid(_) => StatusCode::BAD_REQUEST,
        SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
        SilenceError::FromConfig(_) => StatusCode::CONFLICT,
        SilenceError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

pub fn router(notifier: Notifier) -> Router {
    Router::new()
        .route("/api/v1/silences", get(list).post(put))
        .route("/api/v1/silences/{id}", get(one).delete(expire))
        .route("/api/v1/maintenance", get(maintenance))
        .route("/api/v1/notifications/pending", get(pending))
        .with_state(notifier)
}

async fn list(State(n): State<Notifier>) -> Response {
    axum::Json(n.silences().list(crate::now())).into_response()
}

async fn one(State(n): State<Notifier>, Path(id): Path<String>) -> Response {
    match n
        .silences()
        .list(crate::now())
        .into_iter()
        .find(|s| s.id.as_deref() == Some(id.as_str()))
    {
        Some(s) => axum::Json(s).into_response(),
        None => silence_error(SilenceError::NotFound(id)),
    }
}

async fn put(
    State(n): State<Notifier>,
    body: Result<axum::Json<ApiSilence>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(s) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: {}", e.body_text()),
            );
        }
    };
    // Saving fsyncs: off the async threads.
    let silences = n.silences().clone();
    match tokio::task::spawn_blocking(move || silences.put(&s, crate::now())).await {
        Ok(Ok(id)) => axum::Json(serde_json::json!({ "silenceID": id })).into_response(),
        Ok(Err(e)) => silence_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn expire(State(n): State<Notifier>, Path(id): Path<String>) -> Response {
    let silences = n.silences().clone();
    let which = id.clone();
    match tokio::task::spawn_blocking(move || silences.expire(&which, crate::now())).await {
        Ok(Ok(())) => axum::Json(serde_json::json!({ "expired": id })).into_response(),
        Ok(Err(e)) => silence_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn maintenance(State(n): State<Notifier>) -> Response {
    let now = crate::now();
    let windows: Vec<serde_json::Value> = n
        .maintenance()
        .iter()
        .map(|w| {
            let current = w.occurrence_at(now);
            serde_json::json!({
                "name": w.name,
                "matchers": w.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "active": current.is_some(),
                "current": current.map(|(s, e)| serde_json::json!({"startsAt": rfc3339(s), "endsAt": rfc3339(e)})),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "windows": windows })).into_response()
}

async fn pending(State(n): State<Notifier>) -> Response {
    axum::Json(serde_json::json!({ "pending": n.pending() })).into_response()
}
