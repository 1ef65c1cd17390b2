//! Realistic OTLP requests: traces across the catalogue's services (server, client, database
//! and internal spans with their semantic-convention attributes), logs and metrics.

pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod traces;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _};

use crate::catalogue::{HOST_SUFFIXES, SERVICES, ServiceDef};

/// Now, in nanoseconds since the epoch (what the generated items are stamped with).
pub(crate) fn now_ns() -> u64 {
    u64::try_from(sightline_common::clock::now()).unwrap_or(0)
}

pub(crate) fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

pub(crate) fn random_service(rng: &mut StdRng) -> &'static ServiceDef {
    &SERVICES[rng.random_range(0..SERVICES.len())]
}

pub(crate) fn new_trace_id(rng: &mut StdRng) -> Vec<u8> {
    let mut b = [0u8; 16];
    while b == [0u8; 16] {
        rng.fill_bytes(&mut b);
    }
    b.to_vec()
}

pub(crate) fn new_span_id(rng: &mut StdRng) -> [u8; 8] {
    let mut b = [0u8; 8];
    while b == [0u8; 8] {
        rng.fill_bytes(&mut b);
    }
    b
}

/// Long-tailed multiplier with mean ~1.
pub(crate) fn latency_factor(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(0.0001..1.0);
    0.4 + (-u.ln()) * 0.6
}

/// Replaces every `{param}` of a route template with a random number.
pub(crate) fn fill_route(rng: &mut StdRng, route: &str) -> String {
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

pub(crate) fn av_str(v: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

pub(crate) fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn kv_str(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

pub(crate) fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

pub(crate) fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

pub(crate) fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

/// Per-batch resource identity of each service (host/instance chosen per batch).
pub(crate) fn service_resources(rng: &mut StdRng) -> Vec<Resource> {
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

pub(crate) fn scope_for(svc: &ServiceDef) -> InstrumentationScope {
    InstrumentationScope {
        name: svc.scope_name.to_string(),
        version: svc.scope_version.to_string(),
        ..Default::default()
    }
}

pub(crate) fn peer_ip(rng: &mut StdRng) -> String {
    format!(
        "10.{}.{}.{}",
        rng.random_range(0..4u8),
        rng.random_range(0..=255u8),
        rng.random_range(1..255u8)
    )
}

/// HTTP status for a server span and whether it is an error (~2% 5xx, a few 404s).
pub(crate) fn http_outcome(rng: &mut StdRng, method: &str) -> (i64, bool) {
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

/// A child interval inside `[start, end]`.
pub(crate) fn child_window(rng: &mut StdRng, start: u64, end: u64) -> (u64, u64) {
    let dur = end.saturating_sub(start);
    if dur < 4 {
        return (start, end);
    }
    let off = rng.random_range(0..dur / 2);
    let avail = dur - off;
    let cd = ((avail as f64) * rng.random_range(0.2..0.95f64)) as u64;
    (start + off, start + off + cd.max(1))
}
