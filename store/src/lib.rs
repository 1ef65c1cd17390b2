//! # sightline-store
//!
//! Owns Sightline's data at rest and the SQL over it:
//!
//! - [`schema`]: the Arrow schemas of every table (and the `traces` view), a public contract
//!   documented in `docs/sql.md`, with their versions and how older data is read;
//! - [`wal`]: the write-ahead log; a write is acknowledged once it is appended and fsync'd
//!   (group commit), and replayed after a crash ([`wal::record`] is its versioned format);
//! - [`memtable`] and [`catalog`]: acknowledged rows buffered in memory and the Parquet files of
//!   each table, swapped atomically so every query sees each row exactly once;
//! - [`writer`] and [`paths`]: sorted, zstd-compressed Parquet files in hourly Hive-style
//!   partitions, written durably (temporary name, fsync, rename);
//! - `flush` and [`maintenance`]: buffers to files by size, age or demand; compaction
//!   ([`compaction`]: merging small files per partition) and retention by whole partitions;
//! - [`provider`] and [`query`]: DataFusion tables over buffer ∪ files with time pruning, and a
//!   read-only SQL engine with timeout, row and memory limits on a runtime of its own, which
//!   plans, collects and streams every query (bounded by [`sql_bounds`] first); [`expr`]:
//!   SQL expressions compiled for evaluation on batches (the SLO engine's);
//! - [`directory`]: every tenant's store as the receivers find it (one [`Store`] per tenant);
//! - [`config`]: the `[storage]`, `[compaction]`, `[retention]` and `[query]` config sections.
//!
//! ```no_run
//! # async fn demo(batch: arrow::record_batch::RecordBatch) -> anyhow::Result<()> {
//! use sightline_store::{Store, StoreConfig, Table, query::QueryLimits};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let store = Store::open(StoreConfig::new("./data"), &mut registry).await?;
//! store.write(vec![(Table::Spans, batch)]).await?;
//! let engine = store.query_engine(QueryLimits::default()).await?;
//! let out = engine.execute("SELECT count(*) FROM spans").await?;
//! # Ok(()) }
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod audit;
pub mod catalog;
pub mod compaction;
pub mod config;
pub mod directory;
pub mod error;
pub mod expr;
#[cfg(test)]
mod fixtures;
mod flush;
#[doc(hidden)]
pub mod fuzzing;
pub mod maintenance;
pub mod memory;
pub mod memtable;
pub mod metrics;
pub mod paths;
pub mod provider;
pub mod query;
pub mod schema;
pub mod sql_bounds;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod wal;
pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use prometheus_client::registry::Registry;

pub use catalog::{Snapshot, TableCatalog};
pub use error::{Result, StoreError};
pub use schema::Table;

use maintenance::Burial;
pub use maintenance::MaintenanceReport;
use metrics::{MaintenanceMetrics, StoreMetrics, WalMetrics};
pub use wal::Durability;

/// Where and how the store keeps data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The write-ahead logs and lock files (always local), and the Parquet files unless
    /// `storage` says where they are.
    pub data_dir: PathBuf,
    /// Where the Parquet files, watermarks and compaction logs are; `None` is `data_dir`.
    pub storage: Option<storage::Storage>,
    pub tenant: String,
    /// Buffered rows older than this are flushed to Parquet.
    pub flush_interval: Duration,
    /// A table's buffer is flushed once it holds this many bytes.
    pub flush_max_bytes: usize,
    /// When a write counts as durable (see [`Durability`]).
    pub durability: Durability,
    /// Size at which a WAL segment is closed and a new one started.
    pub wal_segment_bytes: u64,
    /// How small files are merged; `None` turns compaction off.
    pub compaction: Option<compaction::CompactionPolicy>,
    /// How often compaction and retention run.
    pub maintenance_interval: Duration,
    /// Per table, how long data is kept (whole hours are dropped); absent = forever.
    pub retention: BTreeMap<Table, Duration>,
    /// How long replaced or expired files stay on disk for queries that still read them
    /// (longer than the query timeout).
    pub file_grace: Duration,
    /// The process's resident-memory ceiling, if any: a merge takes only as many files as fit
    /// under [`COMPACTION_MEMORY_SHARE`] of it with the memory in use, and waits if not two do.
    pub max_resident_bytes: Option<u64>,
}

