//! Metric points of the catalogue's services: HTTP request duration histograms, request
//! counters, gauges.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use rand::RngExt as _;
use rand::rngs::StdRng;

use super::*;
use crate::catalogue::*;

pub(crate) fn route_attrs(rng: &mut StdRng, route: Route) -> Vec<KeyValue> {
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
pub(crate) fn gen_metrics_request(
    rng: &mut StdRng,
    n: usize,
    now: u64,
) -> ExportMetricsServiceRequest {
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
