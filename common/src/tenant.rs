//! Tenant names: who a key, a client certificate and every stored row belong to. A name is
//! also a directory of the data directory (`<data_dir>/<tenant>/…`), so it is checked here,
//! once, before it can name a path.

/// The tenant of a server without keys, of data written before tenants existed, and of keys
/// created without `--tenant`.
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant name.
pub const MAX_TENANT_LEN: usize = 63;

/// Names that are directories of the data directory's own (the default tenant's write-ahead
/// log, alert delivery, query spill files) and so cannot be tenants.
pub const RESERVED_TENANTS: &[&str] = &["wal", "notify", "spill", "keys", "tls"];

/// Checks a tenant name: 1 to 63 lower-case ASCII letters, digits, `-` and `_`, starting
/// with a letter or digit, and not one of [`RESERVED_TENANTS`].
///
/// # Errors
/// What is wrong with the name, for the person who chose it.
pub fn check_tenant(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > MAX_TENANT_LEN {
        return Err(format!(
            "tenant {name:?}: a tenant name has 1 to {MAX_TENANT_LEN} characters"
        ));
    }
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "tenant {name:?}: a tenant name has lower-case letters, digits, '-' and '_', and \
             starts with a letter or digit"
        ));
    }
    if RESERVED_TENANTS.contains(&name) {
        return Err(format!(
            "tenant {name:?}: the name is one of the data directory's own ({})",
            RESERVED_TENANTS.join(", ")
        ));
    }
    Ok(())
}

/// What one tenant may take of the server: its ingest rate, its shares of the memory ceiling,
/// of the query places and of the query memory, the disk its data may fill and how long its
/// data is kept. The shares hold while more than one tenant is open (a server with one tenant
/// gives it all it has); the rates, the stored bytes and the retention always.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    /// Spans, log records and data points per second (0: no limit).
    pub ingest_items_per_second: u64,
    /// Bytes per second, counted decompressed (0: no limit).
    #[serde(deserialize_with = "crate::config::size")]
    pub ingest_bytes_per_second: usize,
    /// How far ahead of its rate a tenant may send: this many seconds of it.
    #[serde(deserialize_with = "crate::config::duration")]
    pub ingest_burst: std::time::Duration,
    /// Most of `limits.max_memory_bytes` the tenant's buffers and requests may hold.
    pub memory_share: f64,
    /// Most of `query.max_running` the tenant's queries may hold at once.
    pub query_share: f64,
    /// Most of `query.memory_limit` the tenant's queries may hold together.
    pub query_memory_share: f64,
    /// Bytes of Parquet files and write-ahead log the tenant's data may fill (0: no limit);
    /// past it the tenant's ingest is refused until retention makes room.
    #[serde(deserialize_with = "crate::config::size")]
    pub max_stored_bytes: usize,
    /// How long the tenant's data is kept, per signal; what it leaves out is `[retention]`'s.
    pub retention: crate::config::RetentionConfig,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            ingest_items_per_second: 200_000,
            ingest_bytes_per_second: 128 << 20,
            ingest_burst: std::time::Duration::from_secs(2),
            memory_share: 0.5,
            query_share: 0.5,
            query_memory_share: 0.5,
            max_stored_bytes: 0,
            retention: crate::config::RetentionConfig::default(),
        }
    }
}

/// One tenant's exceptions to the defaults: what it names replaces the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimitsOverride {
    pub ingest_items_per_second: Option<u64>,
    #[serde(deserialize_with = "crate::config::opt_size")]
    pub ingest_bytes_per_second: Option<usize>,
    #[serde(deserialize_with = "crate::config::opt_duration")]
    pub ingest_burst: Option<std::time::Duration>,
    pub memory_share: Option<f64>,
    pub query_share: Option<f64>,
    pub query_memory_share: Option<f64>,
    #[serde(deserialize_with = "crate::config::opt_size")]
    pub max_stored_bytes: Option<usize>,
    /// Per signal: what it names replaces the default's.
    pub retention: crate::config::RetentionConfig,
}

/// The `[tenants]` section: limits for every tenant, and per tenant.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    /// Most tenants open at once once the server has started (each is a store, a
    /// write-ahead log and tasks of its own): a key or a trusted proxy naming one more is
    /// refused. Those known at start always open.
    pub max_tenants: usize,
    pub defaults: TenantLimits,
    pub overrides: std::collections::BTreeMap<String, TenantLimitsOverride>,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            max_tenants: 256,
            defaults: TenantLimits::default(),
            overrides: std::collections::BTreeMap::new(),
        }
    }
}

