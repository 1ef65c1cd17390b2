//! OTLP/HTTP by hand: OTLP/JSON bodies written with `serde_json::json!`, and
//! gzip'd protobuf bodies encoded with the `opentelemetry_proto` types. Also
//! holds the protobuf helpers the restart test uses.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message as _;
use serde_json::{Value, json};

use crate::server::{Row, RowExt as _, TestServer, sql_str};

// ---------------------------------------------------------------------------
// Protobuf helpers (shared with restart.rs)
// ---------------------------------------------------------------------------

pub(crate) fn now_ns() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after epoch");
    u64::try_from(d.as_nanos()).expect("time fits u64 nanoseconds")
}

pub(crate) fn pb_attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn pb_str(key: &str, value: &str) -> KeyValue {
    pb_attr(key, any_value::Value::StringValue(value.to_owned()))
}

/// A span with the given identity and times; everything else empty.
pub(crate) fn pb_span(
    trace_id: &[u8],
    span_id: &[u8],
    parent_span_id: &[u8],
    name: &str,
    kind: span::SpanKind,
    start_ns: u64,
    end_ns: u64,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent_span_id.to_vec(),
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        ..Default::default()
    }
}

/// One resource (with `service.name`) and one scope holding `spans`.
pub(crate) fn pb_traces_request(
    service: &str,
    scope: &str,
    spans: Vec<Span>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![pb_str("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.to_owned(),
                    version: "0.0.1".to_owned(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip write");
    encoder.finish().expect("gzip finish")
}

/// POSTs `request` as `application/x-protobuf` to `/v1/traces` (gzip'd if
/// asked), asserts 200 and returns the decoded response message.
pub(crate) async fn post_traces_protobuf(
    server: &TestServer,
    request: &ExportTraceServiceRequest,
    compress: bool,
) -> ExportTraceServiceResponse {
    let raw = request.encode_to_vec();
    let mut builder = server
        .client()
        .post(server.otlp_http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf");
    let body = if compress {
        builder = builder.header("content-encoding", "gzip");
        gzip(&raw)
    } else {
        raw
    };
    let resp = builder
        .body(body)
        .send()
        .await
        .expect("POST /v1/traces (protobuf)");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("read /v1/traces response");
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "protobuf export answered: {}",
        String::from_utf8_lossy(&bytes)
    );
    ExportTraceServiceResponse::decode(bytes.as_ref())
        .unwrap_or_else(|e| panic!("response is not ExportTraceServiceResponse protobuf: {e}"))
}

/// int64 in proto3 JSON may come as a number or as a decimal string.
fn json_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON text ({e}): {text:?}"))
}

fn object_without(row: &Row, column: &str, keys: &[&str]) -> (Value, Vec<Value>) {
    let mut map = row
        .val(column)
        .as_object()
        .unwrap_or_else(|| panic!("{column} is not a map in {row:?}"))
        .clone();
    let removed = keys
        .iter()
        .map(|k| {
            map.remove(*k)
                .unwrap_or_else(|| panic!("{column} lacks {k:?} in {row:?}"))
        })
        .collect();
    (Value::Object(map), removed)
}

const SPAN_COLUMNS: &str = "trace_id, span_id, parent_span_id, trace_state, name, kind, \
    CAST(start_time AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns, duration_ns, \
    status_code, status_message, service_name, scope_name, scope_version, \
    http_route, http_request_method, http_response_status_code, \
    attributes, attribute_types, resource_attributes, resource_attribute_types, \
    events, CAST(get_field(array_element(events, 1), 'time') AS BIGINT) AS event_ns, \
    links, flags";

// ---------------------------------------------------------------------------
// OTLP/JSON
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_traces_roundtrip_with_partial_success() {
    let server = TestServer::start().await;
    let service = "it-otlp-json";
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let root_id = "eee19b7ec3c1b174";
    let child_id = "eee19b7ec3c1b173";
    let anon_trace = "0102030405060708090a0b0c0d0e0f10";
    let anon_span = "1112131415161718";

    let root_start = now_ns() - 3_000_000_000 + 11;
    let root_end = root_start + 250_000_013;
    let event_time = root_start + 5_000_023;
    let child_start = root_start + 10_000_017;
    let child_end = root_start + 200_000_019;
    let anon_start = root_start + 1_031;
    let anon_end = anon_start + 999;

    // Built in pieces: one huge json! literal can exceed the macro recursion limit.
    let kv = |key: &str, value: Value| json!({"key": key, "value": value});
    let root_attributes = json!([
        kv("http.route", json!({"stringValue": "/orders/{id}"})),
        kv("http.request.method", json!({"stringValue": "GET"})),
        kv("http.response.status_code", json!({"intValue": "200"})),
        kv("retry.count", json!({"intValue": 3})),
        kv("sample.ratio", json!({"doubleValue": 3.0})),
        kv("cache.hit", json!({"boolValue": true})),
        kv("payload.digest", json!({"bytesValue": "AQID"})),
        kv(
            "tags",
            json!({"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}})
        ),
        kv(
            "origin",
            json!({"kvlistValue": {"values": [kv("region", json!({"stringValue": "eu"}))]}})
        ),
    ]);
    let root_span = json!({
        "traceId": trace_id,
        "spanId": root_id,
        "parentSpanId": "",
        "name": "GET /orders/{id}",
        "kind": 2,
        "startTimeUnixNano": root_start.to_string(),
        "endTimeUnixNano": root_end.to_string(),
        "attributes": root_attributes,
        "events": [{
            "timeUnixNano": event_time.to_string(),
            "name": "retry",
            "attributes": [kv("attempt", json!({"intValue": "2"}))]
        }],
        "status": {"code": 1},
        "someFutureSpanField": {"nested": [1, 2, 3]}
    });
    // Times as JSON numbers, intValue as a JSON number, legacy HTTP keys.
    let child_span = json!({
        "traceId": trace_id,
        "spanId": child_id,
        "parentSpanId": root_id,
        "traceState": "congo=t61rcWkgMzE",
        "flags": 257,
        "name": "POST /payments",
        "kind": 3,
        "startTimeUnixNano": child_start,
        "endTimeUnixNano": child_end,
        "attributes": [
            kv("http.method", json!({"stringValue": "POST"})),
            kv("http.status_code", json!({"intValue": 504})),
            kv("peer.service", json!({"stringValue": "payments"}))
        ],
        "status": {"code": 2, "message": "db timeout"}
    });
    // A 3-byte trace id: this span alone must be rejected.
    let rejected_span = json!({
        "traceId": "a1b2c3",
        "spanId": "aaaaaaaaaaaaaaaa",
        "name": "rejected-span",
        "kind": 1,
        "startTimeUnixNano": root_start.to_string(),
        "endTimeUnixNano": root_end.to_string()
    });
    let named_resource_spans = json!({
        "resource": {
            "attributes": [
                kv("service.name", json!({"stringValue": service})),
                kv("k8s.pod.restarts", json!({"intValue": "4"}))
            ]
        },
        "someFutureResourceSpansField": {"ignored": true},
        "scopeSpans": [{
            "scope": {"name": "it.json.scope", "version": "0.9.0"},
            "spans": [root_span, child_span, rejected_span]
        }]
    });
    // No service.name, and SPAN_KIND_UNSPECIFIED.
    let anonymous_resource_spans = json!({
        "resource": {"attributes": []},
        "scopeSpans": [{
            "scope": {"name": "it.json.anon"},
            "spans": [{
                "traceId": anon_trace,
                "spanId": anon_span,
                "name": "anonymous-work",
                "kind": 0,
                "startTimeUnixNano": anon_start.to_string(),
                "endTimeUnixNano": anon_end.to_string()
            }]
        }]
    });
    let body = json!({"resourceSpans": [named_resource_spans, anonymous_resource_spans]});

    let resp = server
        .client()
        .post(server.otlp_http_url("/v1/traces"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /v1/traces (json)");
    let status = resp.status();
    let text = resp.text().await.expect("read /v1/traces response");
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "json export answered: {text}"
    );
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("JSON export answer is not JSON ({e}): {text}"));
    assert_eq!(
        json_i64(&answer["partialSuccess"]["rejectedSpans"]),
        Some(1),
        "one span (3-byte trace id) rejected: {answer}"
    );

    let q = format!(
        "SELECT {SPAN_COLUMNS}, attributes['sample.ratio'] AS a_ratio, \
           attributes['payload.digest'] AS a_digest \
         FROM spans WHERE trace_id = {} ORDER BY start_time",
        sql_str(trace_id)
    );
    let rows = server.wait_rows(&q, |rows| rows.len() >= 2).await;
    assert_eq!(rows.len(), 2, "root and child stored once: {rows:#?}");

    let root = &rows[0];
    assert_eq!(root.text("span_id"), root_id);
    assert!(root.is_null("parent_span_id"), "empty parentSpanId is NULL");
    assert!(root.is_null("trace_state"));
    assert_eq!(root.text("name"), "GET /orders/{id}");
    assert_eq!(root.text("kind"), "server");
    assert_eq!(root.int("start_ns"), root_start as i64);
    assert_eq!(root.int("end_ns"), root_end as i64);
    assert_eq!(root.int("duration_ns"), (root_end - root_start) as i64);
    assert_eq!(root.text("status_code"), "ok");
    assert!(root.is_null("status_message"));
    assert_eq!(root.text("service_name"), service);
    assert_eq!(root.text("scope_name"), "it.json.scope");
    assert_eq!(root.text("scope_version"), "0.9.0");
    assert_eq!(root.text("http_route"), "/orders/{id}");
    assert_eq!(root.text("http_request_method"), "GET");
    assert_eq!(root.int("http_response_status_code"), 200);
    assert_eq!(root.int("flags"), 0);
    assert_eq!(
        root.text("a_ratio"),
        "3",
        "doubles in shortest round-trip form"
    );
    assert_eq!(root.text("a_digest"), "AQID", "bytes as base64");
    let (attrs, structured) = object_without(root, "attributes", &["tags", "origin"]);
    assert_eq!(
        attrs,
        json!({
            "http.route": "/orders/{id}",
            "http.request.method": "GET",
            "http.response.status_code": "200",
            "retry.count": "3",
            "sample.ratio": "3",
            "cache.hit": "true",
            "payload.digest": "AQID",
        })
    );
    assert_eq!(
        json_text(structured[0].as_str().expect("tags text")),
        json!(["a", "b"])
    );
    assert_eq!(
        json_text(structured[1].as_str().expect("origin text")),
        json!({"region": "eu"})
    );
    assert_eq!(
        root.val("attribute_types"),
        &json!({
            "http.response.status_code": "int",
            "retry.count": "int",
            "sample.ratio": "double",
            "cache.hit": "bool",
            "payload.digest": "bytes",
            "tags": "array",
            "origin": "kvlist",
        })
    );
    let (resource, _) = object_without(root, "resource_attributes", &[]);
    assert_eq!(resource["k8s.pod.restarts"], json!("4"));
    assert_eq!(
        root.val("resource_attribute_types"),
        &json!({"k8s.pod.restarts": "int"})
    );
    let events = root.val("events").as_array().expect("events list");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], json!("retry"));
    assert_eq!(events[0]["attributes"], json!({"attempt": "2"}));
    assert_eq!(events[0]["attribute_types"], json!({"attempt": "int"}));
    assert_eq!(root.int("event_ns"), event_time as i64);

    let child = &rows[1];
    assert_eq!(child.text("span_id"), child_id);
    assert_eq!(child.text("parent_span_id"), root_id);
    assert_eq!(child.text("trace_state"), "congo=t61rcWkgMzE");
    assert_eq!(child.int("flags"), 257);
    assert_eq!(child.text("kind"), "client");
    assert_eq!(
        child.int("start_ns"),
        child_start as i64,
        "numeric time accepted"
    );
    assert_eq!(child.int("end_ns"), child_end as i64);
    assert_eq!(child.text("status_code"), "error");
    assert_eq!(child.text("status_message"), "db timeout");
    assert_eq!(
        child.text("http_request_method"),
        "POST",
        "legacy http.method"
    );
    assert_eq!(
        child.int("http_response_status_code"),
        504,
        "legacy http.status_code, intValue as a JSON number"
    );
    assert!(child.is_null("http_route"));
    assert_eq!(
        child.val("attributes"),
        &json!({"http.method": "POST", "http.status_code": "504", "peer.service": "payments"})
    );
    assert_eq!(
        child.val("attribute_types"),
        &json!({"http.status_code": "int"})
    );

    // A resource without service.name, and SPAN_KIND_UNSPECIFIED.
    let q = format!(
        "SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id = {}",
        sql_str(anon_trace)
    );
    let rows = server.wait_row_count(&q, 1).await;
    let anon = &rows[0];
    assert_eq!(anon.text("span_id"), anon_span);
    assert_eq!(anon.text("service_name"), "unknown_service");
    assert_eq!(
        anon.text("kind"),
        "internal",
        "unspecified kind maps to internal"
    );
    assert_eq!(anon.text("status_code"), "unset");
    assert_eq!(anon.text("scope_name"), "it.json.anon");
    assert_eq!(anon.int("start_ns"), anon_start as i64);
    assert_eq!(anon.int("end_ns"), anon_end as i64);

    // The rejected span is nowhere; the rest of its request is there.
    let counts = server
        .sql_rows(&format!(
            "SELECT count(*) AS n, \
               sum(CASE WHEN name = 'rejected-span' THEN 1 ELSE 0 END) AS rejected \
             FROM spans WHERE service_name = {}",
            sql_str(service)
        ))
        .await;
    assert_eq!(counts[0].int("n"), 2, "{counts:?}");
    assert_eq!(counts[0].int("rejected"), 0, "{counts:?}");
}

// ---------------------------------------------------------------------------
// gzip'd protobuf
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_protobuf_gzip_traces_roundtrip_with_partial_success() {
    let server = TestServer::start().await;
    let service = "it-otlp-proto-gzip";
    let trace_id = hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex");
    let root_id = hex::decode("00f067aa0ba902b7").expect("hex");
    let consumer_id = hex::decode("00f067aa0ba902b8").expect("hex");
    let producer_id = hex::decode("00f067aa0ba902b9").expect("hex");
    let link_trace = hex::decode("0af7651916cd43dd8448eb211c80319c").expect("hex");
    let link_span = hex::decode("b7ad6b7169203331").expect("hex");

    let root_start = now_ns() - 2_000_000_000 + 7;
    let root_end = root_start + 90_000_001;
    let event_time = root_start + 3_000_003;

    let mut root = pb_span(
        &trace_id,
        &root_id,
        &[],
        "handle message batch",
        span::SpanKind::Server,
        root_start,
        root_end,
    );
    root.attributes = vec![
        pb_str("http.route", "/batch"),
        pb_attr("nan.value", any_value::Value::DoubleValue(f64::NAN)),
        pb_attr("pos.inf", any_value::Value::DoubleValue(f64::INFINITY)),
        pb_attr("neg.inf", any_value::Value::DoubleValue(f64::NEG_INFINITY)),
        pb_attr(
            "blob",
            any_value::Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef]),
        ),
        pb_attr("big.negative", any_value::Value::IntValue(i64::MIN)),
        pb_attr("http.response.status_code", any_value::Value::IntValue(202)),
    ];
    root.events = vec![span::Event {
        time_unix_nano: event_time,
        name: "batch.received".to_owned(),
        attributes: vec![pb_attr("batch.size", any_value::Value::IntValue(64))],
        dropped_attributes_count: 1,
    }];
    root.links = vec![span::Link {
        trace_id: link_trace.clone(),
        span_id: link_span.clone(),
        trace_state: "vendor=value".to_owned(),
        attributes: vec![pb_str("link.reason", "follows")],
        flags: 0x301,
        ..Default::default()
    }];
    root.dropped_attributes_count = 2;
    root.dropped_events_count = 3;
    root.dropped_links_count = 4;
    root.status = Some(Status {
        message: "partial batch".to_owned(),
        code: status::StatusCode::Error as i32,
    });

    let consumer = pb_span(
        &trace_id,
        &consumer_id,
        &root_id,
        "consume",
        span::SpanKind::Consumer,
        root_start + 1_000,
        root_start + 2_000,
    );
    let producer = pb_span(
        &trace_id,
        &producer_id,
        &root_id,
        "produce",
        span::SpanKind::Producer,
        root_start + 3_000,
        root_start + 4_000,
    );
    let rejected = pb_span(
        &[1, 2, 3],
        &[9, 9, 9, 9, 9, 9, 9, 9],
        &[],
        "rejected-span",
        span::SpanKind::Internal,
        root_start,
        root_end,
    );
    let request = pb_traces_request(
        service,
        "it.proto.scope",
        vec![root, consumer, rejected, producer],
    );

    let response = post_traces_protobuf(&server, &request, true).await;
    let partial = response
        .partial_success
        .expect("partial_success set when a span is rejected");
    assert_eq!(partial.rejected_spans, 1, "{partial:?}");

    let q = format!(
        "SELECT {SPAN_COLUMNS}, dropped_attributes_count, dropped_events_count, \
           dropped_links_count, attributes['blob'] AS a_blob \
         FROM spans WHERE service_name = {} ORDER BY start_time",
        sql_str(service)
    );
    let rows = server.wait_rows(&q, |rows| rows.len() >= 3).await;
    assert_eq!(rows.len(), 3, "three accepted spans stored once: {rows:#?}");
    let hex_trace = hex::encode(&trace_id);
    for row in &rows {
        assert_eq!(row.text("trace_id"), hex_trace);
        assert_eq!(row.text("scope_name"), "it.proto.scope");
        assert_eq!(row.text("scope_version"), "0.0.1");
        assert_ne!(row.text("name"), "rejected-span");
    }

    let root = &rows[0];
    assert_eq!(root.text("span_id"), hex::encode(&root_id));
    assert!(root.is_null("parent_span_id"));
    assert_eq!(root.text("kind"), "server");
    assert_eq!(root.int("start_ns"), root_start as i64);
    assert_eq!(root.int("end_ns"), root_end as i64);
    assert_eq!(root.text("status_code"), "error");
    assert_eq!(root.text("status_message"), "partial batch");
    assert_eq!(root.text("http_route"), "/batch");
    assert_eq!(root.int("http_response_status_code"), 202);
    assert_eq!(root.text("a_blob"), "3q2+7w==");
    assert_eq!(
        root.val("attributes"),
        &json!({
            "http.route": "/batch",
            "nan.value": "NaN",
            "pos.inf": "Infinity",
            "neg.inf": "-Infinity",
            "blob": "3q2+7w==",
            "big.negative": "-9223372036854775808",
            "http.response.status_code": "202",
        })
    );
    assert_eq!(
        root.val("attribute_types"),
        &json!({
            "nan.value": "double",
            "pos.inf": "double",
            "neg.inf": "double",
            "blob": "bytes",
            "big.negative": "int",
            "http.response.status_code": "int",
        })
    );
    assert_eq!(root.int("dropped_attributes_count"), 2);
    assert_eq!(root.int("dropped_events_count"), 3);
    assert_eq!(root.int("dropped_links_count"), 4);
    let events = root.val("events").as_array().expect("events list");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], json!("batch.received"));
    assert_eq!(events[0]["attributes"], json!({"batch.size": "64"}));
    assert_eq!(events[0]["dropped_attributes_count"].as_i64(), Some(1));
    assert_eq!(root.int("event_ns"), event_time as i64);
    let links = root.val("links").as_array().expect("links list");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["trace_id"], json!(hex::encode(&link_trace)));
    assert_eq!(links[0]["span_id"], json!(hex::encode(&link_span)));
    assert_eq!(links[0]["trace_state"], json!("vendor=value"));
    assert_eq!(links[0]["attributes"], json!({"link.reason": "follows"}));
    assert_eq!(links[0]["flags"].as_i64(), Some(0x301));
    let (resource, _) = object_without(root, "resource_attributes", &[]);
    assert_eq!(root.text("service_name"), service);
    if let Some(name) = resource.get("service.name") {
        assert_eq!(name, &json!(service));
    }

    let consumer = &rows[1];
    assert_eq!(consumer.text("span_id"), hex::encode(&consumer_id));
    assert_eq!(consumer.text("parent_span_id"), hex::encode(&root_id));
    assert_eq!(consumer.text("kind"), "consumer");
    assert_eq!(
        consumer.text("status_code"),
        "unset",
        "absent status is unset"
    );
    assert_eq!(consumer.int("duration_ns"), 1_000);

    let producer = &rows[2];
    assert_eq!(producer.text("span_id"), hex::encode(&producer_id));
    assert_eq!(producer.text("kind"), "producer");
    assert_eq!(producer.int("start_ns"), (root_start + 3_000) as i64);
}
