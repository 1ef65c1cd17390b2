//! Traces: a request entering at a service's route, fanning out to the services it calls
//! and their databases, with errors, retries and slow paths.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status as SpanStatus,
};
use rand::RngExt as _;
use rand::rngs::StdRng;

use super::*;
use crate::catalogue::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Server,
    Client,
    Internal,
}

#[derive(Clone, Copy)]
pub(crate) struct Node {
    pub(crate) svc: usize,
    pub(crate) span_id: [u8; 8],
    pub(crate) kind: NodeKind,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

pub(crate) struct SpanSpec {
    pub(crate) svc: usize,
    pub(crate) span_id: [u8; 8],
    pub(crate) parent: Option<[u8; 8]>,
    pub(crate) remote_parent: bool,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) error: bool,
}

pub(crate) fn finish_span(rng: &mut StdRng, trace_id: &[u8], spec: SpanSpec) -> (usize, Span) {
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

pub(crate) fn server_attrs(
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
pub(crate) fn gen_trace(rng: &mut StdRng, n: usize, now: u64, out: &mut Vec<(usize, Span)>) {
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
pub(crate) fn gen_trace_request(rng: &mut StdRng, n: usize, now: u64) -> ExportTraceServiceRequest {
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
