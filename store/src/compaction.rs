//! Compaction: merges the many small files flushes leave in an hourly partition into few large
//! ones, and retention: drops whole partitions past a table's age limit.
//!
//! **Policy (size-tiered).** A file's tier is how many times 8 fits between 1 MiB and its size.
//! In a partition still receiving data, 8 or more files of one tier below the target size are
//! merged into one of a higher tier; once the partition's hour has been over for
//! `close_after`, every file below the target size is merged. A row is therefore rewritten at
//! most once per tier it climbs plus once at close: with 64 MiB flushes and a 256 MiB target,
//! at most about three times (write amplification ≤ ~3–4).
//!
//! **Exactly once during a merge.** A compaction log (`_compaction-<id>.json` in the
//! partition) records the inputs and the output before the output is stored; the output
//! appears whole (a put or a completed multipart upload, never a part of one), and the catalog
//! swaps inputs for output under its lock, so a query sees either the inputs or the output.
//! Inputs are deleted only after a grace period longer than any query may run (queries that
//! started before the swap still read them), and the log is deleted after them. A crash at
//! any step is repaired at start by [`recover`]: with the output there the inputs are deleted,
//! without it the log.
//!
//! Merging streams: each input is already sorted, so DataFusion's sort-preserving merge reads
//! them side by side and the writer never holds more than a few batches per input.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, TimestampNanosecondArray};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::ObjectMeta;
use object_store::path::Path as ObjectPath;
use parquet::arrow::AsyncArrowWriter;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::paths;
use crate::schema::Table;
use crate::storage::Storage;
use crate::writer::{self, DataFile};

/// How compaction decides.
#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    /// Files at or above this size are left alone.
    pub target_file_bytes: u64,
    /// Files of one tier merged together in a partition that is still open.
    pub min_files: usize,
    /// A partition counts as closed this long after its hour ended (late data allowance).
    pub close_after: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            target_file_bytes: 256 << 20,
            min_files: 8,
            close_after: Duration::from_secs(600),
        }
    }
}

/// An estimate of the memory one merge of `inputs` needs: the merge streams, holding about one
/// row group of each input (its compressed column chunks and decoded pages) plus the output's
/// open row group. Measured: a 16-way merge of flush-sized files peaked ~420 MiB above idle.
pub fn working_memory(inputs: &[Arc<DataFile>]) -> usize {
    const PER_INPUT_CAP: u64 = 24 << 20;
    let inputs: u64 = inputs.iter().map(|f| f.size.min(PER_INPUT_CAP)).sum();
    usize::try_from(inputs).unwrap_or(usize::MAX) + (32 << 20)
}

/// Most files one merge reads at once.
pub const MAX_FAN_IN: usize = 16;

fn tier(size: u64) -> u32 {
    let mut t = 0;
    let mut bound = 1u64 << 20;
    while size >= bound && t < 16 {
        bound = bound.saturating_mul(8);
        t += 1;
    }
    t
}

/// The files of one partition to merge now, if any. `files` are the partition's files,
/// `hour` its hour (since the epoch) and `now_ns` the current time.
pub fn pick(
    policy: &CompactionPolicy,
    files: &[Arc<DataFile>],
    hour: i64,
    now_ns: i64,
) -> Option<Vec<Arc<DataFile>>> {
    let small: Vec<&Arc<DataFile>> = files
        .iter()
        .filter(|f| f.size < policy.target_file_bytes)
        .collect();
    if small.len() < 2 {
        return None;
    }
    let hour_end_ns = (hour + 1).saturating_mul(3_600_000_000_000);
    let closed = now_ns
        > hour_end_ns
            .saturating_add(i64::try_from(policy.close_after.as_nanos()).unwrap_or(i64::MAX));
    let mut chosen: Vec<Arc<DataFile>> = if closed {
        small.into_iter().cloned().collect()
    } else {
        let mut by_tier: std::collections::BTreeMap<u32, Vec<&Arc<DataFile>>> = Default::default();
        for f in small {
            by_tier.entry(tier(f.size)).or_default().push(f);
        }
        by_tier
            .into_values()
            .find(|fs| fs.len() >= policy.min_files)?
            .into_iter()
            .cloned()
            .collect()
    };
    // Smallest first, up to about the target size and at most MAX_FAN_IN files, so one merge
    // stays bounded in time and memory (each input holds a row group's buffers while merged).
    chosen.sort_by_key(|f| f.size);
    let mut total = 0u64;
    let mut take = 0;
    for f in &chosen {
        if take >= MAX_FAN_IN || (take >= 2 && total >= policy.target_file_bytes) {
            break;
        }
        total += f.size;
        take += 1;
    }
    chosen.truncate(take);
    (chosen.len() >= 2).then_some(chosen)
}

