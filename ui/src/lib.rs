//! # sightline-ui
//!
//! Sightline's HTTP API on the UI/API listener: SQL (`POST /api/v1/sql`, answered as JSON, CSV
//! or Arrow IPC; [`sql`], [`format`](mod@format)), traces by id ([`traces`]), SLOs and their history
//! ([`slos`]), silences, maintenance windows and the outbox ([`alerts`]), an explicit flush,
//! Prometheus self-metrics and health probes; every error's status is decided in [`error`].
//! The web app ([`web`]) joins it here.
//!
//! ```no_run
//! # async fn demo(state: sightline_ui::ApiState) {
//! let app: axum::Router = sightline_ui::router(state);
//! # }
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod error;
pub mod format;
pub mod guard;
pub mod services;
pub mod slos;
pub mod sql;
pub mod traces;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use sightline_store::Store;
use sightline_store::query::QueryEngine;

/// Whether the server should receive traffic (set once every listener is up, cleared when
/// shutting down).
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the API handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub engine: Arc<QueryEngine>,
    pub registry: Arc<Registry>,
    pub readiness: Arc<Readiness>,
    /// The SLO engine (absent in tools that run without one).
    pub slos: Option<sightline_slo::Engine>,
    /// Alert delivery (silences, maintenance windows, the outbox), when running.
    pub notify: Option<sightline_notify::Notifier>,
    /// Host names the API answers to besides `localhost` and IP addresses (see [`guard`]).
    pub allowed_hosts: guard::AllowedHosts,
    /// API keys: who may read and administer (see [`auth`]).
    pub keys: Arc<sightline_common::auth::Keys>,
    /// Where admin actions are recorded (see [`audit`]), when running with a store.
    pub audit: Option<Arc<sightline_store::audit::AuditLog>>,
}

/// The API routes.
pub fn router(state: ApiState) -> Router {
    let notify = state.notify.clone().map(alerts::router);
    let allowed_hosts = state.allowed_hosts.clone();
    let keys = state.keys.clone();
    let audit = audit::Audit(state.audit.clone());
    let last_flush = Arc::new(tokio::sync::Mutex::new(None));
    let whoami = Router::new()
        .route(auth::WHOAMI, get(auth::whoami))
        .with_state(keys.clone());
    let api = Router::new()
        .route("/api/v1", get(index))
        .route("/api/v1/sql", post(sql::handle))
        .route(
            "/api/v1/flush",
            post(move |state: State<ApiState>, actor: audit::Actor| {
                flush(state, actor, last_flush.clone())
            }),
        )
        .route("/api/v1/traces/{trace_id}", get(traces::get))
        .route("/api/v1/services/map", get(services::map))
        .route("/api/v1/slos", get(slos::list))
        .route("/api/v1/slos/{name}", get(slos::get))
        .route("/api/v1/slos/{name}/history", get(slos::history))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(web::serve)
        .with_state(state);
    let api = match notify {
        Some(n) => api.merge(n),
        None => api,
    };
    let api = api.merge(whoami);
    // The host check first, then the key.
    api.layer(axum::Extension(audit))
        .layer(axum::middleware::from_fn_with_state(keys, auth::require))
        .layer(axum::middleware::from_fn_with_state(
            allowed_hosts,
            guard::check,
        ))
}

/// Flushes on demand run one at a time, at most one a second: each writes a file per table
/// that holds rows, and a client calling in a loop would fill the disk with small files.
const MIN_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

async fn index() -> Response {
    axum::Json(serde_json::json!({
        "name": "sightline",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": {
            "sql": "POST /api/v1/sql {\"sql\": \"SELECT ...\"}",
            "flush": "POST /api/v1/flush",
            "trace": "GET /api/v1/traces/{trace_id}",
            "service_map": "GET /api/v1/services/map?from=&to=",
            "slos": "GET /api/v1/slos, GET /api/v1/slos/{name}, GET /api/v1/slos/{name}/history?from=&to=&step=",
            "metrics": "GET /metrics",
            "health": "GET /healthz, GET /readyz",
        },
        "docs": "docs/sql.md in the repository lists every table and column",
    }))
    .into_response()
}

async fn readyz(State(state): State<ApiState>) -> Response {
    if state.readiness.get() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn flush(
    State(state): State<ApiState>,
    actor: audit::Actor,
    last: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
) -> Result<Response, error::ApiError> {
    let Ok(mut last) = last.try_lock() else {
        return Err(error::ApiError::TooManyRequests(
            "a flush is running or about to; retry in a second".into(),
        ));
    };
    if let Some(at) = *last {
        tokio::time::sleep_until(at + MIN_FLUSH_INTERVAL).await;
    }
    *last = Some(tokio::time::Instant::now());
    let report = state
        .store
        .flush_all()
        .await
        .map_err(|e| error::ApiError::Unavailable(e.to_string()))?;
    let files: usize = report.values().sum();
    actor
        .record("flush", None, Some(format!("{files} files written")))
        .await;
    Ok(axum::Json(serde_json::json!({ "files_written": report })).into_response())
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
