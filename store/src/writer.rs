//! Encoding buffered batches into Parquet files: split by hour, sorted for pruning, zstd,
//! statistics and bloom filters, written to a temporary name, fsync'd, then renamed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use sightline_common::durable;

use crate::error::{Result, StoreError};
use crate::paths;
use crate::schema::Table;

/// Rows per row group: small enough that time and trace-id statistics prune well.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// A Parquet file of a table, as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Absolute path on the local file system.
    pub path: PathBuf,
    pub size: u64,
    pub rows: u64,
    /// Smallest and largest value of the table's time column, in ns.
    pub min_time: i64,
    pub max_time: i64,
    /// Highest WAL sequence number among the writes whose rows the file holds.
    pub wal_seq: u64,
}

static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A name part unique across processes and time.
pub fn unique_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{now:x}{:06x}{:04x}",
        FILE_SEQ.fetch_add(1, Ordering::Relaxed) & 0xff_ffff,
        std::process::id() & 0xffff
    )
}

/// Key-value metadata of every data file: the table it belongs to.
pub const TABLE_KEY: &str = "sightline.table";
/// Key-value metadata of every data file: the table's schema version of its rows (files
/// without it were written before versions were recorded, at version 1).
pub const SCHEMA_VERSION_KEY: &str = "sightline.schema_version";

/// How every data file of `table` is written (compression, row groups, statistics, blooms,
/// the table and schema version in the key-value metadata).
pub fn writer_properties(table: Table) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            KeyValue::new(TABLE_KEY.into(), table.name().to_string()),
            KeyValue::new(
                SCHEMA_VERSION_KEY.into(),
                table.schema_version().to_string(),
            ),
        ]))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("sightline {}", env!("CARGO_PKG_VERSION")));
    for col in table.bloom_columns() {
        props = props
            .set_column_bloom_filter_enabled(ColumnPath::from(*col), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(*col), 0.01);
    }
    props.build()
}

/// The schema version a data file's rows were written with (1 for files from before versions
/// were recorded). Reads the footer only.
pub fn schema_version_of(path: &Path) -> Result<u16> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(|source| {
        StoreError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let version = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == SCHEMA_VERSION_KEY))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Ok(version)
}

