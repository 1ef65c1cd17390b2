//! `sightline load`: a bounded, closed-loop OTLP load generator.
//!
//! It pre-builds a pool of realistic OTLP export requests (traces, logs or metrics, already
//! protobuf-encoded and, for OTLP/HTTP, already gzip'd), then runs N workers that each send
//! requests back-to-back over their own gRPC channel / HTTP client until the deadline, and
//! reports throughput, latency percentiles, bytes sent and (optionally) the server's peak RSS.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status as SpanStatus,
};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _, Bytes};
use rand::rngs::StdRng;
use rand::{Rng, RngCore as _, SeedableRng as _};
use tonic::codec::{CompressionEncoding, DecodeBuf, EncodeBuf};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

/// Every request (gRPC or HTTP) gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Pause after a transport error so a dead server does not turn the loop into a spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Pause after a rejection (non-2xx / gRPC status), like a polite exporter would.
const REJECT_BACKOFF: Duration = Duration::from_millis(10);
/// Upper bound on pre-generated items (pool size x batch size) to keep memory sane.
const MAX_POOL_ITEMS: u64 = 2_000_000;
/// gzip level tonic uses for per-message compression (used to estimate gRPC wire bytes).
const GZIP_LEVEL: u32 = 6;
/// Distinct error messages kept per run; further ones are folded into "(other)".
const MAX_ERROR_KINDS: usize = 8;

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

/// Transport(s) to drive.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC only (needs --grpc).
    Grpc,
    /// OTLP/HTTP protobuf only (needs --http).
    Http,
    /// Both at once: --connections workers on each.
    Both,
}

/// Which telemetry the requests carry.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalArg {
    Traces,
    Logs,
    Metrics,
    /// Rotate traces, logs and metrics requests.
    Mixed,
}

/// `sightline load`: send realistic OTLP batches to a running server for a bounded time.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// OTLP/gRPC target, host:port (e.g. 127.0.0.1:4317).
    #[arg(long, value_name = "ADDR")]
    pub grpc: Option<String>,

    /// OTLP/HTTP target, host:port (e.g. 127.0.0.1:4318); requests go to /v1/{traces,logs,metrics}.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Protocol to use [default: grpc and/or http, whichever address was given].
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,

    /// Telemetry carried by the requests.
    #[arg(long, value_enum, default_value = "traces")]
    pub signal: SignalArg,

    /// Concurrent workers per protocol, each with its own gRPC channel / HTTP connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,

    /// How long to send, e.g. 10s, 500ms, 2m (a bare number means seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Items per request: spans, log records or metric data points.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_spans: u32,

    /// gzip the request bodies (Content-Encoding: gzip / grpc-encoding: gzip).
    #[arg(long)]
    pub gzip: bool,

    /// Sample this process's RSS from /proc/PID/status every 100 ms and report the peak.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Print one JSON object with the results instead of the human-readable table.
    #[arg(long)]
    pub json: bool,

    /// Distinct pre-built requests per signal, rotated during the run.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pool_size: u32,

    /// Seed for the data generator [default: derived from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Parses `10s`, `250ms`, `2m` (and a bare `10` as seconds). Zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Signals and the request pool
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Traces = 0,
    Logs = 1,
    Metrics = 2,
}

impl Signal {
    const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log_records",
            Signal::Metrics => "data_points",
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }

    fn grpc_path(self) -> PathAndQuery {
        PathAndQuery::from_static(match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        })
    }
}

impl SignalArg {
    fn signals(self) -> Vec<Signal> {
        match self {
            SignalArg::Traces => vec![Signal::Traces],
            SignalArg::Logs => vec![Signal::Logs],
            SignalArg::Metrics => vec![Signal::Metrics],
            SignalArg::Mixed => Signal::ALL.to_vec(),
        }
    }

    fn items_label(self) -> &'static str {
        match self {
            SignalArg::Traces => "spans",
            SignalArg::Logs => "log records",
            SignalArg::Metrics => "data points",
            SignalArg::Mixed => "items",
        }
    }
}

/// One pre-built export request.
struct Payload {
    signal: Signal,
    /// Plain protobuf (gRPC message; tonic gzips it per message when --gzip).
    proto: Bytes,
    /// OTLP/HTTP body: `proto`, gzip'd when --gzip.
    http_body: Bytes,
    /// Items in the request (spans / log records / data points).
    items: u64,
    /// gRPC bytes on the wire (5-byte frame header + message, compressed size when --gzip).
    grpc_wire_bytes: u64,
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(GZIP_LEVEL),
    );
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

fn build_payload(
    signal: Signal,
    batch: usize,
    gzip_on: bool,
    rng: &mut StdRng,
) -> anyhow::Result<Payload> {
    let now = now_ns();
    let (proto, items) = match signal {
        Signal::Traces => {
            let req = gen_trace_request(rng, batch, now);
            (req.encode_to_vec(), count_spans(&req))
        }
        Signal::Logs => {
            let req = gen_logs_request(rng, batch, now);
            (req.encode_to_vec(), count_log_records(&req))
        }
        Signal::Metrics => {
            let req = gen_metrics_request(rng, batch, now);
            (req.encode_to_vec(), count_data_points(&req))
        }
    };
    let proto = Bytes::from(proto);
    // With --gzip the HTTP body is gzip'd here; gRPC bodies are compressed by tonic per
    // message, with the same level, so the compressed length also estimates gRPC wire bytes.
    let http_body = if gzip_on {
        Bytes::from(gzip(&proto)?)
    } else {
        proto.clone()
    };
    let grpc_msg_len = http_body.len();
    Ok(Payload {
        signal,
        proto,
        http_body,
        items,
        grpc_wire_bytes: 5 + grpc_msg_len as u64,
    })
}

/// Builds `pool_size` requests per signal; for several signals they are interleaved so that
/// rotating through the pool alternates traces, logs and metrics.
fn build_pool(
    signals: &[Signal],
    pool_size: usize,
    batch: usize,
    gzip_on: bool,
    seed: u64,
) -> anyhow::Result<Vec<Payload>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool = Vec::with_capacity(pool_size * signals.len());
    for _ in 0..pool_size {
        for &s in signals {
            pool.push(build_payload(s, batch, gzip_on, &mut rng)?);
        }
    }
    Ok(pool)
}

// ---------------------------------------------------------------------------------------------
// Realistic data
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Route {
    method: &'static str,
    route: &'static str,
    base_ms: f64,
}

#[derive(Clone, Copy)]
struct DbQuery {
    op: &'static str,
    collection: &'static str,
    text: &'static str,
}

struct Db {
    system: &'static str,
    host: &'static str,
    port: u16,
    queries: &'static [DbQuery],
}

struct ServiceDef {
    name: &'static str,
    version: &'static str,
    language: &'static str,
    scope_name: &'static str,
    scope_version: &'static str,
    port: u16,
    routes: &'static [Route],
    internal_ops: &'static [&'static str],
    /// Indices into SERVICES this service calls over HTTP.
    calls: &'static [usize],
    db: Option<Db>,
}

const fn r(method: &'static str, route: &'static str, base_ms: f64) -> Route {
    Route {
        method,
        route,
        base_ms,
    }
}

const fn q(op: &'static str, collection: &'static str, text: &'static str) -> DbQuery {
    DbQuery {
        op,
        collection,
        text,
    }
}

