//! Round trips through the real OpenTelemetry Rust SDK and OTLP exporter
//! (gRPC/tonic and HTTP/protobuf): emit telemetry, flush the SDK, read it
//! back with SQL and compare field by field.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{
    Array, Context, InstrumentationScope, KeyValue, StringValue, Value as OtelValue,
};
use opentelemetry_otlp::{
    LogExporter as OtlpLogExporter, MetricExporter as OtlpMetricExporter, Protocol,
    SpanExporter as OtlpSpanExporter, WithExportConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

use crate::server::{Row, RowExt as _, TestServer, sql_str};

const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub(crate) enum Transport {
    Grpc,
    HttpProtobuf,
}

impl Transport {
    fn tag(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http",
        }
    }
}

// ---------------------------------------------------------------------------
// Exporter plumbing
// ---------------------------------------------------------------------------

/// The SDK's processors export from their own threads; the sample backend's wrapper runs
/// the exporters' futures on the test's Tokio runtime (the HTTP exporter needs one).
pub(crate) use sample_backend::telemetry::OnRuntime;

pub(crate) fn span_exporter(transport: Transport, server: &TestServer) -> OtlpSpanExporter {
    match transport {
        Transport::Grpc => OtlpSpanExporter::builder()
            .with_tonic()
            .with_endpoint(server.otlp_grpc_endpoint())
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        Transport::HttpProtobuf => OtlpSpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(server.otlp_http_url("/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    }
    .expect("build OTLP span exporter")
}

fn metric_exporter(
    transport: Transport,
    server: &TestServer,
    temporality: Temporality,
) -> OtlpMetricExporter {
    match transport {
        Transport::Grpc => OtlpMetricExporter::builder()
            .with_tonic()
            .with_temporality(temporality)
            .with_endpoint(server.otlp_grpc_endpoint())
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        Transport::HttpProtobuf => OtlpMetricExporter::builder()
            .with_http()
            .with_temporality(temporality)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(server.otlp_http_url("/v1/metrics"))
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    }
    .expect("build OTLP metric exporter")
}

fn log_exporter(transport: Transport, server: &TestServer) -> OtlpLogExporter {
    match transport {
        Transport::Grpc => OtlpLogExporter::builder()
            .with_tonic()
            .with_endpoint(server.otlp_grpc_endpoint())
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        Transport::HttpProtobuf => OtlpLogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(server.otlp_http_url("/v1/logs"))
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    }
    .expect("build OTLP log exporter")
}

/// Runs blocking SDK calls (flush, shutdown) off the async worker threads.
pub(crate) async fn blocking<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking SDK call panicked")
}

pub(crate) fn resource(service: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service.to_owned())
        .with_attributes([
            KeyValue::new("deployment.environment", "integration"),
            KeyValue::new("host.cpu.count", 2_i64),
        ])
        .build()
}

/// Resource columns as `resource(service)` should produce them. Whether the
/// server keeps `service.name` inside `resource_attributes` is left open; if
/// it does, it must hold the service name.
fn assert_resource(row: &Row, service: &str) {
    assert_eq!(row.text("service_name"), service);
    let mut attrs = row
        .val("resource_attributes")
        .as_object()
        .unwrap_or_else(|| panic!("resource_attributes is not a map in {row:?}"))
        .clone();
    if let Some(name) = attrs.remove("service.name") {
        assert_eq!(name, json!(service), "resource service.name");
    }
    assert_eq!(
        Value::Object(attrs),
        json!({"deployment.environment": "integration", "host.cpu.count": "2"}),
        "resource_attributes"
    );
    assert_eq!(
        row.val("resource_attribute_types"),
        &json!({"host.cpu.count": "int"}),
        "resource_attribute_types"
    );
}

fn ns(t: SystemTime) -> i64 {
    let d = t.duration_since(UNIX_EPOCH).expect("time after epoch");
    i64::try_from(d.as_nanos()).expect("time fits i64 nanoseconds")
}

fn hex_trace(id: TraceId) -> String {
    hex::encode(id.to_bytes())
}

fn hex_span(id: SpanId) -> String {
    hex::encode(id.to_bytes())
}

/// A list column with nothing in it: the contract does not say whether that is
/// an empty list or NULL, so accept both, but nothing else.
fn assert_no_list(row: &Row, key: &str) {
    let v = row.val(key);
    assert!(
        v.is_null() || v.as_array().is_some_and(|a| a.is_empty()),
        "{key} should be empty or NULL in {row:?}"
    );
}

/// Parses a JSON-text attribute value (arrays and kvlists are stored as JSON).
fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON text ({e}): {text:?}"))
}

