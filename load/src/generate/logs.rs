//! Log records of the catalogue's services, most tied to a trace.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use rand::RngExt as _;
use rand::rngs::StdRng;

use super::*;
use crate::catalogue::*;

pub(crate) fn gen_log_record(rng: &mut StdRng, svc: &ServiceDef, now: u64) -> LogRecord {
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
pub(crate) fn gen_logs_request(rng: &mut StdRng, n: usize, now: u64) -> ExportLogsServiceRequest {
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
