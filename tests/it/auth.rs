//! The OpenTelemetry Rust SDK's exporters against a server with API keys: the ingest key as
//! gRPC metadata or an HTTP header gets the spans stored; a read key's are refused as
//! permission denied and a wrong key's as unauthenticated, and nothing of theirs is stored.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use sightline_common::auth::{self, Role};

use crate::sdk_roundtrip::{OnRuntime, Transport, blocking, resource};
use crate::server::TestServer;

fn exporter(transport: Transport, server: &TestServer, key: &str) -> SpanExporter {
    let value = format!("Bearer {key}");
    match transport {
        Transport::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("authorization", value.parse().expect("metadata"));
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(server.otlp_grpc_endpoint())
                .with_metadata(metadata)
                .with_timeout(Duration::from_secs(10))
                .build()
        }
        Transport::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(server.otlp_http_url("/v1/traces"))
            .with_headers(HashMap::from([("authorization".to_string(), value)]))
            .with_timeout(Duration::from_secs(10))
            .build(),
    }
    .expect("exporter")
}

async fn send(transport: Transport, server: &TestServer, key: &str, service: &str) {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime::new(exporter(transport, server, key)))
        .with_resource(resource(service))
        .build();
    provider.tracer("auth").in_span("op", |_| {});
    let _ = blocking(move || (provider.force_flush(), provider.shutdown())).await;
}

async fn count(server: &TestServer, read: &str, service: &str) -> u64 {
    let r = server
        .client()
        .post(server.api_url("/api/v1/sql"))
        .bearer_auth(read)
        .json(&serde_json::json!({
            "sql": format!("SELECT count(*) AS n FROM spans WHERE service_name = '{service}'")
        }))
        .send()
        .await
        .expect("sql");
    assert!(r.status().is_success(), "{}", r.status());
    let v: serde_json::Value = r.json().await.expect("json");
    v["rows"][0][0].as_u64().expect("a count")
}

async fn refused(server: &TestServer, admin: &str, transport: &str, outcome: &str) -> f64 {
    let text = server
        .client()
        .get(server.api_url("/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| {
            l.starts_with("sightline_ingest_requests_total{")
                && l.contains("signal=\"traces\"")
                && l.contains(&format!("transport=\"{transport}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn keyed_roundtrip(transport: Transport) {
    let mut made = HashMap::new();
    let server = TestServer::start_with(|root| {
        let mut records = Vec::new();
        for role in [Role::Ingest, Role::Read, Role::Admin] {
            let (key, record) =
                auth::new_key(auth::DEFAULT_TENANT, &[role], "it", None).expect("key");
            made.insert(role, key);
            records.push(record);
        }
        auth::write_keys(&auth::keys_path(&root.join("data")), &records).expect("keys");
        Vec::new()
    })
    .await;
    let tag = match transport {
        Transport::Grpc => "grpc",
        Transport::HttpProtobuf => "http",
    };
    let (ingest, read, admin) = (
        &made[&Role::Ingest],
        &made[&Role::Read],
        &made[&Role::Admin],
    );

    let service = format!("it-keyed-{tag}");
    send(transport, &server, ingest, &service).await;
    let stored = crate::server::poll_until(Duration::from_secs(30), || async {
        (count(&server, read, &service).await == 1).then_some(())
    })
    .await;
    let () = stored;

    for (key, outcome) in [
        (read.clone(), "permission_denied"),
        (
            format!("{}x", &ingest[..ingest.len() - 1]),
            "unauthenticated",
        ),
    ] {
        let before = refused(&server, admin, tag, outcome).await;
        let service = format!("it-refused-{tag}-{outcome}");
        send(transport, &server, &key, &service).await;
        assert!(
            refused(&server, admin, tag, outcome).await > before,
            "{outcome} over {tag}"
        );
        assert_eq!(count(&server, read, &service).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_sends_with_a_key_over_grpc() {
    keyed_roundtrip(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_sends_with_a_key_over_http() {
    keyed_roundtrip(Transport::HttpProtobuf).await;
}
