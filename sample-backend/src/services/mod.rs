//! The shop's services, each an HTTP server of its own with its own OpenTelemetry resource:
//!
//! - [`frontend`] (`shop`): the public API — catalog, carts, checkout — behind a rate limit;
//!   checkout calls catalog (retried), payment (behind a circuit breaker), publishes the order
//!   to the `orders` queue, and asks recommendations (optional: it degrades without them).
//! - [`catalog`]: products and prices.
//! - [`payment`]: authorizes charges at checkout and captures them when an order is fulfilled.
//! - [`recommendations`]: a product for a user, checked against the catalog.
//! - [`orders`]: a worker fed by the queue — it captures the payment and fulfils the order,
//!   retrying failed deliveries with backoff and moving what still fails to a dead-letter
//!   queue.
//!
//! Each service's `tracing` events are its log records (see [`crate::telemetry`]), so they
//! are written in its own module.

pub mod catalog;
pub mod frontend;
pub mod orders;
pub mod payment;
pub mod recommendations;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

use crate::faults::Faults;
use crate::instrument::{Client, Instruments};

/// The roles, in the order they start (each one's callees before it). A role is also its
/// module's name and, with the frontend's exception, its `service.name`.
pub const ROLES: [&str; 5] = [
    "catalog",
    "payment",
    "recommendations",
    "orders",
    "frontend",
];

/// What every service has: its instruments and the shared fault table.
#[derive(Debug, Clone)]
pub struct Service {
    pub ins: Instruments,
    pub faults: Arc<Faults>,
}

impl Service {
    /// A client for the service at `base`, whose calls are this service's client spans.
    pub fn client(&self, base: &str) -> Client {
        Client::new(base.to_string(), self.ins.clone())
    }

    /// Simulated work in an internal span (a query against a store that is not there).
    pub async fn work(&self, name: &str, base_ms: u64) {
        let tracer = &self.ins.tracer;
        let mut span = tracer
            .span_builder(name.to_string())
            .with_kind(SpanKind::Internal)
            .start_with_context(tracer, &Context::current());
        let jitter = rand::random_range(0..=base_ms);
        tokio::time::sleep(Duration::from_millis(base_ms + jitter)).await;
        span.set_attribute(KeyValue::new("db.system.name", "in-memory"));
        span.end();
    }
}

/// An error answer, recorded on the current span as an exception event (and as its status
/// for a server error).
pub fn fail(status: StatusCode, kind: &str, message: String) -> Response {
    let cx = Context::current();
    let span = cx.span();
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", kind.to_string()),
            KeyValue::new("exception.message", message.clone()),
        ],
    );
    if status.is_server_error() {
        span.set_status(Status::error(message.clone()));
    }
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// 400 for a body that is not the JSON expected, saying what is wrong with it.
pub fn rejected(e: &axum::extract::rejection::JsonRejection) -> Response {
    fail(StatusCode::BAD_REQUEST, "BadRequest", e.body_text())
}

/// Traces `router`'s routes with `ins` (server spans and HTTP server metrics), and adds the
/// health checks every service answers.
pub fn traced(router: axum::Router, ins: Instruments) -> axum::Router {
    router
        .route_layer(axum::middleware::from_fn_with_state(
            ins,
            crate::instrument::server,
        ))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ready" }))
}