const SERVICES: &[ServiceDef] = &[
    ServiceDef {
        name: "frontend",
        version: "2.14.1",
        language: "nodejs",
        scope_name: "@opentelemetry/instrumentation-http",
        scope_version: "0.57.1",
        port: 8080,
        routes: &[
            r("GET", "/", 25.0),
            r("GET", "/api/products/{id}", 18.0),
            r("POST", "/api/cart", 22.0),
            r("POST", "/api/checkout", 120.0),
            r("GET", "/api/recommendations", 40.0),
        ],
        internal_ops: &["session.load", "template.render", "currency.convert"],
        calls: &[1, 2, 4],
        db: None,
    },
    ServiceDef {
        name: "cart",
        version: "1.8.0",
        language: "go",
        scope_name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
        scope_version: "0.60.0",
        port: 7070,
        routes: &[
            r("GET", "/cart/{user_id}", 6.0),
            r("POST", "/cart/{user_id}/items", 9.0),
            r("DELETE", "/cart/{user_id}", 7.0),
        ],
        internal_ops: &["cart.load", "cart.merge", "cart.validate"],
        calls: &[4],
        db: Some(Db {
            system: "redis",
            host: "redis-cart",
            port: 6379,
            queries: &[
                q("HGETALL", "cart", "HGETALL cart:?"),
                q("HSET", "cart", "HSET cart:? item ? qty ?"),
            ],
        }),
    },
    ServiceDef {
        name: "checkout",
        version: "3.2.0",
        language: "java",
        scope_name: "io.opentelemetry.tomcat-10.0",
        scope_version: "2.12.0-alpha",
        port: 5050,
        routes: &[
            r("POST", "/checkout", 80.0),
            r("GET", "/orders/{order_id}", 12.0),
        ],
        internal_ops: &["order.prepare", "tax.compute", "email.enqueue"],
        calls: &[1, 3, 4, 5],
        db: Some(Db {
            system: "postgresql",
            host: "orders-db",
            port: 5432,
            queries: &[
                q(
                    "INSERT",
                    "orders",
                    "INSERT INTO orders (id, user_id, total) VALUES ($1, $2, $3)",
                ),
                q("SELECT", "orders", "SELECT * FROM orders WHERE id = $1"),
            ],
        }),
    },
    ServiceDef {
        name: "payment",
        version: "0.9.4",
        language: "python",
        scope_name: "opentelemetry.instrumentation.flask",
        scope_version: "0.51b0",
        port: 50051,
        routes: &[r("POST", "/charge", 45.0), r("POST", "/refund", 30.0)],
        internal_ops: &["card.validate", "fraud.score", "charge.authorize"],
        calls: &[],
        db: None,
    },
    ServiceDef {
        name: "product-catalog",
        version: "1.3.7",
        language: "rust",
        scope_name: "tracing-opentelemetry",
        scope_version: "0.30.0",
        port: 3550,
        routes: &[
            r("GET", "/products", 8.0),
            r("GET", "/products/{id}", 4.0),
            r("GET", "/products/search", 15.0),
        ],
        internal_ops: &["catalog.filter", "json.serialize"],
        calls: &[],
        db: Some(Db {
            system: "postgresql",
            host: "catalog-db",
            port: 5432,
            queries: &[
                q(
                    "SELECT",
                    "products",
                    "SELECT id, name, price FROM products WHERE id = $1",
                ),
                q(
                    "SELECT",
                    "products",
                    "SELECT id, name FROM products WHERE name ILIKE $1 LIMIT 20",
                ),
            ],
        }),
    },
    ServiceDef {
        name: "shipping",
        version: "1.1.2",
        language: "go",
        scope_name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
        scope_version: "0.60.0",
        port: 50052,
        routes: &[r("POST", "/quote", 10.0), r("POST", "/ship", 35.0)],
        internal_ops: &["quote.compute", "label.create"],
        calls: &[],
        db: None,
    },
];

const HOST_SUFFIXES: &[&str] = &["7f9c2-xk2lp", "7f9c2-q8mzr", "5d4b8-w2n7v"];

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

fn random_service(rng: &mut StdRng) -> &'static ServiceDef {
    &SERVICES[rng.random_range(0..SERVICES.len())]
}

fn new_trace_id(rng: &mut StdRng) -> Vec<u8> {
    let mut b = [0u8; 16];
    while b == [0u8; 16] {
        rng.fill_bytes(&mut b);
    }
    b.to_vec()
}

fn new_span_id(rng: &mut StdRng) -> [u8; 8] {
    let mut b = [0u8; 8];
    while b == [0u8; 8] {
        rng.fill_bytes(&mut b);
    }
    b
}

/// Long-tailed multiplier with mean ~1.
fn latency_factor(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(0.0001..1.0);
    0.4 + (-u.ln()) * 0.6
}

