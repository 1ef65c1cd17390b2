//! The store's sections of the config file — `[storage]`, `[compaction]`, `[retention]` and
//! `[query]` — with their defaults and checks. Every key is optional; `validate` names the key
//! of a value that parses but cannot work.

use std::time::Duration;

use serde::Deserialize;

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
    /// Where the Parquet files go: absent (the data directory), `file:///abs/dir`, or
    /// `s3://bucket/prefix`. The write-ahead log always stays in the data directory.
    pub url: Option<String>,
    /// An S3-compatible server's URL (`http://127.0.0.1:8333`); else AWS's, or
    /// `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// The bucket's region; else `AWS_REGION` / `AWS_DEFAULT_REGION`, or `us-east-1`.
    pub region: Option<String>,
    /// Credentials; else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) from the environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
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
            url: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// Where `storage.url` puts the Parquet files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// A local directory (the data directory when no URL is given).
    Local(Option<std::path::PathBuf>),
    /// An S3 bucket and prefix.
    S3(crate::storage::S3Settings),
}

impl StorageConfig {
    /// What `url` says, checked.
    ///
    /// # Errors
    /// A URL of another scheme, a relative `file://` path, an S3 URL without a bucket, or S3
    /// settings beside a URL that is not S3.
    pub fn location(&self) -> Result<StorageUrl, String> {
        let s3_keys = self.endpoint.is_some()
            || self.region.is_some()
            || self.access_key_id.is_some()
            || self.secret_access_key.is_some();
        match self.url.as_deref() {
            None if s3_keys => Err(
                "storage.endpoint, region and credentials need storage.url = \"s3://bucket/prefix\""
                    .into(),
            ),
            None => Ok(StorageUrl::Local(None)),
            Some(url) if url.starts_with("file://") => {
                let path = std::path::PathBuf::from(&url["file://".len()..]);
                if s3_keys {
                    return Err("storage.endpoint, region and credentials are for s3:// URLs".into());
                }
                check(
                    path.is_absolute(),
                    "storage.url = \"file://…\" must name an absolute directory (file:///var/lib/x)",
                )?;
                Ok(StorageUrl::Local(Some(path)))
            }
            Some(url) if url.starts_with("s3://") => {
                let bucket = url["s3://".len()..].split('/').next().unwrap_or_default();
                check(!bucket.is_empty(), "storage.url names no bucket (s3://bucket/prefix)")?;
                if let Some(endpoint) = &self.endpoint {
                    check(
                        endpoint.starts_with("http://") || endpoint.starts_with("https://"),
                        "storage.endpoint must be an http:// or https:// URL",
                    )?;
                }
                check(
                    self.access_key_id.is_some() == self.secret_access_key.is_some(),
                    "storage.access_key_id and storage.secret_access_key go together",
                )?;
                Ok(StorageUrl::S3(crate::storage::S3Settings {
                    url: url.to_string(),
                    endpoint: self.endpoint.clone(),
                    region: self.region.clone(),
                    access_key_id: self.access_key_id.clone(),
                    secret_access_key: self.secret_access_key.clone(),
                }))
            }
            Some(url) => Err(format!(
                "storage.url {url:?} is neither s3://bucket/prefix nor file:///directory"
            )),
        }
    }

    /// The storage the URL names (`data_dir` without one). Call inside the runtime that is
    /// to drive an S3 client's connections.
    ///
    /// # Errors
    /// As [`StorageConfig::location`], or when the directory cannot be made or the S3 client
    /// refuses the settings.
    pub fn open(&self, data_dir: &std::path::Path) -> crate::Result<crate::storage::Storage> {
        match self.location().map_err(crate::StoreError::Storage)? {
            StorageUrl::Local(dir) => {
                crate::storage::Storage::local(dir.as_deref().unwrap_or(data_dir))
            }
            StorageUrl::S3(settings) => crate::storage::Storage::s3(&settings),
        }
    }

