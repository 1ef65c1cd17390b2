//! The shop: a catalog, carts, and a checkout that calls — over HTTP, through its own
//! endpoints — the catalog (idempotent: retried), a payment component (behind a circuit
//! breaker, with a timeout) and recommendations (non-essential: checkout degrades without
//! them). A token bucket limits the public API; faults can be injected per component.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, global};
use serde::{Deserialize, Serialize};

use crate::instrument::{Client, SCOPE};

/// Components faults can be injected into.
pub const COMPONENTS: [&str; 4] = ["catalog", "cart", "payment", "recommendations"];

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Share of requests that fail, 0–1.
    #[serde(default)]
    pub error_rate: f64,
    /// Added to every request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
}

impl Fault {
    /// Parses `payment=0.5` or `payment=0.2:300ms` (error rate, optional added latency).
    pub fn parse(s: &str) -> Result<(String, Fault), String> {
        let (name, spec) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected COMPONENT=ERROR_RATE[:LATENCYms]"))?;
        if !COMPONENTS.contains(&name) {
            return Err(format!(
                "{name:?} is not a component ({})",
                COMPONENTS.join(", ")
            ));
        }
        let (rate, latency) = spec.split_once(':').unwrap_or((spec, "0ms"));
        let error_rate: f64 = rate
            .parse()
            .map_err(|_| format!("{rate:?} is not an error rate between 0 and 1"))?;
        let latency_ms: u64 = latency
            .trim_end_matches("ms")
            .parse()
            .map_err(|_| format!("{latency:?} is not a latency like 300ms"))?;
        let f = Fault {
            error_rate,
            latency_ms,
        };
        f.check()?;
        Ok((name.to_string(), f))
    }

    fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("error_rate must be between 0 and 1".into());
        }
        if self.latency_ms > 60_000 {
            return Err("latency_ms must be at most 60000".into());
        }
        Ok(())
    }
}

/// A circuit breaker: after `threshold` consecutive failures, calls fail at once for
/// `cooldown`; then one trial call decides. A trial that never reports back (its request was
/// cancelled) expires after another cooldown, so the breaker cannot stay stuck open.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial_since: Option<Instant>,
    threshold: u32,
    cooldown: Duration,
}

/// What [`Breaker::allow`] granted: a normal call, or the trial of an open breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Normal,
    Trial,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            failures: 0,
            open_until: None,
            trial_since: None,
            threshold,
            cooldown,
        }
    }

    /// Whether a call may go out now, and as what.
    pub fn allow(&mut self, now: Instant) -> Option<Permit> {
        match self.open_until {
            None => Some(Permit::Normal),
            Some(t) if now < t => None,
            Some(_) if self.trial_since.is_some_and(|s| now < s + self.cooldown) => None,
            Some(_) => {
                self.trial_since = Some(now);
                Some(Permit::Trial)
            }
        }
    }

    /// A call's result. While the breaker is open only the trial's result counts (a late
    /// answer to a call made before it opened does not close it).
    pub fn record(&mut self, permit: Permit, ok: bool, now: Instant) -> &'static str {
        let open = self.open_until.is_some();
        if open && permit != Permit::Trial {
            return "";
        }
        if ok {
            *self = Self::new(self.threshold, self.cooldown);
            return if open { "closed" } else { "" };
        }
        self.failures += 1;
        if open || self.failures >= self.threshold {
            self.trial_since = None;
            self.open_until = Some(now + self.cooldown);
            return "opened";
        }
        ""
    }

    pub fn state(&self, now: Instant) -> &'static str {
        match self.open_until {
            None => "closed",
            Some(t) if now < t => "open",
            Some(_) => "half-open",
        }
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub id: u32,
    pub name: &'static str,
    pub price_cents: u64,
}

pub const CATALOG: [Product; 6] = [
    Product {
        id: 1,
        name: "espresso beans",
        price_cents: 1490,
    },
    Product {
        id: 2,
        name: "pour-over kettle",
        price_cents: 4900,
    },
    Product {
        id: 3,
        name: "ceramic dripper",
        price_cents: 2400,
    },
    Product {
        id: 4,
        name: "paper filters",
        price_cents: 590,
    },
    Product {
        id: 5,
        name: "hand grinder",
        price_cents: 8900,
    },
    Product {
        id: 6,
        name: "travel mug",
        price_cents: 1900,
    },
];

#[derive(Debug)]
pub struct Shop {
    pub client: Client,
    pub faults: Mutex<HashMap<String, Fault>>,
    pub carts: Mutex<HashMap<String, Vec<(u32, u32)>>>,
    pub payment_breaker: Mutex<Breaker>,
    pub limiter: Mutex<RateLimiter>,
    pub orders: std::sync::atomic::AtomicU64,
}

