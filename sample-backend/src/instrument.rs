//! HTTP instrumentation with the OpenTelemetry API, following the HTTP semantic conventions:
//! a server span and `http.server.request.duration` / `http.server.active_requests` per
//! request (the caller's W3C `traceparent` continues its trace), and a client span and
//! `http.client.request.duration` per outgoing call (which sends `traceparent` on).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::metrics::{Histogram, UpDownCounter};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::trace::SdkTracer;

use crate::telemetry::ServiceTelemetry;

pub const SCOPE: &str = "sample-backend";

/// Semantic-convention bucket bounds for HTTP durations, in seconds.
const DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// One service's tracer and the instruments shared by its requests.
#[derive(Debug, Clone)]
pub struct Instruments {
    pub tracer: SdkTracer,
    server_duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    client_duration: Histogram<f64>,
}

impl Instruments {
    pub fn new(telemetry: &ServiceTelemetry) -> Self {
        let meter = &telemetry.meter;
        Self {
            tracer: telemetry.tracer.clone(),
            server_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("HTTP server requests in flight")
                .build(),
            client_duration: meter
                .f64_histogram("http.client.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP client requests")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
        }
    }
}

/// Takes a request off `http.server.active_requests` when dropped.
struct InFlight<'a>(&'a UpDownCounter<i64>, &'a [KeyValue]);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.add(-1, self.1);
    }
}

/// Axum middleware (as a `route_layer`, so the route template is known).
pub async fn server(
    axum::extract::State(ins): axum::extract::State<Instruments>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
    let tracer = &ins.tracer;
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("http.route", route.clone()),
        KeyValue::new("url.path", req.uri().path().to_string()),
        KeyValue::new("url.scheme", "http"),
    ];
    if let Some(ua) = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", ua.to_string()));
    }
    let span = tracer
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    let cx = parent.with_span(span);
    let common = [
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.route", route),
        KeyValue::new("url.scheme", "http"),
    ];
    ins.active.add(1, &common);
    // Decremented also when the request is cancelled (the client went away).
    let in_flight = InFlight(&ins.active, &common);
    let started = Instant::now();
    let response = next.run(req).with_context(cx.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    drop(in_flight);
    let status = response.status();
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
        span.set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
    }
    span.end();
    let mut attrs = common.to_vec();
    attrs.push(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    ins.server_duration.record(elapsed, &attrs);
    response
}

/// An HTTP client whose calls are client spans, carry `traceparent`, have a timeout, and (for
/// idempotent calls) are retried with exponential backoff and jitter.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    ins: Instruments,
}

/// A call that got no usable answer.
#[derive(Debug)]
pub enum CallError {
    Timeout(Duration),
    Transport(String),
    Status(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout(d) => write!(f, "timed out after {d:?}"),
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Status(s, body) => write!(f, "HTTP {s}: {body}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// Worth another try (for idempotent calls).
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Transport(_) => true,
            // 429 is not retried at once: the limiter asked for less traffic, not more.
            CallError::Status(s, _) => *s >= 500,
        }
    }
}

impl Client {
    pub fn new(base: String, ins: Instruments) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self { http, base, ins }
    }

    /// One call, as one client span.
    ///
    /// # Errors
    /// The transport's error, or a timeout; an HTTP error status is an answer, not an error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        let tracer = &self.ins.tracer;
        let url = format!("{}{path}", self.base);
        let parsed = reqwest::Url::parse(&url).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let port = parsed.as_ref().and_then(|u| u.port()).unwrap_or(80);
        let span = tracer
            .span_builder(method.as_str().to_string())
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method.as_str().to_string()),
                KeyValue::new("server.address", host.clone()),
                KeyValue::new("server.port", i64::from(port)),
                KeyValue::new("url.full", url.clone()),
            ])
            .start_with_context(tracer, &Context::current());
        let cx = Context::current().with_span(span);
        let mut headers = HashMap::new();
        global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(&mut headers))
        });
        let mut req = self.http.request(method.clone(), &url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = Instant::now();
        let result = async {
            match req.send().await {
                Err(e) if e.is_timeout() => Err(CallError::Timeout(timeout)),
                Err(e) => Err(CallError::Transport(e.to_string())),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    Context::current().span().set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status),
                    ));
                    let text = resp.text().await.unwrap_or_default();
                    if status >= 400 {
                        Err(CallError::Status(status, text))
                    } else {
                        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
                    }
                }
            }
        }
        .with_context(cx.clone())
        .await;
        let span = cx.span();
        let mut attrs = vec![
            KeyValue::new("http.request.method", method.as_str().to_string()),
            KeyValue::new("server.address", host),
            KeyValue::new("server.port", i64::from(port)),
        ];
        match &result {
            Ok(_) => {}
            Err(e) => {
                let kind = match e {
                    CallError::Timeout(_) => "timeout".to_string(),
                    CallError::Transport(_) => "transport".to_string(),
                    CallError::Status(s, _) => s.to_string(),
                };
                // A client span is an error for transport problems and for any 4xx/5xx.
                span.set_status(Status::error(e.to_string()));
                span.set_attribute(KeyValue::new("error.type", kind.clone()));
                attrs.push(KeyValue::new("error.type", kind));
            }
        }
        if let Err(CallError::Status(s, _)) = &result {
            attrs.push(KeyValue::new("http.response.status_code", i64::from(*s)));
        } else if result.is_ok() {
            attrs.push(KeyValue::new("http.response.status_code", 200_i64));
        }
        span.end();
        self.ins
            .client_duration
            .record(started.elapsed().as_secs_f64(), &attrs);
        result
    }

    /// An idempotent GET, tried up to `attempts` times with exponential backoff (50 ms base)
    /// and full jitter between tries; each try is its own client span, and the retry shows as
    /// an event on the caller's span.
    ///
    /// # Errors
    /// The last try's error when every try failed.
    pub async fn get_with_retry(
        &self,
        path: &str,
        timeout: Duration,
        attempts: u32,
    ) -> Result<serde_json::Value, CallError> {
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                let cap = 50u64 << attempt.min(6);
                let wait = Duration::from_millis(rand::random_range(0..=cap));
                Context::current().span().add_event(
                    "retry",
                    vec![
                        KeyValue::new("retry.attempt", i64::from(attempt)),
                        KeyValue::new("retry.delay_ms", wait.as_millis() as i64),
                    ],
                );
                tokio::time::sleep(wait).await;
            }
            match self.call(reqwest::Method::GET, path, None, timeout).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CallError::Transport("no attempt made".into())))
    }
}