    pub fn durability(&self) -> crate::Durability {
        match self.durability {
            DurabilityMode::Fsync => crate::Durability::Fsync,
            DurabilityMode::Batched => crate::Durability::Batched {
                interval: self.sync_interval,
            },
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
        let p = crate::compaction::CompactionPolicy::default();
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            target_file_bytes: p.target_file_bytes as usize,
            min_files: p.min_files,
            close_after: p.close_after,
        }
    }
}

pub use sightline_common::config::RetentionConfig;

/// How long each table is kept under `retention` (signals without one, or with "0", forever).
pub fn retention_by_table(
    retention: &RetentionConfig,
) -> std::collections::BTreeMap<crate::Table, Duration> {
    use crate::Table;
    [
        (Table::Spans, retention.spans),
        (Table::Logs, retention.logs),
        (Table::Metrics, retention.metrics),
    ]
    .into_iter()
    .filter_map(|(t, d)| d.filter(|d| !d.is_zero()).map(|d| (t, d)))
    .collect()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub timeout: Duration,
    pub max_rows: usize,
    /// Bytes of answer returned at most (Arrow size; the JSON is about as large).
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_result_bytes: usize,
    /// Memory of all queries together.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub memory_limit: usize,
    /// Memory of one query.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_query_memory_bytes: usize,
    /// Worker threads of each query (they run at a lower priority than ingestion).
    pub threads: usize,
    /// Queries running at once.
    pub max_running: usize,
    /// Queries waiting for a place at once; past it, queries are refused with 429.
    pub max_queued: usize,
    /// What one call of `repeat`, `lpad`, `range` and the like may build per batch of rows.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_function_bytes: usize,
    /// Where sorts and aggregations spill when they outgrow their memory (emptied at start);
    /// default `<data_dir>/spill`.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Disk the spill directory may take; `0` turns spilling off.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_spill_bytes: usize,
    /// Longest SQL text accepted, checked before parsing.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_sql_bytes: usize,
    /// Deepest nesting of expressions, subqueries and set operations (and most tables joined)
    /// in one statement, checked before planning.
    pub max_sql_depth: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let l = crate::query::QueryLimits::default();
        Self {
            timeout: l.timeout,
            max_rows: l.max_rows,
            max_result_bytes: l.max_result_bytes,
            memory_limit: l.memory_bytes,
            max_query_memory_bytes: l.max_query_memory_bytes,
            threads: l.threads,
            max_running: l.max_running,
            max_queued: l.max_queued,
            max_function_bytes: l.max_function_bytes,
            spill_dir: None,
            max_spill_bytes: 4 << 30,
            max_sql_bytes: l.sql.max_sql_bytes,
            max_sql_depth: l.sql.max_depth,
        }
    }
}

fn check(ok: bool, message: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(message.to_string()) }
}

impl StorageConfig {
    /// # Errors
    /// The first value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        check(
            self.flush_interval >= Duration::from_millis(10),
            "storage.flush_interval must be at least 10ms",
        )?;
        check(
            self.flush_max_bytes >= 1024,
            "storage.flush_max_bytes must be at least 1KiB",
        )?;
        check(
            (Duration::from_millis(1)..=Duration::from_secs(10)).contains(&self.sync_interval),
            "storage.sync_interval must be between 1ms and 10s",
        )?;
        check(
            self.wal_segment_bytes >= 1 << 20,
            "storage.wal_segment_bytes must be at least 1MiB",
        )?;
        self.location().map(|_| ())
    }
}

impl CompactionConfig {
    /// # Errors
    /// The first value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        check(
            self.min_files >= 2,
            "compaction.min_files must be at least 2",
        )?;
        check(
            !self.interval.is_zero(),
            "compaction.interval must be positive",
        )
    }

    /// The merge policy, or `None` when compaction is off.
    pub fn policy(&self) -> Option<crate::compaction::CompactionPolicy> {
        self.enabled.then_some(crate::compaction::CompactionPolicy {
            target_file_bytes: self.target_file_bytes as u64,
            min_files: self.min_files,
            close_after: self.close_after,
        })
    }
}

