//! The server's configuration: one TOML file, every key optional, unknown keys rejected with
//! their name, command-line flags and `SIGHTLINE_*` environment variables on top, validated
//! before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

pub use sightline_common::config::parse_duration;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where Parquet files (and later the WAL) live.
    pub data_dir: PathBuf,
    pub listen: ListenConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub query: QueryConfig,
    pub log: LogConfig,
    pub compaction: CompactionConfig,
    pub retention: RetentionConfig,
    pub slo: SloConfig,
    /// Alert delivery: receivers, routes, silences.
    pub notify: sightline_notify::NotifyConfig,
    /// Maintenance windows: mute matching alerts, and leave their minutes out of the budget
    /// of SLOs with `exclude_maintenance: true`.
    pub maintenance: Vec<sightline_slo::maintenance::MaintenanceConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// Directory of SLO spec files (`*.yaml`); reloaded when a file changes.
    pub dir: Option<PathBuf>,
    /// How often SLOs and their alert rules are evaluated.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub tick: Duration,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            dir: None,
            tick: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    pub enabled: bool,
    /// How often compaction and retention look for work.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub interval: Duration,
    /// Files at or above this size are not merged further.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub target_file_bytes: usize,
    /// In an hour still receiving data, this many files of one size tier are merged.
    pub min_files: usize,
    /// An hour's partition is closed (all its small files merged) this long after it ended.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub close_after: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        let p = sightline_store::compaction::CompactionPolicy::default();
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            target_file_bytes: p.target_file_bytes as usize,
            min_files: p.min_files,
            close_after: p.close_after,
        }
    }
}

/// How long each signal is kept; whole hours are dropped. Absent or "0" keeps data forever.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    #[serde(deserialize_with = "sightline_common::config::opt_duration")]
    pub spans: Option<Duration>,
    #[serde(deserialize_with = "sightline_common::config::opt_duration")]
    pub logs: Option<Duration>,
    #[serde(deserialize_with = "sightline_common::config::opt_duration")]
    pub metrics: Option<Duration>,
}

impl RetentionConfig {
    pub fn by_table(&self) -> std::collections::BTreeMap<sightline_store::Table, Duration> {
        use sightline_store::Table;
        [
            (Table::Spans, self.spans),
            (Table::Logs, self.logs),
            (Table::Metrics, self.metrics),
        ]
        .into_iter()
        .filter_map(|(t, d)| d.filter(|d| !d.is_zero()).map(|d| (t, d)))
        .collect()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: ListenConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            query: QueryConfig::default(),
            log: LogConfig::default(),
            compaction: CompactionConfig::default(),
            retention: RetentionConfig::default(),
            slo: SloConfig::default(),
            notify: Default::default(),
            maintenance: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    /// The UI and HTTP API.
    pub http: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            otlp_grpc: SocketAddr::from(([0, 0, 0, 0], 4317)),
            otlp_http: SocketAddr::from(([0, 0, 0, 0], 4318)),
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Buffered rows are written to Parquet at the latest after this long.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub flush_interval: Duration,
    /// A table's buffer is written to Parquet once it holds this much memory.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub flush_max_bytes: usize,
    /// `fsync` (default): a write is acknowledged after the write-ahead log is fsync'd.
    /// `batched`: acknowledged once written to the OS, fsync'd every `sync_interval`.
    pub durability: DurabilityMode,
    /// With `durability = "batched"`: the longest time between two fsyncs.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub sync_interval: Duration,
    /// Size at which a write-ahead log segment is closed and a new one begun.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub wal_segment_bytes: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    #[default]
    Fsync,
    Batched,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(60),
            flush_max_bytes: 64 << 20,
            durability: DurabilityMode::Fsync,
            sync_interval: Duration::from_millis(100),
            wal_segment_bytes: 64 << 20,
        }
    }
}

