//! Compaction and retention, every `maintenance_interval`: whole hours older than a table's
//! retention leave the catalog, small files of an hour are merged; replaced files are deleted
//! after a grace period, because queries planned before the swap may still read them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use object_store::path::Path as ObjectPath;

use crate::metrics::{FlushLabel, TableLabel};
use crate::storage::Storage;
use crate::{COMPACTION_MEMORY_SHARE, Store, StoreError, Table, compaction, paths, writer};

/// Files to delete at `due`, then the compaction log that recorded their replacement.
#[derive(Debug)]
pub(crate) struct Burial {
    due: Instant,
    files: Vec<Arc<writer::DataFile>>,
    log: Option<ObjectPath>,
}

impl Burial {
    async fn bury(self, storage: &Storage) {
        let mut all_gone = true;
        for f in &self.files {
            if let Err(e) = storage.delete(&f.path).await {
                all_gone = false;
                tracing::warn!(file = %f.path, error = %e, "cannot delete an old data file");
            }
        }
        // The inputs' removal is durable before the log that explains them goes (a delete is,
        // when it returns): were the log gone and an input back after a power loss, its rows
        // would count twice. If an input cannot be deleted, the log stays, and the next start
        // finishes the job. Emptied partitions go with their last object.
        if let Some(log) = &self.log
            && all_gone
            && let Err(e) = storage.delete(log).await
        {
            tracing::warn!(%log, error = %e, "cannot delete a compaction log");
        }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub compactions: usize,
    pub compacted_files: usize,
    /// Merges put off because memory was short.
    pub deferred_compactions: usize,
    pub expired_files: usize,
}

impl Store {
    fn graveyard(&self) -> std::sync::MutexGuard<'_, Vec<Burial>> {
        self.graveyard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the files whose grace period is over (all of them with `all`).
    pub(crate) async fn bury_due(&self, all: bool) {
        let now = Instant::now();
        let due: Vec<Burial> = {
            let mut g = self.graveyard();
            let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut *g)
                .into_iter()
                .partition(|b| all || b.due <= now);
            *g = wait;
            due
        };
        let storage = self.storage();
        for b in due {
            b.bury(storage).await;
        }
    }