impl QueryConfig {
    /// # Errors
    /// The first value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        check(!self.timeout.is_zero(), "query.timeout must be positive")?;
        check(self.max_rows > 0, "query.max_rows must be positive")?;
        check(
            (1024..=16 << 20).contains(&self.max_sql_bytes),
            "query.max_sql_bytes must be between 1KiB and 16MiB",
        )?;
        check(
            (16..=1024).contains(&self.max_sql_depth),
            "query.max_sql_depth must be between 16 and 1024",
        )?;
        check(
            (1..=256).contains(&self.threads),
            "query.threads must be between 1 and 256",
        )?;
        check(
            self.memory_limit >= 16 << 20,
            "query.memory_limit must be at least 16MiB",
        )?;
        check(
            (1 << 20..=self.memory_limit).contains(&self.max_query_memory_bytes),
            "query.max_query_memory_bytes must be at least 1MiB and at most query.memory_limit",
        )?;
        check(
            self.max_result_bytes >= 1024,
            "query.max_result_bytes must be at least 1KiB",
        )?;
        check(
            (1..=1024).contains(&self.max_running),
            "query.max_running must be between 1 and 1024",
        )?;
        check(
            self.max_queued <= 65_536,
            "query.max_queued must be at most 65536",
        )?;
        check(
            self.max_function_bytes >= 1 << 20,
            "query.max_function_bytes must be at least 1MiB",
        )
    }

    /// The limits every query runs under; spilling under `<data_dir>/spill` (or `spill_dir`).
    pub fn limits(&self, data_dir: &std::path::Path) -> crate::query::QueryLimits {
        crate::query::QueryLimits {
            timeout: self.timeout,
            max_rows: self.max_rows,
            max_result_bytes: self.max_result_bytes,
            memory_bytes: self.memory_limit,
            max_query_memory_bytes: self.max_query_memory_bytes,
            threads: self.threads,
            max_running: self.max_running,
            max_queued: self.max_queued,
            max_function_bytes: self.max_function_bytes,
            spill: (self.max_spill_bytes > 0).then(|| crate::query::Spill {
                dir: self
                    .spill_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("spill")),
                max_bytes: self.max_spill_bytes as u64,
            }),
            sql: crate::query::SqlBounds {
                max_sql_bytes: self.max_sql_bytes,
                max_depth: self.max_sql_depth,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: Option<&str>) -> StorageConfig {
        StorageConfig {
            url: url.map(str::to_string),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn storage_urls_name_a_directory_or_a_bucket_and_nothing_else() {
        assert_eq!(with_url(None).location(), Ok(StorageUrl::Local(None)));
        assert_eq!(
            with_url(Some("file:///var/lib/sightline")).location(),
            Ok(StorageUrl::Local(Some("/var/lib/sightline".into())))
        );
        let mut s3 = with_url(Some("s3://bucket/some/prefix"));
        s3.endpoint = Some("http://127.0.0.1:8333".into());
        s3.access_key_id = Some("k".into());
        s3.secret_access_key = Some("s".into());
        let Ok(StorageUrl::S3(settings)) = s3.location() else {
            panic!("{:?}", s3.location());
        };
        assert_eq!(settings.url, "s3://bucket/some/prefix");
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert!(s3.validate().is_ok());
        let refused = |c: StorageConfig, says: &str| {
            let e = c.validate().expect_err(says);
            assert!(e.contains(says), "{e}");
        };
        refused(with_url(Some("gs://bucket")), "neither s3://");
        refused(with_url(Some("file://relative/dir")), "absolute directory");
        refused(with_url(Some("s3:///prefix")), "names no bucket");
        let mut half = with_url(Some("s3://b"));
        half.access_key_id = Some("k".into());
        refused(half, "go together");
        let mut stray = with_url(None);
        stray.endpoint = Some("http://x".into());
        refused(stray, "need storage.url");
        let mut ftp = with_url(Some("s3://b"));
        ftp.endpoint = Some("ftp://x".into());
        refused(ftp, "http:// or https://");
    }
}
