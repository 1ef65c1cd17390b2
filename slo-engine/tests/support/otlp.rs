//! OTLP requests of server spans, for the SLO engine's tests and benchmarks.

// Each test binary and benchmark includes this file and uses part of it.
#![allow(dead_code)]

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

/// A point of a metric: attributes, start and time (ns), and the value (sums) or the bucket
/// counts (histograms).
pub struct Point {
    pub attributes: Vec<(&'static str, &'static str)>,
    pub start: u64,
    pub time: u64,
    pub value: f64,
    pub buckets: Vec<u64>,
}

fn attrs(a: &[(&str, &str)]) -> Vec<KeyValue> {
    a.iter()
        .map(|(k, v)| KeyValue {
            key: (*k).into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue((*v).into())),
            }),
            ..Default::default()
        })
        .collect()
}

/// An export request of one metric of `service`: a monotonic sum when `bounds` is empty, else
/// a histogram with those bucket bounds; `delta` picks the temporality.
pub fn metric_request(
    service: &str,
    name: &str,
    delta: bool,
    bounds: &[f64],
    points: &[Point],
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
    };
    let temporality = if delta {
        AggregationTemporality::Delta
    } else {
        AggregationTemporality::Cumulative
    } as i32;
    let data = if bounds.is_empty() {
        metric::Data::Sum(Sum {
            data_points: points
                .iter()
                .map(|p| NumberDataPoint {
                    attributes: attrs(&p.attributes),
                    start_time_unix_nano: p.start,
                    time_unix_nano: p.time,
                    value: Some(number_data_point::Value::AsDouble(p.value)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: temporality,
            is_monotonic: true,
        })
    } else {
        metric::Data::Histogram(Histogram {
            data_points: points
                .iter()
                .map(|p| HistogramDataPoint {
                    attributes: attrs(&p.attributes),
                    start_time_unix_nano: p.start,
                    time_unix_nano: p.time,
                    count: p.buckets.iter().sum(),
                    bucket_counts: p.buckets.clone(),
                    explicit_bounds: bounds.to_vec(),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: temporality,
        })
    };
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attrs(&[("service.name", service)]),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(data),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
