//! # sightline-store
//!
//! Owns Sightline's data at rest and the SQL over it:
//!
//! - [`schema`]: the Arrow schemas of `spans`, `logs`, `metrics` and `trace_fragments` (and the
//!   `traces` view), a public contract documented in `docs/sql.md`;
//! - [`memtable`] and [`catalog`]: acknowledged rows buffered in memory and the Parquet files of
//!   each table, swapped atomically so every query sees each row exactly once;
//! - [`writer`] and [`paths`]: sorted, zstd-compressed Parquet files in hourly Hive-style
//!   partitions, written durably (temporary name, fsync, rename);
//! - [`provider`] and [`query`]: DataFusion tables over buffer ∪ files with time pruning, and a
//!   read-only SQL engine with timeout, row and memory limits on a runtime of its own.
//!
//! ```no_run
//! # async fn demo(batch: arrow::record_batch::RecordBatch) -> anyhow::Result<()> {
//! use sightline_store::{Store, StoreConfig, Table, query::QueryLimits};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let store = Store::open(StoreConfig::new("./data"), &mut registry)?;
//! store.write(vec![(Table::Spans, batch)]).await?;
//! let engine = store.query_engine(QueryLimits::default()).await?;
//! let out = engine.execute("SELECT count(*) FROM spans").await?;
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod error;
pub mod memtable;
pub mod metrics;
pub mod paths;
pub mod provider;
pub mod query;
pub mod schema;
pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use prometheus_client::registry::Registry;

pub use catalog::{Snapshot, TableCatalog};
pub use error::{Result, StoreError};
pub use schema::Table;

use metrics::{FlushLabel, StoreMetrics, TableLabel};

/// Where and how the store keeps data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub tenant: String,
    /// Buffered rows older than this are flushed to Parquet.
    pub flush_interval: Duration,
    /// A table's buffer is flushed once it holds this many bytes.
    pub flush_max_bytes: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            tenant: "default".into(),
            flush_interval: Duration::from_secs(60),
            flush_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Files written by one flush, per table.
pub type FlushReport = BTreeMap<&'static str, usize>;

/// The store: buffers, files and the tables over them.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    catalogs: BTreeMap<Table, Arc<TableCatalog>>,
    metrics: StoreMetrics,
    closed: AtomicBool,
    wake_flusher: tokio::sync::Notify,
}

impl Store {
    /// Opens (or creates) the store under `config.data_dir`, listing existing files.
    pub fn open(config: StoreConfig, registry: &mut Registry) -> Result<Arc<Self>> {
        let mut catalogs = BTreeMap::new();
        for table in Table::ALL {
            let dir = paths::table_dir(&config.data_dir, &config.tenant, table);
            catalogs.insert(table, Arc::new(TableCatalog::open(table, dir)?));
        }
        let store = Arc::new(Self {
            config,
            catalogs,
            metrics: StoreMetrics::new(registry),
            closed: AtomicBool::new(false),
            wake_flusher: tokio::sync::Notify::new(),
        });
        for table in Table::ALL {
            store.update_gauges(table);
        }
        Ok(store)
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn catalog(&self, table: Table) -> &Arc<TableCatalog> {
        &self.catalogs[&table]
    }

    pub fn catalogs(&self) -> Vec<Arc<TableCatalog>> {
        self.catalogs.values().cloned().collect()
    }

    /// A SQL engine over this store's tables.
    pub async fn query_engine(
        &self,
        limits: query::QueryLimits,
    ) -> std::result::Result<query::QueryEngine, query::QueryError> {
        query::QueryEngine::new(&self.catalogs(), limits).await
    }

    /// Stores batches; they are visible to queries when this returns. Every batch must have
    /// exactly its table's schema.
    pub async fn write(&self, writes: Vec<(Table, RecordBatch)>) -> Result<()> {
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
        let mut wake = false;
        for (table, batch) in writes {
            let catalog = &self.catalogs[&table];
            catalog.append(batch);
            wake |= catalog.stats().bytes >= self.config.flush_max_bytes;
            self.update_gauges(table);
        }
        if wake {
            self.wake_flusher.notify_one();
        }
        Ok(())
    }

    fn update_gauges(&self, table: Table) {
        let stats = self.catalogs[&table].stats();
        let label = TableLabel {
            table: table.name(),
        };
        self.metrics
            .buffered_rows
            .get_or_create(&label)
            .set(stats.rows as i64);
        self.metrics
            .buffered_bytes
            .get_or_create(&label)
            .set(stats.bytes as i64);
        self.metrics
            .files
            .get_or_create(&label)
            .set(stats.files as i64);
    }

    /// Flushes one table's buffer to Parquet.
    pub async fn flush_table(&self, table: Table) -> Result<usize> {
        let started = Instant::now();
        let result = self.catalogs[&table].flush().await;
        let label = TableLabel {
            table: table.name(),
        };
        let outcome = match &result {
            Ok(files) if files.is_empty() => None,
            Ok(files) => {
                let rows: u64 = files.iter().map(|f| f.rows).sum();
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                self.metrics.flushed_rows.get_or_create(&label).inc_by(rows);
                self.metrics
                    .flushed_bytes
                    .get_or_create(&label)
                    .inc_by(bytes);
                Some("ok")
            }
            Err(e) => {
                tracing::error!(table = table.name(), error = %e, "flush failed; rows stay buffered");
                Some("error")
            }
        };
        if let Some(outcome) = outcome {
            self.metrics
                .flushes
                .get_or_create(&FlushLabel {
                    table: table.name(),
                    outcome,
                })
                .inc();
            self.metrics
                .flush_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
        }
        self.update_gauges(table);
        result.map(|files| files.len())
    }

    /// Flushes every table; returns the number of files written per table.
    pub async fn flush_all(&self) -> Result<FlushReport> {
        let mut report = FlushReport::new();
        let mut first_error = None;
        for table in Table::ALL {
            match self.flush_table(table).await {
                Ok(n) => {
                    report.insert(table.name(), n);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Tables whose buffer is due for a flush (by size or age).
    fn due_tables(&self) -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|t| {
                let s = self.catalogs[t].stats();
                s.bytes >= self.config.flush_max_bytes
                    || s.oldest
                        .is_some_and(|o| o.elapsed() >= self.config.flush_interval)
            })
            .collect()
    }

    /// Runs the background flusher until `stop` resolves: flushes buffers that are too big or
    /// too old. Returns when stopped (the caller flushes what is left with [`Store::close`]).
    pub async fn run_flusher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let tick = (self.config.flush_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(tick) => {}
                _ = self.wake_flusher.notified() => {}
            }
            for table in self.due_tables() {
                // Errors are logged and counted in flush_table; rows stay buffered for a retry.
                let _ = self.flush_table(table).await;
            }
        }
    }

    /// Refuses further writes and flushes everything buffered. Safe to call twice.
    pub async fn close(&self) -> Result<FlushReport> {
        self.closed.store(true, Ordering::Release);
        self.flush_all().await
    }
}
