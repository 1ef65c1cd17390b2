//! The demo's shop: a handful of services instrumented with the OpenTelemetry Rust SDK, each
//! its own resource (`service.name`) and HTTP server — a frontend (`shop`), `catalog`,
//! `payment`, `recommendations`, and an `orders` worker fed through an asynchronous queue with
//! retries and a dead-letter queue — built the way a backend that stays up under load is:
//! timeouts, retries with backoff and jitter on idempotent calls, a circuit breaker around
//! payment, rate limiting, health checks and graceful degradation, each visible in its traces,
//! metrics and logs. See [`services`] for who calls whom.
//!
//! The frontend's endpoints: `GET /api/catalog`, `GET /api/catalog/{id}`,
//! `POST /api/cart/{user}/items`, `GET /api/cart/{user}`, `POST /api/checkout`; admin
//! `GET /admin/faults`, `PUT /admin/faults/{component}`, `DELETE /admin/faults`; `/healthz`,
//! `/readyz` (on every service).

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod faults;
pub mod history;
pub mod instrument;
pub mod load;
pub mod queue;
pub mod resilience;
pub mod services;
pub mod telemetry;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use tokio_util::sync::CancellationToken;

use crate::faults::{Fault, Faults};
use crate::instrument::Instruments;
use crate::queue::Queue;
use crate::services::{ROLES, Service, catalog, frontend, orders, payment, recommendations};
use crate::telemetry::ServiceTelemetry;

/// Orders that may wait in the queue (ready or to be retried) before sends are refused.
const ORDERS_QUEUE_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Address the frontend serves on; the other services listen on ephemeral ports of the
    /// same address.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Requests per second from the built-in load driver (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub load_rate: f64,
    /// Inject a fault at start: COMPONENT=ERROR_RATE or COMPONENT=ERROR_RATE:LATENCYms, e.g.
    /// payment=0.3:200ms
    /// (components: catalog, cart, payment, recommendations, orders). Repeatable.
    #[arg(long = "fault", value_parser = Fault::parse)]
    pub faults: Vec<(String, Fault)>,
    /// Public API rate limit, requests per second (burst: twice that).
    #[arg(long, default_value_t = 200.0)]
    pub rate_limit: f64,
    /// Appended to every service's name (`shop`, `catalog`, …), to tell several shops apart
    /// in one Sightline. The frontend is named by OTEL_SERVICE_NAME when it is set.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub name_suffix: String,
    /// Once listening, write {"http": "ADDR", "services": {NAME: ADDR}} to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// Each role with its `service.name`: the role's own name (the frontend's is `shop`, or
/// `OTEL_SERVICE_NAME`), with the suffix.
pub fn service_names(opts: &Options) -> Vec<(&'static str, String)> {
    let frontend = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "shop".into());
    ROLES
        .iter()
        .map(|&role| {
            let base = if role == "frontend" {
                frontend.clone()
            } else {
                role.to_string()
            };
            (role, format!("{base}{}", opts.name_suffix))
        })
        .collect()
}

