//! Every SQL example in `docs/sql.md` runs against a real server holding data of every kind:
//! the reference can't drift from what the engine accepts.

use opentelemetry_proto::tonic::trace::v1::{Status, span};

use crate::http_json::{now_ns, pb_span, pb_str, pb_traces_request, post_traces_protobuf};
use crate::server::TestServer;

/// A server span with a failing client child that carries an exception event.
async fn post_sample_spans(server: &TestServer) {
    let now = now_ns();
    let trace = [7u8; 16];
    let mut root = pb_span(
        &trace,
        &[1; 8],
        &[],
        "POST /cart",
        span::SpanKind::Server,
        now - 5_000_000,
        now,
    );
    root.attributes = vec![
        pb_str("http.route", "/cart"),
        pb_str("http.request.method", "POST"),
    ];
    let mut child = pb_span(
        &trace,
        &[2; 8],
        &[1; 8],
        "charge",
        span::SpanKind::Client,
        now - 4_000_000,
        now - 1_000_000,
    );
    child.status = Some(Status {
        code: 2,
        message: "card declined".into(),
    });
    child.events = vec![opentelemetry_proto::tonic::trace::v1::span::Event {
        time_unix_nano: now - 2_000_000,
        name: "exception".into(),
        attributes: vec![pb_str("exception.type", "PaymentError")],
        ..Default::default()
    }];
    let request = pb_traces_request("checkout", "docs", vec![root, child]);
    post_traces_protobuf(server, &request, false).await;
}

fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_example_in_the_docs_runs() {
    let doc = include_str!("../../docs/sql.md");
    let blocks = sql_blocks(doc);
    assert!(blocks.len() >= 8, "found only {} sql blocks", blocks.len());
    let server = TestServer::start().await;
    post_sample_spans(&server).await;
    for block in blocks {
        // DuckDB examples read files directly; they are not Sightline SQL.
        if block.contains("read_parquet") {
            continue;
        }
        let sql = block
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let answer = server.try_sql(&sql).await;
        assert!(answer.is_ok(), "docs example failed:\n{sql}\n{answer:?}");
    }
}