/// Replaces every `{param}` of a route template with a random number.
fn fill_route(rng: &mut StdRng, route: &str) -> String {
    let mut out = String::with_capacity(route.len() + 8);
    let mut rest = route;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str(&rng.random_range(1..100_000u32).to_string());
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn av_str(v: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

/// Per-batch resource identity of each service (host/instance chosen per batch).
fn service_resources(rng: &mut StdRng) -> Vec<Resource> {
    let env = if rng.random_bool(0.85) {
        "production"
    } else {
        "staging"
    };
    SERVICES
        .iter()
        .map(|svc| {
            let host = format!("{}-{}", svc.name, pick(rng, HOST_SUFFIXES));
            Resource {
                attributes: vec![
                    kv_str("service.name", svc.name),
                    kv_str("service.namespace", "shop"),
                    kv_str("service.version", svc.version),
                    kv_str(
                        "service.instance.id",
                        format!("{host}-{}", rng.random_range(1..4u8)),
                    ),
                    kv_str("host.name", host),
                    kv_str("deployment.environment", env),
                    kv_str("telemetry.sdk.name", "opentelemetry"),
                    kv_str("telemetry.sdk.language", svc.language),
                    kv_str("telemetry.sdk.version", "1.30.0"),
                    kv_int("process.pid", rng.random_range(1..32_768)),
                ],
                ..Default::default()
            }
        })
        .collect()
}

fn scope_for(svc: &ServiceDef) -> InstrumentationScope {
    InstrumentationScope {
        name: svc.scope_name.to_string(),
        version: svc.scope_version.to_string(),
        ..Default::default()
    }
}

fn peer_ip(rng: &mut StdRng) -> String {
    format!(
        "10.{}.{}.{}",
        rng.random_range(0..4u8),
        rng.random_range(0..=255u8),
        rng.random_range(1..255u8)
    )
}

/// HTTP status for a server span and whether it is an error (~2% 5xx, a few 404s).
fn http_outcome(rng: &mut StdRng, method: &str) -> (i64, bool) {
    if rng.random_bool(0.02) {
        (pick(rng, &[500, 502, 503, 504]), true)
    } else if method == "GET" && rng.random_bool(0.03) {
        (404, false)
    } else if method == "POST" && rng.random_bool(0.5) {
        (201, false)
    } else {
        (200, false)
    }
}

const ERROR_MESSAGES: &[(&str, &str)] = &[
    ("TimeoutError", "upstream request timed out after 5000ms"),
    ("ConnectionResetError", "connection reset by peer"),
    ("PaymentDeclined", "card declined: insufficient funds"),
    ("PoolExhausted", "database connection pool exhausted"),
    (
        "NullPointerException",
        "Cannot invoke \"Order.getTotal()\" because \"order\" is null",
    ),
];

/// A child interval inside `[start, end]`.
fn child_window(rng: &mut StdRng, start: u64, end: u64) -> (u64, u64) {
    let dur = end.saturating_sub(start);
    if dur < 4 {
        return (start, end);
    }
    let off = rng.random_range(0..dur / 2);
    let avail = dur - off;
    let cd = ((avail as f64) * rng.random_range(0.2..0.95f64)) as u64;
    (start + off, start + off + cd.max(1))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Server,
    Client,
    Internal,
}

#[derive(Clone, Copy)]
struct Node {
    svc: usize,
    span_id: [u8; 8],
    kind: NodeKind,
    start: u64,
    end: u64,
}

struct SpanSpec {
    svc: usize,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    remote_parent: bool,
    name: String,
    kind: SpanKind,
    start: u64,
    end: u64,
    attributes: Vec<KeyValue>,
    error: bool,
}

fn finish_span(rng: &mut StdRng, trace_id: &[u8], spec: SpanSpec) -> (usize, Span) {
    let mut events = Vec::new();
    let status = if spec.error {
        let (ty, msg) = pick(rng, ERROR_MESSAGES);
        events.push(Event {
            time_unix_nano: spec.end.saturating_sub(1_000).max(spec.start),
            name: "exception".to_string(),
            attributes: vec![
                kv_str("exception.type", ty),
                kv_str("exception.message", msg),
                kv_str(
                    "exception.stacktrace",
                    format!(
                        "{ty}: {msg}\n    at {}::handle (src/handler.rs:142)",
                        SERVICES[spec.svc].name
                    ),
                ),
            ],
            ..Default::default()
        });
        Some(SpanStatus {
            message: msg.to_string(),
            code: StatusCode::Error as i32,
        })
    } else {
        None
    };
    if rng.random_bool(0.08) {
        let n = rng.random_range(1..=2);
        for _ in 0..n {
            let t = rng.random_range(spec.start..=spec.end);
            let ev = match rng.random_range(0..3u8) {
                0 => Event {
                    time_unix_nano: t,
                    name: "cache.miss".to_string(),
                    attributes: vec![kv_str(
                        "cache.key",
                        format!("product:{}", rng.random_range(1..5000u32)),
                    )],
                    ..Default::default()
                },
                1 => Event {
                    time_unix_nano: t,
                    name: "retry".to_string(),
                    attributes: vec![
                        kv_int("retry.attempt", rng.random_range(1..4)),
                        kv_f64("retry.backoff_ms", 50.0 * rng.random_range(1..5u8) as f64),
                    ],
                    ..Default::default()
                },
                _ => Event {
                    time_unix_nano: t,
                    name: "message.sent".to_string(),
                    attributes: vec![kv_int("message.size", rng.random_range(64..16_384))],
                    ..Default::default()
                },
            };
            events.push(ev);
        }
        events.sort_by_key(|e| e.time_unix_nano);
    }
    let links = if rng.random_bool(0.03) {
        vec![Link {
            trace_id: new_trace_id(rng),
            span_id: new_span_id(rng).to_vec(),
            attributes: vec![kv_str("link.reason", "batch.origin")],
            flags: 0x101,
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    // Low byte: W3C sampled flag; 0x100: "has is_remote", 0x200: "parent is remote".
    let flags = if spec.remote_parent { 0x301 } else { 0x101 };
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: spec.span_id.to_vec(),
        trace_state: if rng.random_bool(0.05) {
            "vendor=sl,sampled=1".to_string()
        } else {
            String::new()
        },
        parent_span_id: spec.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags,
        name: spec.name,
        kind: spec.kind as i32,
        start_time_unix_nano: spec.start,
        end_time_unix_nano: spec.end,
        attributes: spec.attributes,
        events,
        links,
        status,
        ..Default::default()
    };
    (spec.svc, span)
}

fn server_attrs(
    rng: &mut StdRng,
    svc: &ServiceDef,
    route: Route,
    path: &str,
    code: i64,
    is_entry: bool,
) -> Vec<KeyValue> {
    let mut a = vec![
        kv_str("http.request.method", route.method),
        kv_str("http.route", route.route),
        kv_str("url.path", path),
        kv_str("url.scheme", "http"),
        kv_int("http.response.status_code", code),
        kv_str("server.address", svc.name),
        kv_int("server.port", svc.port as i64),
        kv_str("network.protocol.version", "1.1"),
        kv_str("network.peer.address", peer_ip(rng)),
        kv_int("network.peer.port", rng.random_range(30_000..61_000)),
    ];
    if is_entry {
        a.push(kv_str(
            "user_agent.original",
            pick(
                rng,
                &[
                    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
                    "curl/8.5.0",
                ],
            ),
        ));
        a.push(kv_int("http.request.body.size", rng.random_range(0..4096)));
    }
    a
}

/// One trace of exactly `n` spans (n >= 1), appended to `out` as (service index, span).
fn gen_trace(rng: &mut StdRng, n: usize, now: u64, out: &mut Vec<(usize, Span)>) {
    let trace_id = new_trace_id(rng);
    let entry = if rng.random_bool(0.6) {
        0
    } else {
        rng.random_range(1..SERVICES.len())
    };
    let svc = &SERVICES[entry];
    let route = pick(rng, svc.routes);
    let dur = ((route.base_ms * latency_factor(rng) * 1e6) as u64).max(200_000) + n as u64 * 50_000;
    let end = now.saturating_sub(rng.random_range(0..5_000_000_000u64));
    let start = end.saturating_sub(dur);

    let root_id = new_span_id(rng);
    let (code, err) = http_outcome(rng, route.method);
    let path = fill_route(rng, route.route);
    let attrs = server_attrs(rng, svc, route, &path, code, true);
    let root = SpanSpec {
        svc: entry,
        span_id: root_id,
        parent: None,
        remote_parent: false,
        name: format!("{} {}", route.method, route.route),
        kind: SpanKind::Server,
        start,
        end,
        attributes: attrs,
        error: err,
    };
    out.push(finish_span(rng, &trace_id, root));
    let mut nodes = vec![Node {
        svc: entry,
        span_id: root_id,
        kind: NodeKind::Server,
        start,
        end,
    }];

    while nodes.len() < n {
        let remaining = n - nodes.len();
        let parents: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].kind != NodeKind::Client)
            .collect();
        let p = nodes[pick(rng, &parents)];
        let pdef = &SERVICES[p.svc];
        let (cs, ce) = child_window(rng, p.start, p.end);
        let roll: f64 = rng.random();

        if remaining >= 2 && !pdef.calls.is_empty() && roll < 0.45 {
            // Outgoing HTTP call: a client span here, a server span in the callee.
            let target = pick(rng, pdef.calls);
            let tdef = &SERVICES[target];
            let troute = pick(rng, tdef.routes);
            let (code, server_err) = http_outcome(rng, troute.method);
            let path = fill_route(rng, troute.route);
            let client_id = new_span_id(rng);
            let server_id = new_span_id(rng);
            let net = ((ce - cs) / 10).min(rng.random_range(50_000..300_000u64));
            let (ss, se) = (cs + net, ce.saturating_sub(net).max(cs + net));

            let client_attrs = vec![
                kv_str("http.request.method", troute.method),
                kv_str(
                    "url.full",
                    format!("http://{}:{}{}", tdef.name, tdef.port, path),
                ),
                kv_str("server.address", tdef.name),
                kv_int("server.port", tdef.port as i64),
                kv_str("net.peer.name", tdef.name),
                kv_int("net.peer.port", tdef.port as i64),
                kv_int("http.response.status_code", code),
            ];
            let client = SpanSpec {
                svc: p.svc,
                span_id: client_id,
                parent: Some(p.span_id),
                remote_parent: false,
                name: format!("{} {}", troute.method, troute.route),
                kind: SpanKind::Client,
                start: cs,
                end: ce,
                attributes: client_attrs,
                error: code >= 400 && (server_err || rng.random_bool(0.5)),
            };
            out.push(finish_span(rng, &trace_id, client));
            let sattrs = server_attrs(rng, tdef, troute, &path, code, false);
            let server = SpanSpec {
                svc: target,
                span_id: server_id,
                parent: Some(client_id),
                remote_parent: true,
                name: format!("{} {}", troute.method, troute.route),
                kind: SpanKind::Server,
                start: ss,
                end: se,
                attributes: sattrs,
                error: server_err,
            };
            out.push(finish_span(rng, &trace_id, server));
            nodes.push(Node {
                svc: p.svc,
                span_id: client_id,
                kind: NodeKind::Client,
                start: cs,
                end: ce,
            });
            nodes.push(Node {
                svc: target,
                span_id: server_id,
                kind: NodeKind::Server,
                start: ss,
                end: se,
            });
        } else if let (Some(db), true) = (&pdef.db, roll < 0.75) {
            let query = pick(rng, db.queries);
            let id = new_span_id(rng);
            let attrs = vec![
                kv_str("db.system.name", db.system),
                kv_str("db.operation.name", query.op),
                kv_str("db.collection.name", query.collection),
                kv_str("db.query.text", query.text),
                kv_str("server.address", db.host),
                kv_int("server.port", db.port as i64),
                kv_str("net.peer.name", db.host),
                kv_int("net.peer.port", db.port as i64),
                kv_int("db.response.returned_rows", rng.random_range(0..50)),
            ];
            let spec = SpanSpec {
                svc: p.svc,
                span_id: id,
                parent: Some(p.span_id),
                remote_parent: false,
                name: format!("{} {}", query.op, query.collection),
                kind: SpanKind::Client,
                start: cs,
                end: ce,
                attributes: attrs,
                error: rng.random_bool(0.02),
            };
            out.push(finish_span(rng, &trace_id, spec));
            nodes.push(Node {
                svc: p.svc,
                span_id: id,
                kind: NodeKind::Client,
                start: cs,
                end: ce,
            });
        } else {
            let op = pick(rng, pdef.internal_ops);
            let id = new_span_id(rng);
            let attrs = vec![
                kv_str("code.function.name", op),
                kv_int("app.items.count", rng.random_range(0..40)),
                kv_bool("app.cache.hit", rng.random_bool(0.7)),
                kv_f64(
                    "app.load.ratio",
                    (rng.random_range(0..1000u32) as f64) / 1000.0,
                ),
            ];
            let spec = SpanSpec {
                svc: p.svc,
                span_id: id,
                parent: Some(p.span_id),
                remote_parent: false,
                name: op.to_string(),
                kind: SpanKind::Internal,
                start: cs,
                end: ce,
                attributes: attrs,
                error: rng.random_bool(0.02),
            };
            out.push(finish_span(rng, &trace_id, spec));
            nodes.push(Node {
                svc: p.svc,
                span_id: id,
                kind: NodeKind::Internal,
                start: cs,
                end: ce,
            });
        }
    }
}

/// An export request with exactly `n` spans: traces of 3..=12 spans (the last one may be
/// shorter to hit `n`), grouped into one ResourceSpans per service.
fn gen_trace_request(rng: &mut StdRng, n: usize, now: u64) -> ExportTraceServiceRequest {
    let resources = service_resources(rng);
    let mut spans: Vec<(usize, Span)> = Vec::with_capacity(n + 1);
    while spans.len() < n {
        let want = rng.random_range(3..=12usize).min(n - spans.len());
        gen_trace(rng, want, now, &mut spans);
    }
    let mut by_svc: Vec<Vec<Span>> = (0..SERVICES.len()).map(|_| Vec::new()).collect();
    for (svc, span) in spans {
        by_svc[svc].push(span);
    }
    let resource_spans = by_svc
        .into_iter()
        .zip(resources)
        .enumerate()
        .filter(|(_, (s, _))| !s.is_empty())
        .map(|(i, (spans, resource))| ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope_for(&SERVICES[i])),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn gen_log_record(rng: &mut StdRng, svc: &ServiceDef, now: u64) -> LogRecord {
    let route = pick(rng, svc.routes);
    let roll: f64 = rng.random();
    let (sev, text) = if roll < 0.10 {
        (SeverityNumber::Debug, "DEBUG")
    } else if roll < 0.80 {
        (SeverityNumber::Info, "INFO")
    } else if roll < 0.93 {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Error, "ERROR")
    };
    let ms = route.base_ms * latency_factor(rng);
    let path = fill_route(rng, route.route);
    let uid = rng.random_range(1..50_000u32);
    let body_text = match (sev, rng.random_range(0..3u8)) {
        (SeverityNumber::Debug, 0) => format!(
            "cache lookup key=product:{} hit={}",
            rng.random_range(1..5000u32),
            rng.random_bool(0.7)
        ),
        (SeverityNumber::Debug, _) => format!(
            "db query took {:.1}ms rows={}",
            ms / 3.0,
            rng.random_range(0..200u32)
        ),
        (SeverityNumber::Info, 0) => {
            format!("{} {} {} in {:.1}ms", route.method, path, 200, ms)
        }
        (SeverityNumber::Info, 1) => format!(
            "user {uid} added {} item(s) to cart",
            rng.random_range(1..5u8)
        ),
        (SeverityNumber::Info, _) => format!(
            "order {} placed, total {:.2} USD",
            rng.random_range(100_000..999_999u32),
            rng.random_range(500..50_000u32) as f64 / 100.0
        ),
        (SeverityNumber::Warn, 0) => format!(
            "slow request: {} {} took {:.0}ms",
            route.method,
            path,
            ms * 8.0
        ),
        (SeverityNumber::Warn, _) => format!(
            "retrying call to {} (attempt {})",
            random_service(rng).name,
            rng.random_range(2..5u8)
        ),
        (_, 0) => format!(
            "payment declined for order {}: insufficient funds",
            rng.random_range(100_000..999_999u32)
        ),
        (_, 1) => format!("upstream {} returned 503", random_service(rng).name),
        (_, _) => "failed to acquire connection: pool exhausted (max=20)".to_string(),
    };
    let body = if rng.random_bool(0.03) {
        AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv_str("event", "audit"),
                    kv_int("user.id", uid as i64),
                    kv_str("message", body_text),
                ],
            })),
        }
    } else {
        av_str(body_text)
    };
    let time = now.saturating_sub(rng.random_range(0..5_000_000_000u64));
    let (trace_id, span_id, flags) = if rng.random_bool(0.75) {
        (new_trace_id(rng), new_span_id(rng).to_vec(), 1)
    } else {
        (Vec::new(), Vec::new(), 0)
    };
    let mut attributes = vec![
        kv_str("code.function.name", pick(rng, svc.internal_ops)),
        kv_str("http.route", route.route),
        kv_int("user.id", uid as i64),
        kv_f64("duration_ms", (ms * 10.0).round() / 10.0),
    ];
    if rng.random_bool(0.2) {
        attributes.push(kv_bool("retry", rng.random_bool(0.5)));
    }
    let event_name = if rng.random_bool(0.05) {
        pick(
            rng,
            &["session.start", "checkout.completed", "cart.abandoned"],
        )
        .to_string()
    } else {
        String::new()
    };
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time + rng.random_range(100_000..50_000_000u64),
        severity_number: sev as i32,
        severity_text: text.to_string(),
        body: Some(body),
        attributes,
        flags,
        trace_id,
        span_id,
        event_name,
        ..Default::default()
    }
}