/// Share of `max_resident_bytes` compaction may bring the process to.
pub const COMPACTION_MEMORY_SHARE: f64 = 0.75;

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            storage: None,
            tenant: "default".into(),
            flush_interval: Duration::from_secs(60),
            flush_max_bytes: 64 * 1024 * 1024,
            durability: Durability::Fsync,
            wal_segment_bytes: 64 << 20,
            compaction: Some(compaction::CompactionPolicy::default()),
            maintenance_interval: Duration::from_secs(30),
            retention: BTreeMap::new(),
            file_grace: Duration::from_secs(60),
            max_resident_bytes: None,
        }
    }
}

/// Takes the data directory's lock file, so that two processes never share one directory.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
    }
}

/// Derives rows from every write, to be stored atomically with it (in the same WAL record):
/// the SLO engine counts good and valid events this way, so a count exists exactly when the
/// events it counts do, across crashes.
pub trait WriteHook: Send + Sync + std::fmt::Debug {
    /// Rows to store along with `writes` (each batch with its table's schema).
    fn derive(&self, writes: &[(Table, RecordBatch)]) -> Vec<(Table, RecordBatch)>;
    /// Called once the write (with the derived rows) is durable and visible.
    fn committed(&self, derived: &[(Table, RecordBatch)]);
}

/// Files written by one flush, per table.
pub type FlushReport = BTreeMap<&'static str, usize>;

/// The store: buffers, files and the tables over them.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    /// Where the Parquet files are.
    storage: storage::Storage,
    catalogs: Arc<BTreeMap<Table, Arc<TableCatalog>>>,
    metrics: StoreMetrics,
    wal: wal::Wal,
    /// The sequence number of the newest write applied to the buffers.
    last_seq: Arc<AtomicU64>,
    closed: AtomicBool,
    wake_flusher: tokio::sync::Notify,
    /// Set when memory is short: the flusher writes every buffer, whatever its size or age.
    flush_everything: AtomicBool,
    maintenance_metrics: MaintenanceMetrics,
    /// Files out of the catalog, deleted once no query can still be reading them.
    graveyard: std::sync::Mutex<Vec<Burial>>,
    /// Working memory of running flushes.
    working: memory::WorkingMemory,
    /// The process's resident memory (None where it cannot be read).
    rss: Option<memory::RssSampler>,
    /// Derives rows stored with each write (see [`WriteHook`]).
    hook: std::sync::RwLock<Option<Arc<dyn WriteHook>>>,
    /// Writes hold it shared from deriving to committing; [`Store::pause_writes`] holds it
    /// exclusively, so that a hook can change between two writes and nothing in between.
    write_gate: tokio::sync::RwLock<()>,
    /// The query engines over this store, for the memory their queries hold.
    query_engines: std::sync::Mutex<Vec<query::QueryEngine>>,
    /// Bytes of Parquet files, and when they were last added up.
    parquet_bytes: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
    /// Held (locked) for the store's lifetime: one process per data directory.
    _lock: std::fs::File,
}

