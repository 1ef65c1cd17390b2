//! An SLO over spans sent by the OpenTelemetry Rust SDK, through the real server: the budget in
//! `GET /api/v1/slos/{name}` equals one computed by hand with SQL over `spans`, and survives a
//! restart.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;

use crate::sdk_roundtrip::{OnRuntime, Transport, blocking, resource, span_exporter};
use crate::server::{TestServer, poll_until};

const SPEC: &str = "\
name: orders-availability
service: orders-slo-it
objective: 99
window: 7d
indicator:
  spans:
    filter: \"service_name = 'orders-slo-it' AND kind = 'server'\"
    good: \"status_code != 'error'\"
labels:
  team: payments
---
name: orders-latency
service: orders-slo-it
objective: 95
window: month
time_zone: Europe/Berlin
indicator:
  spans:
    filter: \"service_name = 'orders-slo-it' AND kind = 'server'\"
    good: \"duration_ns <= 300000000\"
group_by: http_route
";

async fn slo(server: &TestServer, name: &str) -> (u16, Value) {
    let r = server
        .client()
        .get(server.api_url(&format!("/api/v1/slos/{name}")))
        .send()
        .await
        .expect("GET slo");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn an_slo_over_sdk_spans_matches_sql_by_hand_and_survives_a_restart() {
    let mut server = TestServer::start_with(|root| {
        let dir = root.join("slos");
        std::fs::create_dir_all(&dir).expect("slo dir");
        std::fs::write(dir.join("orders.yaml"), SPEC).expect("spec");
        vec!["--slo-dir".into(), dir.into_os_string()]
    })
    .await;

    // 120 server spans on two routes, 9 of them errors; plus client spans (not valid events).
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime::new(span_exporter(Transport::Grpc, &server)))
        .with_resource(resource("orders-slo-it"))
        .build();
    let tracer = provider.tracer("it.slo");
    for i in 0..120 {
        let route = if i % 3 == 0 {
            "/orders/{id}"
        } else {
            "/orders"
        };
        let mut span = tracer
            .span_builder("POST /orders")
            .with_kind(if i % 10 == 9 {
                SpanKind::Client
            } else {
                SpanKind::Server
            })
            .with_attributes([KeyValue::new("http.route", route)])
            .start(&tracer);
        if i % 13 == 0 {
            span.set_status(Status::error("boom"));
        }
        span.end();
    }
    let (flushed, shut) = blocking(move || (provider.force_flush(), provider.shutdown())).await;
    assert!(flushed.is_ok() && shut.is_ok(), "{flushed:?} {shut:?}");

    let rows = server
        .sql_rows(
            "SELECT count(*) AS total, \
             count(*) FILTER (WHERE status_code = 'error') AS bad \
             FROM spans WHERE service_name = 'orders-slo-it' AND kind = 'server'",
        )
        .await;
    let total = rows[0]["total"].as_i64().expect("total");
    let bad = rows[0]["bad"].as_i64().expect("bad");
    assert_eq!(total, 108);
    assert!(bad > 0);

    let view = poll_until(Duration::from_secs(20), || async {
        let (status, v) = slo(&server, "orders-availability").await;
        (status == 200 && v["total"].as_i64() == Some(total)).then_some(v)
    })
    .await;
    assert_eq!(view["good"].as_i64(), Some(total - bad));
    let consumed = view["budget"]["consumed"].as_f64().expect("consumed");
    let by_hand = bad as f64 / (0.01 * total as f64);
    assert!((consumed - by_hand).abs() < 1e-9, "{consumed} vs {by_hand}");
    // One span in 13 failed against 1% allowed: spent, so the view says since when and
    // forecasts nothing.
    assert!(consumed > 1.0, "{consumed}");
    assert!(view["exhausted_since"].is_string(), "{view}");
    assert!(view["exhausted_at"].is_null(), "{view}");
    assert!((view["objective"].as_f64().expect("objective") - 0.99).abs() < 1e-12);
    assert_eq!(view["window"], "7d");
    assert_eq!(view["labels"]["team"], "payments");
    let windows: Vec<&str> = view["burn_rates"]
        .as_array()
        .expect("burn rates")
        .iter()
        .map(|b| b["window"].as_str().expect("window"))
        .collect();
    assert_eq!(windows, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);

    // The counts are a SQL table too.
    let counted = server
        .sql_rows(
            "SELECT sum(total) AS total, sum(good) AS good FROM slo_counts \
             WHERE slo = 'orders-availability'",
        )
        .await;
    assert_eq!(counted[0]["total"].as_i64(), Some(total));

    // Grouped, calendar-window SLO: one budget per route.
    let (_, latency) = slo(&server, "orders-latency").await;
    let mut groups: Vec<(String, i64)> = latency["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().expect("group").to_string(),
                g["total"].as_i64().expect("total"),
            )
        })
        .collect();
    groups.sort();
    let by_route = server
        .sql_rows(
            "SELECT http_route, count(*) AS n FROM spans WHERE service_name = 'orders-slo-it' \
             AND kind = 'server' GROUP BY http_route ORDER BY http_route",
        )
        .await;
    let expected: Vec<(String, i64)> = by_route
        .iter()
        .map(|r| {
            (
                r["http_route"].as_str().expect("route").to_string(),
                r["n"].as_i64().expect("n"),
            )
        })
        .collect();
    assert_eq!(groups, expected);

    // Listing, history, and clear errors.
    let list: Value = server
        .client()
        .get(server.api_url("/api/v1/slos"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = list["slos"]
        .as_array()
        .expect("slos")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["orders-availability", "orders-latency"]);
    let (status, missing) = slo(&server, "no-such-slo").await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]
            .as_str()
            .expect("error")
            .contains("no-such-slo")
    );
    let r = server
        .client()
        .get(server.api_url("/api/v1/slos/orders-availability/history?step=forever"))
        .send()
        .await
        .expect("history");
    assert_eq!(r.status().as_u16(), 400);
    let r = server
        .client()
        .get(server.api_url("/api/v1/slos/orders-availability/history?step=15m"))
        .send()
        .await
        .expect("history");
    assert_eq!(r.status().as_u16(), 200);
    let history: Value = r.json().await.expect("json");
    assert!(!history["points"].as_array().expect("points").is_empty());

    // Counts survive a restart (loaded from slo_counts, not counted again).
    server.restart().await;
    let (status, after) = slo(&server, "orders-availability").await;
    assert_eq!(status, 200);
    assert_eq!(after["total"].as_i64(), Some(total));
    assert_eq!(after["good"].as_i64(), Some(total - bad));
    assert_eq!(after["version"], view["version"]);
}
