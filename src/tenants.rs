//! Every tenant's parts, kept apart: a tenant is a store of its own (`<data_dir>/<tenant>/`,
//! its own write-ahead log and buffers), a query engine over only that store, an SLO engine
//! over its specs (`<slo.dir>/<tenant>/` for tenants other than the default), alert delivery
//! with its own silences and outbox, and its audit. The default tenant is opened at start
//! with the tenants of every key and client certificate and those found on disk; a tenant
//! whose first key is created while the server runs is opened at its first request.
//!
//! Each tenant's long-running tasks (flusher, compaction, audit writer, SLO engine, alert
//! delivery) are owned here; one that stops before shutdown is reported through
//! [`Tenants::stopped`], which stops the server like any other part.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use prometheus_client::registry::Registry;
use sightline_common::tenant::{DEFAULT_TENANT, check_tenant};
use sightline_slo::SystemClock;
use sightline_store::Store;
use sightline_store::audit::AuditLog;
use sightline_store::directory::{StoreDirectory, StoreFuture};
use sightline_store::query::{QueryShared, TenantShare};
use sightline_ui::tenant::TenantFuture;
use sightline_ui::{MetricsSource, TenantApi, TenantDirectory};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Every tenant's parts, opened once each.
#[derive(Debug)]
pub struct Tenants {
    config: Arc<Config>,
    /// Where notifications link to (`http(s)://host:port`).
    link: String,
    /// Opened tenants, for the fast path of every request.
    open: RwLock<BTreeMap<String, Arc<TenantApi>>>,
    /// Held while a tenant is being opened: one opening at a time, never twice the same.
    opening: tokio::sync::Mutex<()>,
    /// Metrics of the tenants other than the default (whose are in the server's registry).
    registries: RwLock<Vec<(String, Arc<Registry>)>>,
    tasks: Mutex<JoinSet<()>>,
    stopped_tx: tokio::sync::mpsc::UnboundedSender<String>,
    stopped_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
    stop: CancellationToken,
    /// The query places, memory and spill space of every tenant's engine.
    query: QueryShared,
    /// Where every tenant's Parquet files are (`storage.url`; the data directory by default).
    storage: sightline_store::storage::Storage,
    /// Set once the tenants known at start are open: from then on `tenants.max_tenants`
    /// bounds the tenants open (those known at start always open, however many).
    capped: std::sync::atomic::AtomicBool,
}

