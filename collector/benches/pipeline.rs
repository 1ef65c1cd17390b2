//! The ingest hot path, stage by stage: OTLP decode (protobuf, JSON), OTLP → Arrow, and
//! Parquet encode of the resulting batch. Run with `cargo bench -p sightline-collector`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks block on their runtimes and spawn freely"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
use prost::Message;
use sightline_collector::convert::{self, ConvertContext};
use sightline_collector::decode::{Format, decode};
use sightline_collector::limits::ItemLimits;
use sightline_store::Table;

const SPANS: usize = 1000;

fn base_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        - 60_000_000_000
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.4.2")),
            kv("host.name", s("node-17.prod")),
            kv("deployment.environment", s("production")),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "opentelemetry-instrumentation-http".into(),
        version: "0.45.0".into(),
        ..Default::default()
    }
}

/// `SPANS` spans in traces of 10, with typical HTTP server attributes and some events.
fn trace_request() -> ExportTraceServiceRequest {
    let spans = (0..SPANS)
        .map(|i| {
            let trace = (i / 10) as u128 + 1;
            let start = base_ns() + i as u64 * 1_000_000;
            Span {
                trace_id: trace.to_be_bytes().to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                parent_span_id: if i % 10 == 0 {
                    vec![]
                } else {
                    ((i - i % 10) as u64 + 1).to_be_bytes().to_vec()
                },
                name: format!("GET /api/items/{{id}} {}", i % 7),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 2_500_000,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/api/items/{id}")),
                    kv("url.path", s(&format!("/api/items/{i}"))),
                    kv("http.response.status_code", Value::IntValue(200)),
                    kv("server.address", s("shop.internal")),
                    kv("network.peer.port", Value::IntValue(43_210)),
                    kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
                ],
                events: if i % 5 == 0 {
                    vec![Event {
                        time_unix_nano: start + 1_000,
                        name: "cache.miss".into(),
                        attributes: vec![kv("cache.key", s("items:42"))],
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                status: Some(Status {
                    code: if i % 50 == 0 { 2 } else { 0 },
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource("checkout")),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request() -> ExportLogsServiceRequest {
    let records = (0..SPANS)
        .map(|i| LogRecord {
            time_unix_nano: base_ns() + i as u64 * 1_000_000,
            observed_time_unix_nano: base_ns() + i as u64 * 1_000_000 + 10,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(s(&format!(
                    "order {i} placed for customer {} items=3",
                    i * 7
                ))),
            }),
            attributes: vec![
                kv("code.function", s("place_order")),
                kv("order.id", Value::IntValue(i as i64)),
            ],
            trace_id: ((i / 10) as u128 + 1).to_be_bytes().to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("checkout")),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn bench(c: &mut Criterion) {
    let traces = trace_request();
    let proto = traces.encode_to_vec();
    let json = serde_json::to_vec(&traces).expect("json");
    let logs = logs_request();
    let ctx = ConvertContext::new(base_ns() as i64, ItemLimits::default());

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("decode_protobuf_1000_spans", |b| {
        b.iter(|| decode::<ExportTraceServiceRequest>(&proto, Format::Protobuf).expect("decode"))
    });
    g.bench_function("decode_json_1000_spans", |b| {
        b.iter(|| decode::<ExportTraceServiceRequest>(&json, Format::Json).expect("decode"))
    });
    g.bench_function("to_arrow_1000_spans", |b| {
        b.iter(|| convert::traces::convert(&traces, &ctx).expect("convert"))
    });
    g.bench_function("to_arrow_1000_logs", |b| {
        b.iter(|| convert::logs::convert(&logs, &ctx).expect("convert"))
    });
    g.finish();

    // Parquet encode of 100k spans (100 requests' worth), as one flush writes them.
    let converted = convert::traces::convert(&traces, &ctx).expect("convert");
    let spans = converted
        .batches
        .iter()
        .find(|(t, _)| *t == Table::Spans)
        .map(|(_, b)| b.clone())
        .expect("spans batch");
    let batches: Vec<_> = (0..100).map(|_| spans.clone()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("parquet");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100 * SPANS as u64));
    // Encoded and stored durably (fsync'd) in the data directory, as a flush does.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let storage = sightline_store::storage::Storage::local(dir.path()).expect("storage");
    g.bench_function("write_100k_spans", |b| {
        b.iter(|| {
            rt.block_on(sightline_store::writer::write_files(
                &storage,
                "default",
                Table::Spans,
                batches.clone(),
                1,
            ))
            .expect("write")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
