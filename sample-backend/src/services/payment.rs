//! Payment: authorizes a charge at checkout, captures it when the order is fulfilled. Neither
//! is idempotent without a key, so callers do not retry them at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::{Service, fail, rejected, traced};

/// `POST /charges`, `POST /charges/{order}/capture`.
pub fn router(svc: Arc<Service>) -> axum::Router {
    let ins = svc.ins.clone();
    traced(
        axum::Router::new()
            .route("/charges", post(authorize))
            .route("/charges/{order}/capture", post(capture))
            .with_state(svc),
        ins,
    )
}

#[derive(Debug, Deserialize)]
pub struct Charge {
    pub order_id: u64,
    pub amount_cents: u64,
}

async fn authorize(
    State(svc): State<Arc<Service>>,
    charge: Result<Json<Charge>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let c = match charge {
        Ok(Json(c)) => c,
        Err(e) => return rejected(&e),
    };
    if let Err(e) = svc.faults.apply("payment").await {
        tracing::error!(order_id = c.order_id, error = %e, "card processor error");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "ProcessorError", e);
    }
    svc.work("payment.authorize", 15).await;
    Json(serde_json::json!({ "order_id": c.order_id, "authorized_cents": c.amount_cents, "status": "authorized" }))
        .into_response()
}

async fn capture(State(svc): State<Arc<Service>>, Path(order): Path<u64>) -> Response {
    if let Err(e) = svc.faults.apply("payment").await {
        tracing::error!(order_id = order, error = %e, "capture failed at the card processor");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "ProcessorError", e);
    }
    svc.work("payment.capture", 8).await;
    Json(serde_json::json!({ "order_id": order, "status": "captured" })).into_response()
}
