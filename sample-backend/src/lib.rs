//! A small shop service instrumented with the OpenTelemetry Rust SDK — Sightline's demo
//! workload, and an example of a backend built to stay up under load: timeouts, retries with
//! backoff and jitter on idempotent calls, a circuit breaker around payment, rate limiting,
//! health checks and graceful degradation, each visible in its traces, metrics and logs.
//!
//! Endpoints: `GET /api/catalog`, `GET /api/catalog/{id}`, `POST /api/cart/{user}/items`,
//! `GET /api/cart/{user}`, `POST /api/checkout`; internal `GET /internal/catalog/{id}`,
//! `POST /internal/payment/charge` and `GET /internal/recommendations/{user}` (called by
//! checkout over HTTP); admin
//! `GET /admin/faults`, `PUT /admin/faults/{component}`, `DELETE /admin/faults`; `/healthz`,
//! `/readyz`.

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod history;
pub mod instrument;
pub mod load;
pub mod shop;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post, put};
use opentelemetry::KeyValue;

use crate::instrument::{Client, Instruments};
use crate::shop::{Breaker, Fault, RateLimiter, Shop};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Requests per second from the built-in load driver (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub load_rate: f64,
    /// Inject a fault at start: COMPONENT=ERROR_RATE or COMPONENT=ERROR_RATE:LATENCYms, e.g.
    /// payment=0.3:200ms
    /// (components: catalog, cart, payment, recommendations). Repeatable.
    #[arg(long = "fault", value_parser = Fault::parse)]
    pub faults: Vec<(String, Fault)>,
    /// Public API rate limit, requests per second (burst: twice that).
    #[arg(long, default_value_t = 200.0)]
    pub rate_limit: f64,
    /// service.name, unless OTEL_SERVICE_NAME is set.
    #[arg(long, default_value = "shop")]
    pub service_name: String,
    /// Once listening, write {"http": "ADDR"} to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// The shop's routes, instrumented.
pub fn router(shop: Arc<Shop>, ins: Instruments) -> Router {
    let api = Router::new()
        .route("/api/catalog", get(shop::list_products))
        .route("/api/catalog/{id}", get(shop::get_product))
        .route("/api/cart/{user}/items", post(shop::add_item))
        .route("/api/cart/{user}", get(shop::get_cart))
        .route("/api/checkout", post(shop::checkout))
        .route_layer(axum::middleware::from_fn_with_state(
            shop.clone(),
            shop::limit,
        ));
    // Calls between the shop's own components skip the public rate limit.
    let internal = Router::new()
        .route("/internal/catalog/{id}", get(shop::get_product))
        .route("/internal/payment/charge", post(shop::charge))
        .route(
            "/internal/recommendations/{user}",
            get(shop::recommendations),
        );
    let traced = api
        .merge(internal)
        .route_layer(axum::middleware::from_fn_with_state(
            ins,
            instrument::server,
        ))
        .with_state(shop.clone());
    let admin = Router::new()
        .route(
            "/admin/faults",
            get(shop::get_faults).delete(shop::clear_faults),
        )
        .route("/admin/faults/{component}", put(shop::put_fault))
        .with_state(shop);
    traced
        .merge(admin)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
}

/// Serves until `stop`, with the load driver when `load_rate > 0`. Telemetry must be set up
/// (see [`telemetry::init`]).
///
/// # Errors
/// When the address cannot be bound, the ready file cannot be written, or the server fails.
pub async fn serve(
    opts: &Options,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let ins = Instruments::new();
    let shop = Arc::new(Shop {
        client: Client::new(format!("http://{addr}"), ins.clone()),
        faults: std::sync::Mutex::new(opts.faults.iter().cloned().collect()),
        carts: Default::default(),
        payment_breaker: std::sync::Mutex::new(Breaker::new(5, Duration::from_secs(10))),
        limiter: std::sync::Mutex::new(RateLimiter::new(opts.rate_limit, opts.rate_limit * 2.0)),
        orders: Default::default(),
    });
    // A gauge: items sitting in carts.
    let carts = Arc::downgrade(&shop);
    let _gauge = opentelemetry::global::meter(instrument::SCOPE)
        .u64_observable_gauge("shop.cart.items")
        .with_unit("{item}")
        .with_description("Items in open carts")
        .with_callback(move |o| {
            if let Some(shop) = carts.upgrade() {
                let n: usize = shop
                    .carts
                    .lock()
                    .map(|c| c.values().map(Vec::len).sum())
                    .unwrap_or(0);
                o.observe(n as u64, &[KeyValue::new("shop.cart.state", "open")]);
            }
        })
        .build();
    if let Some(path) = &opts.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::json!({ "http": addr.to_string() }).to_string(),
        )?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(%addr, "shop listening");
    let token = tokio_util::sync::CancellationToken::new();
    let mut driver = tokio::task::JoinSet::new();
    if opts.load_rate > 0.0 {
        driver.spawn(load::drive(
            format!("http://{addr}"),
            opts.load_rate,
            token.clone().cancelled_owned(),
        ));
    }
    let app = router(shop, ins);
    let stopping = token.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            stopping.cancel();
        })
        .await;
    token.cancel();
    driver.join_all().await;
    served.context("the shop's server failed")
}

/// The command line: sets up telemetry, serves until SIGTERM or Ctrl-C, flushes.
///
/// # Errors
/// As [`serve`], and when telemetry cannot be set up.
pub async fn main(opts: Options) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&opts.service_name)?;
    let result = serve(&opts, async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    })
    .await;
    tracing::info!("shop stopping; flushing telemetry");
    telemetry.shutdown();
    result
}