// ---------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------

const SERVER_SPAN_NAME: &str = "POST /orders/{id}";
const CLIENT_SPAN_NAME: &str = "SELECT orders";
const TRACER_SCOPE: &str = "it.sdk.tracer";
const TRACER_SCOPE_VERSION: &str = "1.2.3";
const LINK_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const LINK_SPAN_ID: &str = "b7ad6b7169203331";

struct SentTrace {
    trace_id: String,
    server_span_id: String,
    client_span_id: String,
    server_start: i64,
    server_end: i64,
    client_start: i64,
    client_end: i64,
    event_time: i64,
}

fn emit_trace(provider: &SdkTracerProvider) -> SentTrace {
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder(TRACER_SCOPE)
            .with_version(TRACER_SCOPE_VERSION)
            .build(),
    );

    // Odd nanosecond offsets so that any rounding to µs or ms shows.
    let base = SystemTime::now() - Duration::from_secs(3);
    let server_start = base + Duration::from_nanos(101);
    let client_start = base + Duration::from_nanos(1_000_203);
    let event_time = base + Duration::from_nanos(2_500_305);
    let client_end = base + Duration::from_nanos(40_000_407);
    let server_end = base + Duration::from_nanos(50_000_509);

    let link_context = SpanContext::new(
        TraceId::from_hex(LINK_TRACE_ID).expect("link trace id"),
        SpanId::from_hex(LINK_SPAN_ID).expect("link span id"),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "value")]).expect("trace state"),
    );

    let mut server_span = tracer
        .span_builder(SERVER_SPAN_NAME)
        .with_kind(SpanKind::Server)
        .with_start_time(server_start)
        .with_attributes([
            KeyValue::new("http.route", "/orders/{id}"),
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.response.status_code", 503_i64),
            KeyValue::new("retry.ratio", 0.25_f64),
            KeyValue::new("cache.hit", false),
            KeyValue::new(
                "feature.flags",
                OtelValue::Array(Array::String(vec![
                    StringValue::from("beta-checkout"),
                    StringValue::from("dark-mode"),
                ])),
            ),
        ])
        .with_links(vec![Link::new(
            link_context,
            vec![
                KeyValue::new("link.reason", "retry-of"),
                KeyValue::new("link.attempt", 2_i64),
            ],
            0,
        )])
        .start(&tracer);
    server_span.add_event_with_timestamp(
        "cache.miss",
        event_time,
        vec![
            KeyValue::new("cache.key", "order:42"),
            KeyValue::new("cache.shard", 7_i64),
        ],
    );
    server_span.set_status(Status::error("upstream timed out"));
    let server_context = server_span.span_context().clone();
    let server_cx = Context::new().with_span(server_span);

    let mut client_span = tracer
        .span_builder(CLIENT_SPAN_NAME)
        .with_kind(SpanKind::Client)
        .with_start_time(client_start)
        .with_attributes([
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.rows", 1_i64),
        ])
        .start_with_context(&tracer, &server_cx);
    client_span.set_status(Status::Ok);
    let client_context = client_span.span_context().clone();
    client_span.end_with_timestamp(client_end);
    server_cx.span().end_with_timestamp(server_end);

    assert_eq!(client_context.trace_id(), server_context.trace_id());
    SentTrace {
        trace_id: hex_trace(server_context.trace_id()),
        server_span_id: hex_span(server_context.span_id()),
        client_span_id: hex_span(client_context.span_id()),
        server_start: ns(server_start),
        server_end: ns(server_end),
        client_start: ns(client_start),
        client_end: ns(client_end),
        event_time: ns(event_time),
    }
}

