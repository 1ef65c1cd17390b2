//! The server's configuration: one TOML file, every key optional, unknown keys rejected with
//! their name, command-line flags and `SIGHTLINE_*` environment variables on top, validated
//! before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
pub use sightline_collector::config::LimitsConfig;
pub use sightline_common::config::parse_duration;
use sightline_common::listener::ConnectionLimits;
pub use sightline_slo::config::SloConfig;
pub use sightline_store::config::{CompactionConfig, QueryConfig, RetentionConfig, StorageConfig};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where Parquet files (and later the WAL) live.
    pub data_dir: PathBuf,
    pub listen: ListenConfig,
    /// TLS on every listener (off unless `tls.cert_file` is set).
    pub tls: sightline_common::tls::TlsConfig,
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
    /// What each tenant may take: its ingest rate, shares of memory and queries.
    pub tenants: sightline_common::tenant::TenantsConfig,
    /// Gateways whose `X-Scope-OrgID` names a request's tenant.
    pub trusted_proxy: sightline_common::proxy::TrustedProxyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: ListenConfig::default(),
            tls: Default::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            query: QueryConfig::default(),
            log: LogConfig::default(),
            compaction: CompactionConfig::default(),
            retention: RetentionConfig::default(),
            slo: SloConfig::default(),
            notify: Default::default(),
            maintenance: Vec::new(),
            tenants: Default::default(),
            trusted_proxy: Default::default(),
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
    /// Connections open at once on each listener.
    pub max_connections: usize,
    /// Connections open at once from one client address, on each listener.
    pub max_connections_per_client: usize,
    /// Time an HTTP client has to send a request's headers (and longest idle wait between
    /// requests on an HTTP/1 connection).
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub header_read_timeout: std::time::Duration,
    /// A connection that carries no byte for this long is closed (HTTP/2 and gRPC included).
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub idle_timeout: std::time::Duration,
    /// Largest request head (request line and headers; gRPC: header list).
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_header_bytes: usize,
    /// Host names the UI and API answer to, besides `localhost`, IP addresses and the host of
    /// `notify.external_url` (a guard against DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Listen beyond loopback although no API key is configured (anyone reaching a port may
    /// send, read and silence). Off: such a server refuses to start.
    pub insecure_allow_open_network: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        let limits = ConnectionLimits::default();
        Self {
            // Loopback until keys are configured (see `insecure_allow_open_network`).
            otlp_grpc: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http: SocketAddr::from(([127, 0, 0, 1], 4318)),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: limits.max_connections,
            max_connections_per_client: limits.max_connections_per_client,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            max_header_bytes: limits.max_header_bytes,
            allowed_hosts: Vec::new(),
            insecure_allow_open_network: false,
        }
    }
}

impl ListenConfig {
    /// What each listener allows.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_header_bytes: self.max_header_bytes,
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

