//! Fixtures of the store's durable formats, written by every release and read back by every
//! later one ("formats are forever").
//!
//! `store/tests/fixtures/data-<format>/` is a data directory as a release left it after a crash:
//! Parquet files (and their watermarks) of a first write, and the write-ahead log holding a
//! second write that was acknowledged but not flushed. `expected/<table>.jsonl` are the rows a
//! query must see, one JSON object per row (null columns left out, so columns added later do
//! not change them), sorted.
//!
//! When a durable format changes, write the new fixtures with the new code (and keep the old):
//!
//! ```text
//! SIGHTLINE_WRITE_FIXTURES=1 cargo test -p sightline-store fixtures::write -- --ignored
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, MapArray, StringArray,
    StructArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::schema::Table;

/// The name of the fixture directory the current code writes.
pub(crate) const CURRENT: &str = "data-v3";

/// 2025-11-30T12:00:00Z: every fixture row lies in the hour after it.
const T0: i64 = 1_764_504_000_000_000_000;

/// `rows` rows of `table` whose every value is derived from `seed` and the row number, so that
/// two calls with the same arguments give the same batch. Built from the schema alone: a
/// column added to a table gets values without changing this code.
pub(crate) fn sample_batch(table: Table, rows: usize, seed: usize) -> RecordBatch {
    let schema = table.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| sample_array(f, rows, seed))
        .collect();
    RecordBatch::try_new(schema, columns).expect("sample batch matches its schema")
}

fn sample_array(field: &Field, rows: usize, seed: usize) -> ArrayRef {
    let n = |i: usize| seed * 1000 + i;
    // Every third value of a nullable column is null, so nulls are in the fixtures too.
    let null = |i: usize| field.is_nullable() && i % 3 == 2;
    match field.data_type() {
        DataType::Utf8 => Arc::new(StringArray::from_iter((0..rows).map(|i| {
            (!null(i)).then(|| match field.name().as_str() {
                "trace_id" => format!("{:032x}", n(i)),
                "span_id" | "parent_span_id" => format!("{:016x}", n(i)),
                name => format!("{name}-{}", n(i)),
            })
        }))),
        DataType::Int64 => Arc::new(Int64Array::from_iter(
            (0..rows).map(|i| (!null(i)).then_some(n(i) as i64)),
        )),
        DataType::Int32 => Arc::new(Int32Array::from_iter(
            (0..rows).map(|i| (!null(i)).then_some((n(i) % 24) as i32)),
        )),
        DataType::UInt32 => Arc::new(UInt32Array::from_iter(
            (0..rows).map(|i| (!null(i)).then_some(n(i) as u32)),
        )),
        DataType::UInt64 => Arc::new(UInt64Array::from_iter(
            (0..rows).map(|i| (!null(i)).then_some(n(i) as u64)),
        )),
        DataType::Float64 => Arc::new(Float64Array::from_iter(
            (0..rows).map(|i| (!null(i)).then_some(n(i) as f64 / 4.0)),
        )),
        DataType::Boolean => Arc::new(BooleanArray::from_iter(
            (0..rows).map(|i| (!null(i)).then_some(i % 2 == 0)),
        )),
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => Arc::new(
            TimestampNanosecondArray::from_iter(
                (0..rows).map(|i| (!null(i)).then_some(T0 + n(i) as i64 * 1_000_000)),
            )
            .with_timezone_opt(tz.clone()),
        ),
        DataType::List(item) => {
            // Row i holds i % 3 items.
            let lens: Vec<usize> = (0..rows).map(|i| i % 3).collect();
            let values = sample_array(item, lens.iter().sum(), seed);
            let nulls = field
                .is_nullable()
                .then(|| (0..rows).map(|i| !null(i)).collect());
            Arc::new(ListArray::new(
                item.clone(),
                OffsetBuffer::from_lengths(lens),
                values,
                nulls,
            ))
        }
        DataType::Struct(fields) => {
            let columns = fields.iter().map(|f| sample_array(f, rows, seed)).collect();
            Arc::new(StructArray::new(fields.clone(), columns, None))
        }
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!("map entries are a struct")
            };
            // Row i holds i % 3 entries.
            let lens: Vec<usize> = (0..rows).map(|i| i % 3).collect();
            let total = lens.iter().sum();
            let keys: ArrayRef = Arc::new(StringArray::from_iter_values(
                (0..total).map(|k| format!("{}.key{k}", field.name())),
            ));
            let values = sample_array(&kv[1], total, seed);
            let entries_array = StructArray::new(kv.clone(), vec![keys, values], None);
            Arc::new(MapArray::new(
                entries.clone(),
                OffsetBuffer::from_lengths(lens),
                entries_array,
                None,
                *sorted,
            ))
        }
        other => unimplemented!("no sample values for {other} (add them here)"),
    }
}

