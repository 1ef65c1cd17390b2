//! The store over both of its storages: the data directory (the embedded default) and a real
//! S3 server (SeaweedFS, started by the test script, `SIGHTLINE_S3_ENDPOINT`). Each scenario
//! runs on both; without an S3 server the S3 half says so and passes, unless
//! `SIGHTLINE_REQUIRE_S3` is set (the test script sets it).

#![allow(clippy::disallowed_methods, reason = "tests spawn and block freely")]

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use object_store::path::Path as ObjectPath;
use prometheus_client::registry::Registry;
use sightline_store::compaction::CompactionPolicy;
use sightline_store::storage::{S3Settings, Storage};
use sightline_store::{Store, StoreConfig, Table, query, writer};

const HOUR: i64 = 3_600_000_000_000;

/// A storage of each kind: the data directory `dir`, and a fresh prefix of the test
/// script's bucket (if there is an S3 server).
fn storages(dir: &std::path::Path, name: &str) -> Vec<Storage> {
    let mut out = vec![Storage::local(&dir.join("data")).expect("local storage")];
    let Ok(endpoint) = std::env::var("SIGHTLINE_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("SIGHTLINE_REQUIRE_S3").is_none(),
            "SIGHTLINE_REQUIRE_S3 is set but SIGHTLINE_S3_ENDPOINT is not"
        );
        eprintln!("no S3 server (SIGHTLINE_S3_ENDPOINT unset): only the local half runs");
        return out;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let bucket = std::env::var("SIGHTLINE_S3_BUCKET").unwrap_or("sightline".into());
    out.push(
        Storage::s3(&S3Settings {
            url: format!("s3://{bucket}/store-tests/{name}/{unique}"),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some(var("SIGHTLINE_S3_ACCESS_KEY_ID")),
            secret_access_key: Some(var("SIGHTLINE_S3_SECRET_ACCESS_KEY")),
        })
        .expect("S3 storage"),
    );
    out
}

fn config(dir: &std::path::Path, storage: &Storage) -> StoreConfig {
    let mut c = StoreConfig::new(dir.join("wal-and-locks"));
    c.storage = Some(storage.clone());
    c.compaction = Some(CompactionPolicy {
        target_file_bytes: 256 << 20,
        min_files: 2,
        close_after: Duration::from_secs(0),
    });
    c.file_grace = Duration::ZERO;
    c
}

/// `n` trace fragments with ids `first..first + n`, 1 µs apart from `t0`.
fn fragments(first: usize, n: usize, t0: i64) -> RecordBatch {
    let ids: Vec<String> = (first..first + n).map(|i| format!("{i:032x}")).collect();
    let times: Vec<i64> = (0..n as i64).map(|i| t0 + i * 1_000).collect();
    RecordBatch::try_new(
        Table::TraceFragments.schema(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC")),
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(StringArray::from(vec![Some("root"); n])),
            Arc::new(Int64Array::from(vec![1; n])),
            Arc::new(Int64Array::from(vec![0; n])),
        ],
    )
    .expect("batch")
}

/// Rows and distinct ids in `trace_fragments` (equal unless a row is seen twice).
async fn count(store: &Store) -> (i64, i64) {
    let engine = store
        .query_engine(query::QueryLimits::default())
        .await
        .expect("engine");
    let out = engine
        .execute("SELECT count(*), count(DISTINCT trace_id) FROM trace_fragments")
        .await
        .expect("query");
    let col = |i: usize| {
        out.batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("count")
            .value(0)
    };
    (col(0), col(1))
}