impl TenantsConfig {
    /// The limits of `tenant`: its overrides over the defaults.
    pub fn limits(&self, tenant: &str) -> TenantLimits {
        let d = self.defaults;
        let Some(o) = self.overrides.get(tenant) else {
            return d;
        };
        TenantLimits {
            ingest_items_per_second: o
                .ingest_items_per_second
                .unwrap_or(d.ingest_items_per_second),
            ingest_bytes_per_second: o
                .ingest_bytes_per_second
                .unwrap_or(d.ingest_bytes_per_second),
            ingest_burst: o.ingest_burst.unwrap_or(d.ingest_burst),
            memory_share: o.memory_share.unwrap_or(d.memory_share),
            query_share: o.query_share.unwrap_or(d.query_share),
            query_memory_share: o.query_memory_share.unwrap_or(d.query_memory_share),
            max_stored_bytes: o.max_stored_bytes.unwrap_or(d.max_stored_bytes),
            retention: o.retention.or(d.retention),
        }
    }

    /// Checks every tenant's limits and the overrides' names.
    ///
    /// # Errors
    /// The first value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        let check = |key: &str, l: &TenantLimits| {
            for (name, share) in [
                ("memory_share", l.memory_share),
                ("query_share", l.query_share),
                ("query_memory_share", l.query_memory_share),
            ] {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(format!("{key}.{name} must be above 0 and at most 1"));
                }
            }
            if l.ingest_burst < std::time::Duration::from_millis(100) {
                return Err(format!("{key}.ingest_burst must be at least 100ms"));
            }
            l.retention.validate_as(&format!("{key}.retention"))
        };
        if self.max_tenants == 0 {
            return Err("tenants.max_tenants must be at least 1 (the default tenant)".into());
        }
        check("tenants.defaults", &self.defaults)?;
        for tenant in self.overrides.keys() {
            check_tenant(tenant).map_err(|e| format!("tenants.overrides: {e}"))?;
            check(&format!("tenants.overrides.{tenant}"), &self.limits(tenant))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let config: TenantsConfig = serde_json::from_str(
            r#"{"defaults": {"ingest_items_per_second": 1000, "ingest_bytes_per_second": "1MiB"},
                "overrides": {"team-a": {"ingest_items_per_second": 50, "memory_share": 0.25}}}"#,
        )
        .expect("parses");
        let a = config.limits("team-a");
        assert_eq!(a.ingest_items_per_second, 50);
        assert_eq!(a.ingest_bytes_per_second, 1 << 20);
        assert_eq!(a.memory_share, 0.25);
        assert_eq!(a.query_share, TenantLimits::default().query_share);
        assert_eq!(config.limits("team-b").ingest_items_per_second, 1000);
        assert_eq!(config.validate(), Ok(()));
        let bad: TenantsConfig =
            serde_json::from_str(r#"{"overrides": {"Team": {}}}"#).expect("parses");
        assert!(bad.validate().expect_err("bad name").contains("Team"));
        let bad: TenantsConfig =
            serde_json::from_str(r#"{"overrides": {"t": {"memory_share": 1.5}}}"#).expect("parses");
        assert!(
            bad.validate()
                .expect_err("share past 1")
                .contains("tenants.overrides.t.memory_share")
        );
    }

    #[test]
    fn a_tenant_keeps_its_data_as_long_as_its_own_retention_says_signal_by_signal() {
        let hour = std::time::Duration::from_secs(3600);
        let config: TenantsConfig = serde_json::from_str(
            r#"{"defaults": {"retention": {"spans": "7d"}, "max_stored_bytes": "10GiB"},
                "overrides": {"short": {"retention": {"logs": "1h"}, "max_stored_bytes": "1MiB"},
                              "forever": {"retention": {"spans": "0"}}}}"#,
        )
        .expect("parses");
        assert_eq!(config.validate(), Ok(()));
        let short = config.limits("short");
        assert_eq!(
            short.retention.spans,
            Some(168 * hour),
            "the default's spans"
        );
        assert_eq!(short.retention.logs, Some(hour));
        assert_eq!(short.max_stored_bytes, 1 << 20);
        let forever = config.limits("forever");
        assert_eq!(forever.retention.spans, Some(std::time::Duration::ZERO));
        assert_eq!(forever.max_stored_bytes, 10 << 30);
        // What no tenant section names is the process's [retention].
        let process = crate::config::RetentionConfig {
            metrics: Some(30 * 24 * hour),
            spans: Some(hour),
            ..Default::default()
        };
        let merged = short.retention.or(process);
        assert_eq!(merged.metrics, Some(30 * 24 * hour));
        assert_eq!(merged.spans, Some(168 * hour));
        let bad: TenantsConfig =
            serde_json::from_str(r#"{"overrides": {"t": {"retention": {"logs": "10m"}}}}"#)
                .expect("parses");
        assert!(
            bad.validate()
                .expect_err("shorter than an hour")
                .contains("tenants.overrides.t.retention.logs")
        );
    }

    #[test]
    fn names_that_could_leave_their_directory_are_refused() {
        for good in ["default", "team-a", "acme_2", "0"] {
            assert_eq!(check_tenant(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_TENANT_LEN + 1);
        for bad in [
            "", "..", ".", "a/b", "a\\b", "-a", "_a", "Team", "a b", "wal", "notify", "spill", "é",
            "a\0", &long,
        ] {
            assert!(check_tenant(bad).is_err(), "{bad:?} accepted");
        }
    }
}