/// Sorts `batch` by the table's sort columns.
pub fn sort_batch(table: Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = table
        .sort_columns()
        .iter()
        .map(|name| {
            let values = batch
                .column_by_name(name)
                .ok_or_else(|| StoreError::SchemaMismatch {
                    table: table.name(),
                    reason: format!("missing sort column {name}"),
                })?
                .clone();
            Ok(SortColumn {
                values,
                options: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

fn time_values(table: Table, batch: &RecordBatch) -> Result<TimestampNanosecondArray> {
    let col: &ArrayRef =
        batch
            .column_by_name(table.time_column())
            .ok_or_else(|| StoreError::SchemaMismatch {
                table: table.name(),
                reason: format!("missing time column {}", table.time_column()),
            })?;
    col.as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .cloned()
        .ok_or_else(|| StoreError::SchemaMismatch {
            table: table.name(),
            reason: "time column is not a nanosecond timestamp".into(),
        })
}

/// Splits rows by the hour of their time column: `(hour, rows of that hour)`, hours ascending.
pub fn split_by_hour(table: Table, batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>> {
    let times = time_values(table, batch)?;
    let mut groups: std::collections::BTreeMap<i64, Vec<u32>> = Default::default();
    for (i, t) in times.iter().enumerate() {
        let hour = paths::hour_of(t.unwrap_or_default());
        groups.entry(hour).or_default().push(i as u32);
    }
    if groups.len() == 1 {
        let (hour, _) = groups.into_iter().next().unwrap_or_default();
        return Ok(vec![(hour, batch.clone())]);
    }
    groups
        .into_iter()
        .map(|(hour, rows)| {
            let idx = UInt32Array::from(rows);
            Ok((hour, take_record_batch(batch, &idx)?))
        })
        .collect()
}

fn min_max_time(table: Table, batch: &RecordBatch) -> Result<(i64, i64)> {
    let times = time_values(table, batch)?;
    let min = arrow::compute::min(&times).unwrap_or_default();
    let max = arrow::compute::max(&times).unwrap_or_default();
    Ok((min, max))
}

/// Writes `batches` of `table` (writes up to WAL sequence `wal_seq`) as one sorted Parquet
/// file per hour under `table_dir`. Files are durable (fsync'd file and directory) when this
/// returns.
pub fn write_files(
    table: Table,
    table_dir: &Path,
    batches: &[RecordBatch],
    wal_seq: u64,
) -> Result<Vec<DataFile>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let schema = table.schema();
    let all = concat_batches(&schema, batches)?;
    let mut files: Vec<DataFile> = Vec::new();
    let result = (|| {
        for (hour, part) in split_by_hour(table, &all)? {
            let sorted = sort_batch(table, &part)?;
            let (min, max) = min_max_time(table, &sorted)?;
            let dir = paths::partition_dir(table_dir, hour);
            let name = paths::data_file_name(min, max, wal_seq, &unique_id());
            files.push(write_one(table, &dir, &name, &sorted, min, max, wal_seq)?);
        }
        Ok(())
    })();
    if let Err(e) = result {
        // All or nothing: the rows stay buffered, so no file of this flush may stay behind.
        for f in &files {
            let _ = std::fs::remove_file(&f.path);
        }
        return Err(e);
    }
    Ok(files)
}

/// Writes one sorted batch to `dir/name` atomically.
pub fn write_one(
    table: Table,
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
    min_time: i64,
    max_time: i64,
    wal_seq: u64,
) -> Result<DataFile> {
    create_dir_durable(dir)?;
    let path = dir.join(name);
    let tmp = path.with_extension(format!("{}.{}", paths::PARQUET_EXT, paths::TMP_EXT));
    let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    let parquet_err = |source| StoreError::Parquet {
        path: tmp.clone(),
        source,
    };
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties(table)))
        .map_err(parquet_err)?;
    writer.write(batch).map_err(parquet_err)?;
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    let size = file.metadata().map_err(|e| StoreError::io(&tmp, e))?.len();
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(DataFile {
        path,
        size,
        rows: batch.num_rows() as u64,
        min_time,
        max_time,
        wal_seq,
    })
}

/// Creates `dir` (and its parents) so that the new entries survive a power loss.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    durable::create_dir_durable(dir).map_err(|e| StoreError::io(dir, e))
}

/// Makes a rename or a new entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    durable::sync_dir(dir).map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TRACES_VIEW_SQL;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn fragments(rows: &[(&str, i64)]) -> RecordBatch {
        let schema = Table::TraceFragments.schema();
        let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let n = rows.len();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC")),
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(Int64Array::from(vec![1; n])),
                Arc::new(Int64Array::from(vec![0; n])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn rows_of_two_hours_go_to_two_sorted_files() {
        assert!(!TRACES_VIEW_SQL.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let h = 3_600_000_000_000_i64;
        let batch = fragments(&[("b", 10), ("a", h + 5), ("a", 20)]);
        let files = write_files(Table::TraceFragments, dir.path(), &[batch], 7).expect("write");
        assert!(files.iter().all(|f| f.wal_seq == 7));
        assert_eq!(files.len(), 2);
        assert_eq!((files[0].min_time, files[0].max_time), (10, 20));
        assert_eq!(files[0].rows, 2);
        assert!(
            files[0]
                .path
                .to_string_lossy()
                .contains("date=1970-01-01/hour=00")
        );
        assert!(
            files[1]
                .path
                .to_string_lossy()
                .contains("date=1970-01-01/hour=01")
        );
        let f = File::open(&files[0].path).expect("open");
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("reader");
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let value = |key: &str| {
            kv.iter()
                .flatten()
                .find(|e| e.key == key)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value(TABLE_KEY).as_deref(), Some("trace_fragments"));
        assert_eq!(value(SCHEMA_VERSION_KEY).as_deref(), Some("1"));
        assert_eq!(schema_version_of(&files[0].path).expect("footer"), 1);
        let reader = builder.build().expect("build");
        let got: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("read");
        let ids = got[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("str");
        assert_eq!(ids.value(0), "a", "sorted by trace id");
        assert_eq!(ids.value(1), "b");
        let leftovers = std::fs::read_dir(files[0].path.parent().expect("parent"))
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.path().extension().is_some_and(|x| x == paths::TMP_EXT))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
