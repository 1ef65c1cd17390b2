//! HTTP API: silences (Alertmanager's JSON shape), maintenance windows and the outbox.
//!
//! - `GET /api/v1/silences`, `GET /api/v1/silences/{id}`
//! - `POST /api/v1/silences` → `{"silenceID": …}` (with an `id`: replaces that silence)
//! - `DELETE /api/v1/silences/{id}`: ends it now
//! - `GET /api/v1/maintenance`: the configured windows and whether each is in effect
//! - `GET /api/v1/notifications/pending`: what the outbox still has to deliver

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sightline_common::clock::rfc3339;
use sightline_notify::silence::ApiSilence;
use sightline_notify::{Notifier, NotifyError};

use crate::audit::Actor;
use crate::error::ApiError;
use crate::tenant::Tenant;

/// The routes; each request works on its tenant's alert delivery.
pub fn router() -> Router {
    Router::new()
        .route("/api/v1/silences", get(list).post(put))
        .route("/api/v1/silences/{id}", get(one).delete(expire))
        .route("/api/v1/maintenance", get(maintenance))
        .route("/api/v1/notifications/pending", get(pending))
}

/// The requesting tenant's alert delivery.
#[derive(Debug)]
struct Delivery(Notifier);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Delivery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let tenant = Tenant::from_request_parts(parts, state).await?;
        tenant
            .notify
            .clone()
            .map(Delivery)
            .ok_or_else(|| ApiError::NotFound("alert delivery is not running".into()))
    }
}

async fn list(Delivery(n): Delivery) -> Response {
    axum::Json(n.silences().list(n.now())).into_response()
}

async fn one(Delivery(n): Delivery, Path(id): Path<String>) -> Result<Response, ApiError> {
    n.silences()
        .list(n.now())
        .into_iter()
        .find(|s| s.id.as_deref() == Some(id.as_str()))
        .map(|s| axum::Json(s).into_response())
        .ok_or_else(|| NotifyError::SilenceNotFound(id).into())
}

/// Runs a silence change (it fsyncs) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NotifyError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

async fn put(
    Delivery(n): Delivery,
    actor: Actor,
    body: Result<axum::Json<ApiSilence>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let axum::Json(s) =
        body.map_err(|e| ApiError::BadRequest(format!("invalid silence: {}", e.body_text())))?;
    // What was asked for, bounded like the silence itself (64 matchers, 4 KiB comment).
    let detail = serde_json::to_string(&s).ok();
    let (silences, now) = (n.silences().clone(), n.now());
    let id = blocking(move || silences.put(&s, now)).await?;
    actor
        .record("silence.create", Some(id.clone()), detail)
        .await;
    Ok(axum::Json(serde_json::json!({ "silenceID": id })).into_response())
}

async fn expire(
    Delivery(n): Delivery,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (silences, now, which) = (n.silences().clone(), n.now(), id.clone());
    blocking(move || silences.expire(&which, now)).await?;
    actor.record("silence.expire", Some(id.clone()), None).await;
    Ok(axum::Json(serde_json::json!({ "expired": id })).into_response())
}

async fn maintenance(Delivery(n): Delivery) -> Response {
    let now = n.now();
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

async fn pending(Delivery(n): Delivery) -> Response {
    axum::Json(serde_json::json!({ "pending": n.pending() })).into_response()
}