impl Store {
    /// Opens (or creates) the store under `config.data_dir`: lists the Parquet files, replays
    /// the write-ahead log into the buffers (skipping what is already in Parquet), and starts
    /// the log for new writes.
    pub async fn open(config: StoreConfig, registry: &mut Registry) -> Result<Arc<Self>> {
        sightline_common::tenant::check_tenant(&config.tenant).map_err(StoreError::Tenant)?;
        let lock = lock_data_dir(&paths::lock_dir(&config.data_dir, &config.tenant))?;
        let storage = match &config.storage {
            Some(s) => s.clone(),
            None => storage::Storage::local(&config.data_dir)?,
        };
        let mut catalogs = BTreeMap::new();
        for table in Table::ALL {
            let catalog = TableCatalog::open(storage.clone(), &config.tenant, table).await?;
            catalogs.insert(table, Arc::new(catalog));
        }
        let catalogs = Arc::new(catalogs);
        let wal_metrics = WalMetrics::new(registry);
        let wal_dir = paths::wal_dir(&config.data_dir, &config.tenant);

        let mut last_seq = catalogs
            .values()
            .map(|c| c.flushed_seq())
            .max()
            .unwrap_or(0);
        let report = wal::replay(&wal_dir, |record| {
            last_seq = last_seq.max(record.seq);
            for (table, batch) in record.batches {
                let catalog = &catalogs[&table];
                if record.seq > catalog.flushed_seq() {
                    catalog.append(record.seq, batch);
                }
            }
        })?;
        wal_metrics.replayed_records.inc_by(report.records as u64);
        wal_metrics.torn_tails.inc_by(report.torn_tails as u64);
        wal_metrics
            .quarantined_segments
            .inc_by(report.quarantined.len() as u64);
        if report.records > 0 {
            tracing::info!(
                records = report.records,
                segments = report.segments,
                last_seq = report.last_seq,
                "replayed the write-ahead log"
            );
        }

        let last_applied = Arc::new(AtomicU64::new(last_seq));
        let apply: wal::Apply = {
            let catalogs = catalogs.clone();
            let last_applied = last_applied.clone();
            Arc::new(move |seq, batches| {
                for (table, batch) in batches {
                    catalogs[&table].append(seq, batch);
                }
                last_applied.store(seq, Ordering::Release);
            })
        };
        let wal = wal::Wal::start(
            wal::WalConfig {
                dir: wal_dir,
                durability: config.durability,
                segment_bytes: config.wal_segment_bytes,
            },
            last_seq + 1,
            apply,
            wal_metrics,
        )?;
        let store = Arc::new(Self {
            config,
            storage,
            catalogs,
            metrics: StoreMetrics::new(registry),
            wal,
            last_seq: last_applied,
            closed: AtomicBool::new(false),
            wake_flusher: tokio::sync::Notify::new(),
            flush_everything: AtomicBool::new(false),
            maintenance_metrics: MaintenanceMetrics::new(registry),
            graveyard: std::sync::Mutex::new(Vec::new()),
            working: memory::WorkingMemory::default(),
            rss: memory::RssSampler::shared(),
            hook: std::sync::RwLock::new(None),
            write_gate: tokio::sync::RwLock::new(()),
            query_engines: Default::default(),
            parquet_bytes: Default::default(),
            _lock: lock,
        });
        for table in Table::ALL {
            store.update_gauges(table);
        }
        Ok(store)
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Where this store's Parquet files are.
    pub fn storage(&self) -> &storage::Storage {
        &self.storage
    }

    /// The tenant whose data this store holds.
    pub fn tenant(&self) -> &str {
        &self.config.tenant
    }

    pub fn catalog(&self, table: Table) -> &Arc<TableCatalog> {
        &self.catalogs[&table]
    }

    pub fn catalogs(&self) -> Vec<Arc<TableCatalog>> {
        self.catalogs.values().cloned().collect()
    }

    /// A SQL engine over this store's tables.
    ///
    /// # Errors
    /// As [`query::QueryEngine::new`].
    pub async fn query_engine(
        &self,
        limits: query::QueryLimits,
    ) -> std::result::Result<query::QueryEngine, query::QueryError> {
        let engine = query::QueryEngine::new(&self.catalogs(), limits).await?;
        self.keep_engine(engine)
    }

    /// A SQL engine over this store's tables in the places, memory and spill space of
    /// `shared`, within the share of this store's tenant.
    ///
    /// # Errors
    /// As [`query::QueryEngine::in_shared`].
    pub async fn query_engine_in(
        &self,
        limits: query::QueryLimits,
        shared: &query::QueryShared,
        share: query::TenantShare<'_>,
    ) -> std::result::Result<query::QueryEngine, query::QueryError> {
        let engine =
            query::QueryEngine::in_shared(&self.catalogs(), limits, shared, Some(share)).await?;
        self.keep_engine(engine)
    }

    fn keep_engine(
        &self,
        engine: query::QueryEngine,
    ) -> std::result::Result<query::QueryEngine, query::QueryError> {
        self.query_engines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(engine.clone());
        Ok(engine)
    }

    /// Bytes the queries over this store hold of their memory pools now (counted in the
    /// process's resident memory, but not Sightline's to free by flushing).
    pub fn query_memory_bytes(&self) -> usize {
        self.query_engines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(query::QueryEngine::memory_in_use)
            .sum()
    }

    /// Stores batches durably: when this returns they are in the write-ahead log (fsync'd,
    /// unless the durability mode says otherwise) and visible to queries. Every batch must
    /// have exactly its table's schema. Returns the write's WAL sequence number.
    ///
    /// # Errors
    /// [`StoreError::SchemaMismatch`] for a batch of another schema (nothing is written);
    /// [`StoreError::Io`] when the WAL cannot take it and [`StoreError::ShuttingDown`] after
    /// [`Store::close`] (both retryable: nothing of the write counts).
    pub async fn write(&self, writes: Vec<(Table, RecordBatch)>) -> Result<u64> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        for (table, batch) in &writes {
            if batch.schema() != table.schema() {
                return Err(StoreError::SchemaMismatch {
                    table: table.name(),
                    reason: "the batch's schema differs from the table's".into(),
                });
            }
        }
        let _gate = self.write_gate.read().await;
        let hook = self.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut writes = writes;
        let derived_from = writes.len();
        if let Some(hook) = &hook {
            for (table, batch) in hook.derive(&writes) {
                if batch.schema() != table.schema() {
                    return Err(StoreError::SchemaMismatch {
                        table: table.name(),
                        reason: "a derived batch's schema differs from the table's".into(),
                    });
                }
                writes.push((table, batch));
            }
        }
        let derived: Vec<(Table, RecordBatch)> = writes[derived_from..].to_vec();
        let tables: Vec<Table> = writes.iter().map(|(t, _)| *t).collect();
        let seq = self.wal.append(writes).await?;
        if let Some(hook) = &hook {
            hook.committed(&derived);
        }
        let mut wake = false;
        for table in tables {
            wake |= self.update_gauges(table).bytes >= self.config.flush_max_bytes;
        }
        if wake {
            self.wake_flusher.notify_one();
        }
        Ok(seq)
    }