    /// Checks values that parse but make no sense: each section by its crate, then how the
    /// sections relate.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir must not be empty");
        }
        let sections = [
            self.listen.connection_limits().validate("listen"),
            self.tls.validate(),
            self.storage.validate(),
            self.limits.validate(),
            self.query.validate(),
            self.compaction.validate(),
            self.retention.validate(),
            self.slo.validate(),
            self.notify.validate().map_err(|e| e.to_string()),
            self.tenants.validate(),
            self.trusted_proxy.compile().map(|_| ()),
        ];
        for s in sections {
            s.map_err(anyhow::Error::msg)?;
        }
        if self.limits.max_memory_bytes < 2 * self.storage.flush_max_bytes {
            bail!(
                "limits.max_memory_bytes must be at least twice storage.flush_max_bytes, or \
                 buffers would be refused before they are flushed"
            );
        }
        if self.limits.max_resident_bytes != 0
            && self.limits.max_memory_bytes + self.query.memory_limit + (64 << 20)
                > self.limits.max_resident_bytes
        {
            bail!(
                "limits.max_memory_bytes + query.memory_limit + 64MiB must fit in \
                 limits.max_resident_bytes: ingest and queries each get their own memory, and \
                 the process needs room of its own"
            );
        }
        let tenants = std::iter::once(("tenants.defaults".to_string(), self.tenants.defaults))
            .chain(
                self.tenants
                    .overrides
                    .keys()
                    .map(|t| (format!("tenants.overrides.{t}"), self.tenants.limits(t))),
            );
        for (key, l) in tenants {
            if (self.limits.max_memory_bytes as f64 * l.memory_share)
                < self.limits.max_decoded_bytes as f64
            {
                bail!(
                    "{key}.memory_share of limits.max_memory_bytes must hold at least one \
                     request of limits.max_decoded_bytes, or the tenant's largest requests \
                     would be refused for ever"
                );
            }
        }
        if (self.limits.max_wal_bytes as u64) < 2 * self.storage.wal_segment_bytes as u64 {
            bail!("limits.max_wal_bytes must be at least twice storage.wal_segment_bytes");
        }
        let mut names = std::collections::BTreeSet::new();
        for m in &self.maintenance {
            m.compile().map_err(|e| anyhow::anyhow!(e))?;
            if !names.insert(&m.name) {
                bail!("maintenance window {:?} is defined twice", m.name);
            }
        }
        Ok(())
    }

    /// The store's settings for this config.
    pub fn store(&self) -> sightline_store::StoreConfig {
        sightline_store::StoreConfig {
            data_dir: self.data_dir.clone(),
            // The tenants' stores share one, made when the server starts (Tenants::new).
            storage: None,
            tenant: "default".into(),
            flush_interval: self.storage.flush_interval,
            flush_max_bytes: self.storage.flush_max_bytes,
            durability: self.storage.durability(),
            wal_segment_bytes: self.storage.wal_segment_bytes as u64,
            compaction: self.compaction.policy(),
            maintenance_interval: self.compaction.interval,
            retention: sightline_store::config::retention_by_table(&self.retention),
            // Replaced files stay for queries planned before the swap.
            file_grace: self.query.timeout + std::time::Duration::from_secs(30),
            max_resident_bytes: (self.limits.max_resident_bytes > 0)
                .then_some(self.limits.max_resident_bytes as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_shipped_example_parses_and_validates() {
        let text = include_str!("../sightline.example.toml");
        let c = Config::from_toml(text).expect("example parses");
        c.validate().expect("example is valid");
        assert_eq!(c.listen.otlp_grpc.port(), 4317);
        assert_eq!(c.storage.flush_max_bytes, 64 << 20);
    }

    #[test]
    fn the_tls_examples_parse_and_validate() {
        let doc = include_str!("../docs/security.md");
        let c = Config::from_toml(toml_block(doc, "[[tls.clients]]"))
            .expect("the security.md example parses");
        c.validate().expect("and is valid");
        assert_eq!(c.tls.clients[0].roles, ["ingest"]);
        // The example config's commented section, uncommented.
        let example = include_str!("../sightline.example.toml");
        let tls: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# [tls]"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let c = Config::from_toml(&tls).expect("the example's [tls] parses");
        c.validate().expect("and is valid");
        assert!(c.tls.enabled());
        assert_eq!(c.tls.handshake_timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_example_configs_commented_trusted_proxy_is_valid() {
        let example = include_str!("../sightline.example.toml");
        let section: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# [trusted_proxy]"))
            .take_while(|l| l.starts_with('#'))
            .filter(|l| !l.starts_with("# A ") && !l.starts_with("# from "))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let c = Config::from_toml(&section).expect("the example's [trusted_proxy] parses");
        c.validate().expect("and is valid");
        assert_eq!(c.trusted_proxy.addresses.len(), 2);
    }

    #[test]
    fn the_tenant_limits_example_parses_and_small_memory_shares_are_refused() {
        let doc = include_str!("../docs/security.md");
        let c = Config::from_toml(toml_block(doc, "[tenants.defaults]"))
            .expect("the [tenants] example parses");
        c.validate().expect("and is valid");
        assert_eq!(
            c.tenants.limits("team-a").max_stored_bytes,
            50 << 30,
            "the example's override"
        );
        assert_eq!(c.tenants.limits("team-a").ingest_items_per_second, 5000);
        assert_eq!(c.tenants.limits("team-a").memory_share, 0.5);
        assert_eq!(c.tenants.limits("team-b").ingest_items_per_second, 200_000);
        let c = Config::from_toml(
            "[limits]\nmax_memory_bytes = \"256MiB\"\n\
             [tenants.overrides.tiny]\nmemory_share = 0.1\n",
        )
        .expect("parses");
        let err = c
            .validate()
            .expect_err("25 MiB cannot hold a 64 MiB request");
        assert!(
            err.to_string()
                .contains("tenants.overrides.tiny.memory_share"),
            "{err}"
        );
    }

    /// The ```toml block of `doc` that contains `marker`.
    fn toml_block<'a>(doc: &'a str, marker: &str) -> &'a str {
        doc.split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains(marker))
            .unwrap_or_else(|| panic!("no toml block with {marker}"))
    }

    #[test]
    fn the_trusted_proxy_example_parses_and_bad_addresses_are_refused() {
        let doc = include_str!("../docs/security.md");
        let c = Config::from_toml(toml_block(doc, "[trusted_proxy]")).expect("parses");
        c.validate().expect("and is valid");
        let proxy = c.trusted_proxy.compile().expect("valid").expect("on");
        assert!(proxy.trusts("10.0.1.200".parse().expect("address")));
        assert!(!proxy.trusts("10.0.0.8".parse().expect("address")));
        let c = Config::from_toml("[trusted_proxy]\naddresses = [\"gateway.local\"]\n")
            .expect("parses");
        let err = c.validate().expect_err("a name is no address");
        assert!(err.to_string().contains("gateway.local"), "{err}");
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
        let r = sightline_store::config::retention_by_table(&c.retention);
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
