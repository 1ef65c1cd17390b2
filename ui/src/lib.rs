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
pub mod tenant;
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

pub use tenant::{TenantApi, TenantDirectory};

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
    /// Every tenant's store, engine, SLOs, alert delivery and audit; a request reaches only
    /// its key's tenant's (see [`tenant`]).
    pub tenants: Arc<dyn TenantDirectory>,
    /// The self-metrics `/metrics` shows.
    pub metrics: Arc<dyn MetricsSource>,
    pub readiness: Arc<Readiness>,
    /// Host names the API answers to besides `localhost` and IP addresses (see [`guard`]).
    pub allowed_hosts: guard::AllowedHosts,
    /// API keys: who may read and administer (see [`auth`]).
    pub keys: Arc<sightline_common::auth::Keys>,
}

/// What `/metrics` shows: one registry, or the server's with every tenant's.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The metrics in the OpenMetrics text format.
    ///
    /// # Errors
    /// When a metric cannot be encoded.
    fn encode(&self) -> Result<String, std::fmt::Error>;
}

impl MetricsSource for Registry {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, self)?;
        Ok(text)
    }
}

/// The API routes.
pub fn router(state: ApiState) -> Router {
    let allowed_hosts = state.allowed_hosts.clone();
    let keys = state.keys.clone();
    let tenants = tenant::Tenants(state.tenants.clone());
    let last_flush = FlushTimes::default();
    let whoami = Router::new()
        .route(auth::WHOAMI, get(auth::whoami))
        .with_state(keys.clone());
    let api = Router::new()
        .route("/api/v1", get(index))
        .route("/api/v1/sql", post(sql::handle))
        .route(
            "/api/v1/flush",
            post(move |state: tenant::Tenant, actor: audit::Actor| {
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
        .with_state(state)
        .merge(alerts::router());
    let api = api.merge(whoami);
    // The host check first, then the key.
    api.layer(axum::Extension(tenants))
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

/// When each tenant's last flush on demand started (one tenant's flushes never hold
/// another's back).
type FlushTimes = Arc<
    std::sync::Mutex<
        std::collections::BTreeMap<String, Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>>,
    >,
>;

async fn flush(
    state: tenant::Tenant,
    actor: audit::Actor,
    times: FlushTimes,
) -> Result<Response, error::ApiError> {
    let last = times
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(state.name.clone())
        .or_default()
        .clone();
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

async fn metrics(
    State(state): State<ApiState>,
    principal: Option<axum::Extension<sightline_common::auth::Principal>>,
) -> Response {
    // The metrics are every tenant's: the operator's (the default tenant's admins) alone.
    if principal.is_some_and(|p| p.tenant != sightline_common::tenant::DEFAULT_TENANT) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": "/metrics shows every tenant's series: it needs an admin key of the default tenant"
            })),
        )
            .into_response();
    }
    match state.metrics.encode() {
        Ok(text) => (
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