async fn traces_roundtrip(transport: Transport) {
    let server = TestServer::start().await;
    let service = format!("it-sdk-traces-{}", transport.tag());

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime::new(span_exporter(transport, &server)))
        .with_resource(resource(&service))
        .build();
    let sent = emit_trace(&provider);
    let (flushed, shut) = blocking(move || (provider.force_flush(), provider.shutdown())).await;
    assert!(flushed.is_ok(), "tracer force_flush: {flushed:?}");
    assert!(shut.is_ok(), "tracer shutdown: {shut:?}");

    let q = format!(
        "SELECT trace_id, span_id, parent_span_id, trace_state, name, kind, \
           CAST(start_time AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns, \
           duration_ns, status_code, status_message, service_name, scope_name, scope_version, \
           http_route, http_request_method, http_response_status_code, \
           attributes, attribute_types, resource_attributes, resource_attribute_types, \
           attributes['http.route'] AS a_route, \
           attributes['http.response.status_code'] AS a_status, \
           attributes['retry.ratio'] AS a_ratio, \
           attributes['cache.hit'] AS a_hit, \
           attributes['feature.flags'] AS a_flags, \
           attributes['db.rows'] AS a_rows, \
           events, CAST(get_field(array_element(events, 1), 'time') AS BIGINT) AS event_ns, \
           links, flags, dropped_attributes_count, dropped_events_count, dropped_links_count \
         FROM spans WHERE service_name = {} ORDER BY start_time",
        sql_str(&service)
    );
    let rows = server.wait_rows(&q, |rows| rows.len() >= 2).await;
    assert_eq!(rows.len(), 2, "exactly two spans stored: {rows:#?}");

    // The server span (root).
    let root = &rows[0];
    assert_eq!(root.text("trace_id"), sent.trace_id);
    assert_eq!(root.text("span_id"), sent.server_span_id);
    assert!(root.is_null("parent_span_id"), "root parent: {root:?}");
    assert!(root.is_null("trace_state"), "empty trace_state is NULL");
    assert_eq!(root.text("name"), SERVER_SPAN_NAME);
    assert_eq!(root.text("kind"), "server");
    assert_eq!(root.int("start_ns"), sent.server_start);
    assert_eq!(root.int("end_ns"), sent.server_end);
    assert_eq!(root.int("duration_ns"), sent.server_end - sent.server_start);
    assert_eq!(root.text("status_code"), "error");
    assert_eq!(root.text("status_message"), "upstream timed out");
    assert_eq!(root.text("scope_name"), TRACER_SCOPE);
    assert_eq!(root.text("scope_version"), TRACER_SCOPE_VERSION);
    assert_resource(root, &service);
    assert_eq!(root.text("http_route"), "/orders/{id}");
    assert_eq!(root.text("http_request_method"), "POST");
    assert_eq!(root.int("http_response_status_code"), 503);
    assert_eq!(root.text("a_route"), "/orders/{id}");
    assert_eq!(root.text("a_status"), "503");
    assert_eq!(root.text("a_ratio"), "0.25");
    assert_eq!(root.text("a_hit"), "false");
    assert_eq!(
        json_text(root.text("a_flags")),
        json!(["beta-checkout", "dark-mode"])
    );
    assert!(root.is_null("a_rows"), "absent key gives NULL");
    let mut attrs = root
        .val("attributes")
        .as_object()
        .expect("attributes map")
        .clone();
    let flags_text = attrs.remove("feature.flags").expect("feature.flags kept");
    assert_eq!(
        json_text(flags_text.as_str().expect("array attribute is text")),
        json!(["beta-checkout", "dark-mode"])
    );
    assert_eq!(
        Value::Object(attrs),
        json!({
            "http.route": "/orders/{id}",
            "http.request.method": "POST",
            "http.response.status_code": "503",
            "retry.ratio": "0.25",
            "cache.hit": "false",
        })
    );
    assert_eq!(
        root.val("attribute_types"),
        &json!({
            "http.response.status_code": "int",
            "retry.ratio": "double",
            "cache.hit": "bool",
            "feature.flags": "array",
        })
    );

    let events = root.val("events").as_array().expect("events list");
    assert_eq!(events.len(), 1, "one event: {events:?}");
    let event = &events[0];
    assert_eq!(event["name"], json!("cache.miss"));
    assert_eq!(
        event["attributes"],
        json!({"cache.key": "order:42", "cache.shard": "7"})
    );
    assert_eq!(event["attribute_types"], json!({"cache.shard": "int"}));
    assert_eq!(event["dropped_attributes_count"].as_i64(), Some(0));
    assert_eq!(root.int("event_ns"), sent.event_time);

    let links = root.val("links").as_array().expect("links list");
    assert_eq!(links.len(), 1, "one link: {links:?}");
    let link = &links[0];
    assert_eq!(link["trace_id"], json!(LINK_TRACE_ID));
    assert_eq!(link["span_id"], json!(LINK_SPAN_ID));
    assert_eq!(link["trace_state"], json!("vendor=value"));
    assert_eq!(
        link["attributes"],
        json!({"link.reason": "retry-of", "link.attempt": "2"})
    );
    assert_eq!(link["attribute_types"], json!({"link.attempt": "int"}));
    assert_eq!(link["dropped_attributes_count"].as_i64(), Some(0));
    // SAMPLED | HAS_IS_REMOTE | IS_REMOTE, as the SDK encodes a remote link.
    assert_eq!(link["flags"].as_i64(), Some(0x301));

    // SAMPLED | HAS_IS_REMOTE (local parent or none).
    assert_eq!(root.int("flags"), 0x101);
    assert_eq!(root.int("dropped_attributes_count"), 0);
    assert_eq!(root.int("dropped_events_count"), 0);
    assert_eq!(root.int("dropped_links_count"), 0);

    // The client span (child).
    let child = &rows[1];
    assert_eq!(child.text("trace_id"), sent.trace_id);
    assert_eq!(child.text("span_id"), sent.client_span_id);
    assert_eq!(child.text("parent_span_id"), sent.server_span_id);
    assert_eq!(child.text("name"), CLIENT_SPAN_NAME);
    assert_eq!(child.text("kind"), "client");
    assert_eq!(child.int("start_ns"), sent.client_start);
    assert_eq!(child.int("end_ns"), sent.client_end);
    assert_eq!(
        child.int("duration_ns"),
        sent.client_end - sent.client_start
    );
    assert_eq!(child.text("status_code"), "ok");
    assert!(
        child.is_null("status_message"),
        "empty status message is NULL"
    );
    assert_resource(child, &service);
    assert_eq!(child.text("scope_name"), TRACER_SCOPE);
    assert!(child.is_null("http_route"));
    assert!(child.is_null("http_response_status_code"));
    assert_eq!(child.text("a_rows"), "1");
    assert_eq!(
        child.val("attributes"),
        &json!({"db.system": "postgresql", "db.rows": "1"})
    );
    assert_eq!(child.val("attribute_types"), &json!({"db.rows": "int"}));
    assert_no_list(child, "events");
    assert_no_list(child, "links");
    assert!(child.is_null("event_ns"));
    assert_eq!(child.int("flags"), 0x101);

    // The trace summary.
    let q = format!(
        "SELECT trace_id, CAST(start_time AS BIGINT) AS start_ns, \
           CAST(end_time AS BIGINT) AS end_ns, duration_ns, root_service_name, \
           root_span_name, span_count, error_count \
         FROM traces WHERE trace_id = {}",
        sql_str(&sent.trace_id)
    );
    let traces = server
        .wait_rows(&q, |rows| {
            rows.len() == 1 && rows[0].get("span_count").and_then(Value::as_i64) == Some(2)
        })
        .await;
    let trace = &traces[0];
    assert_eq!(trace.text("trace_id"), sent.trace_id);
    assert_eq!(trace.int("span_count"), 2);
    assert_eq!(trace.int("error_count"), 1);
    assert_eq!(trace.text("root_span_name"), SERVER_SPAN_NAME);
    assert_eq!(trace.text("root_service_name"), service);
    assert_eq!(trace.int("start_ns"), sent.server_start);
    assert_eq!(trace.int("end_ns"), sent.server_end);
    assert_eq!(
        trace.int("duration_ns"),
        sent.server_end - sent.server_start
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_traces_over_grpc() {
    traces_roundtrip(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_traces_over_http_protobuf() {
    traces_roundtrip(Transport::HttpProtobuf).await;
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

const METER_SCOPE: &str = "it.sdk.meter";
const METER_SCOPE_VERSION: &str = "2.0.0";

async fn metrics_roundtrip(transport: Transport, temporality: Temporality) {
    let server = TestServer::start().await;
    let service = format!("it-sdk-metrics-{}", transport.tag());
    let temporality_text = match temporality {
        Temporality::Delta => "delta",
        _ => "cumulative",
    };

    let before = ns(SystemTime::now());
    // A long interval: the only collection is the one `shutdown` performs,
    // so every series is exported exactly once.
    let reader = PeriodicReader::builder(OnRuntime::new(metric_exporter(
        transport,
        &server,
        temporality,
    )))
    .with_interval(Duration::from_secs(3600))
    .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource(&service))
        .build();
    let meter = provider.meter_with_scope(
        InstrumentationScope::builder(METER_SCOPE)
            .with_version(METER_SCOPE_VERSION)
            .build(),
    );

    let counter = meter
        .u64_counter("it.requests")
        .with_unit("{request}")
        .with_description("Handled requests")
        .build();
    let counter_attrs = [
        KeyValue::new("http.route", "/a"),
        KeyValue::new("shard", 3_i64),
    ];
    counter.add(3, &counter_attrs);
    counter.add(4, &counter_attrs);

    let histogram = meter
        .f64_histogram("it.latency")
        .with_unit("ms")
        .with_description("Request latency")
        .with_boundaries(vec![1.0, 5.0, 10.0])
        .build();
    for v in [0.5, 3.0, 7.0, 12.0, 2.0] {
        histogram.record(v, &[KeyValue::new("http.route", "/a")]);
    }

    let gauge = meter
        .i64_gauge("it.queue.depth")
        .with_unit("{item}")
        .with_description("Queue depth")
        .build();
    gauge.record(-12, &[KeyValue::new("queue", "q1")]);
    gauge.record(-7, &[KeyValue::new("queue", "q1")]);

    let shut = blocking(move || provider.shutdown()).await;
    assert!(
        shut.is_ok(),
        "meter provider shutdown (final export): {shut:?}"
    );
    let after = ns(SystemTime::now());

    let q = format!(
        "SELECT metric_name, metric_type, unit, description, temporality, is_monotonic, \
           value, count, sum, min, max, bucket_counts, explicit_bounds, \
           CAST(time AS BIGINT) AS time_ns, CAST(start_time AS BIGINT) AS start_ns, \
           service_name, resource_attributes, resource_attribute_types, \
           scope_name, scope_version, attributes, attribute_types \
         FROM metrics WHERE service_name = {} ORDER BY metric_name",
        sql_str(&service)
    );
    let rows = server.wait_rows(&q, |rows| rows.len() >= 3).await;
    assert_eq!(rows.len(), 3, "one data point per instrument: {rows:#?}");
    for row in &rows {
        assert_resource(row, &service);
        assert_eq!(row.text("scope_name"), METER_SCOPE);
        assert_eq!(row.text("scope_version"), METER_SCOPE_VERSION);
        let t = row.int("time_ns");
        assert!(
            (before..=after).contains(&t),
            "data point time {t} outside [{before}, {after}]: {row:?}"
        );
    }

    let hist = &rows[0];
    assert_eq!(hist.text("metric_name"), "it.latency");
    assert_eq!(hist.text("metric_type"), "histogram");
    assert_eq!(hist.text("unit"), "ms");
    assert_eq!(hist.text("description"), "Request latency");
    assert_eq!(hist.text("temporality"), temporality_text);
    assert!(
        hist.is_null("is_monotonic"),
        "is_monotonic is only for sums"
    );
    assert!(hist.is_null("value"));
    assert_eq!(hist.int("count"), 5);
    assert_eq!(hist.float("sum"), 24.5);
    assert_eq!(hist.float("min"), 0.5);
    assert_eq!(hist.float("max"), 12.0);
    assert_eq!(hist.val("bucket_counts"), &json!([1, 2, 1, 1]));
    let bounds: Vec<f64> = hist
        .val("explicit_bounds")
        .as_array()
        .expect("explicit_bounds list")
        .iter()
        .map(|v| v.as_f64().expect("bound is a number"))
        .collect();
    assert_eq!(bounds, vec![1.0, 5.0, 10.0]);
    assert_eq!(hist.val("attributes"), &json!({"http.route": "/a"}));

    let gauge_row = &rows[1];
    assert_eq!(gauge_row.text("metric_name"), "it.queue.depth");
    assert_eq!(gauge_row.text("metric_type"), "gauge");
    assert_eq!(gauge_row.text("unit"), "{item}");
    assert!(
        gauge_row.is_null("temporality"),
        "gauges have no temporality"
    );
    assert!(gauge_row.is_null("is_monotonic"));
    assert_eq!(gauge_row.float("value"), -7.0);
    assert!(gauge_row.is_null("sum"));
    assert!(gauge_row.is_null("min"));
    assert!(gauge_row.is_null("max"));
    assert_eq!(gauge_row.val("attributes"), &json!({"queue": "q1"}));

    let sum = &rows[2];
    assert_eq!(sum.text("metric_name"), "it.requests");
    assert_eq!(sum.text("metric_type"), "sum");
    assert_eq!(sum.text("unit"), "{request}");
    assert_eq!(sum.text("description"), "Handled requests");
    assert_eq!(sum.text("temporality"), temporality_text);
    assert_eq!(sum.val("is_monotonic"), &json!(true));
    assert_eq!(sum.float("value"), 7.0);
    assert_no_list(sum, "bucket_counts");
    assert_eq!(
        sum.val("attributes"),
        &json!({"http.route": "/a", "shard": "3"})
    );
    assert_eq!(sum.val("attribute_types"), &json!({"shard": "int"}));
    let start = sum.int("start_ns");
    assert!(
        before <= start && start <= sum.int("time_ns"),
        "sum start_time {start} not within [{before}, time]: {sum:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_over_grpc_cumulative() {
    metrics_roundtrip(Transport::Grpc, Temporality::Cumulative).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_over_http_protobuf_delta() {
    metrics_roundtrip(Transport::HttpProtobuf, Temporality::Delta).await;
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

const LOGGER_SCOPE: &str = "it.sdk.logger";
const LOGGER_SCOPE_VERSION: &str = "3.1.4";

async fn logs_roundtrip(transport: Transport) {
    let server = TestServer::start().await;
    let service = format!("it-sdk-logs-{}", transport.tag());

    // A real span whose context the first record carries.
    let span_provider = SdkTracerProvider::builder().build();
    let span_tracer = span_provider.tracer("it.sdk.log-context");
    let mut span = span_tracer.start("checkout");
    let span_context = span.span_context().clone();
    span.end();
    assert!(span_context.is_valid() && span_context.is_sampled());

    let provider = SdkLoggerProvider::builder()
        .with_batch_exporter(OnRuntime::new(log_exporter(transport, &server)))
        .with_resource(resource(&service))
        .build();
    let logger = provider.logger_with_scope(
        InstrumentationScope::builder(LOGGER_SCOPE)
            .with_version(LOGGER_SCOPE_VERSION)
            .build(),
    );

    let base = SystemTime::now() - Duration::from_secs(2);
    let t1 = base + Duration::from_nanos(77);
    let t1_observed = base + Duration::from_nanos(1_577);
    let t2_observed = base + Duration::from_nanos(1_000_000_999);

    let mut first = logger.create_log_record();
    first.set_timestamp(t1);
    first.set_observed_timestamp(t1_observed);
    first.set_severity_number(Severity::Warn);
    first.set_severity_text("WARN");
    first.set_body(AnyValue::from("payment declined"));
    first.set_event_name("payment.declined");
    first.add_attribute("order.id", "ord-1234");
    first.add_attribute("amount", 12.5_f64);
    first.add_attribute("attempt", 3_i64);
    first.add_attribute("fraud.suspected", true);
    first.set_trace_context(
        span_context.trace_id(),
        span_context.span_id(),
        Some(span_context.trace_flags()),
    );
    logger.emit(first);

    // No timestamp (time falls back to observed time), a non-string body, no
    // trace context, no severity text, no event name.
    let mut second = logger.create_log_record();
    second.set_observed_timestamp(t2_observed);
    second.set_severity_number(Severity::Info);
    second.set_body(AnyValue::Int(42));
    second.add_attribute("queue.size", 9_i64);
    logger.emit(second);

    let (flushed, shut) = blocking(move || (provider.force_flush(), provider.shutdown())).await;
    assert!(flushed.is_ok(), "logger force_flush: {flushed:?}");
    assert!(shut.is_ok(), "logger shutdown: {shut:?}");

    let q = format!(
        "SELECT CAST(time AS BIGINT) AS time_ns, CAST(observed_time AS BIGINT) AS observed_ns, \
           severity_number, severity_text, body, body_type, trace_id, span_id, flags, \
           event_name, service_name, resource_attributes, resource_attribute_types, \
           scope_name, scope_version, attributes, attribute_types, dropped_attributes_count, \
           attributes['amount'] AS a_amount \
         FROM logs WHERE service_name = {} ORDER BY observed_time",
        sql_str(&service)
    );
    let rows = server.wait_rows(&q, |rows| rows.len() >= 2).await;
    assert_eq!(rows.len(), 2, "exactly two log records: {rows:#?}");

    let warn = &rows[0];
    assert_eq!(warn.int("time_ns"), ns(t1));
    assert_eq!(warn.int("observed_ns"), ns(t1_observed));
    assert_eq!(warn.int("severity_number"), 13);
    assert_eq!(warn.text("severity_text"), "WARN");
    assert_eq!(warn.text("body"), "payment declined");
    assert!(
        warn.is_null("body_type"),
        "string bodies have NULL body_type"
    );
    assert_eq!(warn.text("trace_id"), hex_trace(span_context.trace_id()));
    assert_eq!(warn.text("span_id"), hex_span(span_context.span_id()));
    assert_eq!(warn.int("flags"), 1);
    assert_eq!(warn.text("event_name"), "payment.declined");
    assert_resource(warn, &service);
    assert_eq!(warn.text("scope_name"), LOGGER_SCOPE);
    assert_eq!(warn.text("scope_version"), LOGGER_SCOPE_VERSION);
    assert_eq!(warn.text("a_amount"), "12.5");
    assert_eq!(
        warn.val("attributes"),
        &json!({
            "order.id": "ord-1234",
            "amount": "12.5",
            "attempt": "3",
            "fraud.suspected": "true",
        })
    );
    assert_eq!(
        warn.val("attribute_types"),
        &json!({"amount": "double", "attempt": "int", "fraud.suspected": "bool"})
    );
    assert_eq!(warn.int("dropped_attributes_count"), 0);

    let info = &rows[1];
    assert_eq!(info.int("observed_ns"), ns(t2_observed));
    assert_eq!(
        info.int("time_ns"),
        ns(t2_observed),
        "time falls back to observed_time when the record has none"
    );
    assert_eq!(info.int("severity_number"), 9);
    assert!(info.is_null("severity_text"));
    assert_eq!(info.text("body"), "42");
    assert_eq!(info.text("body_type"), "int");
    assert!(info.is_null("trace_id"), "no trace context: {info:?}");
    assert!(info.is_null("span_id"), "no trace context: {info:?}");
    assert!(info.is_null("event_name"));
    assert_eq!(info.val("attributes"), &json!({"queue.size": "9"}));
    assert_eq!(info.val("attribute_types"), &json!({"queue.size": "int"}));
    assert_resource(info, &service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_logs_over_grpc() {
    logs_roundtrip(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_logs_over_http_protobuf() {
    logs_roundtrip(Transport::HttpProtobuf).await;
}