    /// Installs (or removes) the hook that derives rows from every write.
    pub fn set_write_hook(&self, hook: Option<Arc<dyn WriteHook>>) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// Waits for the writes in progress and holds new ones back until the guard is dropped.
    /// Queries planned meanwhile see exactly the writes made before.
    pub async fn pause_writes(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.write_gate.write().await
    }

    /// Bytes of acknowledged rows held in memory, over all tables.
    pub fn buffered_bytes(&self) -> usize {
        self.catalogs.values().map(|c| c.stats().bytes).sum()
    }

    /// Memory the store accounts for: buffered rows plus the working memory of running
    /// flushes.
    pub fn memory_in_use(&self) -> usize {
        self.buffered_bytes() + self.working.bytes()
    }

    /// The process's resident memory, sampled every few milliseconds.
    pub fn resident_bytes(&self) -> Option<u64> {
        self.rss.as_ref().map(memory::RssSampler::bytes)
    }

    /// Bytes of the Parquet files of every table (added up at most twice a second: cheap to
    /// ask for every request).
    pub fn parquet_disk_bytes(&self) -> u64 {
        let mut cached = self.parquet_bytes.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached
            .0
            .is_some_and(|at| at.elapsed() < std::time::Duration::from_millis(500));
        if !fresh {
            let total = self
                .catalogs
                .values()
                .flat_map(|c| c.files())
                .map(|f| f.size)
                .sum();
            *cached = (Some(std::time::Instant::now()), total);
        }
        cached.1
    }

