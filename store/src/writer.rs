//! Encoding buffered batches into Parquet files: split by hour, sorted for pruning, zstd,
//! statistics and bloom filters; stored whole through the [`Storage`] (durable when stored).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Result, StoreError};
use crate::paths;
use crate::schema::Table;
use crate::storage::Storage;

/// Rows per row group: small enough that time and trace-id statistics prune well.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// A Parquet file of a table, as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Where the file is in the storage.
    pub path: ObjectPath,
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
///
/// # Errors
/// When the file's footer cannot be read.
pub async fn schema_version_of(storage: &Storage, file: &DataFile) -> Result<u16> {
    let metadata = read_footer(storage, file).await?;
    let version = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == SCHEMA_VERSION_KEY))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Ok(version)
}

/// A data file's footer (its metadata), read with one ranged request (two when the footer is
/// over 64 KiB).
///
/// # Errors
/// When the file cannot be read or is not Parquet.
pub async fn read_footer(
    storage: &Storage,
    file: &DataFile,
) -> Result<parquet::file::metadata::ParquetMetaData> {
    use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
    const TAIL: u64 = 8;
    let parquet_err = |source| StoreError::Parquet {
        path: PathBuf::from(file.path.as_ref()),
        source,
    };
    let size = file.size;
    if size < TAIL {
        return Err(parquet_err(parquet::errors::ParquetError::EOF(
            "too short for a Parquet file".into(),
        )));
    }
    let get = |range: std::ops::Range<u64>| async move {
        storage
            .store()
            .get_range(&file.path, range)
            .await
            .map_err(|e| storage.error(&file.path, e))
    };
    let guess = size.min(64 << 10);
    let tail = get(size - guess..size).await?;
    let footer: &[u8; 8] = tail[tail.len() - 8..]
        .try_into()
        .map_err(|_| parquet_err(parquet::errors::ParquetError::EOF("no footer".into())))?;
    let length = FooterTail::try_new(footer)
        .map_err(parquet_err)?
        .metadata_length() as u64;
    if length + TAIL > size {
        return Err(parquet_err(parquet::errors::ParquetError::EOF(
            "the footer is longer than the file".into(),
        )));
    }
    let metadata = if length + TAIL <= guess {
        let start = (guess - TAIL - length) as usize;
        ParquetMetaDataReader::decode_metadata(&tail[start..tail.len() - 8])
    } else {
        let bytes = get(size - TAIL - length..size - TAIL).await?;
        ParquetMetaDataReader::decode_metadata(&bytes)
    };
    metadata.map_err(parquet_err)
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

/// A flush's files, encoded and not yet stored: each with where it goes.
#[derive(Debug)]
pub struct Encoded {
    pub file: DataFile,
    pub bytes: bytes::Bytes,
}

/// Encodes `batches` of `table` (writes up to WAL sequence `wal_seq`) as one sorted Parquet
/// file per hour of `tenant`'s table, in memory (a flush's files are compressed, far smaller
/// than the buffer they come from). CPU work: call it off the async threads.
pub fn encode_files(
    tenant: &str,
    table: Table,
    batches: &[RecordBatch],
    wal_seq: u64,
) -> Result<Vec<Encoded>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let schema = table.schema();
    let all = concat_batches(&schema, batches)?;
    let mut files = Vec::new();
    for (hour, part) in split_by_hour(table, &all)? {
        let sorted = sort_batch(table, &part)?;
        let (min, max) = min_max_time(table, &sorted)?;
        let name = paths::data_file_name(min, max, wal_seq, &unique_id());
        let path = paths::object::data_file(tenant, table, hour, &name);
        let bytes = encode(table, &sorted, &path)?;
        files.push(Encoded {
            file: DataFile {
                path,
                size: bytes.len() as u64,
                rows: sorted.num_rows() as u64,
                min_time: min,
                max_time: max,
                wal_seq,
            },
            bytes: bytes.into(),
        });
    }
    Ok(files)
}

/// One sorted batch as the bytes of a Parquet file.
pub fn encode(table: Table, batch: &RecordBatch, path: &ObjectPath) -> Result<Vec<u8>> {
    let parquet_err = |source| StoreError::Parquet {
        path: PathBuf::from(path.as_ref()),
        source,
    };
    let mut writer = ArrowWriter::try_new(
        Vec::with_capacity(batch.get_array_memory_size() / 4),
        batch.schema(),
        Some(writer_properties(table)),
    )
    .map_err(parquet_err)?;
    writer.write(batch).map_err(parquet_err)?;
    writer.into_inner().map_err(parquet_err)
}