/// An export request with exactly `n` log records spread over the services.
fn gen_logs_request(rng: &mut StdRng, n: usize, now: u64) -> ExportLogsServiceRequest {
    let resources = service_resources(rng);
    let mut by_svc: Vec<Vec<LogRecord>> = (0..SERVICES.len()).map(|_| Vec::new()).collect();
    for _ in 0..n {
        let i = rng.random_range(0..SERVICES.len());
        let rec = gen_log_record(rng, &SERVICES[i], now);
        by_svc[i].push(rec);
    }
    let resource_logs = by_svc
        .into_iter()
        .zip(resources)
        .enumerate()
        .filter(|(_, (l, _))| !l.is_empty())
        .map(|(i, (log_records, resource))| ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: format!("shop.{}.logger", SERVICES[i].name),
                    ..Default::default()
                }),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

const DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn route_attrs(rng: &mut StdRng, route: Route) -> Vec<KeyValue> {
    let (code, _) = http_outcome(rng, route.method);
    vec![
        kv_str("http.request.method", route.method),
        kv_str("http.route", route.route),
        kv_int("http.response.status_code", code),
    ]
}

/// An export request with exactly `n` data points: per service a monotonic cumulative counter
/// (`http.server.requests`), a delta histogram (`http.server.request.duration`) and a gauge
/// (`process.cpu.utilization`), filled round-robin.
fn gen_metrics_request(rng: &mut StdRng, n: usize, now: u64) -> ExportMetricsServiceRequest {
    let resources = service_resources(rng);
    let s = SERVICES.len();
    let mut sums: Vec<Vec<NumberDataPoint>> = (0..s).map(|_| Vec::new()).collect();
    let mut hists: Vec<Vec<HistogramDataPoint>> = (0..s).map(|_| Vec::new()).collect();
    let mut gauges: Vec<Vec<NumberDataPoint>> = (0..s).map(|_| Vec::new()).collect();
    let time = now.saturating_sub(rng.random_range(0..2_000_000_000u64));
    let process_start = now.saturating_sub(3_600_000_000_000);
    let interval_start = time.saturating_sub(10_000_000_000);
    for k in 0..n {
        let i = (k / 3) % s;
        let svc = &SERVICES[i];
        let route = pick(rng, svc.routes);
        match k % 3 {
            0 => sums[i].push(NumberDataPoint {
                attributes: route_attrs(rng, route),
                start_time_unix_nano: process_start,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsInt(
                    rng.random_range(1_000..5_000_000),
                )),
                ..Default::default()
            }),
            1 => {
                let count = rng.random_range(1..200u64);
                let mut buckets = vec![0u64; DURATION_BOUNDS.len() + 1];
                let (mut sum, mut min, mut max) = (0.0f64, f64::MAX, 0.0f64);
                for _ in 0..count {
                    let v = route.base_ms * latency_factor(rng) / 1000.0;
                    let b = DURATION_BOUNDS
                        .iter()
                        .position(|&bound| v <= bound)
                        .unwrap_or(DURATION_BOUNDS.len());
                    buckets[b] += 1;
                    sum += v;
                    min = min.min(v);
                    max = max.max(v);
                }
                hists[i].push(HistogramDataPoint {
                    attributes: route_attrs(rng, route),
                    start_time_unix_nano: interval_start,
                    time_unix_nano: time,
                    count,
                    sum: Some(sum),
                    bucket_counts: buckets,
                    explicit_bounds: DURATION_BOUNDS.to_vec(),
                    min: Some(min),
                    max: Some(max),
                    ..Default::default()
                });
            }
            _ => gauges[i].push(NumberDataPoint {
                attributes: vec![kv_str("cpu.mode", pick(rng, &["user", "system", "wait"]))],
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(
                    rng.random_range(0..1000u32) as f64 / 1000.0,
                )),
                ..Default::default()
            }),
        }
    }
    let mut resource_metrics = Vec::new();
    for (i, resource) in resources.into_iter().enumerate() {
        let mut metrics = Vec::new();
        let sum_points = std::mem::take(&mut sums[i]);
        if !sum_points.is_empty() {
            metrics.push(Metric {
                name: "http.server.requests".to_string(),
                description: "Number of HTTP requests handled".to_string(),
                unit: "{request}".to_string(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: sum_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
        }
        let hist_points = std::mem::take(&mut hists[i]);
        if !hist_points.is_empty() {
            metrics.push(Metric {
                name: "http.server.request.duration".to_string(),
                description: "Duration of HTTP server requests".to_string(),
                unit: "s".to_string(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: hist_points,
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                })),
                ..Default::default()
            });
        }
        let gauge_points = std::mem::take(&mut gauges[i]);
        if !gauge_points.is_empty() {
            metrics.push(Metric {
                name: "process.cpu.utilization".to_string(),
                description: "CPU utilization of the process".to_string(),
                unit: "1".to_string(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: gauge_points,
                })),
                ..Default::default()
            });
        }
        if metrics.is_empty() {
            continue;
        }
        resource_metrics.push(ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope_for(&SERVICES[i])),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
    }
    ExportMetricsServiceRequest { resource_metrics }
}

