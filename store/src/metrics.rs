//! The store's self-metrics (Prometheus), labelled by table only: bounded cardinality.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlushLabel {
    pub table: &'static str,
    pub outcome: &'static str,
}

fn flush_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub buffered_rows: Family<TableLabel, Gauge>,
    pub buffered_bytes: Family<TableLabel, Gauge>,
    pub files: Family<TableLabel, Gauge>,
    pub flushes: Family<FlushLabel, Counter>,
    pub flushed_rows: Family<TableLabel, Counter>,
    pub flushed_bytes: Family<TableLabel, Counter>,
    pub flush_seconds: Family<TableLabel, Histogram, fn() -> Histogram>,
}

impl StoreMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            buffered_rows: Family::default(),
            buffered_bytes: Family::default(),
            files: Family::default(),
            flushes: Family::default(),
            flushed_rows: Family::default(),
            flushed_bytes: Family::default(),
            flush_seconds: Family::new_with_constructor(flush_histogram),
        };
        let r = registry.sub_registry_with_prefix("sightline_store");
        r.register(
            "buffered_rows",
            "Rows acknowledged and held in memory, not yet in Parquet",
            m.buffered_rows.clone(),
        );
        r.register(
            "buffered_bytes",
            "Memory used by buffered rows",
            m.buffered_bytes.clone(),
        );
        r.register(
            "files",
            "Parquet data files in the catalog",
            m.files.clone(),
        );
        r.register(
            "flushes",
            "Flushes of buffered rows to Parquet, by outcome",
            m.flushes.clone(),
        );
        r.register(
            "flushed_rows",
            "Rows written to Parquet by flushes",
            m.flushed_rows.clone(),
        );
        r.register(
            "flushed_bytes",
            "Parquet bytes written by flushes",
            m.flushed_bytes.clone(),
        );
        r.register(
            "flush_duration_seconds",
            "Time to write one table's buffer to Parquet",
            m.flush_seconds.clone(),
        );
        m
    }
}

/// Write-ahead log metrics.
#[derive(Debug, Clone)]
pub struct WalMetrics {
    pub appends: Counter,
    pub bytes: Counter,
    pub fsyncs: Counter,
    pub fsync_seconds: Histogram,
    pub group_size: Histogram,
    pub errors: Counter,
    pub disk_bytes: Gauge,
    pub replayed_records: Counter,
    pub torn_tails: Counter,
    pub quarantined_segments: Counter,
}

impl WalMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            appends: Counter::default(),
            bytes: Counter::default(),
            fsyncs: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            errors: Counter::default(),
            disk_bytes: Gauge::default(),
            replayed_records: Counter::default(),
            torn_tails: Counter::default(),
            quarantined_segments: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("sightline_wal");
        r.register(
            "appends",
            "Writes appended to the write-ahead log",
            m.appends.clone(),
        );
        r.register(
            "bytes",
            "Bytes appended to the write-ahead log",
            m.bytes.clone(),
        );
        r.register(
            "fsyncs",
            "fsync calls on the write-ahead log",
            m.fsyncs.clone(),
        );
        r.register(
            "fsync_duration_seconds",
            "Time of one write-ahead log fsync",
            m.fsync_seconds.clone(),
        );
        r.register(
            "group_commit_size",
            "Writes made durable by one fsync",
            m.group_size.clone(),
        );
        r.register("errors", "Failed appends or fsyncs", m.errors.clone());
        r.register(
            "disk_bytes",
            "Bytes the write-ahead log holds on disk",
            m.disk_bytes.clone(),
        );
        r.register(
            "replayed_records",
            "Records replayed from the write-ahead log at start",
            m.replayed_records.clone(),
        );
        r.register(
            "torn_tails",
            "Incomplete records cut from the end of the log at start (a crash mid-append)",
            m.torn_tails.clone(),
        );
        r.register(
            "quarantined_segments",
            "Damaged segments moved to wal/corrupt/ at start",
            m.quarantined_segments.clone(),
        );
        m
    }
}

/// Compaction and retention metrics.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceMetrics {
    pub compactions: Family<FlushLabel, Counter>,
    pub compacted_files: Family<TableLabel, Counter>,
    pub compaction_bytes_written: Family<TableLabel, Counter>,
    pub retention_files: Family<TableLabel, Counter>,
    pub retention_bytes: Family<TableLabel, Counter>,
}

impl MaintenanceMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sightline_store");
        r.register(
            "compactions",
            "Merges of small Parquet files, by outcome",
            m.compactions.clone(),
        );
        r.register(
            "compacted_files",
            "Files merged away by compaction",
            m.compacted_files.clone(),
        );
        r.register(
            "compaction_written_bytes",
            "Bytes written by compaction (with flushed_bytes: the write amplification)",
            m.compaction_bytes_written.clone(),
        );
        r.register(
            "retention_removed_files",
            "Files deleted because their hour passed the table's retention",
            m.retention_files.clone(),
        );
        r.register(
            "retention_removed_bytes",
            "Bytes deleted by retention",
            m.retention_bytes.clone(),
        );
        m
    }
}