impl Tenants {
    /// # Errors
    /// When the query spill directory cannot be made.
    pub fn new(config: Arc<Config>, link: String) -> anyhow::Result<Arc<Self>> {
        let (stopped_tx, stopped_rx) = tokio::sync::mpsc::unbounded_channel();
        let query = QueryShared::new(&config.query.limits(&config.data_dir))
            .context("cannot start the query engine")?;
        let storage = config
            .storage
            .open(&config.data_dir)
            .context("cannot open the storage (storage.url)")?;
        Ok(Arc::new(Self {
            query,
            storage,
            config,
            link,
            open: RwLock::default(),
            opening: tokio::sync::Mutex::new(()),
            registries: RwLock::default(),
            tasks: Mutex::default(),
            stopped_tx,
            stopped_rx: tokio::sync::Mutex::new(stopped_rx),
            stop: CancellationToken::new(),
            capped: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Where every tenant's Parquet files are.
    pub fn storage(&self) -> &sightline_store::storage::Storage {
        &self.storage
    }

    fn opened(&self, name: &str) -> Option<Arc<TenantApi>> {
        self.open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every tenant opened so far.
    pub fn all(&self) -> Vec<Arc<TenantApi>> {
        self.open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The tenant's parts, opened now if need be; the default tenant's metrics go into
    /// `registry` when given (at start), any other's into a registry of its own.
    ///
    /// # Errors
    /// A name that cannot be a tenant, or a part that cannot start (the store, invalid SLO
    /// specs, alert delivery).
    pub async fn open(
        self: &Arc<Self>,
        name: &str,
        registry: Option<&mut Registry>,
    ) -> anyhow::Result<Arc<TenantApi>> {
        if let Some(t) = self.opened(name) {
            return Ok(t);
        }
        check_tenant(name).map_err(anyhow::Error::msg)?;
        let _one_at_a_time = self.opening.lock().await;
        if let Some(t) = self.opened(name) {
            return Ok(t);
        }
        if self.stop.is_cancelled() {
            anyhow::bail!("the server is stopping");
        }
        let max = self.config.tenants.max_tenants;
        if self.capped.load(std::sync::atomic::Ordering::Acquire)
            && self.open.read().unwrap_or_else(|e| e.into_inner()).len() >= max
        {
            anyhow::bail!("{max} tenants are open already (tenants.max_tenants)");
        }
        let mut own = Registry::default();
        let is_default = name == DEFAULT_TENANT;
        let registry = match registry {
            Some(r) => r,
            None => &mut own,
        };
        let (api, tasks) = self
            .start(name, registry)
            .await
            .with_context(|| format!("cannot open tenant {name:?}"))?;
        if !is_default {
            self.registries
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push((name.to_string(), Arc::new(own)));
        }
        for (part, task) in tasks {
            let (done, tenant) = (self.stopped_tx.clone(), name.to_string());
            self.spawn(async move {
                task.await;
                let _ = done.send(format!("{part} of tenant {tenant}"));
            });
        }
        self.open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), api.clone());
        tracing::info!(tenant = name, "tenant opened");
        Ok(api)
    }

    /// The tenants known at start are open: from now on `tenants.max_tenants` holds.
    pub fn cap_from_now(&self) {
        self.capped
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Runs `task` as one of the tenants' tasks (awaited when the server stops).
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(task);
    }

    /// Opens a tenant's parts and returns its long-running tasks (not yet spawned).
    async fn start(
        &self,
        name: &str,
        registry: &mut Registry,
    ) -> anyhow::Result<(Arc<TenantApi>, Vec<(&'static str, Task)>)> {
        let config = &self.config;
        let is_default = name == DEFAULT_TENANT;
        let share = config.tenants.limits(name);
        let mut store_config = config.store();
        store_config.tenant = name.to_string();
        store_config.storage = Some(self.storage.clone());
        store_config.retention =
            sightline_store::config::retention_by_table(&share.retention.or(config.retention));
        let store = Store::open(store_config, registry).await.with_context(|| {
            format!(
                "cannot open the store in {} (files in {})",
                config.data_dir.display(),
                self.storage.location()
            )
        })?;
        let engine = store
            .query_engine_in(
                config.query.limits(&config.data_dir),
                &self.query,
                TenantShare {
                    tenant: name,
                    places: share.query_share,
                    memory: share.query_memory_share,
                },
            )
            .await
            .context("cannot start the query engine")?;
        // SLOs: loaded, compiled and backfilled before the tenant's events are counted live.
        let slo_dir = self.slo_dir(name);
        let specs = match &slo_dir {
            Some(dir) if dir.is_dir() || is_default => sightline_slo::engine::load_dir(dir)
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "invalid SLO specs in {}:\n{}",
                        dir.display(),
                        errors
                            .iter()
                            .map(|e| format!("  {e}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })?,
            _ => Vec::new(),
        };
        let slo_count = specs.len();
        // Maintenance windows are the operator's: they apply to the default tenant.
        let maintenance = if is_default {
            config
                .maintenance
                .iter()
                .map(|m| m.compile())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!(e))?
        } else {
            Vec::new()
        };
        let slos = sightline_slo::Engine::open_with_maintenance(
            store.clone(),
            &engine.for_internal_readers(),
            specs,
            Arc::new(SystemClock),
            registry,
            maintenance.clone(),
        )
        .await
        .context("cannot start the SLO engine")?;
        tracing::info!(tenant = name, slos = slo_count, "SLO engine started");
        let (audit, audit_writer) = AuditLog::new(store.clone(), registry);
        let notify_dir = if is_default {
            config.data_dir.join("notify")
        } else {
            config.data_dir.join(name).join("_notify")
        };
        let notifier = sightline_notify::Notifier::open(
            &config.notify,
            name,
            &notify_dir,
            &self.link,
            store.clone(),
            slos.clone(),
            maintenance,
            Arc::new(SystemClock),
            registry,
        )
        .map_err(|e| anyhow::anyhow!("cannot start alert delivery: {e}"))?;

        let stop = || self.stop.clone().cancelled_owned();
        let tasks: Vec<(&'static str, Task)> = vec![
            ("the flusher", Box::pin(store.clone().run_flusher(stop()))),
            ("the audit writer", Box::pin(audit_writer.run(stop()))),
            (
                "compaction and retention",
                Box::pin(store.clone().run_maintenance(stop())),
            ),
            (
                "the SLO engine",
                Box::pin(slos.clone().run(config.slo.tick, slo_dir, stop())),
            ),
            ("alert delivery", Box::pin(notifier.clone().run(stop()))),
        ];
        let api = Arc::new(TenantApi {
            name: name.to_string(),
            store,
            engine: Arc::new(engine),
            slos: Some(slos),
            notify: Some(notifier),
            audit: Some(audit),
        });
        Ok((api, tasks))
    }

    /// Where a tenant's SLO specs are: `slo.dir` for the default tenant, `<slo.dir>/<tenant>/`
    /// for any other.
    fn slo_dir(&self, name: &str) -> Option<PathBuf> {
        let dir = self.config.slo.dir.as_ref()?;
        Some(if name == DEFAULT_TENANT {
            dir.clone()
        } else {
            dir.join(name)
        })
    }

    /// The first tenant part that stopped before shutdown.
    pub async fn stopped(&self) -> String {
        let mut rx = self.stopped_rx.lock().await;
        rx.recv()
            .await
            .unwrap_or_else(|| "the tenants' tasks".to_string())
    }

    /// Stops every tenant's tasks (they finish what they do), then flushes and closes every
    /// store. Returns the files written per tenant, or the first failure.
    pub async fn stop(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        self.stop.cancel();
        let _no_more_openings = self.opening.lock().await;
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a tenant's task failed while stopping");
            }
        }
        let mut files = BTreeMap::new();
        let mut failure = None;
        for t in self.all() {
            match t.store.close().await {
                Ok(report) => {
                    files.insert(t.name.clone(), report.values().sum());
                }
                Err(e) => {
                    tracing::error!(tenant = %t.name, error = %e, "final flush failed");
                    failure.get_or_insert(anyhow::anyhow!(
                        "final flush of tenant {} failed: {e}",
                        t.name
                    ));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(files),
        }
    }
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The receivers' view: a tenant's store, opened at its first request.
#[derive(Debug, Clone)]
pub struct Directory(pub Arc<Tenants>);

impl StoreDirectory for Directory {
    fn store<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a> {
        Box::pin(async move {
            self.0
                .open(tenant, None)
                .await
                .map(|t| t.store.clone())
                .map_err(|e| sightline_store::StoreError::Tenant(format!("{e:#}")))
        })
    }

    fn open_stores(&self) -> Vec<Arc<Store>> {
        self.0.all().iter().map(|t| t.store.clone()).collect()
    }

    fn open_store(&self, tenant: &str) -> Option<Arc<Store>> {
        self.0.opened(tenant).map(|t| t.store.clone())
    }

    fn open_count(&self) -> usize {
        self.0.open.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl TenantDirectory for Directory {
    fn tenant<'a>(&'a self, name: &'a str) -> TenantFuture<'a> {
        Box::pin(async move {
            self.0.open(name, None).await.map_err(|e| {
                tracing::error!(tenant = name, error = %format!("{e:#}"), "cannot open a tenant");
                format!("tenant {name:?} cannot be served now")
            })
        })
    }
}

/// Audit events go to their tenant's audit (opened first if need be).
#[derive(Debug, Clone)]
pub struct AuditRouter(pub Arc<Tenants>);

impl sightline_common::auth::AuditSink for AuditRouter {
    fn record(&self, event: sightline_common::auth::AuditEvent) {
        if let Some(audit) = self.0.opened(&event.tenant).and_then(|t| t.audit.clone()) {
            audit.record(event);
            return;
        }
        let tenants = self.0.clone();
        self.0.spawn(async move {
            match tenants.open(&event.tenant, None).await {
                Ok(t) => {
                    if let Some(audit) = &t.audit {
                        audit.record(event);
                    }
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "an audit event has no tenant to go to"),
            }
        });
    }
}

/// `/metrics`: the server's registry (process-wide metrics and the default tenant's) and
/// every other tenant's, whose series carry `tenant="…"`.
#[derive(Debug)]
pub struct Metrics {
    pub main: Registry,
    pub tenants: Arc<Tenants>,
}

impl MetricsSource for Metrics {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let main = self.main.encode()?;
        let registries = self
            .tenants
            .registries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut others = Vec::new();
        for (tenant, r) in registries {
            others.push((tenant, r.encode()?));
        }
        Ok(merge_metrics(&main, &others))
    }
}

/// Merges OpenMetrics texts into one: each family described once, with the samples of
/// `others` labelled with their tenant after the main text's own.
pub fn merge_metrics(main: &str, others: &[(String, String)]) -> String {
    struct Family {
        /// Which text described it first: only that text's descriptors are kept.
        origin: usize,
        descriptors: Vec<String>,
        samples: Vec<String>,
    }
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut add = |origin: usize, text: &str, tenant: Option<&str>| {
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let name = rest.split(' ').nth(1).unwrap_or_default().to_string();
                let family = families.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    Family {
                        origin,
                        descriptors: Vec::new(),
                        samples: Vec::new(),
                    }
                });
                // A family registered more than once (one per listener, each with its own
                // label) is described as often; OpenMetrics allows one description.
                if family.origin == origin && !family.descriptors.iter().any(|d| d == line) {
                    family.descriptors.push(line.to_string());
                }
                current = Some(name);
                continue;
            }
            let Some(family) = current.as_ref().and_then(|n| families.get_mut(n)) else {
                continue;
            };
            family.samples.push(match tenant {
                None => line.to_string(),
                Some(t) => with_tenant_label(line, t),
            });
        }
    };
    add(0, main, None);
    for (i, (tenant, text)) in others.iter().enumerate() {
        add(i + 1, text, Some(tenant));
    }
    let mut out = String::new();
    for name in order {
        if let Some(f) = families.get(&name) {
            for l in f.descriptors.iter().chain(&f.samples) {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// `name{a="b"} 1` → `name{tenant="t",a="b"} 1`; `name 1` → `name{tenant="t"} 1`.
fn with_tenant_label(sample: &str, tenant: &str) -> String {
    let name_end = sample.find([' ', '{']).unwrap_or(sample.len());
    let (name, rest) = sample.split_at(name_end);
    match rest.strip_prefix('{') {
        Some(labels) if labels.starts_with('}') => format!("{name}{{tenant=\"{tenant}\"{labels}"),
        Some(labels) => format!("{name}{{tenant=\"{tenant}\",{labels}"),
        None => format!("{name}{{tenant=\"{tenant}\"}}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_metrics_join_the_families_of_the_server_with_a_tenant_label() {
        let main = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n\
                    # HELP b B.\n# TYPE b gauge\nb{table=\"spans\"} 2\n\
                    # HELP b B.\n# TYPE b gauge\nb{table=\"logs\"} 4\n# EOF\n";
        let other = "# HELP a_total A.\n# TYPE a_total counter\na_total 5\n\
                     # HELP b B.\n# TYPE b gauge\nb{table=\"spans\"} 7\nb{} 0\n\
                     # HELP c C.\n# TYPE c gauge\nc 3\n# EOF\n";
        let merged = merge_metrics(main, &[("team-a".into(), other.into())]);
        assert_eq!(
            merged,
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total{tenant=\"team-a\"} 5\n\
             # HELP b B.\n# TYPE b gauge\nb{table=\"spans\"} 2\nb{table=\"logs\"} 4\n\
             b{tenant=\"team-a\",table=\"spans\"} 7\n\
             b{tenant=\"team-a\"} 0\n\
             # HELP c C.\n# TYPE c gauge\nc{tenant=\"team-a\"} 3\n# EOF\n"
        );
    }
}
