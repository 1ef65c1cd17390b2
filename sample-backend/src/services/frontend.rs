//! The frontend (`shop`): the public API — catalog, carts and checkout — behind a token
//! bucket, and the admin API that injects faults into every service.
//!
//! Checkout prices the cart from the catalog (idempotent: retried with backoff), authorizes
//! the payment (not retried; behind a circuit breaker, with a timeout), publishes the order to
//! the `orders` queue for the worker, and asks for recommendations (nice to have: a short
//! timeout, and checkout answers without them, marked degraded). It logs how it ended as
//! `checkout.outcome`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use opentelemetry::metrics::Counter;
use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue, global};
use serde::Deserialize;

use super::{Service, catalog, fail, rejected, traced};
use crate::faults::{Fault, check_component};
use crate::instrument::Client;
use crate::queue::{self, Queue};
use crate::resilience::{Breaker, RateLimiter};

/// The services the frontend calls.
#[derive(Debug)]
pub struct Peers {
    pub catalog: Client,
    pub payment: Client,
    pub recommendations: Client,
}

#[derive(Debug)]
pub struct Frontend {
    pub svc: Service,
    pub peers: Peers,
    pub orders_queue: Arc<Queue>,
    pub carts: Mutex<HashMap<String, Vec<(u32, u32)>>>,
    pub payment_breaker: Mutex<Breaker>,
    pub limiter: Mutex<RateLimiter>,
    pub orders: std::sync::atomic::AtomicU64,
    sent: Counter<u64>,
}

impl Frontend {
    pub fn new(
        svc: Service,
        peers: Peers,
        orders_queue: Arc<Queue>,
        rate_limit: f64,
        meter: &opentelemetry::metrics::Meter,
    ) -> Self {
        Self {
            svc,
            peers,
            orders_queue,
            carts: Mutex::default(),
            payment_breaker: Mutex::new(Breaker::new(5, Duration::from_secs(10))),
            limiter: Mutex::new(RateLimiter::new(rate_limit, rate_limit * 2.0)),
            orders: Default::default(),
            sent: meter
                .u64_counter("messaging.client.sent.messages")
                .with_unit("{message}")
                .with_description("Messages the producer sent")
                .build(),
        }
    }
}

type AppState = Arc<Frontend>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The public API (rate limited and traced), the admin API and the health checks.
pub fn router(f: AppState) -> axum::Router {
    let api = axum::Router::new()
        .route("/api/catalog", get(list_products))
        .route("/api/catalog/{id}", get(get_product))
        .route("/api/cart/{user}/items", post(add_item))
        .route("/api/cart/{user}", get(get_cart))
        .route("/api/checkout", post(checkout))
        .route_layer(axum::middleware::from_fn_with_state(f.clone(), limit))
        .with_state(f.clone());
    let admin = axum::Router::new()
        .route("/admin/faults", get(get_faults).delete(clear_faults))
        .route("/admin/faults/{component}", put(put_fault))
        .with_state(f.clone());
    traced(api, f.svc.ins.clone()).merge(admin)
}

/// Rate limit for the public API: 429 with `Retry-After` past the budget.
async fn limit(
    State(f): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !lock(&f.limiter).take(Instant::now()) {
        tracing::warn!(path = %req.uri().path(), "rate limit exceeded");
        let mut r = fail(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimited",
            "too many requests".into(),
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return r;
    }
    next.run(req).await
}

/// The catalog's answer, or the error it becomes here (its 404 stays a 404).
fn from_catalog(answer: Result<serde_json::Value, crate::instrument::CallError>) -> Response {
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(crate::instrument::CallError::Status(404, _)) => {
            fail(StatusCode::NOT_FOUND, "NotFound", "no such product".into())
        }
        Err(e) => {
            tracing::error!(error = %e, "catalog unavailable");
            fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "CatalogUnavailable",
                format!("catalog: {e}"),
            )
        }
    }
}