/// Serves every service until `stop`, with the load driver when `load_rate > 0`.
/// `telemetry` is [`service_names`]' roles' telemetry, in that order (see [`telemetry::init`]).
///
/// # Errors
/// When an address cannot be bound, the ready file cannot be written, or a server fails.
pub async fn serve(
    opts: &Options,
    telemetry: &[ServiceTelemetry],
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let of = |role: &str| {
        ROLES
            .iter()
            .position(|r| *r == role)
            .and_then(|i| telemetry.get(i))
            .with_context(|| format!("no telemetry for the {role} service"))
    };
    let faults = Arc::new(Faults::new(opts.faults.iter().cloned()));
    let service = |role: &str| -> anyhow::Result<Service> {
        Ok(Service {
            ins: Instruments::new(of(role)?),
            faults: faults.clone(),
        })
    };
    // Every listener first: the callers need their callees' addresses.
    let mut listeners = BTreeMap::new();
    for role in ROLES {
        let addr = if role == "frontend" {
            opts.listen
        } else {
            SocketAddr::new(opts.listen.ip(), 0)
        };
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("the {role} service cannot listen on {addr}"))?;
        listeners.insert(role, l);
    }
    let url = |role: &str| -> anyhow::Result<String> {
        Ok(format!("http://{}", listeners[role].local_addr()?))
    };
    let orders_queue = Arc::new(Queue::new("orders", ORDERS_QUEUE_CAPACITY));
    let frontend_svc = service("frontend")?;
    let front = Arc::new(frontend::Frontend::new(
        frontend_svc.clone(),
        frontend::Peers {
            catalog: frontend_svc.client(&url("catalog")?),
            payment: frontend_svc.client(&url("payment")?),
            recommendations: frontend_svc.client(&url("recommendations")?),
        },
        orders_queue.clone(),
        opts.rate_limit,
        &of("frontend")?.meter,
    ));
    let recommendations_svc = service("recommendations")?;
    let orders_svc = service("orders")?;
    let worker = Arc::new(orders::Orders::new(
        orders_svc.clone(),
        orders_svc.client(&url("payment")?),
        orders_queue.clone(),
        &of("orders")?.meter,
    ));
    let mut routers = BTreeMap::new();
    routers.insert("frontend", frontend::router(front.clone()));
    routers.insert("catalog", catalog::router(Arc::new(service("catalog")?)));
    routers.insert("payment", payment::router(Arc::new(service("payment")?)));
    routers.insert(
        "recommendations",
        recommendations::router(Arc::new(recommendations::Recommendations {
            catalog: recommendations_svc.client(&url("catalog")?),
            svc: recommendations_svc,
        })),
    );
    let _gauges = gauges(&front, &orders_queue, of)?;

    let mut addresses = BTreeMap::new();
    for (role, name) in service_names(opts) {
        if let Some(l) = listeners.get(role) {
            addresses.insert(name, l.local_addr()?.to_string());
        }
    }
    let frontend_addr = listeners["frontend"].local_addr()?;
    if let Some(path) = &opts.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::json!({ "http": frontend_addr.to_string(), "services": addresses })
                .to_string(),
        )?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(%frontend_addr, services = ?addresses, "shop listening");

    let token = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (role, listener) in listeners {
        let Some(app) = routers.remove(role) else {
            continue;
        };
        let stopping = token.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping.cancelled_owned())
                .await
                .with_context(|| format!("the {role} service's server failed"))
        });
    }
    let stopping = token.clone();
    tasks.spawn(async move {
        orders::run(worker, stopping).await;
        Ok(())
    });
    if opts.load_rate > 0.0 {
        let (base, rate, stopping) = (
            format!("http://{frontend_addr}"),
            opts.load_rate,
            token.clone(),
        );
        tasks.spawn(async move {
            load::drive(base, rate, stopping.cancelled_owned()).await;
            Ok(())
        });
    }
    // Until `stop`, or until a server fails; then everything stops.
    tokio::pin!(stop);
    let mut result = Ok(());
    tokio::select! {
        () = &mut stop => {}
        Some(done) = tasks.join_next() => {
            result = done.context("a service panicked").and_then(|r| r);
        }
    }
    token.cancel();
    while let Some(done) = tasks.join_next().await {
        if result.is_ok() {
            result = done.context("a service panicked").and_then(|r| r);
        }
    }
    result
}

/// The observable gauges: items in carts (frontend) and messages in the orders queue, by
/// state (the worker's).
fn gauges<'a>(
    front: &Arc<frontend::Frontend>,
    orders_queue: &Arc<Queue>,
    of: impl Fn(&str) -> anyhow::Result<&'a ServiceTelemetry>,
) -> anyhow::Result<Vec<opentelemetry::metrics::ObservableGauge<u64>>> {
    let carts = Arc::downgrade(front);
    let cart_items = of("frontend")?
        .meter
        .u64_observable_gauge("shop.cart.items")
        .with_unit("{item}")
        .with_description("Items in open carts")
        .with_callback(move |o| {
            if let Some(f) = carts.upgrade() {
                let n: usize = f
                    .carts
                    .lock()
                    .map(|c| c.values().map(Vec::len).sum())
                    .unwrap_or(0);
                o.observe(n as u64, &[KeyValue::new("shop.cart.state", "open")]);
            }
        })
        .build();
    let q = Arc::downgrade(orders_queue);
    let depth = of("orders")?
        .meter
        .u64_observable_gauge("sample_queue.messages")
        .with_unit("{message}")
        .with_description("Messages in the queue: ready, waiting for a retry, dead-lettered")
        .with_callback(move |o| {
            if let Some(q) = q.upgrade() {
                let s = q.stats();
                for (state, destination, n) in [
                    ("ready", q.name.clone(), s.ready),
                    ("retrying", q.name.clone(), s.retrying),
                    ("dead", q.dead_letter_name(), s.dead_letters),
                ] {
                    o.observe(
                        n as u64,
                        &[
                            KeyValue::new("messaging.destination.name", destination),
                            KeyValue::new("sample_queue.state", state),
                        ],
                    );
                }
            }
        })
        .build();
    Ok(vec![cart_items, depth])
}

/// The command line: sets up telemetry, serves until SIGTERM or Ctrl-C, flushes.
///
/// # Errors
/// As [`serve`], and when telemetry cannot be set up.
pub async fn main(opts: Options) -> anyhow::Result<()> {
    let (telemetry, services) = telemetry::init(&service_names(&opts))?;
    let result = serve(&opts, &services, async {
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