fn count_spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

fn count_log_records(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

fn count_data_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len() as u64,
            Some(metric::Data::Sum(s)) => s.data_points.len() as u64,
            Some(metric::Data::Histogram(h)) => h.data_points.len() as u64,
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
            Some(metric::Data::Summary(s)) => s.data_points.len() as u64,
            None => 0,
        })
        .sum()
}

/// Items the server refused in an otherwise successful export (OTLP partial success).
fn decode_rejected(signal: Signal, body: &[u8]) -> Result<u64, prost::DecodeError> {
    let n = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_spans),
        Signal::Logs => ExportLogsServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_log_records),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_data_points),
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// gRPC codec: sends pre-encoded protobuf bytes, decodes only the partial-success count
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct RawCodec {
    signal: Signal,
}

struct RawEncoder;

struct RejectedDecoder {
    signal: Signal,
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = u64;
    type Encoder = RawEncoder;
    type Decoder = RejectedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RejectedDecoder {
            signal: self.signal,
        }
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RejectedDecoder {
    type Item = u64;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<u64>, Self::Error> {
        let len = src.remaining();
        let bytes = src.copy_to_bytes(len);
        decode_rejected(self.signal, &bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad export response: {e}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

enum Outcome {
    /// 2xx / gRPC OK; `rejected_items` from the partial-success field.
    Ok { rejected_items: u64 },
    /// The server answered with a non-2xx status / gRPC error status (key: "HTTP 429", ...).
    Rejected(String),
    /// No usable answer: connect/transport error, timeout, unreadable body.
    Error(String),
}

enum Client {
    Grpc(tonic::client::Grpc<Channel>),
    Http {
        client: reqwest::Client,
        base_url: String,
        gzip: bool,
    },
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

impl Client {
    async fn send(&mut self, p: &Payload) -> Outcome {
        match self {
            Client::Grpc(grpc) => {
                if let Err(e) = grpc.ready().await {
                    return Outcome::Error(format!("gRPC channel not ready: {}", error_chain(&e)));
                }
                let mut req = tonic::Request::new(p.proto.clone());
                req.set_timeout(REQUEST_TIMEOUT);
                match grpc
                    .unary(req, p.signal.grpc_path(), RawCodec { signal: p.signal })
                    .await
                {
                    Ok(resp) => Outcome::Ok {
                        rejected_items: resp.into_inner(),
                    },
                    // A status carrying a source error was produced client-side (transport,
                    // timeout); a bare status came from the server.
                    Err(status) => match std::error::Error::source(&status) {
                        Some(_) => Outcome::Error(format!(
                            "gRPC {:?}: {}",
                            status.code(),
                            error_chain(&status)
                        )),
                        None => Outcome::Rejected(format!("gRPC {:?}", status.code())),
                    },
                }
            }
            Client::Http {
                client,
                base_url,
                gzip,
            } => {
                let url = format!("{base_url}{}", p.signal.http_path());
                let mut rb = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(p.http_body.clone());
                if *gzip {
                    rb = rb.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let resp = match rb.send().await {
                    Ok(r) => r,
                    Err(e) => return Outcome::Error(format!("HTTP: {}", error_chain(&e))),
                };
                let status = resp.status();
                let is_proto = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("application/x-protobuf"));
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        return Outcome::Error(format!("HTTP body: {}", error_chain(&e)));
                    }
                };
                if status.is_success() {
                    let rejected_items = if is_proto && !body.is_empty() {
                        decode_rejected(p.signal, &body).unwrap_or(0)
                    } else {
                        0
                    };
                    Outcome::Ok { rejected_items }
                } else {
                    Outcome::Rejected(format!("HTTP {}", status.as_u16()))
                }
            }
        }
    }
}

#[derive(Default, Clone)]
struct Stats {
    ok: u64,
    rejected: BTreeMap<String, u64>,
    errored: u64,
    errors: BTreeMap<String, u64>,
    /// Items in requests answered OK.
    items_in_ok: u64,
    /// Of those, items reported rejected through partial success.
    items_partial_rejected: u64,
    items_accepted: u64,
    items_by_signal: [u64; 3],
    /// Payload bytes of requests that got an answer (OK or rejected).
    bytes_sent: u64,
    /// Latency of OK requests, microseconds.
    latencies_us: Vec<u64>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: String, n: u64) {
    if map.len() >= MAX_ERROR_KINDS && !map.contains_key(&key) {
        *map.entry("(other)".to_string()).or_default() += n;
    } else {
        *map.entry(key).or_default() += n;
    }
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        for (k, v) in o.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.errored += o.errored;
        for (k, v) in o.errors {
            bump(&mut self.errors, k, v);
        }
        self.items_in_ok += o.items_in_ok;
        self.items_partial_rejected += o.items_partial_rejected;
        self.items_accepted += o.items_accepted;
        for (mine, theirs) in self.items_by_signal.iter_mut().zip(o.items_by_signal) {
            *mine += theirs;
        }
        self.bytes_sent += o.bytes_sent;
        self.latencies_us.extend(o.latencies_us);
    }

    fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

async fn worker(
    mut client: Client,
    pool: Arc<Vec<Payload>>,
    mut idx: usize,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> Stats {
    let mut st = Stats::default();
    let is_grpc = matches!(client, Client::Grpc(_));
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let p = &pool[idx % pool.len()];
        idx = idx.wrapping_add(1);
        let wire = if is_grpc {
            p.grpc_wire_bytes
        } else {
            p.http_body.len() as u64
        };
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, client.send(p))
            .await
            .unwrap_or_else(|_| Outcome::Error(format!("timeout after {REQUEST_TIMEOUT:?}")));
        let us = t0.elapsed().as_micros() as u64;
        let backoff = match outcome {
            Outcome::Ok { rejected_items } => {
                let rej = rejected_items.min(p.items);
                st.ok += 1;
                st.items_in_ok += p.items;
                st.items_partial_rejected += rej;
                st.items_accepted += p.items - rej;
                st.items_by_signal[p.signal as usize] += p.items - rej;
                st.bytes_sent += wire;
                st.latencies_us.push(us);
                None
            }
            Outcome::Rejected(key) => {
                *st.rejected.entry(key).or_default() += 1;
                st.bytes_sent += wire;
                Some(REJECT_BACKOFF)
            }
            Outcome::Error(msg) => {
                st.errored += 1;
                let key: String = msg.chars().take(200).collect();
                bump(&mut st.errors, key, 1);
                Some(ERROR_BACKOFF)
            }
        };
        if let Some(b) = backoff {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(b.min(left)).await;
        }
    }
    st
}

// ---------------------------------------------------------------------------------------------
// Server RSS sampling
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct RssReport {
    pid: u32,
    samples: u64,
    start_rss_kb: u64,
    end_rss_kb: u64,
    max_rss_kb: u64,
    /// VmHWM at the end: the peak since the server started (may predate the run).
    hwm_kb: u64,
    /// The process went away during the run.
    vanished: bool,
}

/// Value in kB of a `/proc/PID/status` line such as `VmRSS:\t  123456 kB`.
fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn read_rss(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = parse_status_kb(&s, "VmRSS:")?;
    let hwm = parse_status_kb(&s, "VmHWM:").unwrap_or(rss);
    Some((rss, hwm))
}

async fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> RssReport {
    let mut rep = RssReport {
        pid,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(RSS_SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        match read_rss(pid) {
            Some((rss, hwm)) => {
                if rep.samples == 0 {
                    rep.start_rss_kb = rss;
                }
                rep.samples += 1;
                rep.end_rss_kb = rss;
                rep.max_rss_kb = rep.max_rss_kb.max(rss);
                rep.hwm_kb = rep.hwm_kb.max(hwm);
            }
            None => {
                rep.vanished = true;
                break;
            }
        }
        // Checked after sampling so the final sample is taken after the workers finished.
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    rep
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100); 0 for an empty slice.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = (p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

struct Summary {
    stats: Stats,
    elapsed_s: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: f64,
}

impl Summary {
    fn new(mut stats: Stats, elapsed: Duration) -> Summary {
        stats.latencies_us.sort_unstable();
        let l = &stats.latencies_us;
        let mean = if l.is_empty() {
            0.0
        } else {
            l.iter().sum::<u64>() as f64 / l.len() as f64
        };
        Summary {
            p50: percentile(l, 50.0),
            p90: percentile(l, 90.0),
            p99: percentile(l, 99.0),
            max: l.last().copied().unwrap_or(0),
            mean,
            elapsed_s: elapsed.as_secs_f64().max(1e-9),
            stats,
        }
    }

    fn requests(&self) -> u64 {
        self.stats.ok + self.stats.rejected_total() + self.stats.errored
    }

    fn req_per_s(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed_s
    }

    fn items_per_s(&self) -> f64 {
        self.stats.items_accepted as f64 / self.elapsed_s
    }

    fn bytes_per_s(&self) -> f64 {
        self.stats.bytes_sent as f64 / self.elapsed_s
    }

    fn to_json(&self, signals: &[Signal]) -> Json {
        let s = &self.stats;
        let mut by_signal = Vec::new();
        for &sig in signals {
            by_signal.push((
                sig.item_name().to_string(),
                Json::Int(s.items_by_signal[sig as usize]),
            ));
        }
        Json::Obj(vec![
            ("requests".into(), Json::Int(self.requests())),
            ("ok".into(), Json::Int(s.ok)),
            ("rejected".into(), Json::Int(s.rejected_total())),
            ("errored".into(), Json::Int(s.errored)),
            ("rejected_by_status".into(), Json::counts(&s.rejected)),
            ("errors".into(), Json::counts(&s.errors)),
            ("items_accepted".into(), Json::Int(s.items_accepted)),
            ("items_in_ok_requests".into(), Json::Int(s.items_in_ok)),
            (
                "items_partially_rejected".into(),
                Json::Int(s.items_partial_rejected),
            ),
            ("items_by_signal".into(), Json::Obj(by_signal)),
            (
                "items_per_sec".into(),
                Json::Num(round3(self.items_per_s())),
            ),
            (
                "requests_per_sec".into(),
                Json::Num(round3(self.req_per_s())),
            ),
            (
                "latency_us".into(),
                Json::Obj(vec![
                    ("p50".into(), Json::Int(self.p50)),
                    ("p90".into(), Json::Int(self.p90)),
                    ("p99".into(), Json::Int(self.p99)),
                    ("max".into(), Json::Int(self.max)),
                    ("mean".into(), Json::Num(round3(self.mean))),
                ]),
            ),
            ("bytes_sent".into(), Json::Int(s.bytes_sent)),
            (
                "bytes_per_sec".into(),
                Json::Num(round3(self.bytes_per_s())),
            ),
        ])
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Minimal JSON value (no serde_json in the binary's dependencies).
enum Json {
    Null,
    Bool(bool),
    Int(u64),
    Num(f64),
    Str(String),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn counts(m: &BTreeMap<String, u64>) -> Json {
        Json::Obj(m.iter().map(|(k, v)| (k.clone(), Json::Int(*v))).collect())
    }
}

fn write_json_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(i) => write!(f, "{i}"),
            Json::Num(x) if x.is_finite() => write!(f, "{x}"),
            Json::Num(_) => f.write_str("null"),
            Json::Str(s) => write_json_str(f, s),
            Json::Obj(fields) => {
                f.write_str("{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_json_str(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn fmt_ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct RunInfo {
    signal: SignalArg,
    signals: Vec<Signal>,
    protocol: Protocol,
    grpc: Option<String>,
    http: Option<String>,
    connections: u32,
    batch: u32,
    pool: usize,
    gzip: bool,
    duration: Duration,
}

fn print_human(
    info: &RunInfo,
    total: &Summary,
    parts: &[(&str, Summary)],
    rss: Option<&RssReport>,
) {
    let proto = match info.protocol {
        Protocol::Grpc => "grpc",
        Protocol::Http => "http",
        Protocol::Both => "grpc+http",
    };
    let targets: Vec<String> = [("grpc", &info.grpc), ("http", &info.http)]
        .iter()
        .filter_map(|&(n, a)| a.as_ref().map(|a| format!("{n} {a}")))
        .collect();
    println!(
        "sightline load: {} over {} -> {}",
        match info.signal {
            SignalArg::Mixed => "mixed (traces+logs+metrics)",
            _ => info.signals.first().map_or("?", |s| s.name()),
        },
        proto,
        targets.join(", ")
    );
    println!(
        "  {} connection(s) per protocol, {} {}/request, gzip {}, pool {} requests, run {:?}",
        info.connections,
        info.batch,
        info.signal.items_label(),
        if info.gzip { "on" } else { "off" },
        info.pool,
        info.duration
    );
    let row = |label: &str, s: &Summary| {
        println!("{label}");
        println!("  elapsed        {:.2} s", s.elapsed_s);
        println!(
            "  requests       {} ok, {} rejected, {} errors  ({:.1} ok req/s)",
            s.stats.ok,
            s.stats.rejected_total(),
            s.stats.errored,
            s.req_per_s()
        );
        println!(
            "  items          {} {} accepted  ({:.0} items/s){}",
            s.stats.items_accepted,
            info.signal.items_label(),
            s.items_per_s(),
            if s.stats.items_partial_rejected > 0 {
                format!(", {} partially rejected", s.stats.items_partial_rejected)
            } else {
                String::new()
            }
        );
        if info.signals.len() > 1 {
            let parts: Vec<String> = info
                .signals
                .iter()
                .map(|&sig| {
                    format!(
                        "{} {}",
                        s.stats.items_by_signal[sig as usize],
                        sig.item_name()
                    )
                })
                .collect();
            println!("                 {}", parts.join(", "));
        }
        println!(
            "  latency (ok)   p50 {}  p90 {}  p99 {}  max {}  mean {}",
            fmt_ms(s.p50),
            fmt_ms(s.p90),
            fmt_ms(s.p99),
            fmt_ms(s.max),
            fmt_ms(s.mean as u64)
        );
        println!(
            "  bytes sent     {}  ({}/s)",
            fmt_bytes(s.stats.bytes_sent as f64),
            fmt_bytes(s.bytes_per_s())
        );
        if !s.stats.rejected.is_empty() {
            println!("  rejected       {}", fmt_counts(&s.stats.rejected));
        }
        if !s.stats.errors.is_empty() {
            println!("  errors         {}", fmt_counts(&s.stats.errors));
        }
    };
    for (name, s) in parts {
        row(format!("[{name}]").as_str(), s);
    }
    row(
        if parts.is_empty() {
            "[result]"
        } else {
            "[total]"
        },
        total,
    );
    if let Some(r) = rss {
        println!(
            "server RSS (pid {})  peak sampled {}, VmHWM {}, start {}, end {} ({} samples){}",
            r.pid,
            fmt_bytes(r.max_rss_kb as f64 * 1024.0),
            fmt_bytes(r.hwm_kb as f64 * 1024.0),
            fmt_bytes(r.start_rss_kb as f64 * 1024.0),
            fmt_bytes(r.end_rss_kb as f64 * 1024.0),
            r.samples,
            if r.vanished {
                " -- process exited during the run"
            } else {
                ""
            }
        );
    }
}

fn results_json(
    info: &RunInfo,
    total: &Summary,
    parts: &[(&str, Summary)],
    rss: Option<&RssReport>,
) -> Json {
    let opt = |a: &Option<String>| a.clone().map_or(Json::Null, Json::Str);
    let mut fields: Vec<(String, Json)> = vec![
        (
            "signal".into(),
            Json::Str(
                match info.signal {
                    SignalArg::Traces => "traces",
                    SignalArg::Logs => "logs",
                    SignalArg::Metrics => "metrics",
                    SignalArg::Mixed => "mixed",
                }
                .into(),
            ),
        ),
        (
            "protocol".into(),
            Json::Str(
                match info.protocol {
                    Protocol::Grpc => "grpc",
                    Protocol::Http => "http",
                    Protocol::Both => "both",
                }
                .into(),
            ),
        ),
        ("grpc_target".into(), opt(&info.grpc)),
        ("http_target".into(), opt(&info.http)),
        ("connections".into(), Json::Int(info.connections as u64)),
        ("batch_items".into(), Json::Int(info.batch as u64)),
        ("pool_requests".into(), Json::Int(info.pool as u64)),
        ("gzip".into(), Json::Bool(info.gzip)),
        ("duration_s".into(), Json::Num(info.duration.as_secs_f64())),
        ("elapsed_s".into(), Json::Num(round3(total.elapsed_s))),
    ];
    if let Json::Obj(t) = total.to_json(&info.signals) {
        fields.extend(t);
    }
    let server = match rss {
        Some(r) => Json::Obj(vec![
            ("pid".into(), Json::Int(r.pid as u64)),
            ("samples".into(), Json::Int(r.samples)),
            ("peak_rss_bytes".into(), Json::Int(r.max_rss_kb * 1024)),
            ("vm_hwm_bytes".into(), Json::Int(r.hwm_kb * 1024)),
            ("start_rss_bytes".into(), Json::Int(r.start_rss_kb * 1024)),
            ("end_rss_bytes".into(), Json::Int(r.end_rss_kb * 1024)),
            ("exited".into(), Json::Bool(r.vanished)),
        ]),
        None => Json::Null,
    };
    fields.push(("server".into(), server));
    if !parts.is_empty() {
        fields.push((
            "by_protocol".into(),
            Json::Obj(
                parts
                    .iter()
                    .map(|(n, s)| (n.to_string(), s.to_json(&info.signals)))
                    .collect(),
            ),
        ));
    }
    Json::Obj(fields)
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

fn normalize_addr(addr: &str) -> String {
    let a = addr.trim().trim_end_matches('/');
    if a.contains("://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

/// `host:port` part of a normalized URL, for the reachability check.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

async fn check_reachable(url: &str) -> anyhow::Result<()> {
    let hp = host_port(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(hp)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("cannot connect to {hp}: {e}"),
        Err(_) => bail!("cannot connect to {hp}: timed out after {CONNECT_TIMEOUT:?}"),
    }
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let protocol = match (args.protocol, &args.grpc, &args.http) {
        (Some(p), _, _) => p,
        (None, Some(_), Some(_)) => Protocol::Both,
        (None, Some(_), None) => Protocol::Grpc,
        (None, None, Some(_)) => Protocol::Http,
        (None, None, None) => bail!("give a target: --grpc HOST:PORT and/or --http HOST:PORT"),
    };
    let use_grpc = matches!(protocol, Protocol::Grpc | Protocol::Both);
    let use_http = matches!(protocol, Protocol::Http | Protocol::Both);
    let grpc_url = match (&args.grpc, use_grpc) {
        (Some(a), true) => Some(normalize_addr(a)),
        (None, true) => bail!("--protocol {protocol:?} needs --grpc HOST:PORT"),
        _ => None,
    };
    let http_url = match (&args.http, use_http) {
        (Some(a), true) => Some(normalize_addr(a)),
        (None, true) => bail!("--protocol {protocol:?} needs --http HOST:PORT"),
        _ => None,
    };
    if grpc_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
    {
        bail!("TLS is not supported for the gRPC target; use host:port");
    }

    if let Some(pid) = args.server_pid
        && read_rss(pid).is_none()
    {
        bail!("--server-pid {pid}: cannot read VmRSS from /proc/{pid}/status");
    }

    // Pre-generate the request pool outside the timed run.
    let signals = args.signal.signals();
    let batch = args.batch_spans as usize;
    let max_pool = (MAX_POOL_ITEMS / (args.batch_spans as u64 * signals.len() as u64)).max(4);
    let pool_size = (args.pool_size as u64).min(max_pool) as usize;
    if pool_size < args.pool_size as usize {
        eprintln!(
            "sightline load: pool reduced to {pool_size} requests per signal to bound memory"
        );
    }
    let seed = args.seed.unwrap_or_else(now_ns);
    let gen_start = Instant::now();
    let pool = {
        let signals = signals.clone();
        let gzip_on = args.gzip;
        tokio::task::spawn_blocking(move || build_pool(&signals, pool_size, batch, gzip_on, seed))
            .await
            .context("request generator panicked")??
    };
    let pool_bytes: usize = pool.iter().map(|p| p.http_body.len()).sum();
    eprintln!(
        "sightline load: built {} requests ({} body bytes) in {:.2}s",
        pool.len(),
        pool_bytes,
        gen_start.elapsed().as_secs_f64()
    );
    let pool = Arc::new(pool);

    // Connect everything before the clock starts.
    let mut clients: Vec<(&'static str, Client)> = Vec::new();
    if let Some(url) = &grpc_url {
        let endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("invalid gRPC address {url}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true);
        for i in 0..args.connections {
            // A separate `connect` per worker gives each its own HTTP/2 connection.
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("gRPC connection {i} to {url}"))?;
            let mut grpc = tonic::client::Grpc::new(channel)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(16 * 1024 * 1024);
            if args.gzip {
                grpc = grpc.send_compressed(CompressionEncoding::Gzip);
            }
            clients.push(("grpc", Client::Grpc(grpc)));
        }
    }
    if let Some(url) = &http_url {
        check_reachable(url)
            .await
            .with_context(|| format!("OTLP/HTTP target {url}"))?;
        for _ in 0..args.connections {
            // One client (one pooled connection) per worker; closed loop => one in flight.
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()
                .context("building HTTP client")?;
            clients.push((
                "http",
                Client::Http {
                    client,
                    base_url: url.clone(),
                    gzip: args.gzip,
                },
            ));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let rss_stop = Arc::new(AtomicBool::new(false));
    let rss_task = args
        .server_pid
        .map(|pid| tokio::spawn(sample_rss(pid, rss_stop.clone())));
    let ctrl_c = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let n_workers = clients.len();
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut handles = Vec::with_capacity(n_workers);
    for (w, (proto, client)) in clients.into_iter().enumerate() {
        // Spread the workers' starting points over the pool.
        let first = w * pool.len() / n_workers.max(1);
        let h = tokio::spawn(worker(client, pool.clone(), first, deadline, stop.clone()));
        handles.push((proto, h));
    }
    let mut grpc_stats = Stats::default();
    let mut http_stats = Stats::default();
    for (proto, h) in handles {
        let st = h.await.context("load worker panicked")?;
        if proto == "grpc" {
            grpc_stats.merge(st);
        } else {
            http_stats.merge(st);
        }
    }
    let elapsed = start.elapsed();
    ctrl_c.abort();
    rss_stop.store(true, Ordering::Relaxed);
    let rss = match rss_task {
        Some(t) => Some(t.await.context("RSS sampler panicked")?),
        None => None,
    };

    let mut total_stats = Stats::default();
    let mut parts: Vec<(&str, Summary)> = Vec::new();
    match protocol {
        Protocol::Both => {
            total_stats.merge(grpc_stats.clone());
            total_stats.merge(http_stats.clone());
            parts.push(("grpc", Summary::new(grpc_stats, elapsed)));
            parts.push(("http", Summary::new(http_stats, elapsed)));
        }
        Protocol::Grpc => total_stats.merge(grpc_stats),
        Protocol::Http => total_stats.merge(http_stats),
    }
    let total = Summary::new(total_stats, elapsed);
    let info = RunInfo {
        signal: args.signal,
        signals,
        protocol,
        grpc: grpc_url,
        http: http_url,
        connections: args.connections,
        batch: args.batch_spans,
        pool: pool.len(),
        gzip: args.gzip,
        duration: args.duration,
    };
    if args.json {
        println!("{}", results_json(&info, &total, &parts, rss.as_ref()));
    } else {
        print_human(&info, &total, &parts, rss.as_ref());
    }
    if total.stats.ok == 0 {
        bail!(
            "no request succeeded ({} rejected, {} errors)",
            total.stats.rejected_total(),
            total.stats.errored
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "ms", "abc", "10x", "-1s", "1.5s", "0s", "0ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[42], 0.0), 42);
        assert_eq!(percentile(&[42], 99.0), 42);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        let w = [10, 20, 30, 40];
        assert_eq!(percentile(&w, 50.0), 20);
        assert_eq!(percentile(&w, 51.0), 30);
        assert_eq!(percentile(&w, 99.0), 40);
    }

    #[test]
    fn trace_batch_has_consistent_parent_child_ids() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1usize, 2, 3, 200, 517] {
            let req = gen_trace_request(&mut rng, n, now_ns());
            assert_eq!(count_spans(&req), n as u64);

            let mut ids: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
            let mut all = Vec::new();
            for rs in &req.resource_spans {
                let res = rs.resource.as_ref().expect("resource");
                let keys: Vec<&str> = res.attributes.iter().map(|kv| kv.key.as_str()).collect();
                for k in ["service.name", "host.name", "deployment.environment"] {
                    assert!(keys.contains(&k), "resource lacks {k}");
                }
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        assert_eq!(s.trace_id.len(), 16);
                        assert_eq!(s.span_id.len(), 8);
                        assert!(s.trace_id.iter().any(|&b| b != 0));
                        assert!(s.span_id.iter().any(|&b| b != 0));
                        assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
                        assert!(
                            ids.entry(s.trace_id.clone())
                                .or_default()
                                .insert(s.span_id.clone()),
                            "duplicate span id"
                        );
                        all.push(s.clone());
                    }
                }
            }
            let mut roots: HashMap<Vec<u8>, usize> = HashMap::new();
            for s in &all {
                if s.parent_span_id.is_empty() {
                    *roots.entry(s.trace_id.clone()).or_default() += 1;
                } else {
                    assert_eq!(s.parent_span_id.len(), 8);
                    assert!(
                        ids[&s.trace_id].contains(&s.parent_span_id),
                        "parent of span {:?} is not in its trace",
                        s.span_id
                    );
                }
            }
            // Exactly one root per trace.
            assert_eq!(roots.len(), ids.len());
            assert!(roots.values().all(|&c| c == 1));
        }
    }

    #[test]
    fn child_spans_nest_inside_parents() {
        let mut rng = StdRng::seed_from_u64(11);
        let req = gen_trace_request(&mut rng, 300, now_ns());
        let spans: Vec<&Span> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let by_id: HashMap<(&[u8], &[u8]), &Span> = spans
            .iter()
            .map(|s| ((s.trace_id.as_slice(), s.span_id.as_slice()), *s))
            .collect();
        for s in &spans {
            if let Some(p) = by_id.get(&(s.trace_id.as_slice(), s.parent_span_id.as_slice())) {
                assert!(p.start_time_unix_nano <= s.start_time_unix_nano);
                assert!(s.end_time_unix_nano <= p.end_time_unix_nano);
            }
        }
    }

    #[test]
    fn logs_and_metrics_have_exact_item_counts() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [1usize, 2, 5, 200] {
            assert_eq!(
                count_log_records(&gen_logs_request(&mut rng, n, now_ns())),
                n as u64
            );
            let m = gen_metrics_request(&mut rng, n, now_ns());
            assert_eq!(count_data_points(&m), n as u64);
            for rm in &m.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        if let Some(metric::Data::Histogram(h)) = &metric.data {
                            for dp in &h.data_points {
                                assert_eq!(dp.bucket_counts.len(), dp.explicit_bounds.len() + 1);
                                assert_eq!(dp.bucket_counts.iter().sum::<u64>(), dp.count);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn payload_roundtrips_and_gzips() {
        let mut rng = StdRng::seed_from_u64(5);
        let p = build_payload(Signal::Traces, 50, true, &mut rng).expect("payload");
        assert_eq!(p.items, 50);
        let req = ExportTraceServiceRequest::decode(p.proto.as_ref()).expect("decode");
        assert_eq!(count_spans(&req), 50);
        let mut gz = flate2::read::GzDecoder::new(p.http_body.as_ref());
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut raw).expect("gunzip");
        assert_eq!(raw.as_slice(), p.proto.as_ref());
    }

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tsightline\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status_kb(s, "VmRSS:"), Some(102_400));
        assert_eq!(parse_status_kb(s, "VmHWM:"), Some(204_800));
        assert_eq!(parse_status_kb(s, "VmSwap:"), None);
    }

    #[test]
    fn addresses_and_routes() {
        assert_eq!(normalize_addr("127.0.0.1:4317"), "http://127.0.0.1:4317");
        assert_eq!(normalize_addr("http://h:1/"), "http://h:1");
        assert_eq!(host_port("http://127.0.0.1:4318"), "127.0.0.1:4318");
        assert_eq!(host_port("http://h:1/x"), "h:1");
        let mut rng = StdRng::seed_from_u64(1);
        let p = fill_route(&mut rng, "/cart/{user_id}/items/{id}");
        assert!(p.starts_with("/cart/") && p.contains("/items/"), "{p}");
        assert!(!p.contains('{') && !p.contains('}'), "{p}");
        assert_eq!(fill_route(&mut rng, "/"), "/");
    }

    #[test]
    fn json_output_is_escaped() {
        let j = Json::Obj(vec![
            ("a\"b".into(), Json::Str("x\ny\\".into())),
            ("n".into(), Json::Num(f64::NAN)),
            ("i".into(), Json::Int(3)),
            ("f".into(), Json::Num(2.5)),
        ]);
        assert_eq!(j.to_string(), r#"{"a\"b":"x\ny\\","n":null,"i":3,"f":2.5}"#);
    }
}
