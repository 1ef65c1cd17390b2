//! Where files live. Every path of the store is built and parsed here, nowhere else.
//!
//! Layout (Hive-style, readable by DuckDB, Spark, Trino, pyarrow):
//! `<root>/<tenant>/<table>/date=YYYY-MM-DD/hour=HH/<min_ns>_<max_ns>_<wal_seq>_<id>.parquet`
//!
//! A file's name carries the time range of its rows (pruning without reading footers) and the
//! highest WAL sequence number of the writes it holds. Each tenant has a write-ahead log of its
//! own: the default tenant's is `<root>/wal/` (where it was before there were tenants), any
//! other's `<root>/<tenant>/_wal/` (a name no table has). `<table>/_watermark` holds the
//! highest sequence number whose rows are all in Parquet.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::schema::Table;

pub const PARQUET_EXT: &str = "parquet";
pub const TMP_EXT: &str = "tmp";
const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// The hour bucket (hours since the epoch) of a nanosecond timestamp.
pub fn hour_of(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(NANOS_PER_HOUR)
}

/// Directory of a table for a tenant.
pub fn table_dir(root: &Path, tenant: &str, table: Table) -> PathBuf {
    root.join(tenant).join(table.name())
}

/// Directory of the hourly partition `hour` (hours since the epoch) of a table.
pub fn partition_dir(table_dir: &Path, hour: i64) -> PathBuf {
    let (date, hour) = partition_parts(hour);
    table_dir.join(date).join(hour)
}

pub const WATERMARK_FILE: &str = "_watermark";

/// A tenant's write-ahead log directory.
pub fn wal_dir(root: &Path, tenant: &str) -> PathBuf {
    if tenant == sightline_common::tenant::DEFAULT_TENANT {
        root.join("wal")
    } else {
        root.join(tenant).join("_wal")
    }
}

/// Where a tenant's store keeps its lock file: the default tenant's is the data directory's
/// (so two processes never share one), any other's its own directory.
pub fn lock_dir(root: &Path, tenant: &str) -> PathBuf {
    if tenant == sightline_common::tenant::DEFAULT_TENANT {
        root.to_path_buf()
    } else {
        root.join(tenant)
    }
}