/// What a compaction log records. Format 1 (before the field) is the same without `format`.
#[derive(Debug, Serialize, Deserialize)]
struct CompactionLog {
    #[serde(default = "first_format")]
    format: u32,
    output: String,
    inputs: Vec<String>,
}

/// The compaction log format this release writes.
const LOG_FORMAT: u32 = 2;

fn first_format() -> u32 {
    1
}

const LOG_PREFIX: &str = "_compaction-";
const MERGE_BATCH_ROWS: usize = 1024;

/// Whether an object is a compaction log.
fn is_log(path: &ObjectPath) -> bool {
    path.filename()
        .is_some_and(|n| n.starts_with(LOG_PREFIX) && n.ends_with(".json"))
}

/// The partition (`<tenant>/<table>/date=…/hour=…`) an object of it is in.
fn partition_of(path: &ObjectPath) -> ObjectPath {
    let parts: Vec<_> = path.parts().collect();
    ObjectPath::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned())
}

/// Repairs what a crash in the middle of a compaction left among a table's `objects` (all of
/// them, as listed): for each compaction log, if its output is there the inputs go, and then
/// the log. Returns the objects deleted. Must run before the table's files are taken.
///
/// # Errors
/// When an object cannot be read or deleted, or a log is of a newer release's format
/// ([`StoreError::NewerFormat`]: it is left alone).
pub async fn recover(storage: &Storage, objects: &[ObjectMeta]) -> Result<HashSet<ObjectPath>> {
    let present: HashSet<&ObjectPath> = objects.iter().map(|m| &m.location).collect();
    let mut deleted = HashSet::new();
    for log_path in objects.iter().map(|m| &m.location).filter(|p| is_log(p)) {
        let Some(text) = storage.read(log_path).await? else {
            continue;
        };
        let partition = partition_of(log_path);
        match serde_json::from_slice::<CompactionLog>(&text) {
            Ok(log) if log.format > LOG_FORMAT => {
                return Err(StoreError::NewerFormat {
                    path: log_path.as_ref().into(),
                    problem: format!("compaction log format {}", log.format),
                });
            }
            Ok(log) if present.contains(&partition.clone().join(log.output.as_str())) => {
                for input in &log.inputs {
                    let p = partition.clone().join(input.as_str());
                    if present.contains(&p) {
                        tracing::info!(file = %p, "removing a compacted input left by a restart");
                        storage.delete(&p).await?;
                        deleted.insert(p);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(log = %log_path, error = %e, "unreadable compaction log; ignoring it")
            }
        }
        storage.delete(log_path).await?;
        deleted.insert(log_path.clone());
    }
    Ok(deleted)
}

/// A finished merge: the new file, and what to delete (after the grace period).
#[derive(Debug)]
pub struct Merged {
    pub output: DataFile,
    pub inputs: Vec<Arc<DataFile>>,
    pub log: ObjectPath,
}

/// Merges `inputs` (all in one partition) into one sorted file. The output is stored and
/// logged when this returns; the caller swaps it into the catalog.
///
/// # Errors
/// When an input cannot be read, the output or the log cannot be written, or an input holds
/// rows of a newer schema version ([`StoreError::NewerFormat`]).
pub async fn merge(storage: &Storage, table: Table, inputs: Vec<Arc<DataFile>>) -> Result<Merged> {
    let partition = inputs
        .first()
        .map(|f| partition_of(&f.path))
        .ok_or_else(|| StoreError::io("compaction", std::io::Error::other("no inputs")))?;
    let at = || std::path::PathBuf::from(partition.as_ref());
    // Rows of a newer release may have columns this one would drop while merging.
    for f in &inputs {
        let version = writer::schema_version_of(storage, f).await?;
        if version > table.schema_version() {
            return Err(StoreError::NewerFormat {
                path: f.path.as_ref().into(),
                problem: format!(
                    "{} rows of schema version {version}; this release merges up to version {}",
                    table.name(),
                    table.schema_version()
                ),
            });
        }
    }
    let schema = table.schema();
    let df_err = |e: datafusion::error::DataFusionError| {
        StoreError::io(at(), std::io::Error::other(format!("merge: {e}")))
    };
    let ordering = LexOrdering::new(
        table
            .sort_columns()
            .iter()
            .map(|c| col(c, &schema).map(PhysicalSortExpr::new_default))
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(df_err)?,
    )
    .ok_or_else(|| StoreError::io(at(), std::io::Error::other("no sort columns")))?;
    let groups = inputs
        .iter()
        .map(|f| FileGroup::new(vec![PartitionedFile::new(f.path.to_string(), f.size)]))
        .collect();
    let config = FileScanConfigBuilder::new(
        storage.url().clone(),
        Arc::new(ParquetSource::new(schema.clone())),
    )
    .with_file_groups(groups)
    .with_output_ordering(vec![ordering.clone()])
    .build();
    let plan: Arc<dyn ExecutionPlan> = Arc::new(SortPreservingMergeExec::new(
        ordering,
        DataSourceExec::from_data_source(config),
    ));
    // Small batches: the merge holds about one batch per input at a time.
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_batch_size(MERGE_BATCH_ROWS),
    );
    storage.register(ctx.runtime_env().as_ref());
    let mut stream = plan.execute(0, ctx.task_ctx()).map_err(df_err)?;

    let wal_seq = inputs.iter().map(|f| f.wal_seq).max().unwrap_or(0);
    let min_time = inputs.iter().map(|f| f.min_time).min().unwrap_or(0);
    let max_time = inputs.iter().map(|f| f.max_time).max().unwrap_or(0);
    let name = paths::data_file_name(min_time, max_time, wal_seq, &writer::unique_id());
    let path = partition.clone().join(name.as_str());

    // The log is stored (durably) before the output can appear: were the output there without
    // it, nothing would say which inputs it replaces.
    let log_path = partition
        .clone()
        .join(format!("{LOG_PREFIX}{}.json", writer::unique_id()).as_str());
    let log = CompactionLog {
        format: LOG_FORMAT,
        output: name,
        inputs: inputs
            .iter()
            .filter_map(|f| f.path.filename().map(str::to_string))
            .collect(),
    };
    storage
        .write(
            &log_path,
            serde_json::to_vec(&log).unwrap_or_default().into(),
        )
        .await?;
    let written = async {
        let parquet_err = |source| StoreError::Parquet {
            path: path.as_ref().into(),
            source,
        };
        let mut out = AsyncArrowWriter::try_new(
            object_store::buffered::BufWriter::new(storage.store().clone(), path.clone()),
            schema.clone(),
            Some(writer::writer_properties(table)),
        )
        .map_err(parquet_err)?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            debug_assert!(
                batch
                    .column_by_name(table.time_column())
                    .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
                    .is_none_or(|t| t.null_count() == 0)
            );
            rows += batch.num_rows() as u64;
            out.write(&batch).await.map_err(parquet_err)?;
        }
        out.finish().await.map_err(parquet_err)?;
        Ok::<_, StoreError>((rows, out.bytes_written() as u64))
    }
    .await;
    let (rows, size) = match written {
        Ok(done) => done,
        Err(e) => {
            // Nothing of the output is visible (an unfinished upload never is); the log goes.
            if let Err(e) = storage.delete(&log_path).await {
                tracing::warn!(log = %log_path, error = %e, "cannot delete the log of a failed merge");
            }
            return Err(e);
        }
    };
    Ok(Merged {
        output: DataFile {
            path,
            size,
            rows,
            min_time,
            max_time,
            wal_seq,
        },
        inputs,
        log: log_path,
    })
}

