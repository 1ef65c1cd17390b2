//! The SLO engine: keeps every SLO's counts in memory (fed by live counting, loaded from
//! `slo_counts` at start, backfilled from stored events for new or changed SLOs), evaluates
//! budgets, burn rates and alert rules on a tick, and records alert transitions.
//!
//! - `entry`: one SLO in memory (counts per group, timeslice verdicts, alerts);
//! - `live`: counting every write as it is stored;
//! - `reload`: a new set of SLOs — what is kept, loaded or backfilled;
//! - `backfill`: counting stored events for a new generation, with the live counter's
//!   expressions;
//! - `queries`: the engine's own SQL and the `slo_alerts` rows it writes;
//! - `state`: what the engine tells about its SLOs (status, alerts, history);
//! - `spec_dir`: the spec files and their changes.

mod backfill;
mod entry;
mod live;
mod queries;
mod reload;
mod spec_dir;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use serde::Serialize;
use sightline_common::clock::{Clock, Nanos};
use sightline_store::Store;
use sightline_store::query::QueryEngine;
use sightline_store::schema::Table;

use crate::alert::{self, Alert, Rule, State, Transition};
use crate::counter::CompiledSlo;
use crate::maintenance::MaintenanceWindow;
use crate::metrics::{BurnLabel, SloLabel, SloMetrics, StateLabel};
use crate::rollup::Series;
use crate::spec::SpecError;
use crate::status;
use entry::{Entry, keep, overall_status};
pub use spec_dir::load_dir;
pub use state::{FiringAlert, History, HistoryPoint, MAX_HISTORY_POINTS, SloState};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid SLO specs:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<SpecError>),
    #[error("reading stored SLO data: {0}")]
    Query(String),
    #[error("storing SLO data: {0}")]
    Store(String),
}

/// How long the engine's own reads may take (a backfill reads up to the longest window of
/// stored events).
const QUERY_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) struct Inner {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    query: QueryEngine,
    /// What live counting counts (read on every write).
    active: std::sync::RwLock<Arc<Vec<Arc<CompiledSlo>>>>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Serialises ticks and reloads.
    busy: tokio::sync::Mutex<()>,
    transitions: tokio::sync::broadcast::Sender<Transition>,
    metrics: SloMetrics,
    /// Windows whose minutes SLOs with `exclude_maintenance` leave out of their counts.
    maintenance: Vec<MaintenanceWindow>,
    /// Ticks done since start (alerts restored at start have no observation before one).
    ticks: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SloEngine").finish_non_exhaustive()
    }
}

impl Inner {
    /// Every batch of the answer to one of the engine's queries (no row limit; on the query
    /// runtime, within [`QUERY_TIMEOUT`]).
    async fn batches(&self, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
        let fail =
            |e: sightline_store::query::QueryError| EngineError::Query(format!("{e} (in {sql})"));
        let planned = self.query.plan(sql).await.map_err(fail)?;
        let mut stream = self.query.stream(planned).map_err(fail)?;
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            out.push(batch.map_err(fail)?);
        }
        Ok(out)
    }
}

/// The engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What has changed in a reload.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReloadReport {
    /// SLOs whose counts were loaded from `slo_counts`.
    pub loaded: Vec<String>,
    /// SLOs counted anew from stored events.
    pub backfilled: Vec<String>,
}

impl Engine {
    /// Starts the engine over `store` with `slos`: compiles them, loads their stored counts
    /// and alert states, backfills the ones never counted, and installs live counting. Call
    /// before ingest starts. Its reads go through `query` (the store's query runtime and
    /// memory pool), with a timeout of their own.
    ///
    /// # Errors
    /// [`EngineError::Spec`] when an SLO does not compile, [`EngineError::Query`] when stored
    /// data cannot be read, [`EngineError::Store`] when a backfill cannot be stored.
    pub async fn open(
        store: Arc<Store>,
        query: &QueryEngine,
        slos: Vec<crate::spec::Slo>,
        clock: Arc<dyn Clock>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, EngineError> {
        Self::open_with_maintenance(store, query, slos, clock, registry, Vec::new()).await
    }

    /// [`Engine::open`] with maintenance windows: SLOs with `exclude_maintenance` leave the
    /// minutes they cover out of their counts (stored counts are kept; they are skipped).
    ///
    /// # Errors
    /// As [`Engine::open`].
    pub async fn open_with_maintenance(
        store: Arc<Store>,
        query: &QueryEngine,
        slos: Vec<crate::spec::Slo>,
        clock: Arc<dyn Clock>,
        registry: &mut prometheus_client::registry::Registry,
        maintenance: Vec<MaintenanceWindow>,
    ) -> Result<Self, EngineError> {
        let inner = Arc::new(Inner {
            store: store.clone(),
            clock,
            query: query.with_timeout(QUERY_TIMEOUT),
            active: std::sync::RwLock::new(Arc::new(Vec::new())),
            entries: Mutex::new(BTreeMap::new()),
            busy: tokio::sync::Mutex::new(()),
            transitions: tokio::sync::broadcast::channel(1024).0,
            metrics: SloMetrics::new(registry),
            maintenance,
            ticks: Default::default(),
        });
        let engine = Self { inner };
        store.set_write_hook(Some(Arc::new(live::Counter(Arc::downgrade(&engine.inner)))));
        engine.reload_inner(slos, true).await?;
        Ok(engine)
    }

    /// Subscribes to alert transitions (for notifications).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Transition> {
        self.inner.transitions.subscribe()
    }