/// The fixture directory for `name` in the source tree.
pub(crate) fn fixture_dir(name: &str) -> PathBuf {
    sightline_common::durable::manifest_dir(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every data directory fixture, oldest format first.
pub(crate) fn data_fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixture_dir(""))
        .expect("store/tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("data-"))
        })
        .collect();
    dirs.sort();
    dirs
}

/// The first write (flushed to Parquet) and the second (left in the WAL) of the fixture.
pub(crate) fn fixture_writes() -> [Vec<(Table, RecordBatch)>; 2] {
    let write = |seed| {
        Table::ALL
            .into_iter()
            .map(|t| (t, sample_batch(t, 5, seed)))
            .collect()
    };
    [write(1), write(2)]
}

/// Rows as sorted JSON lines (null columns left out).
pub(crate) fn json_lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
        for b in batches {
            w.write(b).expect("json");
        }
        w.finish().expect("json");
    }
    let mut lines: Vec<String> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Copies a fixture's directory tree.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    sightline_common::durable::copy_tree(from, to).expect("copy the fixture");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};
    use prometheus_client::registry::Registry;

    /// Writes the fixture of the current formats (see the module docs).
    #[tokio::test]
    #[ignore = "writes fixtures into the source tree; run when a durable format changes"]
    async fn write() {
        if std::env::var_os("SIGHTLINE_WRITE_FIXTURES").is_none() {
            return;
        }
        let dir = fixture_dir(CURRENT);
        assert!(
            !dir.exists(),
            "{} exists: fixtures are forever",
            dir.display()
        );
        let data = dir.join("data");
        let [first, second] = fixture_writes();
        let mut expected: std::collections::BTreeMap<Table, Vec<RecordBatch>> = Default::default();
        for (t, b) in first.iter().chain(&second) {
            expected.entry(*t).or_default().push(b.clone());
        }
        {
            let store = Store::open(StoreConfig::new(&data), &mut Registry::default())
                .await
                .expect("open");
            store.write(first).await.expect("write");
            store.flush_all().await.expect("flush");
            store.write(second).await.expect("write");
            // Dropped without closing: the second write stays in the log only, as after a crash.
        }
        std::fs::remove_file(data.join("LOCK")).expect("lock file");
        let expected_dir = dir.join("expected");
        std::fs::create_dir_all(&expected_dir).expect("mkdir");
        for (table, batches) in expected {
            let text = json_lines(&batches).join("\n") + "\n";
            std::fs::write(expected_dir.join(format!("{}.jsonl", table.name())), text)
                .expect("write expected rows");
        }
    }

    #[tokio::test]
    async fn every_fixture_data_directory_opens_with_every_row() {
        let fixtures = data_fixtures();
        assert!(
            fixtures.iter().any(|d| d.ends_with(CURRENT)),
            "no fixture of the current formats ({CURRENT}): write it (see fixtures.rs)"
        );
        for fixture in fixtures {
            let tmp = tempfile::tempdir().expect("tempdir");
            copy_tree(&fixture.join("data"), tmp.path());
            let store = Store::open(StoreConfig::new(tmp.path()), &mut Registry::default())
                .await
                .expect("open");
            let engine = store
                .query_engine(Default::default())
                .await
                .expect("engine")
                .with_audit();
            for table in Table::ALL {
                let out = engine
                    .execute(&format!("SELECT * FROM {}", table.name()))
                    .await
                    .expect("query");
                // A table added after the fixture was written (audit: data-v3) has no rows in
                // it.
                let want = std::fs::read_to_string(
                    fixture
                        .join("expected")
                        .join(format!("{}.jsonl", table.name())),
                )
                .unwrap_or_else(|e| {
                    assert!(
                        table == Table::Audit && !fixture.ends_with(CURRENT),
                        "expected rows of {} in {}: {e}",
                        table.name(),
                        fixture.display()
                    );
                    String::new()
                });
                let want: Vec<&str> = want.lines().collect();
                assert_eq!(
                    json_lines(&out.batches),
                    want,
                    "{} of {}",
                    table.name(),
                    fixture.display()
                );
            }
        }
    }

    #[test]
    fn sample_batches_are_deterministic_and_cover_every_table() {
        for t in Table::ALL {
            let a = sample_batch(t, 4, 7);
            assert_eq!(a, sample_batch(t, 4, 7));
            assert_eq!(a.num_rows(), 4);
        }
    }
}
