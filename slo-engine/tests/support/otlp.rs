//! OTLP requests of server spans, for the SLO engine's tests and benchmarks.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

/// A server span with unique ids from `id`, starting at `start` (ns) and lasting `duration`.
pub fn server_span(id: u64, start: u64, duration: u64, error: bool) -> Span {
    Span {
        trace_id: (u128::from(id) | 1 << 100).to_be_bytes().to_vec(),
        span_id: (id | 1 << 60).to_be_bytes().to_vec(),
        name: "POST /checkout".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        status: Some(Status {
            code: if error { 2 } else { 1 },
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// An export request of `spans` from `service`.
pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