impl StorageConfig {
    pub fn durability(&self) -> sightline_store::Durability {
        match self.durability {
            DurabilityMode::Fsync => sightline_store::Durability::Fsync,
            DurabilityMode::Batched => sightline_store::Durability::Batched {
                interval: self.sync_interval,
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest OTLP/HTTP body on the wire.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_body_bytes: usize,
    /// Largest request after decompression, and largest gRPC message.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_decoded_bytes: usize,
    /// Memory ceiling for acknowledged rows not yet in Parquet, flush working
    /// memory, and requests in flight (counted exactly).
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_memory_bytes: usize,
    /// Ceiling on the process's resident memory (sampled); 0 turns it off.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_resident_bytes: usize,
    /// Disk ceiling for the write-ahead log.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_wal_bytes: usize,
    /// Attributes kept per attribute list; the rest are dropped and counted.
    pub max_attributes: usize,
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_attribute_key_bytes: usize,
    /// Longer string values are truncated; longer bytes, arrays and maps are dropped.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_attribute_value_bytes: usize,
    /// Arrays and maps nested deeper are dropped.
    pub max_attribute_depth: usize,
    pub max_events_per_span: usize,
    pub max_links_per_span: usize,
    /// Items older than this when they arrive are rejected (partial success).
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub max_past: Duration,
    /// Items more than this ahead of the server's clock are rejected.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub max_future: Duration,
}

impl LimitsConfig {
    pub fn to_limits(&self) -> sightline_collector::Limits {
        sightline_collector::Limits {
            max_body_bytes: self.max_body_bytes,
            max_decoded_bytes: self.max_decoded_bytes,
            max_memory_bytes: self.max_memory_bytes,
            max_resident_bytes: (self.max_resident_bytes > 0)
                .then_some(self.max_resident_bytes as u64),
            max_wal_bytes: self.max_wal_bytes as u64,
            items: sightline_collector::limits::ItemLimits {
                max_attributes: self.max_attributes,
                max_key_bytes: self.max_attribute_key_bytes,
                max_value_bytes: self.max_attribute_value_bytes,
                max_depth: self.max_attribute_depth,
                max_events: self.max_events_per_span,
                max_links: self.max_links_per_span,
                max_past: self.max_past,
                max_future: self.max_future,
            },
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = sightline_collector::Limits::default();
        Self {
            max_body_bytes: l.max_body_bytes,
            max_decoded_bytes: l.max_decoded_bytes,
            max_memory_bytes: l.max_memory_bytes,
            max_resident_bytes: l.max_resident_bytes.unwrap_or(0) as usize,
            max_wal_bytes: l.max_wal_bytes as usize,
            max_attributes: l.items.max_attributes,
            max_attribute_key_bytes: l.items.max_key_bytes,
            max_attribute_value_bytes: l.items.max_value_bytes,
            max_attribute_depth: l.items.max_depth,
            max_events_per_span: l.items.max_events,
            max_links_per_span: l.items.max_links,
            max_past: l.items.max_past,
            max_future: l.items.max_future,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub timeout: Duration,
    pub max_rows: usize,
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub memory_limit: usize,
    /// Worker threads of the query runtime (separate from ingestion).
    pub threads: usize,
    /// Longest SQL text accepted, checked before parsing.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_sql_bytes: usize,
    /// Deepest nesting of expressions, subqueries and set operations (and most tables joined)
    /// in one statement, checked before planning.
    pub max_sql_depth: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let l = sightline_store::query::QueryLimits::default();
        Self {
            timeout: l.timeout,
            max_rows: l.max_rows,
            memory_limit: l.memory_bytes,
            threads: l.threads,
            max_sql_bytes: l.sql.max_sql_bytes,
            max_sql_depth: l.sql.max_depth,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `sightline=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Reads a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir must not be empty");
        }
        if self.storage.flush_interval < Duration::from_millis(10) {
            bail!("storage.flush_interval must be at least 10ms");
        }
        if self.storage.flush_max_bytes < 1024 {
            bail!("storage.flush_max_bytes must be at least 1KiB");
        }
        if self.storage.sync_interval < Duration::from_millis(1)
            || self.storage.sync_interval > Duration::from_secs(10)
        {
            bail!("storage.sync_interval must be between 1ms and 10s");
        }
        if self.storage.wal_segment_bytes < (1 << 20) {
            bail!("storage.wal_segment_bytes must be at least 1MiB");
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_decoded_bytes == 0 {
            bail!("limits.max_body_bytes and limits.max_decoded_bytes must be positive");
        }
        if self.limits.max_decoded_bytes < self.limits.max_body_bytes {
            bail!("limits.max_decoded_bytes must be at least limits.max_body_bytes");
        }
        if self.limits.max_memory_bytes < 2 * self.storage.flush_max_bytes {
            bail!(
                "limits.max_memory_bytes must be at least twice storage.flush_max_bytes, or \
                 buffers would be refused before they are flushed"
            );
        }
        if self.limits.max_memory_bytes < self.limits.max_decoded_bytes {
            bail!("limits.max_memory_bytes must be at least limits.max_decoded_bytes");
        }
        if self.limits.max_resident_bytes != 0
            && self.limits.max_resident_bytes < self.limits.max_memory_bytes + (64 << 20)
        {
            bail!(
                "limits.max_resident_bytes must be at least limits.max_memory_bytes + 64MiB \
                 (the process itself needs room), or 0 to turn it off"
            );
        }
        if self.limits.max_attributes == 0 || self.limits.max_attribute_value_bytes == 0 {
            bail!("limits.max_attributes and limits.max_attribute_value_bytes must be positive");
        }
        if self.limits.max_past.is_zero() {
            bail!("limits.max_past must be positive");
        }
        if (self.limits.max_wal_bytes as u64) < 2 * self.storage.wal_segment_bytes as u64 {
            bail!("limits.max_wal_bytes must be at least twice storage.wal_segment_bytes");
        }
        if self.slo.tick < Duration::from_secs(1) || self.slo.tick > Duration::from_secs(30) {
            bail!("slo.tick must be between 1s and 30s");
        }
        if self.query.timeout.is_zero() {
            bail!("query.timeout must be positive");
        }
        if self.query.max_rows == 0 {
            bail!("query.max_rows must be positive");
        }
        if !(1024..=16 << 20).contains(&self.query.max_sql_bytes) {
            bail!("query.max_sql_bytes must be between 1KiB and 16MiB");
        }
        if !(16..=1024).contains(&self.query.max_sql_depth) {
            bail!("query.max_sql_depth must be between 16 and 1024");
        }
        if !(1..=256).contains(&self.query.threads) {
            bail!("query.threads must be between 1 and 256");
        }
        if self.compaction.min_files < 2 {
            bail!("compaction.min_files must be at least 2");
        }
        if self.compaction.interval.is_zero() {
            bail!("compaction.interval must be positive");
        }
        for (name, d) in [
            ("retention.spans", self.retention.spans),
            ("retention.logs", self.retention.logs),
            ("retention.metrics", self.retention.metrics),
        ] {
            if d.is_some_and(|d| !d.is_zero() && d < Duration::from_secs(3600)) {
                bail!(
                    "{name} must be at least 1h (data is dropped by whole hours), or 0 to keep forever"
                );
            }
        }
        if self.query.memory_limit < (16 << 20) {
            bail!("query.memory_limit must be at least 16MiB");
        }
        self.notify.validate().map_err(|e| anyhow::anyhow!(e))?;
        let mut names = std::collections::BTreeSet::new();
        for m in &self.maintenance {
            m.compile().map_err(|e| anyhow::anyhow!(e))?;
            if !names.insert(&m.name) {
                bail!("maintenance window {:?} is defined twice", m.name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_and_validates() {
        let text = include_str!("../sightline.example.toml");
        let c = Config::from_toml(text).expect("example parses");
        c.validate().expect("example is valid");
        assert_eq!(c.listen.otlp_grpc.port(), 4317);
        assert_eq!(c.storage.flush_max_bytes, 64 << 20);
    }

    #[test]
    fn docs_examples_validate() {
        let doc = include_str!("../docs/alerting.md");
        let mut blocks = doc.split("```toml\n").skip(1).map(|b| {
            b.split("```")
                .next()
                .expect("a closed code block")
                .to_string()
        });
        let full = blocks.next().expect("the complete example");
        let c = Config::from_toml(&full).unwrap_or_else(|e| panic!("{e:#}\n{full}"));
        c.validate().unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.notify.receivers.len(), 2);
        assert_eq!(c.maintenance.len(), 2);
        for b in blocks {
            Config::from_toml(&b)
                .and_then(|c| c.validate().map(|_| c))
                .unwrap_or_else(|e| panic!("{e:#}\n{b}"));
        }
    }

    #[test]
    fn bad_notify_and_maintenance_sections_stop_the_start() {
        for (text, want) in [
            (
                "[notify.route]\nreceiver = \"nobody\"",
                "no receiver is named \"nobody\"",
            ),
            (
                "[[maintenance]]\nname = \"x\"\nevery = \"week\"\nstart = \"02:00\"\nduration = \"1h\"",
                "needs days",
            ),
            (
                "[[maintenance]]\nname = \"x\"\nstarts_at = \"2026-01-01T00:00:00Z\"\nends_at = \"2026-01-02T00:00:00Z\"\n[[maintenance]]\nname = \"x\"\nstarts_at = \"2026-01-01T00:00:00Z\"\nends_at = \"2026-01-02T00:00:00Z\"",
                "defined twice",
            ),
        ] {
            let e = Config::from_toml(text)
                .and_then(|c| c.validate())
                .expect_err("must be refused");
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::from_toml("").expect("empty"), Config::default());
        Config::default().validate().expect("defaults are valid");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[storage]\nflush_intervall = \"5s\"\n")
            .expect_err("typo rejected")
            .to_string();
        assert!(err.contains("flush_intervall"), "{err}");
        let err = Config::from_toml("colour = 1")
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = Config::from_toml("[query]\ntimeout = \"soon\"\n")
            .expect_err("bad duration")
            .to_string();
        assert!(err.contains("soon"), "{err}");
        let mut c = Config::default();
        c.query.threads = 0;
        assert!(
            c.validate()
                .expect_err("zero")
                .to_string()
                .contains("query.threads")
        );
    }

    #[test]
    fn retention_per_signal() {
        let c = Config::from_toml("[retention]\nspans = \"7d\"\nlogs = \"0\"\n").expect("parse");
        c.validate().expect("valid");
        let r = c.retention.by_table();
        assert_eq!(
            r.get(&sightline_store::Table::Spans),
            Some(&Duration::from_secs(7 * 86400))
        );
        assert!(
            !r.contains_key(&sightline_store::Table::Logs),
            "0 keeps forever"
        );
        let c = Config::from_toml("[retention]\nmetrics = \"5m\"\n").expect("parse");
        assert!(
            c.validate()
                .expect_err("too short")
                .to_string()
                .contains("retention.metrics")
        );
    }
}