async fn list_products(State(f): State<AppState>) -> Response {
    from_catalog(
        f.peers
            .catalog
            .get_with_retry("/products", Duration::from_millis(500), 3)
            .await,
    )
}

async fn get_product(State(f): State<AppState>, Path(id): Path<u32>) -> Response {
    from_catalog(
        f.peers
            .catalog
            .get_with_retry(&format!("/products/{id}"), Duration::from_millis(500), 3)
            .await,
    )
}

#[derive(Debug, Deserialize)]
pub struct AddItem {
    pub product_id: u32,
    #[serde(default = "one")]
    pub quantity: u32,
}

fn one() -> u32 {
    1
}

async fn add_item(
    State(f): State<AppState>,
    Path(user): Path<String>,
    item: Result<Json<AddItem>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let item = match item {
        Ok(Json(i)) => i,
        Err(e) => return rejected(&e),
    };
    if let Err(e) = f.svc.faults.apply("cart").await {
        tracing::error!(error = %e, user = %user, "cart update failed");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CartError", e);
    }
    if !catalog::exists(item.product_id) || !(1..=20).contains(&item.quantity) {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidItem",
            "unknown product or quantity outside 1..=20".into(),
        );
    }
    f.svc.work("cart.save", 1).await;
    let size = {
        let mut carts = lock(&f.carts);
        let cart = carts.entry(user.clone()).or_default();
        cart.push((item.product_id, item.quantity));
        cart.len()
    };
    tracing::debug!(user = %user, items = size, "item added to cart");
    Json(serde_json::json!({ "items": size })).into_response()
}

async fn get_cart(State(f): State<AppState>, Path(user): Path<String>) -> Response {
    if let Err(e) = f.svc.faults.apply("cart").await {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CartError", e);
    }
    let items = lock(&f.carts).get(&user).cloned().unwrap_or_default();
    Json(serde_json::json!({ "user": user, "items": items.iter().map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q})).collect::<Vec<_>>() }))
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CheckoutRequest {
    pub user: String,
}

async fn checkout(
    State(f): State<AppState>,
    req: Result<Json<CheckoutRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match req {
        Ok(Json(r)) => r,
        Err(e) => return rejected(&e),
    };
    let items = lock(&f.carts).remove(&req.user).unwrap_or_default();
    if items.is_empty() {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "EmptyCart",
            "the cart is empty".into(),
        );
    }
    let mut total = 0u64;
    for (product, qty) in &items {
        match f
            .peers
            .catalog
            .get_with_retry(
                &format!("/products/{product}"),
                Duration::from_millis(500),
                3,
            )
            .await
        {
            Ok(p) => total += p["price_cents"].as_u64().unwrap_or(0) * u64::from(*qty),
            Err(e) => {
                lock(&f.carts).insert(req.user.clone(), items.clone());
                tracing::error!(checkout.outcome = "error", user = %req.user, error = %e, "checkout failed: catalog unavailable");
                return fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CatalogUnavailable",
                    format!("catalog: {e}"),
                );
            }
        }
    }
    // Payment: not idempotent without a key, so not retried; guarded by the breaker.
    let permit = lock(&f.payment_breaker).allow(Instant::now());
    let Some(permit) = permit else {
        lock(&f.carts).insert(req.user.clone(), items);
        Context::current().span().add_event(
            "circuit_open",
            vec![KeyValue::new("peer.service", "payment")],
        );
        tracing::error!(checkout.outcome = "error", user = %req.user, "checkout failed: payment circuit open");
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "CircuitOpen",
            "payment is unavailable (circuit open)".into(),
        );
    };
    let order = f.orders.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let paid = f
        .peers
        .payment
        .call(
            reqwest::Method::POST,
            "/charges",
            Some(&serde_json::json!({ "order_id": order, "amount_cents": total })),
            Duration::from_secs(2),
        )
        .await;
    let transition = lock(&f.payment_breaker).record(permit, paid.is_ok(), Instant::now());
    if !transition.is_empty() {
        tracing::warn!(breaker = transition, "payment circuit breaker {transition}");
    }
    if let Err(e) = paid {
        lock(&f.carts).insert(req.user.clone(), items);
        tracing::error!(checkout.outcome = "error", order_id = order, user = %req.user, error = %e, "checkout failed: payment declined or unavailable");
        return fail(
            StatusCode::BAD_GATEWAY,
            "PaymentFailed",
            format!("payment: {e}"),
        );
    }
    f.place(order, total, &req.user);
    // Recommendations are nice to have: a short timeout, and checkout answers without them.
    let recommendations = match f
        .peers
        .recommendations
        .call(
            reqwest::Method::GET,
            &format!("/recommendations/{}", req.user),
            None,
            Duration::from_millis(250),
        )
        .await
    {
        Ok(v) => v["products"].clone(),
        Err(e) => {
            tracing::warn!(error = %e, "recommendations unavailable; checkout continues without them");
            Context::current()
                .span()
                .set_attribute(KeyValue::new("shop.degraded", true));
            serde_json::json!([])
        }
    };
    tracing::info!(checkout.outcome = "ok", order_id = order, user = %req.user, amount_cents = total, items = items.len(), "checkout completed");
    Json(serde_json::json!({
        "order_id": order,
        "amount_cents": total,
        "recommendations": recommendations,
    }))
    .into_response()
}