    /// One pass of retention and compaction over every table.
    pub async fn maintain(&self) -> MaintenanceReport {
        let mut report = MaintenanceReport::default();
        self.bury_due(false).await;
        let now = std::time::SystemTime::now();
        for table in Table::ALL {
            let catalog = &self.catalogs[&table];
            let label = TableLabel {
                table: table.name(),
            };
            // Trace fragments live as long as the spans they summarise.
            let retention_of = if table == Table::TraceFragments {
                Table::Spans
            } else {
                table
            };
            if let Some(retention) = self.config.retention.get(&retention_of) {
                let gone =
                    catalog.remove_files(&compaction::expired(&catalog.files(), *retention, now));
                if !gone.is_empty() {
                    let m = &self.maintenance_metrics;
                    m.retention_files
                        .get_or_create(&label)
                        .inc_by(gone.len() as u64);
                    m.retention_bytes
                        .get_or_create(&label)
                        .inc_by(gone.iter().map(|f| f.size).sum());
                    report.expired_files += gone.len();
                    tracing::info!(
                        table = table.name(),
                        files = gone.len(),
                        "retention removed old partitions"
                    );
                    self.graveyard().push(Burial {
                        due: Instant::now() + self.config.file_grace,
                        files: gone,
                        log: None,
                    });
                }
            }
            let Some(policy) = &self.config.compaction else {
                continue;
            };
            let mut by_hour: BTreeMap<i64, Vec<Arc<writer::DataFile>>> = BTreeMap::new();
            for f in catalog.files() {
                if let Some((_, _, hour, _)) = paths::object::parse_data_file(&f.path) {
                    by_hour.entry(hour).or_default().push(f);
                }
            }
            for (hour, files) in by_hour {
                let Some(inputs) =
                    compaction::pick(policy, &files, hour, sightline_common::clock::now())
                else {
                    continue;
                };
                // Merge as many of the picked files as memory allows: fewer inputs cost less,
                // and merging can always go on later, ingest cannot wait.
                let mut inputs = inputs;
                if let (Some(ceiling), Some(rss)) =
                    (self.config.max_resident_bytes, self.resident_bytes())
                {
                    let budget = (ceiling as f64 * COMPACTION_MEMORY_SHARE) as u64;
                    let room = budget.saturating_sub(rss) as usize;
                    while inputs.len() > 1 && compaction::working_memory(&inputs) > room {
                        inputs.pop();
                    }
                    if inputs.len() < 2 {
                        tracing::debug!(
                            table = table.name(),
                            rss,
                            "memory is short; compaction waits"
                        );
                        report.deferred_compactions += 1;
                        self.maintenance_metrics
                            .compactions
                            .get_or_create(&FlushLabel {
                                table: table.name(),
                                outcome: "deferred",
                            })
                            .inc();
                        continue;
                    }
                }
                let started = Instant::now();
                let storage = self.storage().clone();
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a merge is blocking work: it runs on a runtime of its own inside spawn_blocking"
                )]
                let merged = tokio::task::spawn_blocking(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| StoreError::io("compaction runtime", e))?
                        .block_on(compaction::merge(&storage, table, inputs))
                })
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::io(
                        "compaction",
                        std::io::Error::other(e.to_string()),
                    ))
                });
                let outcome = match merged {
                    Ok(m) => {
                        let written = m.output.size;
                        let n = m.inputs.len();
                        let output = Arc::new(m.output);
                        if catalog.swap_files(&m.inputs, output.clone()) {
                            let mm = &self.maintenance_metrics;
                            mm.compacted_files.get_or_create(&label).inc_by(n as u64);
                            mm.compaction_bytes_written
                                .get_or_create(&label)
                                .inc_by(written);
                            report.compactions += 1;
                            report.compacted_files += n;
                            tracing::debug!(table = table.name(), files = n, bytes = written,
                                elapsed = ?started.elapsed(), "compacted");
                            self.graveyard().push(Burial {
                                due: Instant::now() + self.config.file_grace,
                                files: m.inputs,
                                log: Some(m.log),
                            });
                            "ok"
                        } else {
                            // An input vanished meanwhile (retention): undo the output.
                            let storage = self.storage();
                            if storage.delete(&output.path).await.is_ok() {
                                let _ = storage.delete(&m.log).await;
                            }
                            "skipped"
                        }
                    }
                    Err(e) => {
                        tracing::warn!(table = table.name(), error = %e, "compaction failed; will retry");
                        "error"
                    }
                };
                self.maintenance_metrics
                    .compactions
                    .get_or_create(&FlushLabel {
                        table: table.name(),
                        outcome,
                    })
                    .inc();
            }
            self.update_gauges(table);
        }
        report
    }

    /// Runs [`Store::maintain`] every `maintenance_interval` until `stop` resolves.
    pub async fn run_maintenance(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.config.maintenance_interval) => {}
            }
            self.maintain().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fragments, ids_of, stored_ids as ids};
    use crate::{StoreConfig, query};
    use prometheus_client::registry::Registry;
    use std::time::Duration;

    const HOUR: i64 = 3_600_000_000_000;

    fn config(dir: &std::path::Path) -> StoreConfig {
        let mut c = StoreConfig::new(dir);
        c.file_grace = Duration::ZERO;
        c
    }

    fn files_on_disk(dir: &std::path::Path) -> usize {
        fn walk(p: &std::path::Path, n: &mut usize) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|x| x == "parquet") {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(dir, &mut n);
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hours_of_small_files_become_one_file_per_hour_and_queries_stay_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(config(dir.path()), &mut Registry::default())
            .await
            .expect("open");
        let engine = Arc::new(
            store
                .query_engine(query::QueryLimits::default())
                .await
                .expect("engine"),
        );
        let now = sightline_common::clock::now();
        let base = (now / HOUR - 5) * HOUR; // five hours ago: closed partitions
        let mut written = 0;
        for flush in 0..12 {
            for hour in 0..3 {
                store
                    .write(vec![(
                        Table::TraceFragments,
                        fragments(written, 50, base + hour * HOUR + flush * 1_000_000),
                    )])
                    .await
                    .expect("write");
                written += 50;
            }
            store.flush_all().await.expect("flush");
        }
        let table_dir = dir.path().join("default/trace_fragments");
        assert_eq!(files_on_disk(&table_dir), 36);
        let before = ids(&engine).await;
        assert_eq!(before.len(), written);

        // Queries keep running while the merges swap files.
        let reader = {
            let engine = engine.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    assert_eq!(ids(&engine).await.len(), 1800, "a row was lost or doubled");
                }
            })
        };
        let report = store.maintain().await;
        reader.await.expect("reader");
        assert_eq!(report.compactions, 3);
        assert_eq!(report.compacted_files, 36);
        assert_eq!(store.catalog(Table::TraceFragments).files().len(), 3);
        assert_eq!(ids(&engine).await, before);
        store.maintain().await; // grace is zero: the inputs go now
        assert_eq!(files_on_disk(&table_dir), 3);

        // The merged files are sorted by trace id, as flushed files are.
        for f in store.catalog(Table::TraceFragments).files() {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(store.storage().local_path(&f.path).expect("local"))
                    .expect("open"),
            )
            .expect("reader")
            .build()
            .expect("build");
            let mut all = Vec::new();
            for b in reader {
                all.extend(ids_of(&b.expect("batch")));
            }
            assert!(
                all.windows(2).all(|w| w[0] <= w[1]),
                "merged file is sorted"
            );
            assert_eq!(all.len(), 600);
        }

        // A restart finds exactly the merged files.
        drop(engine);
        drop(store);
        let store = Store::open(config(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        let engine = store
            .query_engine(query::QueryLimits::default())
            .await
            .expect("engine");
        assert_eq!(ids(&engine).await, before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parquet_file_one_column_shorter_reads_with_nulls_and_merges_into_the_current_schema()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = Table::Notifications;
        // A file as a release before `latency_ms` would have written it, without metadata.
        let old = crate::fixtures::sample_batch(table, 4, 3);
        let short = old
            .project(&(0..old.num_columns() - 1).collect::<Vec<_>>())
            .expect("project");
        let (min, max) = (
            old.column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                .expect("time")
                .value(0),
            old.column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                .expect("time")
                .value(3),
        );
        let part = paths::partition_dir(
            &dir.path().join("default/notifications"),
            paths::hour_of(min),
        );
        std::fs::create_dir_all(&part).expect("mkdir");
        let file = std::fs::File::create(part.join(paths::data_file_name(min, max, 0, "old")))
            .expect("create");
        let mut w = parquet::arrow::ArrowWriter::try_new(file, short.schema(), None).expect("w");
        w.write(&short).expect("write");
        w.close().expect("close");

        let store = Store::open(config(dir.path()), &mut Registry::default())
            .await
            .expect("open");
        let engine = store
            .query_engine(Default::default())
            .await
            .expect("engine");
        let count = |sql: &'static str| {
            let engine = &engine;
            async move {
                let out = engine.execute(sql).await.expect("query");
                out.batches[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .expect("count")
                    .value(0)
            }
        };
        let nulls = "SELECT count(*) FROM notifications WHERE latency_ms IS NULL";
        assert_eq!(count("SELECT count(*) FROM notifications").await, 4);
        assert_eq!(count(nulls).await, 4);

        // A file of today's schema beside it; the closed hour is merged into one file.
        store
            .write(vec![(table, crate::fixtures::sample_batch(table, 4, 1))])
            .await
            .expect("write");
        store.flush_all().await.expect("flush");
        let files = store.catalog(table).files();
        assert_eq!(files.len(), 2);
        let mut versions = Vec::new();
        for f in &files {
            versions.push(
                writer::schema_version_of(store.storage(), f)
                    .await
                    .expect("footer"),
            );
        }
        assert!(versions.contains(&1), "{versions:?}");
        let report = store.maintain().await;
        assert_eq!((report.compactions, report.compacted_files), (1, 2));
        let merged = store.catalog(table).files();
        assert_eq!(merged.len(), 1);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(store.storage().local_path(&merged[0].path).expect("local"))
                .expect("open"),
        )
        .expect("reader");
        assert_eq!(reader.schema().fields(), table.schema().fields());
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        assert!(
            kv.iter()
                .any(|e| e.key == writer::TABLE_KEY && e.value.as_deref() == Some("notifications"))
        );
        assert_eq!(count("SELECT count(*) FROM notifications").await, 8);
        // The old rows keep their nulls; the new rows' every third latency is null.
        assert_eq!(count(nulls).await, 4 + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_compaction_is_finished_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = (sightline_common::clock::now() / HOUR - 3) * HOUR;
        let inputs;
        {
            let store = Store::open(config(dir.path()), &mut Registry::default())
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
            // The merge finishes (output renamed, log written) but the process dies before
            // the swap and the deletions.
            compaction::merge(store.storage(), Table::TraceFragments, inputs.clone())
                .await
                .expect("merge");
        }
        let store = Store::open(config(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(store.catalog(Table::TraceFragments).files().len(), 1);
        let storage = store.storage();
        for f in &inputs {
            assert_eq!(
                storage.read(&f.path).await.expect("read"),
                None,
                "{}",
                f.path
            );
        }
        let engine = store
            .query_engine(query::QueryLimits::default())
            .await
            .expect("engine");
        assert_eq!(ids(&engine).await.len(), 30);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_drops_whole_old_hours_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path());
        c.retention
            .insert(Table::Spans, Duration::from_secs(2 * 3600));
        c.compaction = None;
        let store = Store::open(c, &mut Registry::default())
            .await
            .expect("open");
        let now = sightline_common::clock::now();
        let old = (now / HOUR - 5) * HOUR;
        store
            .write(vec![(Table::TraceFragments, fragments(0, 10, old))])
            .await
            .expect("write");
        store
            .write(vec![(
                Table::TraceFragments,
                fragments(10, 10, now - 60_000_000_000),
            )])
            .await
            .expect("write");
        store.flush_all().await.expect("flush");
        let report = store.maintain().await;
        assert_eq!(report.expired_files, 1);
        let engine = store
            .query_engine(query::QueryLimits::default())
            .await
            .expect("engine");
        assert_eq!(ids(&engine).await.len(), 10);
        store.maintain().await;
        assert_eq!(
            files_on_disk(&dir.path().join("default/trace_fragments")),
            1
        );
    }
}