    /// Replaces the SLO set. Unchanged SLOs keep their counts and alert states; new ones and
    /// ones whose indicator changed are backfilled from stored events; alerts of removed SLOs
    /// are resolved.
    ///
    /// # Errors
    /// As [`Engine::open`]; on [`EngineError::Spec`] the current set stays as it is.
    pub async fn reload(&self, slos: Vec<crate::spec::Slo>) -> Result<ReloadReport, EngineError> {
        self.reload_inner(slos, false).await
    }

    /// Evaluates every SLO at the clock's time: statuses, alert rules and state changes.
    /// Records the transitions in `slo_alerts`, sends them to subscribers and returns them.
    ///
    /// # Errors
    /// [`EngineError::Store`] when the transitions cannot be written.
    pub async fn tick(&self) -> Result<Vec<Transition>, EngineError> {
        let _busy = self.inner.busy.lock().await;
        let now = self.inner.clock.now();
        let started = std::time::Instant::now();
        let mut transitions = Vec::new();
        {
            let mut entries = self.inner.entries();
            for e in entries.values_mut() {
                let keep = keep(&e.slo);
                for s in e.series.values_mut().chain(e.frozen.values_mut()) {
                    s.trim(now, keep);
                }
                e.derive_slices(now);
                let rules = alert::rules(&e.slo);
                // Alerts exist per group seen (one ungrouped "" group at least).
                let mut groups: Vec<String> = e.series.keys().cloned().collect();
                if groups.is_empty() {
                    groups.push(String::new());
                }
                let empty = Series::default();
                for g in &groups {
                    let evaluated = if e.slo.timeslice.is_some() {
                        &e.slices
                    } else {
                        &e.series
                    };
                    let series = evaluated.get(g).unwrap_or(&empty);
                    let st = status::status(series, e.slo.objective, &e.slo.window, now);
                    let events = e.series.get(g).unwrap_or(&empty);
                    for rule in &rules {
                        // No-data is about events, also for timeslice SLOs.
                        let source = if *rule == Rule::NoData {
                            events
                        } else {
                            series
                        };
                        let obs = alert::observe(&e.slo, rule, source, &st, now);
                        let a = e
                            .alerts
                            .entry((rule.clone(), g.clone()))
                            .or_insert_with(|| Alert::new(&e.slo, rule.clone(), g));
                        if let Some(t) = a.step(&e.slo, obs, now) {
                            transitions.push(t);
                        }
                    }
                }
                self.publish(e, now);
                // Alerts of rules that no longer exist (tiers changed): resolve and drop.
                let slo = e.slo.clone();
                e.alerts.retain(|(rule, _), a| {
                    if rules.contains(rule) {
                        return true;
                    }
                    let obs = alert::Observation::cleared();
                    if let Some(t) = a.step(&slo, obs, now) {
                        transitions.push(t);
                    }
                    false
                });
            }
        }
        self.inner
            .metrics
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        self.record(&transitions).await?;
        self.inner
            .ticks
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        for t in &transitions {
            self.inner
                .metrics
                .transitions
                .get_or_create(&StateLabel { state: t.state })
                .inc();
            tracing::info!(slo = %t.slo, rule = %t.rule, group = %t.group, state = t.state, "SLO alert");
            let _ = self.inner.transitions.send(t.clone());
        }
        Ok(transitions)
    }

    /// Publishes an SLO's overall status and firing alerts as metrics.
    fn publish(&self, e: &Entry, now: Nanos) {
        let m = &self.inner.metrics;
        let label = SloLabel {
            slo: e.slo.name.clone(),
        };
        let st = overall_status(e, now);
        let nan = f64::NAN;
        m.sli.get_or_create(&label).set(st.sli.unwrap_or(nan));
        m.budget_remaining
            .get_or_create(&label)
            .set(st.budget.as_ref().map_or(nan, |b| b.remaining));
        for b in &st.burn_rates {
            m.burn_rate
                .get_or_create(&BurnLabel {
                    slo: e.slo.name.clone(),
                    window: b.window,
                })
                .set(b.burn_rate.unwrap_or(nan));
        }
        let firing = e
            .alerts
            .values()
            .filter(|a| a.state == State::Firing)
            .count();
        m.firing.get_or_create(&label).set(firing as i64);
    }

    /// Writes transitions to `slo_alerts`.
    pub(super) async fn record(&self, transitions: &[Transition]) -> Result<(), EngineError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let batch =
            queries::alerts_batch(transitions).map_err(|e| EngineError::Store(e.to_string()))?;
        self.inner
            .store
            .write(vec![(Table::SloAlerts, batch)])
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        Ok(())
    }

    /// How many ticks completed since the engine opened.
    pub fn ticks(&self) -> u64 {
        self.inner.ticks.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs the engine until `stop`: a tick every `tick`; when `dir` is given, reloads the
    /// specs in it whenever a file changes (invalid specs are reported and the current set
    /// kept).
    pub async fn run(
        self,
        tick: Duration,
        dir: Option<PathBuf>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        // The first tick syncs with the directory as it is then: a file changed between the
        // caller's load and this start is not missed.
        let mut seen = None;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(tick) => {}
            }
            if let Some(d) = &dir {
                let digest = spec_dir::dir_digest(d);
                if seen.as_ref() != Some(&digest) {
                    seen = Some(digest);
                    match load_dir(d) {
                        Ok(slos) => match self.reload(slos).await {
                            Ok(r) => tracing::info!(?r, "reloaded SLO specs"),
                            Err(e) => {
                                tracing::error!(error = %e, "SLO specs not (fully) reloaded; retrying");
                                seen = None;
                            }
                        },
                        Err(errors) => {
                            for e in errors {
                                tracing::error!(%e, "invalid SLO spec; keeping the current set");
                            }
                        }
                    }
                }
            }
            if let Err(e) = self.tick().await {
                tracing::error!(error = %e, "SLO evaluation failed");
            }
        }
    }
}