impl Frontend {
    /// Publishes a paid order for the worker, as a producer span whose context travels in the
    /// message. A full queue loses the order's fulfilment, not the checkout: it is logged.
    fn place(&self, order: u64, amount_cents: u64, user: &str) {
        let destination = self.orders_queue.name.clone();
        let cx = queue::producer_span(&self.svc.ins.tracer, &destination, &Context::current());
        let mut headers = HashMap::new();
        global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
        let sent = self.orders_queue.send(
            serde_json::json!({ "order_id": order, "amount_cents": amount_cents, "user": user }),
            headers,
        );
        let span = cx.span();
        let mut attrs = vec![
            KeyValue::new("messaging.system", queue::SYSTEM),
            KeyValue::new("messaging.destination.name", destination),
            KeyValue::new("messaging.operation.name", "send"),
        ];
        match sent {
            Ok(id) => span.set_attribute(KeyValue::new("messaging.message.id", id.to_string())),
            Err(e) => {
                span.set_status(Status::error(e.to_string()));
                span.set_attribute(KeyValue::new("error.type", "queue_full"));
                attrs.push(KeyValue::new("error.type", "queue_full"));
                tracing::error!(order_id = order, error = %e, "order not queued for fulfilment");
            }
        }
        self.sent.add(1, &attrs);
        span.end();
    }
}

async fn get_faults(State(f): State<AppState>) -> Response {
    let faults = f.svc.faults.all();
    let breaker = lock(&f.payment_breaker).state(Instant::now());
    Json(serde_json::json!({
        "faults": faults,
        "payment_breaker": breaker,
        "orders_queue": f.orders_queue.stats(),
    }))
    .into_response()
}

/// `PUT /admin/faults/{component}` with `{"error_rate": 0.5, "latency_ms": 200}`.
async fn put_fault(
    State(f): State<AppState>,
    Path(component): Path<String>,
    fault: Result<Json<Fault>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let fault = match fault {
        Ok(Json(x)) => x,
        Err(e) => return rejected(&e),
    };
    if let Err(e) = check_component(&component) {
        return fail(StatusCode::NOT_FOUND, "UnknownComponent", e);
    }
    if let Err(e) = fault.check() {
        return fail(StatusCode::BAD_REQUEST, "BadFault", e);
    }
    tracing::warn!(component = %component, error_rate = fault.error_rate, latency_ms = fault.latency_ms, "fault injected");
    f.svc.faults.set(component, fault);
    get_faults(State(f)).await
}

/// `DELETE /admin/faults`: everything healthy again.
async fn clear_faults(State(f): State<AppState>) -> Response {
    f.svc.faults.clear();
    tracing::info!("faults cleared");
    get_faults(State(f)).await
}