    /// Bytes the write-ahead log holds on disk.
    pub fn wal_disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    /// Refuses further writes, lets the WAL finish what is queued, and flushes everything
    /// buffered (the WAL is then empty). Safe to call twice.
    ///
    /// # Errors
    /// When the final flush fails: the rows stay in the WAL and are replayed at the next start.
    pub async fn close(&self) -> Result<FlushReport> {
        self.closed.store(true, Ordering::Release);
        self.wal.close().await;
        self.bury_due(true).await;
        let report = self.flush_all().await;
        if report.is_ok() {
            // Everything is in Parquet: the next start has nothing to replay.
            self.wal.remove_all_after_close()?;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fragments;
    use arrow::array::Int64Array;

    async fn count(engine: &query::QueryEngine) -> i64 {
        let out = engine
            .execute("SELECT count(*) AS n, count(DISTINCT trace_id) AS d FROM trace_fragments")
            .await
            .expect("query");
        let b = &out.batches[0];
        let n = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("n")
            .value(0);
        let d = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("d")
            .value(0);
        assert_eq!(n, d, "a row was seen twice");
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_during_flushes_see_every_row_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut registry = Registry::default();
        let store = Store::open(StoreConfig::new(dir.path()), &mut registry)
            .await
            .expect("open");
        let engine = Arc::new(
            store
                .query_engine(query::QueryLimits::default())
                .await
                .expect("engine"),
        );
        let hour = 3_600_000_000_000_i64;
        let mut written = 0usize;
        for round in 0..5 {
            for _ in 0..4 {
                // Rows of two different hours, so a flush writes several files.
                store
                    .write(vec![(
                        Table::TraceFragments,
                        fragments(written, 250, (round % 2) * hour),
                    )])
                    .await
                    .expect("write");
                written += 250;
            }
            let flusher = {
                let store = store.clone();
                tokio::spawn(async move { store.flush_all().await })
            };
            let mut seen = 0;
            while !flusher.is_finished() || seen < 3 {
                assert_eq!(count(&engine).await, written as i64);
                seen += 1;
            }
            flusher.await.expect("join").expect("flush");
            assert_eq!(count(&engine).await, written as i64);
        }
        assert_eq!(store.catalog(Table::TraceFragments).stats().rows, 0);

        // Reopened, the store finds every file and nothing more.
        drop(engine);
        drop(store);
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        let engine = store
            .query_engine(query::QueryLimits::default())
            .await
            .expect("engine");
        assert_eq!(count(&engine).await, written as i64);
    }

    #[tokio::test]
    async fn a_closed_store_refuses_writes_and_flushes_what_it_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("open");
        store
            .write(vec![(Table::TraceFragments, fragments(0, 10, 0))])
            .await
            .expect("write");
        let report = store.close().await.expect("close");
        assert_eq!(report["trace_fragments"], 1);
        assert!(matches!(
            store
                .write(vec![(Table::TraceFragments, fragments(10, 1, 0))])
                .await,
            Err(StoreError::ShuttingDown)
        ));
        assert_eq!(
            store.close().await.expect("second close")["trace_fragments"],
            0
        );
    }

    #[tokio::test]
    async fn a_batch_with_the_wrong_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("open");
        let err = store
            .write(vec![(Table::Spans, fragments(0, 1, 0))])
            .await
            .expect_err("mismatch");
        assert!(matches!(err, StoreError::SchemaMismatch { .. }), "{err}");
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;
    use crate::testing::stored_ids;

    fn fragment(id: usize) -> RecordBatch {
        crate::testing::fragments(id, 1, id as i64)
    }

    async fn ids(store: &Store) -> Vec<String> {
        let engine = store
            .query_engine(query::QueryLimits::default())
            .await
            .expect("engine");
        stored_ids(&engine).await
    }

    async fn write_each(store: &Store, ids: std::ops::Range<usize>) {
        for i in ids {
            store
                .write(vec![(Table::TraceFragments, fragment(i))])
                .await
                .expect("write");
        }
    }

    fn expected(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:032x}")).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unflushed_writes_come_back_once_after_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
                .await
                .expect("open");
            write_each(&store, 0..10).await;
            store.flush_all().await.expect("flush");
            write_each(&store, 10..25).await;
            // No close: as if the process were killed. (The WAL thread still owns its file.)
        }
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(
            ids(&store).await,
            expected(25),
            "flushed rows once, WAL rows once"
        );
        // New writes continue the sequence; a second crash-and-replay is just as exact.
        store
            .write(vec![(Table::TraceFragments, fragment(25))])
            .await
            .expect("write");
        store.flush_all().await.expect("flush");
        drop(store);
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(ids(&store).await, expected(26));
        store.close().await.expect("close");
        assert_eq!(store.wal_disk_bytes(), 0);
        let left = std::fs::read_dir(paths::wal_dir(dir.path(), "default"))
            .expect("wal dir")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.path().extension().is_some_and(|x| x == "wal"))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(left, 0, "a clean shutdown leaves nothing to replay");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_of_an_unfinished_flush_are_dropped_and_their_rows_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
                .await
                .expect("open");
            write_each(&store, 0..5).await;
            // A flush that wrote its file but crashed before recording the watermark.
            let catalog = store.catalog(Table::TraceFragments);
            let snapshot = catalog.snapshot();
            writer::write_files(
                catalog.storage(),
                catalog.tenant(),
                Table::TraceFragments,
                snapshot.batches,
                5,
            )
            .await
            .expect("write file");
        }
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(store.catalog(Table::TraceFragments).stats().files, 0);
        assert_eq!(ids(&store).await, expected(5));
    }
    fn parquet_files(dir: &std::path::Path) -> usize {
        walk_count(dir, &|p| {
            p.extension().is_some_and(|x| x == paths::PARQUET_EXT)
        })
    }

    fn walk_count(dir: &std::path::Path, keep: &dyn Fn(&std::path::Path) -> bool) -> usize {
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                n += walk_count(&p, keep);
            } else if keep(&p) {
                n += 1;
            }
        }
        n
    }

    /// Pins the all-or-nothing flush: when the watermark cannot be recorded, the flush's files
    /// are removed and its rows stay buffered (and in the WAL), so a later flush or a restart
    /// stores them once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_that_cannot_record_its_watermark_leaves_no_files_and_keeps_the_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table_dir = paths::table_dir(dir.path(), "default", Table::TraceFragments);
        let watermark = table_dir.join(paths::WATERMARK_FILE);
        {
            let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
                .await
                .expect("open");
            write_each(&store, 0..20).await;
            // A non-empty directory where the watermark goes: renaming onto it fails.
            let _ = std::fs::remove_file(&watermark);
            std::fs::create_dir_all(watermark.join("blocker")).expect("blocker");
            let err = store.flush_table(Table::TraceFragments).await;
            assert!(err.is_err(), "the flush must fail");
            assert_eq!(
                parquet_files(&table_dir),
                0,
                "no file of the failed flush remains"
            );
            assert_eq!(store.catalog(Table::TraceFragments).stats().rows, 20);
            assert_eq!(ids(&store).await, expected(20), "rows still visible, once");

            // Fixed: the next flush stores them, once.
            std::fs::remove_dir_all(&watermark).expect("unblock");
            store
                .flush_table(Table::TraceFragments)
                .await
                .expect("flush");
            assert_eq!(store.catalog(Table::TraceFragments).stats().rows, 0);
            assert_eq!(ids(&store).await, expected(20));
            write_each(&store, 20..25).await;
            // Crash without close.
        }
        let store = Store::open(StoreConfig::new(dir.path()), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(ids(&store).await, expected(25));
    }

    /// Two tenants under one data directory: each store sees only its rows, keeps its own
    /// write-ahead log, and replays only its own after a crash; a name that could leave the
    /// data directory is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tenants_of_one_directory_keep_their_rows_and_logs_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = |tenant: &str| {
            let mut c = StoreConfig::new(dir.path());
            c.tenant = tenant.into();
            c
        };
        {
            let default = Store::open(config("default"), &mut Registry::default())
                .await
                .expect("open");
            let other = Store::open(config("team-a"), &mut Registry::default())
                .await
                .expect("open");
            write_each(&default, 0..3).await;
            write_each(&other, 10..15).await;
            default.flush_all().await.expect("flush");
            assert_eq!(ids(&default).await, expected(3));
            assert_eq!(
                ids(&other).await,
                (10..15).map(|i| format!("{i:032x}")).collect::<Vec<_>>()
            );
            // Crash without close: team-a's rows are only in its own log.
        }
        assert!(paths::wal_dir(dir.path(), "team-a").starts_with(dir.path().join("team-a")));
        assert_eq!(paths::tenants_on_disk(dir.path()), ["default", "team-a"]);
        let other = Store::open(config("team-a"), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(ids(&other).await.len(), 5);
        let default = Store::open(config("default"), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(ids(&default).await, expected(3));
        assert!(matches!(
            Store::open(config("team-a"), &mut Registry::default()).await,
            Err(StoreError::Locked(_))
        ));
        for bad in ["../escape", "wal", ""] {
            assert!(matches!(
                Store::open(config(bad), &mut Registry::default()).await,
                Err(StoreError::Tenant(_))
            ));
        }
    }

    /// Pins the WAL truncation order: writes racing flushes (each of which truncates the log)
    /// over small segments, then a crash: every acknowledged write comes back exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_racing_flushes_and_log_truncation_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = || {
            let mut c = StoreConfig::new(dir.path());
            c.wal_segment_bytes = 16 * 1024;
            c.compaction = None;
            c
        };
        {
            let store = Store::open(config(), &mut Registry::default())
                .await
                .expect("open");
            let done = Arc::new(AtomicBool::new(false));
            let flusher = {
                let store = store.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let mut flushes = 0;
                    while !done.load(Ordering::Acquire) {
                        store.flush_all().await.expect("flush");
                        flushes += 1;
                        tokio::task::yield_now().await;
                    }
                    flushes
                })
            };
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let store = store.clone();
                    tokio::spawn(async move { write_each(&store, w * 300..(w + 1) * 300).await })
                })
                .collect();
            for w in writers {
                w.await.expect("writer");
            }
            done.store(true, Ordering::Release);
            let flushes = flusher.await.expect("flusher");
            assert!(flushes > 3, "only {flushes} flushes raced the writes");
            // Crash without close.
        }
        let store = Store::open(config(), &mut Registry::default())
            .await
            .expect("reopen");
        assert_eq!(ids(&store).await, expected(1200));
    }
}
