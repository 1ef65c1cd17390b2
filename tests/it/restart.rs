//! Durability: what was accepted before SIGTERM is in Parquet afterwards, and
//! comes back exactly once after a restart on the same data directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::trace::v1::span;

use crate::http_json::{now_ns, pb_span, pb_traces_request, post_traces_protobuf};
use crate::server::{Row, RowExt as _, TestServer, sql_str};

const SERVICE: &str = "it-restart";
const TRACE_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee01";

/// (span id hex, name, start ns) for the spans a test sent.
type Expected = Vec<(String, String, i64)>;

async fn send_spans(server: &TestServer, first: u8, count: u8, base_ns: u64) -> Expected {
    let trace_id = hex::decode(TRACE_ID).expect("hex trace id");
    let mut expected = Vec::new();
    let spans = (first..first + count)
        .map(|i| {
            let span_id = [0x5a, 0, 0, 0, 0, 0, 0, i];
            let name = format!("restart-span-{i}");
            let start = base_ns + u64::from(i) * 1_000_003;
            expected.push((hex::encode(span_id), name.clone(), start as i64));
            pb_span(
                &trace_id,
                &span_id,
                &[],
                &name,
                span::SpanKind::Internal,
                start,
                start + 500_001,
            )
        })
        .collect();
    let response = post_traces_protobuf(
        server,
        &pb_traces_request(SERVICE, "it.restart", spans),
        false,
    )
    .await;
    if let Some(partial) = response.partial_success {
        assert_eq!(partial.rejected_spans, 0, "nothing rejected: {partial:?}");
    }
    expected
}

fn span_query() -> String {
    format!(
        "SELECT span_id, name, CAST(start_time AS BIGINT) AS start_ns \
         FROM spans WHERE service_name = {} ORDER BY span_id",
        sql_str(SERVICE)
    )
}

/// Waits until at least `expected.len()` rows are visible, then asserts the
/// rows are exactly `expected` (so duplicates fail rather than time out).
async fn assert_exact_spans(server: &TestServer, expected: &Expected) {
    let rows = server
        .wait_rows(&span_query(), |rows| rows.len() >= expected.len())
        .await;
    let got: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r: &Row| {
            (
                r.text("span_id").to_owned(),
                r.text("name").to_owned(),
                r.int("start_ns"),
            )
        })
        .collect();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(
        got, want,
        "spans after restart must be exactly the sent ones"
    );

    let counts = server
        .sql_rows(&format!(
            "SELECT count(*) AS n, count(DISTINCT span_id) AS distinct_ids \
             FROM spans WHERE service_name = {}",
            sql_str(SERVICE)
        ))
        .await;
    assert_eq!(counts[0].int("n"), expected.len() as i64, "{counts:?}");
    assert_eq!(
        counts[0].int("distinct_ids"),
        expected.len() as i64,
        "{counts:?}"
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The `date=YYYY-MM-DD/hour=HH` partition (UTC) of an instant.
fn partition_of(ns: u64) -> (String, String) {
    let secs = i64::try_from(ns / 1_000_000_000).expect("seconds fit i64");
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let hour = secs.rem_euclid(86_400) / 3_600;
    (
        format!("date={y:04}-{m:02}-{d:02}"),
        format!("hour={hour:02}"),
    )
}

/// Every `*.parquet` under `<table_dir>/date=*/hour=*/`, checking the
/// partition directory names and each file's Parquet magic on the way.
fn parquet_files(table_dir: &Path, allowed: &BTreeSet<(String, String)>) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let dates = std::fs::read_dir(table_dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", table_dir.display()));
    for date in dates {
        let date = date.expect("dir entry");
        let date_name = date.file_name().to_string_lossy().into_owned();
        if !date_name.starts_with("date=") {
            continue;
        }
        assert!(
            date.path().is_dir(),
            "{} is not a directory",
            date.path().display()
        );
        for hour in std::fs::read_dir(date.path()).expect("read date partition") {
            let hour = hour.expect("dir entry");
            let hour_name = hour.file_name().to_string_lossy().into_owned();
            assert!(
                allowed.contains(&(date_name.clone(), hour_name.clone())),
                "unexpected partition {date_name}/{hour_name}; expected one of {allowed:?}"
            );
            for file in std::fs::read_dir(hour.path()).expect("read hour partition") {
                let path = file.expect("dir entry").path();
                if path.extension().is_some_and(|e| e == "parquet") {
                    let bytes = std::fs::read(&path).expect("read parquet file");
                    assert!(
                        bytes.len() > 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
                        "{} is not a complete Parquet file",
                        path.display()
                    );
                    files.insert(path);
                }
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_survive_sigterm_and_restart_exactly_once() {
    let mut server = TestServer::start().await;
    let spans_dir = server.data_dir().join("default").join("spans");
    let test_start = now_ns();
    let base = test_start - 2_000_000_000;

    // Round 1: accepted, visible, then SIGTERM (the server flushes on exit).
    let mut expected = send_spans(&server, 1, 5, base).await;
    server.wait_row_count(&span_query(), 5).await;
    server.stop().await;

    let mut allowed: BTreeSet<(String, String)> = [base, base + 10_000_000, test_start, now_ns()]
        .into_iter()
        .map(partition_of)
        .collect();
    let files_after_stop = parquet_files(&spans_dir, &allowed);
    assert!(
        !files_after_stop.is_empty(),
        "no Parquet files under {}/date=*/hour=*/ after SIGTERM",
        spans_dir.display()
    );

    server.restart().await;
    assert_exact_spans(&server, &expected).await;

    // Round 2: more spans, an explicit flush, then the union is there once.
    expected.extend(send_spans(&server, 6, 3, base).await);
    server.flush().await;
    allowed.insert(partition_of(now_ns()));
    let files_after_flush = parquet_files(&spans_dir, &allowed);
    assert!(
        files_after_flush
            .difference(&files_after_stop)
            .next()
            .is_some(),
        "flush wrote no new Parquet file (before: {files_after_stop:?}, after: {files_after_flush:?})"
    );
    assert_exact_spans(&server, &expected).await;

    // Round 3: a second stop/start cycle neither loses nor duplicates rows.
    server.stop().await;
    server.restart().await;
    assert_exact_spans(&server, &expected).await;
    server.stop().await;
}