/// The tenants with data under `root`: directories with a valid tenant name that hold at
/// least one table directory or a write-ahead log.
pub fn tenants_on_disk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if sightline_common::tenant::check_tenant(&name).is_err() || !entry.path().is_dir() {
            continue;
        }
        let holds_data = Table::ALL
            .iter()
            .any(|t| table_dir(root, &name, *t).is_dir())
            || wal_dir(root, &name).is_dir();
        if holds_data {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// The tenants with files in an object storage that is not the data directory (whose are
/// [`tenants_on_disk`]): the names at its root that are tenant names.
///
/// # Errors
/// When the storage cannot be listed.
pub async fn tenants_in_storage(storage: &crate::storage::Storage) -> crate::Result<Vec<String>> {
    if storage.local_root().is_some() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = storage
        .children(None)
        .await?
        .into_iter()
        .filter(|n| sightline_common::tenant::check_tenant(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// What a data file's name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileNameInfo {
    pub min_time: i64,
    pub max_time: i64,
    pub wal_seq: u64,
}

/// File name for a data file covering `[min_ns, max_ns]` with writes up to `wal_seq`; `id`
/// makes it unique.
pub fn data_file_name(min_ns: i64, max_ns: i64, wal_seq: u64, id: &str) -> String {
    format!("{min_ns}_{max_ns}_{wal_seq}_{id}.{PARQUET_EXT}")
}

/// Parses a data file's name, if it is one of ours.
pub fn parse_data_file_name(name: &str) -> Option<FileNameInfo> {
    let stem = name.strip_suffix(&format!(".{PARQUET_EXT}"))?;
    let mut parts = stem.splitn(4, '_');
    let min_time = parts.next()?.parse().ok()?;
    let max_time = parts.next()?.parse().ok()?;
    let wal_seq = parts.next()?.parse().ok()?;
    parts.next().filter(|id| !id.is_empty())?;
    Some(FileNameInfo {
        min_time,
        max_time,
        wal_seq,
    })
}

/// Parses `date=YYYY-MM-DD/hour=HH` directory names back into an hour bucket.
pub fn parse_partition(date_dir: &str, hour_dir: &str) -> Option<i64> {
    let date = date_dir.strip_prefix("date=")?;
    let hour: u32 = hour_dir.strip_prefix("hour=")?.parse().ok()?;
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let t = day.and_hms_opt(hour, 0, 0)?.and_utc();
    Some(t.timestamp().div_euclid(3600))
}

/// The same layout in an object store: paths relative to the store's root (a bucket and
/// prefix, or the data directory), `/`-separated, each part of them as the directories
/// above name it — so a data directory served through `object_store`'s local file system
/// holds exactly the files it holds today.
pub mod object {
    use object_store::path::Path as ObjectPath;

    use super::FileNameInfo;
    use crate::schema::Table;

    /// Where a tenant's table is: `<tenant>/<table>`.
    pub fn table_prefix(tenant: &str, table: Table) -> ObjectPath {
        ObjectPath::from_iter([tenant, table.name()])
    }

    /// Where an hour of a table is: `<tenant>/<table>/date=YYYY-MM-DD/hour=HH`.
    pub fn partition_prefix(tenant: &str, table: Table, hour: i64) -> ObjectPath {
        let (date, hour) = super::partition_parts(hour);
        table_prefix(tenant, table).join(date).join(hour)
    }

    /// A data file of an hour (`name` from [`super::data_file_name`]).
    pub fn data_file(tenant: &str, table: Table, hour: i64, name: &str) -> ObjectPath {
        partition_prefix(tenant, table, hour).join(name)
    }

    /// A table's watermark (the highest WAL sequence number all in Parquet).
    pub fn watermark(tenant: &str, table: Table) -> ObjectPath {
        table_prefix(tenant, table).join(super::WATERMARK_FILE)
    }

    /// What a data file's path says: its tenant, table, hour and name's facts; `None` for
    /// anything that is not a data file of ours (a watermark, a temporary file, a path of
    /// another layout).
    pub fn parse_data_file(path: &ObjectPath) -> Option<(String, Table, i64, FileNameInfo)> {
        let parts: Vec<_> = path.parts().collect();
        let [tenant, table, date, hour, name] = parts.as_slice() else {
            return None;
        };
        let table = Table::ALL
            .iter()
            .copied()
            .find(|t| t.name() == table.as_ref())?;
        sightline_common::tenant::check_tenant(tenant.as_ref()).ok()?;
        let hour = super::parse_partition(date.as_ref(), hour.as_ref())?;
        let info = super::parse_data_file_name(name.as_ref())?;
        Some((tenant.as_ref().to_string(), table, hour, info))
    }
}

/// The directory names of an hour: `date=YYYY-MM-DD` and `hour=HH`.
fn partition_parts(hour: i64) -> (String, String) {
    let t: DateTime<Utc> = DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
    (
        format!("date={:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
        format!("hour={:02}", t.hour()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_the_directories_relative_to_the_root() {
        let hour = hour_of(1_764_318_000_123_456_789);
        let name = data_file_name(1, 2, 3, "ab");
        for tenant in ["default", "team-a"] {
            for table in Table::ALL {
                let dir = partition_dir(&table_dir(Path::new(""), tenant, table), hour).join(&name);
                let object = object::data_file(tenant, table, hour, &name);
                assert_eq!(object.as_ref(), dir.to_str().expect("text"));
                assert_eq!(
                    object::parse_data_file(&object),
                    Some((
                        tenant.to_string(),
                        table,
                        hour,
                        FileNameInfo {
                            min_time: 1,
                            max_time: 2,
                            wal_seq: 3
                        }
                    ))
                );
            }
        }
        assert_eq!(
            object::watermark("default", Table::Spans).as_ref(),
            "default/spans/_watermark"
        );
        for other in [
            "default/spans/_watermark",
            "default/spans/date=2025-11-28/hour=08/1_2_3_ab.parquet.tmp",
            "default/nope/date=2025-11-28/hour=08/1_2_3_ab.parquet",
            "Team/spans/date=2025-11-28/hour=08/1_2_3_ab.parquet",
            "default/spans/date=2025-11-28/hour=24/1_2_3_ab.parquet",
            "x/default/spans/date=2025-11-28/hour=08/1_2_3_ab.parquet",
        ] {
            assert_eq!(
                object::parse_data_file(&object_store::path::Path::from(other)),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn partition_dir_round_trips() {
        let ts = 1_764_318_000_123_456_789_i64; // 2025-11-28T08:20:00.123Z
        let h = hour_of(ts);
        let dir = partition_dir(Path::new("/d/default/spans"), h);
        assert_eq!(dir, Path::new("/d/default/spans/date=2025-11-28/hour=08"));
        assert_eq!(parse_partition("date=2025-11-28", "hour=08"), Some(h));
    }

    #[test]
    fn negative_times_fall_in_the_hour_before_the_epoch() {
        assert_eq!(hour_of(-1), -1);
        let dir = partition_dir(Path::new("t"), -1);
        assert_eq!(dir, Path::new("t/date=1969-12-31/hour=23"));
    }

    #[test]
    fn data_file_names_round_trip() {
        let name = data_file_name(-5, 99, 42, "0001_ab");
        assert_eq!(
            parse_data_file_name(&name),
            Some(FileNameInfo {
                min_time: -5,
                max_time: 99,
                wal_seq: 42
            })
        );
        assert_eq!(parse_data_file_name("x.parquet"), None);
        assert_eq!(parse_data_file_name("1_2_3_x.parquet.tmp"), None);
        assert_eq!(parse_data_file_name("1_2_3_.parquet"), None);
    }
}