pub type AppState = Arc<Shop>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error answer, recorded on the current span as an exception event.
fn fail(status: StatusCode, kind: &str, message: String) -> Response {
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

impl Shop {
    /// Applies an injected fault: waits the added latency, then fails with the configured
    /// probability.
    async fn fault(&self, component: &str) -> Result<(), String> {
        let f = lock(&self.faults)
            .get(component)
            .copied()
            .unwrap_or_default();
        if f.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
        }
        if f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
            return Err(format!("{component} failed (injected fault)"));
        }
        Ok(())
    }

    /// Simulated work in an internal span (a query against a store that is not there).
    async fn work(&self, name: &str, base_ms: u64) {
        let tracer = global::tracer(SCOPE);
        let mut span = tracer
            .span_builder(name.to_string())
            .with_kind(SpanKind::Internal)
            .start_with_context(&tracer, &Context::current());
        let jitter = rand::random_range(0..=base_ms);
        tokio::time::sleep(Duration::from_millis(base_ms + jitter)).await;
        span.set_attribute(KeyValue::new("db.system.name", "in-memory"));
        span.end();
    }
}

/// Rate limit for the public API: 429 with `Retry-After` past the budget.
pub async fn limit(
    State(shop): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !lock(&shop.limiter).take(Instant::now()) {
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

pub async fn list_products(State(shop): State<AppState>) -> Response {
    if let Err(e) = shop.fault("catalog").await {
        tracing::error!(error = %e, "catalog query failed");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CatalogError", e);
    }
    shop.work("catalog.query", 3).await;
    Json(serde_json::json!({ "products": CATALOG })).into_response()
}

pub async fn get_product(State(shop): State<AppState>, Path(id): Path<u32>) -> Response {
    if let Err(e) = shop.fault("catalog").await {
        tracing::error!(error = %e, product = id, "catalog lookup failed");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CatalogError", e);
    }
    shop.work("catalog.lookup", 2).await;
    match CATALOG.iter().find(|p| p.id == id) {
        Some(p) => Json(p).into_response(),
        None => fail(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no product {id}"),
        ),
    }
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

pub async fn add_item(
    State(shop): State<AppState>,
    Path(user): Path<String>,
    body: Result<Json<AddItem>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(item) = match body {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "BadRequest", e.body_text()),
    };
    if let Err(e) = shop.fault("cart").await {
        tracing::error!(error = %e, user = %user, "cart update failed");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CartError", e);
    }
    if !CATALOG.iter().any(|p| p.id == item.product_id) || !(1..=20).contains(&item.quantity) {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidItem",
            "unknown product or quantity outside 1..=20".into(),
        );
    }
    shop.work("cart.save", 1).await;
    let size = {
        let mut carts = lock(&shop.carts);
        let cart = carts.entry(user.clone()).or_default();
        cart.push((item.product_id, item.quantity));
        cart.len()
    };
    tracing::debug!(user = %user, items = size, "item added to cart");
    Json(serde_json::json!({ "items": size })).into_response()
}

pub async fn get_cart(State(shop): State<AppState>, Path(user): Path<String>) -> Response {
    if let Err(e) = shop.fault("cart").await {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CartError", e);
    }
    let items = lock(&shop.carts).get(&user).cloned().unwrap_or_default();
    Json(serde_json::json!({ "user": user, "items": items.iter().map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q})).collect::<Vec<_>>() }))
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CheckoutRequest {
    pub user: String,
}