/// The data files of the table in the storage, as listed there.
async fn parquet_objects(storage: &Storage) -> Vec<ObjectPath> {
    let prefix = sightline_store::paths::object::table_prefix("default", Table::TraceFragments);
    let mut out: Vec<ObjectPath> = storage
        .list(&prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.location)
        .filter(|p| sightline_store::paths::object::parse_data_file(p).is_some())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_compactions_and_restarts_keep_every_row_once_on_both_storages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = (sightline_common::clock::now() / HOUR - 3) * HOUR;
    for (n, storage) in storages(tmp.path(), "cycle").into_iter().enumerate() {
        let dir = tmp.path().join(format!("node-{n}"));
        let at = storage.location().to_string();
        {
            let store = Store::open(config(&dir, &storage), &mut Registry::default())
                .await
                .expect("open");
            for i in 0..4 {
                store
                    .write(vec![(Table::TraceFragments, fragments(i * 100, 100, base))])
                    .await
                    .expect("write");
                store.flush_all().await.expect("flush");
            }
            assert_eq!(count(&store).await, (400, 400), "{at}");
            assert_eq!(parquet_objects(&storage).await.len(), 4, "{at}");
            // Queries keep running while the merge swaps the files.
            let report = store.maintain().await;
            assert_eq!(report.compactions, 1, "{at}: {report:?}");
            assert_eq!(count(&store).await, (400, 400), "{at}");
            store.maintain().await; // no grace: the inputs go now
            let left = parquet_objects(&storage).await;
            assert_eq!(left.len(), 1, "{at}: {left:?}");
            // Rows still only in memory and the WAL when the process dies.
            store
                .write(vec![(Table::TraceFragments, fragments(400, 50, base))])
                .await
                .expect("write");
        }
        let store = Store::open(config(&dir, &storage), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(
            count(&store).await,
            (450, 450),
            "{at}: the WAL's rows are back"
        );
        assert_eq!(store.catalog(Table::TraceFragments).files().len(), 1);
        store.close().await.expect("close");
        drop(store);
        // No Parquet file is in the data directory unless it is the storage.
        let local_parquet = walk(&dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .count();
        assert_eq!(local_parquet, 0, "{at}");
        let store = Store::open(config(&dir, &storage), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(count(&store).await, (450, 450), "{at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_crash_leaves_mid_flush_or_mid_merge_is_repaired_at_start_on_both_storages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = (sightline_common::clock::now() / HOUR - 3) * HOUR;
    for (n, storage) in storages(tmp.path(), "crash").into_iter().enumerate() {
        let dir = tmp.path().join(format!("node-{n}"));
        let at = storage.location().to_string();
        let inputs;
        {
            let store = Store::open(config(&dir, &storage), &mut Registry::default())
                .await
                .expect("open");
            for i in 0..3 {
                store
                    .write(vec![(Table::TraceFragments, fragments(i * 10, 10, base))])
                    .await
                    .expect("write");
                store.flush_all().await.expect("flush");
            }
            inputs = store.catalog(Table::TraceFragments).files();
            // A merge that stored its output and log, then the process died before the swap.
            sightline_store::compaction::merge(&storage, Table::TraceFragments, inputs.clone())
                .await
                .expect("merge");
            // And a flush that stored its file but died before its watermark.
            store
                .write(vec![(Table::TraceFragments, fragments(30, 5, base))])
                .await
                .expect("write");
            let snapshot = store.catalog(Table::TraceFragments).snapshot();
            writer::write_files(
                &storage,
                "default",
                Table::TraceFragments,
                snapshot.batches,
                u64::MAX / 2,
            )
            .await
            .expect("an unfinished flush's file");
            assert_eq!(parquet_objects(&storage).await.len(), 5, "{at}");
        }
        let store = Store::open(config(&dir, &storage), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(
            count(&store).await,
            (35, 35),
            "{at}: no row lost or doubled"
        );
        let files = store.catalog(Table::TraceFragments).files();
        assert_eq!(files.len(), 1, "{at}: only the merged file counts");
        for f in &inputs {
            assert_eq!(storage.read(&f.path).await.expect("read"), None, "{at}");
        }
        let left = parquet_objects(&storage).await;
        assert_eq!(left, vec![files[0].path.clone()], "{at}");
        let logs = storage
            .list(&sightline_store::paths::object::table_prefix(
                "default",
                Table::TraceFragments,
            ))
            .await
            .expect("list")
            .into_iter()
            .filter(|m| {
                m.location
                    .filename()
                    .is_some_and(|n| n.starts_with("_compaction-"))
            })
            .count();
        assert_eq!(logs, 0, "{at}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