/// The hour partitions of a table older than `retention` at `now`.
pub fn expired(
    files: &[Arc<DataFile>],
    retention: Duration,
    now: SystemTime,
) -> Vec<Arc<DataFile>> {
    let now_ns = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let cutoff = now_ns.saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
    files
        .iter()
        .filter(|f| {
            // Whole partitions: a file goes when its hour has entirely passed the cutoff.
            let hour_end = (paths::hour_of(f.max_time) + 1).saturating_mul(3_600_000_000_000);
            hour_end <= cutoff
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Arc<DataFile> {
        Arc::new(DataFile {
            path: ObjectPath::from(format!("x/{size}.parquet")),
            size,
            rows: 1,
            min_time: 0,
            max_time: 0,
            wal_seq: 1,
        })
    }

    #[test]
    fn open_partitions_merge_only_full_tiers() {
        let p = CompactionPolicy::default();
        let now = 0; // hour 0 is still open at t = 0
        let seven: Vec<_> = (0..7).map(|i| file(100_000 + i)).collect();
        assert!(pick(&p, &seven, 0, now).is_none(), "7 < min_files");
        let mut eight = seven.clone();
        eight.push(file(200_000));
        assert_eq!(pick(&p, &eight, 0, now).map(|v| v.len()), Some(8));
        // Different tiers do not mix.
        let mixed: Vec<_> = (0..4)
            .map(|i| file(100_000 + i))
            .chain((0..4).map(|i| file(20_000_000 + i)))
            .collect();
        assert!(pick(&p, &mixed, 0, now).is_none());
    }

    #[test]
    fn one_merge_reads_at_most_max_fan_in_files() {
        let p = CompactionPolicy::default();
        let many: Vec<_> = (0..85).map(|i| file(1_300_000 + i)).collect();
        assert_eq!(pick(&p, &many, 0, 0).map(|v| v.len()), Some(MAX_FAN_IN));
    }

    #[test]
    fn closed_partitions_merge_every_small_file_up_to_the_target() {
        let p = CompactionPolicy {
            target_file_bytes: 1000,
            ..CompactionPolicy::default()
        };
        let later = 2 * 3_600_000_000_000;
        let files = vec![file(10), file(400), file(5000), file(300)];
        let picked = pick(&p, &files, 0, later).expect("closed hour merges");
        let sizes: Vec<u64> = picked.iter().map(|f| f.size).collect();
        assert_eq!(sizes, vec![10, 300, 400], "the big file is left alone");
        assert!(pick(&p, &[file(10), file(5000)], 0, later).is_none());
    }

    #[test]
    fn retention_takes_whole_hours() {
        let hour = 3_600_000_000_000_i64;
        let mk = |max_time| {
            Arc::new(DataFile {
                path: ObjectPath::default(),
                size: 1,
                rows: 1,
                min_time: max_time,
                max_time,
                wal_seq: 0,
            })
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 3600 + 1800); // 10:30
        let files = vec![mk(7 * hour + 5), mk(8 * hour + 5), mk(9 * hour)];
        let gone = expired(&files, Duration::from_secs(2 * 3600), now); // cutoff 08:30
        assert_eq!(gone.len(), 1, "hour 7 is past; hour 8 only partly");
        assert_eq!(gone[0].max_time, 7 * hour + 5);
    }

    #[tokio::test]
    async fn a_compaction_log_of_every_format_is_recovered_and_a_newer_one_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::local(dir.path()).expect("storage");
        let part = ObjectPath::from("default/spans/date=2025-11-28/hour=08");
        let put = |name: &str, bytes: &'static [u8]| {
            let (storage, p) = (storage.clone(), part.clone().join(name));
            async move { storage.write(&p, bytes.into()).await.expect("write") }
        };
        put("out.parquet", b"o").await;
        put("in.parquet", b"i").await;
        // Format 1: no `format` field.
        put(
            "_compaction-a.json",
            br#"{"output":"out.parquet","inputs":["in.parquet"]}"#,
        )
        .await;
        let listed = storage.list(&part).await.expect("list");
        let gone = recover(&storage, &listed).await.expect("recover");
        assert_eq!(gone.len(), 2, "{gone:?}");
        let left: Vec<String> = storage
            .list(&part)
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        assert_eq!(left, [part.clone().join("out.parquet").to_string()]);
        // A log whose output never appeared: only the log goes.
        put(
            "_compaction-c.json",
            br#"{"format":2,"output":"never.parquet","inputs":["out.parquet"]}"#,
        )
        .await;
        let listed = storage.list(&part).await.expect("list");
        let gone = recover(&storage, &listed).await.expect("recover");
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(
            storage
                .read(&part.clone().join("out.parquet"))
                .await
                .expect("read")
                .is_some()
        );
        put(
            "_compaction-b.json",
            br#"{"format":9,"output":"out.parquet","inputs":[]}"#,
        )
        .await;
        let listed = storage.list(&part).await.expect("list");
        let e = recover(&storage, &listed).await.expect_err("newer");
        assert!(matches!(e, StoreError::NewerFormat { .. }), "{e}");
        assert!(
            storage
                .read(&part.clone().join("_compaction-b.json"))
                .await
                .expect("read")
                .is_some()
        );
    }
}