/// Checkout: prices from the catalog (retried), payment (breaker + timeout), then
/// recommendations (optional). Logs its outcome as `checkout.outcome`.
pub async fn checkout(
    State(shop): State<AppState>,
    body: Result<Json<CheckoutRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "BadRequest", e.body_text()),
    };
    let items = lock(&shop.carts).remove(&req.user).unwrap_or_default();
    if items.is_empty() {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "EmptyCart",
            "the cart is empty".into(),
        );
    }
    let mut total = 0u64;
    for (product, qty) in &items {
        match shop
            .client
            .get_with_retry(
                &format!("/internal/catalog/{product}"),
                Duration::from_millis(500),
                3,
            )
            .await
        {
            Ok(p) => total += p["price_cents"].as_u64().unwrap_or(0) * u64::from(*qty),
            Err(e) => {
                lock(&shop.carts).insert(req.user.clone(), items.clone());
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
    let permit = lock(&shop.payment_breaker).allow(Instant::now());
    let Some(permit) = permit else {
        lock(&shop.carts).insert(req.user.clone(), items);
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
    let order = shop
        .orders
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let paid = shop
        .client
        .call(
            reqwest::Method::POST,
            "/internal/payment/charge",
            Some(&serde_json::json!({ "order_id": order, "amount_cents": total })),
            Duration::from_secs(2),
        )
        .await;
    let transition = lock(&shop.payment_breaker).record(permit, paid.is_ok(), Instant::now());
    if !transition.is_empty() {
        tracing::warn!(breaker = transition, "payment circuit breaker {transition}");
    }
    if let Err(e) = paid {
        lock(&shop.carts).insert(req.user.clone(), items);
        tracing::error!(checkout.outcome = "error", order_id = order, user = %req.user, error = %e, "checkout failed: payment declined or unavailable");
        return fail(
            StatusCode::BAD_GATEWAY,
            "PaymentFailed",
            format!("payment: {e}"),
        );
    }
    // Recommendations are nice to have: a short timeout, and checkout answers without them.
    let recommendations = match shop
        .client
        .call(
            reqwest::Method::GET,
            &format!("/internal/recommendations/{}", req.user),
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

#[derive(Debug, Deserialize)]
pub struct Charge {
    pub order_id: u64,
    pub amount_cents: u64,
}

pub async fn charge(State(shop): State<AppState>, Json(c): Json<Charge>) -> Response {
    if let Err(e) = shop.fault("payment").await {
        tracing::error!(order_id = c.order_id, error = %e, "card processor error");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "ProcessorError", e);
    }
    shop.work("payment.authorize", 15).await;
    Json(serde_json::json!({ "order_id": c.order_id, "charged_cents": c.amount_cents, "status": "captured" }))
        .into_response()
}

pub async fn recommendations(State(shop): State<AppState>, Path(user): Path<String>) -> Response {
    if let Err(e) = shop.fault("recommendations").await {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "RecommenderError", e);
    }
    shop.work("recommendations.rank", 5).await;
    let pick = (user.len() % CATALOG.len()) as u32 + 1;
    Json(serde_json::json!({ "products": [pick] })).into_response()
}

pub async fn get_faults(State(shop): State<AppState>) -> Response {
    let faults = lock(&shop.faults).clone();
    let breaker = lock(&shop.payment_breaker).state(Instant::now());
    Json(serde_json::json!({ "faults": faults, "payment_breaker": breaker })).into_response()
}

/// `PUT /admin/faults/{component}` with `{"error_rate": 0.5, "latency_ms": 200}`.
pub async fn put_fault(
    State(shop): State<AppState>,
    Path(component): Path<String>,
    body: Result<Json<Fault>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(f) = match body {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "BadRequest", e.body_text()),
    };
    if !COMPONENTS.contains(&component.as_str()) {
        return fail(
            StatusCode::NOT_FOUND,
            "UnknownComponent",
            format!("{component:?} is not one of {}", COMPONENTS.join(", ")),
        );
    }
    if let Err(e) = f.check() {
        return fail(StatusCode::BAD_REQUEST, "BadFault", e);
    }
    tracing::warn!(component = %component, error_rate = f.error_rate, latency_ms = f.latency_ms, "fault injected");
    lock(&shop.faults).insert(component, f);
    get_faults(State(shop)).await
}

/// `DELETE /admin/faults`: everything healthy again.
pub async fn clear_faults(State(shop): State<AppState>) -> Response {
    lock(&shop.faults).clear();
    tracing::info!("faults cleared");
    get_faults(State(shop)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_are_checked() {
        assert_eq!(
            Fault::parse("payment=0.25:300ms"),
            Ok((
                "payment".into(),
                Fault {
                    error_rate: 0.25,
                    latency_ms: 300
                }
            ))
        );
        assert!(Fault::parse("payment=2").is_err());
        assert!(Fault::parse("warp-drive=0.1").is_err());
    }

    #[test]
    fn the_breaker_opens_after_failures_and_closes_after_a_good_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        let s = Duration::from_secs;
        for _ in 0..2 {
            assert_eq!(b.allow(t0), Some(Permit::Normal));
            assert_eq!(b.record(Permit::Normal, false, t0), "");
        }
        assert_eq!(b.record(Permit::Normal, false, t0), "opened");
        assert_eq!(b.allow(t0 + s(5)), None);
        // A late success of a call made before it opened does not close it.
        assert_eq!(b.record(Permit::Normal, true, t0 + s(6)), "");
        assert_eq!(b.allow(t0 + s(11)), Some(Permit::Trial), "a trial");
        assert_eq!(b.allow(t0 + s(11)), None, "only one");
        // A trial that never reports back expires after a cooldown.
        assert_eq!(b.allow(t0 + s(22)), Some(Permit::Trial));
        assert_eq!(b.record(Permit::Trial, true, t0 + s(22)), "closed");
        assert_eq!(b.state(t0 + s(22)), "closed");
    }

    #[test]
    fn the_token_bucket_refills() {
        let mut r = RateLimiter::new(10.0, 2.0);
        let t = Instant::now();
        assert!(r.take(t) && r.take(t));
        assert!(!r.take(t));
        assert!(r.take(t + Duration::from_millis(150)));
    }
}