/// Stores encoded files: all or nothing (on an error, those already stored are deleted).
/// Durable when this returns.
///
/// # Errors
/// The first file the storage refuses.
pub async fn store_files(storage: &Storage, encoded: Vec<Encoded>) -> Result<Vec<DataFile>> {
    let mut stored: Vec<DataFile> = Vec::with_capacity(encoded.len());
    for e in encoded {
        if let Err(err) = storage.write(&e.file.path, e.bytes).await {
            delete_files(storage, &stored).await;
            return Err(err);
        }
        stored.push(e.file);
    }
    Ok(stored)
}

/// Deletes files, logging (not returning) what cannot be deleted.
pub async fn delete_files(storage: &Storage, files: &[DataFile]) {
    for f in files {
        if let Err(e) = storage.delete(&f.path).await {
            tracing::warn!(file = %f.path, error = %e, "cannot delete a file");
        }
    }
}

/// Writes `batches` of `tenant`'s `table` (writes up to WAL sequence `wal_seq`) as one sorted
/// Parquet file per hour into `storage`; durable when this returns.
///
/// # Errors
/// When a batch cannot be encoded or a file stored (none of them is kept then).
pub async fn write_files(
    storage: &Storage,
    tenant: &str,
    table: Table,
    batches: Vec<RecordBatch>,
    wal_seq: u64,
) -> Result<Vec<DataFile>> {
    let tenant_owned = tenant.to_string();
    #[allow(
        clippy::disallowed_methods,
        reason = "encoding is CPU work: it runs in spawn_blocking, awaited right away"
    )]
    let encoded =
        tokio::task::spawn_blocking(move || encode_files(&tenant_owned, table, &batches, wal_seq))
            .await
            .map_err(|e| {
                StoreError::io(
                    "flush",
                    std::io::Error::other(format!("encoding failed: {e}")),
                )
            })??;
    store_files(storage, encoded).await
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

    #[tokio::test]
    async fn rows_of_two_hours_go_to_two_sorted_files() {
        assert!(!TRACES_VIEW_SQL.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::local(dir.path()).expect("storage");
        let h = 3_600_000_000_000_i64;
        let batch = fragments(&[("b", 10), ("a", h + 5), ("a", 20)]);
        let files = write_files(&storage, "default", Table::TraceFragments, vec![batch], 7)
            .await
            .expect("write");
        assert!(files.iter().all(|f| f.wal_seq == 7));
        assert_eq!(files.len(), 2);
        assert_eq!((files[0].min_time, files[0].max_time), (10, 20));
        assert_eq!(files[0].rows, 2);
        assert!(
            files[0]
                .path
                .as_ref()
                .starts_with("default/trace_fragments/date=1970-01-01/hour=00/")
        );
        assert!(
            files[1]
                .path
                .as_ref()
                .starts_with("default/trace_fragments/date=1970-01-01/hour=01/")
        );
        let on_disk = storage.local_path(&files[0].path).expect("local");
        assert_eq!(
            std::fs::metadata(&on_disk).expect("file").len(),
            files[0].size
        );
        let f = std::fs::File::open(&on_disk).expect("open");
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
        assert_eq!(
            schema_version_of(&storage, &files[0])
                .await
                .expect("footer"),
            1
        );
        let footer = read_footer(&storage, &files[0]).await.expect("footer");
        assert_eq!(footer.file_metadata().num_rows(), 2);
        let reader = builder.build().expect("build");
        let got: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("read");
        let ids = got[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("str");
        assert_eq!(ids.value(0), "a", "sorted by trace id");
        assert_eq!(ids.value(1), "b");
        let leftovers = std::fs::read_dir(on_disk.parent().expect("parent"))
            .expect("dir")
            .filter(|e| e.as_ref().map(|e| e.path() != on_disk).unwrap_or(true))
            .count();
        assert_eq!(leftovers, 0, "nothing staged is left beside the file");
        let truncated = DataFile {
            size: 7,
            ..files[0].clone()
        };
        assert!(read_footer(&storage, &truncated).await.is_err());
    }
}
