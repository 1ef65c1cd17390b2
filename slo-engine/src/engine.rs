//! The SLO engine: keeps every SLO's counts in memory (fed by live counting, loaded from
//! `slo_counts` at start, backfilled from stored events for new or changed SLOs), evaluates
//! budgets, burn rates and alert rules on a tick, and records alert transitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Float64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::array::{Int64Array, TimestampNanosecondArray};
use serde::Serialize;
use sightline_store::query::{QueryEngine, QueryLimits};
use sightline_store::schema::Table;
use sightline_store::{Store, WriteHook};

use crate::alert::{self, Alert, Rule, State, Transition};
use crate::counter::{self, CompiledSlo, ORIGIN_BACKFILL, ORIGIN_LIVE, SliceCounts};
use crate::maintenance::MaintenanceWindow;
use crate::metrics::{BurnLabel, SloLabel, SloMetrics, StateLabel};
use crate::rollup::{Counts, Series};
use crate::spec::{Indicator, OTHER_GROUP, Slo, SpecError};
use crate::status::{self, BURN_WINDOWS, Budget, BurnRate, Status};
use crate::window::{COARSE, FINE_HORIZON, Window, trailing};
use sightline_common::clock::{Clock, DAY, MINUTE, Nanos, floor, rfc3339};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid SLO specs:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<SpecError>),
    #[error("reading stored SLO data: {0}")]
    Query(String),
    #[error("storing SLO data: {0}")]
    Store(String),
}

/// How long counts of `slo` are kept in memory.
fn keep(slo: &Slo) -> Nanos {
    let window = match slo.window {
        Window::Rolling(d) => d + COARSE,
        Window::Calendar { .. } => crate::window::MAX_WINDOW,
    };
    window.max(FINE_HORIZON) + DAY
}

struct Entry {
    slo: Arc<Slo>,
    compiled: Arc<CompiledSlo>,
    /// Event counts per group.
    series: BTreeMap<String, Series>,
    /// Timeslice SLOs: per group, one event per finished slice (good when the slice met its
    /// ratio): `frozen` for slices older than the fine horizon (final), plus the recent ones,
    /// judged again on every tick from the minute counts so that late events count.
    slices: BTreeMap<String, Series>,
    frozen: BTreeMap<String, Series>,
    /// Slices starting before this are in `frozen`.
    frozen_until: Nanos,
    alerts: BTreeMap<(Rule, String), Alert>,
}

/// A slice's verdict is final this long after it ends (room for export delays).
const SETTLE: Nanos = MINUTE;
/// Slices older than this are judged once more and frozen, while their minutes are still kept.
const FREEZE_AGE: Nanos = FINE_HORIZON - sightline_common::clock::HOUR;

impl Entry {
    /// The counts budgets and alerts are computed on: events, or slices for timeslice SLOs.
    fn evaluated(&self) -> &BTreeMap<String, Series> {
        if self.slo.timeslice.is_some() {
            &self.slices
        } else {
            &self.series
        }
    }

    fn verdict(&self, c: Counts) -> Option<Counts> {
        let t = self.slo.timeslice?;
        (c.total > 0).then(|| {
            let good = c.good as f64 >= t.good_ratio * c.total as f64 - 1e-9;
            Counts::new(u64::from(good), 1)
        })
    }

    /// Re-derives the slices from the minute counts: freezes those about to leave the fine
    /// horizon, and judges the recent finished ones again.
    fn derive_slices(&mut self, now: Nanos) {
        let Some(t) = self.slo.timeslice else {
            return;
        };
        let keep = keep(&self.slo);
        let judge = |e: &Entry, start: Nanos| -> Vec<(String, Counts)> {
            e.series
                .iter()
                .filter_map(|(g, s)| Some((g.clone(), e.verdict(s.sum(start, start + t.slice))?)))
                .collect()
        };
        let freeze_to = floor(now - FREEZE_AGE, t.slice);
        let mut start = self
            .frozen_until
            .max(floor(now - FINE_HORIZON, t.slice) + t.slice);
        while start + t.slice <= freeze_to {
            for (g, v) in judge(self, start) {
                self.frozen.entry(g).or_default().add(now, keep, start, v);
            }
            start += t.slice;
        }
        self.frozen_until = self.frozen_until.max(freeze_to);

        let mut slices = self.frozen.clone();
        let settled = floor(now - SETTLE, t.slice);
        let mut start = self.frozen_until;
        while start + t.slice <= settled {
            for (g, v) in judge(self, start) {
                slices.entry(g).or_default().add(now, keep, start, v);
            }
            start += t.slice;
        }
        for s in slices.values_mut() {
            s.trim(now, keep);
        }
        self.slices = slices;
    }

    /// Freezes the old slices from counted rows (at load and after a backfill: the minutes
    /// before the fine horizon are only in the rows), then derives the recent ones.
    fn derive_slices_from(&mut self, rows: &[(String, Nanos, Counts)], now: Nanos) {
        let Some(t) = self.slo.timeslice else {
            return;
        };
        let freeze_to = floor(now - FREEZE_AGE, t.slice);
        let mut per_slice: BTreeMap<(String, Nanos), Counts> = BTreeMap::new();
        for (g, minute, c) in rows {
            let start = floor(*minute, t.slice);
            if start + t.slice <= freeze_to && start >= self.frozen_until {
                per_slice.entry((g.clone(), start)).or_default().add(*c);
            }
        }
        let keep = keep(&self.slo);
        for ((g, start), c) in per_slice {
            if let Some(v) = self.verdict(c) {
                self.frozen.entry(g).or_default().add(now, keep, start, v);
            }
        }
        self.frozen_until = self.frozen_until.max(freeze_to);
        self.derive_slices(now);
    }
}

struct Inner {
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

/// A firing alert as notifications present it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlert {
    pub slo: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: Nanos,
}

/// The engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Counts events of every write for the active SLOs (see [`WriteHook`]).
#[derive(Debug)]
struct Counter(std::sync::Weak<Inner>);

impl WriteHook for Counter {
    fn derive(&self, writes: &[(Table, RecordBatch)]) -> Vec<(Table, RecordBatch)> {
        let Some(inner) = self.0.upgrade() else {
            return Vec::new();
        };
        let active = inner
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut rows: Vec<(&str, &str, &str, SliceCounts)> = Vec::new();
        let mut caches: Vec<counter::MaskCache> =
            writes.iter().map(|_| Default::default()).collect();
        for slo in active.iter() {
            let mut counts = SliceCounts::new();
            for ((table, batch), cache) in writes.iter().zip(caches.iter_mut()) {
                if *table != slo.table {
                    continue;
                }
                if let Err(e) = slo.count_shared(batch, &mut counts, cache) {
                    inner.metrics.counting_errors.inc();
                    tracing::warn!(slo = %slo.name, error = %e, "cannot count a batch for this SLO");
                }
            }
            if !counts.is_empty() {
                rows.push((&slo.name, &slo.version, ORIGIN_LIVE, counts));
            }
        }
        match counter::counts_batch(&rows) {
            Ok(Some(b)) => vec![(Table::SloCounts, b)],
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, "cannot build SLO count rows");
                Vec::new()
            }
        }
    }

    fn committed(&self, derived: &[(Table, RecordBatch)]) {
        if let Some(inner) = self.0.upgrade() {
            for (table, batch) in derived {
                if *table == Table::SloCounts {
                    inner.apply_counts(&counter::read_counts(batch));
                }
            }
        }
    }
}

impl Inner {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds counted rows to the in-memory series of their SLO (if it is that version).
    fn apply_counts(&self, rows: &[(String, String, String, Nanos, Counts)]) {
        let now = self.clock.now();
        let mut entries = self.entries();
        for (slo, version, group, slice, counts) in rows {
            if counts.total == 0 && counts.good == 0 {
                continue; // a backfill's completion marker
            }
            if let Some(e) = entries.get_mut(slo)
                && &e.compiled.version == version
                && !self.in_maintenance(&e.slo, *slice)
            {
                let keep = keep(&e.slo);
                e.series
                    .entry(group.clone())
                    .or_default()
                    .add(now, keep, *slice, *counts);
            }
        }
    }

    /// Whether `slo` leaves the minute starting at `t` out of its counts.
    fn in_maintenance(&self, slo: &Slo, t: Nanos) -> bool {
        slo.exclude_maintenance && !self.maintenance.is_empty() && {
            let labels = slo.match_labels();
            self.maintenance
                .iter()
                .any(|w| w.active_at(t) && w.applies_to(&labels))
        }
    }

    async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
        self.query
            .execute(sql)
            .await
            .map(|o| o.batches)
            .map_err(|e| EngineError::Query(format!("{e} (in {sql})")))
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn strings(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let c = batch.column_by_name(name)?;
    let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok()?;
    c.as_any().downcast_ref::<StringArray>().cloned()
}

fn int64s(batch: &RecordBatch, name: &str) -> Option<Int64Array> {
    let c = batch.column_by_name(name)?;
    let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).ok()?;
    c.as_any().downcast_ref::<Int64Array>().cloned()
}

/// (group, slice start, counts) rows of a query answer with `good` and `total` columns.
fn group_counts(b: &RecordBatch, group: &str, slice: &str) -> Vec<(String, Nanos, Counts)> {
    let (Some(g), Some(t), Some(good), Some(total)) = (
        strings(b, group),
        int64s(b, slice),
        int64s(b, "good"),
        int64s(b, "total"),
    ) else {
        return Vec::new();
    };
    (0..b.num_rows())
        .map(|r| {
            (
                g.value(r).to_string(),
                t.value(r),
                Counts::new(good.value(r).max(0) as u64, total.value(r).max(0) as u64),
            )
        })
        .collect()
}

/// The stored points of a metric SLO's metrics since `from`, oldest first.
fn metric_points_sql(slo: &Slo, from: Nanos) -> String {
    let names: Vec<String> = slo.indicator.metrics().iter().map(|m| quote(m)).collect();
    format!(
        "SELECT * FROM metrics WHERE metric_name IN ({}) AND time >= '{}' ORDER BY time",
        names.join(", "),
        chrono::DateTime::from_timestamp_nanos(from)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    )
}

/// The backfill query of an SLO: good and valid events per group and minute since `from`.
fn backfill_sql(slo: &Slo, from: Nanos) -> Option<String> {
    let Indicator::Events {
        table,
        filter,
        good,
    } = &slo.indicator
    else {
        return None;
    };
    let time = table.time_column();
    let group = slo.group_by.as_ref().map_or("''".to_string(), |g| {
        format!("coalesce(CAST(({}) AS VARCHAR), '')", g.sql)
    });
    let filter = filter
        .as_ref()
        .map_or(String::new(), |f| format!(" AND ({})", f.sql));
    Some(format!(
        "SELECT {group} AS g, \
         CAST({time} AS BIGINT) / {MINUTE} * {MINUTE} AS slice, \
         count(*) FILTER (WHERE ({good})) AS good, count(*) AS total \
         FROM {table} WHERE {time} >= '{from}'{filter} GROUP BY 1, 2",
        good = good.sql,
        table = table.name(),
        from = chrono::DateTime::from_timestamp_nanos(from)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    ))
}

/// Folds backfilled counts into at most `max_groups` groups (the busiest), the rest into
/// [`OTHER_GROUP`].
fn cap_groups(rows: Vec<(String, Nanos, Counts)>, max_groups: usize) -> SliceCounts {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (g, _, c) in &rows {
        *totals.entry(g).or_default() += c.total;
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: std::collections::HashSet<String> = ranked
        .iter()
        .take(max_groups)
        .map(|(g, _)| g.to_string())
        .collect();
    let mut out = SliceCounts::new();
    for (g, slice, c) in rows {
        let g = if kept.contains(&g) {
            g
        } else {
            OTHER_GROUP.to_string()
        };
        out.entry((g, slice)).or_default().add(c);
    }
    out
}

/// What the API shows of an SLO.
#[derive(Debug, Clone, Serialize)]
pub struct SloView {
    pub name: String,
    pub service: String,
    pub description: String,
    /// As a fraction (0.999).
    pub objective: f64,
    pub window: String,
    pub indicator: IndicatorView,
    pub group_by: Option<String>,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    /// For timeslice SLOs: `good` and `total` count slices, not events.
    pub timeslice: Option<TimesliceView>,
    /// firing, pending or ok (the worst of its alerts).
    pub alert_state: &'static str,
    #[serde(flatten)]
    pub status: StatusView,
    pub alerts: Vec<AlertView>,
    /// One status per group (grouped SLOs only).
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimesliceView {
    pub slice: String,
    pub good_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndicatorView {
    /// spans, logs, metric_ratio or metric_latency.
    pub kind: &'static str,
    /// Valid events (metric_ratio: the total counter's filter).
    pub filter: Option<String>,
    /// Good events (metric_ratio: the good counter's filter).
    pub good: Option<String>,
    /// metric_ratio: [good, total]; metric_latency: [histogram].
    pub metrics: Vec<String>,
    /// metric_latency: the bucket bound at or under which an observation is good.
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub at: String,
    pub window_start: String,
    pub window_end: String,
    pub good: u64,
    pub total: u64,
    pub sli: Option<f64>,
    pub budget: Option<Budget>,
    pub burn_rates: Vec<BurnRate>,
    pub exhausted_at: Option<String>,
}

impl From<&Status> for StatusView {
    fn from(s: &Status) -> Self {
        Self {
            at: rfc3339(s.at),
            window_start: rfc3339(s.window_start),
            window_end: rfc3339(s.window_end),
            good: s.good,
            total: s.total,
            sli: s.sli,
            budget: s.budget.clone(),
            burn_rates: s.burn_rates.clone(),
            exhausted_at: s.exhausted_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: String,
    #[serde(flatten)]
    pub status: StatusView,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub rule: String,
    pub group: String,
    pub state: State,
    pub severity: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub since: Option<String>,
    pub firing_since: Option<String>,
    pub values: BTreeMap<String, f64>,
}

/// One point of an SLO's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    pub at: String,
    pub good: u64,
    pub total: u64,
    pub sli: Option<f64>,
    pub budget_remaining: Option<f64>,
    /// Burn rate over the hour before `at`.
    pub burn_rate_1h: Option<f64>,
}

impl Engine {
    /// Starts the engine over `store` with `slos`: compiles them, loads their stored counts
    /// and alert states, backfills the ones never counted, and installs live counting. Call
    /// before ingest starts.
    pub async fn open(
        store: Arc<Store>,
        slos: Vec<Slo>,
        clock: Arc<dyn Clock>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, EngineError> {
        Self::open_with_maintenance(store, slos, clock, registry, Vec::new()).await
    }

    /// [`Engine::open`] with maintenance windows: SLOs with `exclude_maintenance` leave the
    /// minutes they cover out of their counts (stored counts are kept; they are skipped).
    pub async fn open_with_maintenance(
        store: Arc<Store>,
        slos: Vec<Slo>,
        clock: Arc<dyn Clock>,
        registry: &mut prometheus_client::registry::Registry,
        maintenance: Vec<MaintenanceWindow>,
    ) -> Result<Self, EngineError> {
        let query = store
            .query_engine(QueryLimits {
                timeout: Duration::from_secs(3600),
                max_rows: usize::MAX,
                memory_bytes: 512 << 20,
                threads: 1,
                sql: Default::default(),
            })
            .await
            .map_err(|e| EngineError::Query(e.to_string()))?;
        let inner = Arc::new(Inner {
            store: store.clone(),
            clock,
            query,
            active: std::sync::RwLock::new(Arc::new(Vec::new())),
            entries: Mutex::new(BTreeMap::new()),
            busy: tokio::sync::Mutex::new(()),
            transitions: tokio::sync::broadcast::channel(1024).0,
            metrics: SloMetrics::new(registry),
            maintenance,
            ticks: Default::default(),
        });
        let engine = Self { inner };
        store.set_write_hook(Some(Arc::new(Counter(Arc::downgrade(&engine.inner)))));
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
    pub async fn reload(&self, slos: Vec<Slo>) -> Result<ReloadReport, EngineError> {
        self.reload_inner(slos, false).await
    }

    /// `at_open`: no write has happened since the store opened, so the newest stored
    /// generation of an SLO (live until the last shutdown) can be loaded instead of counted
    /// again. Later, an indicator that comes back gets a new generation: the old one missed
    /// the events of the time it was not active.
    async fn reload_inner(
        &self,
        slos: Vec<Slo>,
        at_open: bool,
    ) -> Result<ReloadReport, EngineError> {
        let inner = &self.inner;
        let _busy = inner.busy.lock().await;
        let mut errors = Vec::new();
        let mut report = ReloadReport::default();

        // Which SLOs keep their counts, and which need (new) counts.
        let mut keep_as_is = Vec::new();
        let mut fresh = Vec::new();
        {
            let entries = inner.entries();
            for slo in slos {
                let hash = counter::indicator_hash(&slo);
                match entries.get(&slo.name) {
                    // Same indicator, and the counts in memory reach as far back as the new
                    // window needs: keep them.
                    Some(e)
                        if e.compiled.version.starts_with(&format!("{hash}."))
                            && keep(&slo) <= keep(&e.slo) =>
                    {
                        keep_as_is.push(slo)
                    }
                    _ => fresh.push(slo),
                }
            }
        }
        // Stored counts: per (slo, version) the rows, and whether a backfill completed.
        let names: Vec<String> = fresh.iter().map(|s| quote(&s.name)).collect();
        // Per stored (slo, version): whether its backfill completed, and when it was last
        // written (the backfill marker and live rows carry the time they were counted at).
        let mut stored: BTreeMap<(String, String), (bool, i64)> = BTreeMap::new();
        if !names.is_empty() {
            let sql = format!(
                "SELECT slo, slo_version, max(CASE WHEN origin = '{ORIGIN_BACKFILL}' THEN 1 ELSE 0 END) AS complete, \
                 max(CAST(slice_start AS BIGINT)) AS last \
                 FROM slo_counts WHERE slo IN ({}) GROUP BY 1, 2",
                names.join(", ")
            );
            for b in inner.sql(&sql).await? {
                let (Some(s), Some(v), Some(c), Some(l)) = (
                    strings(&b, "slo"),
                    strings(&b, "slo_version"),
                    int64s(&b, "complete"),
                    int64s(&b, "last"),
                ) else {
                    continue;
                };
                for r in 0..b.num_rows() {
                    stored.insert(
                        (s.value(r).into(), v.value(r).into()),
                        (c.value(r) == 1, l.value(r)),
                    );
                }
            }
        }
        // Compile: a complete stored generation is reused; otherwise a new generation is
        // counted from scratch (backfill + live).
        let mut compiled_fresh = Vec::new();
        for slo in fresh {
            let hash = counter::indicator_hash(&slo);
            let generations: Vec<(u32, bool)> = stored
                .iter()
                .filter(|((n, v), _)| n == &slo.name && v.starts_with(&format!("{hash}.")))
                .filter_map(|((_, v), (c, _))| Some((v.rsplit('.').next()?.parse().ok()?, *c)))
                .collect();
            let complete = generations
                .iter()
                .filter(|(_, c)| *c)
                .map(|(g, _)| *g)
                .max();
            let next = generations.iter().map(|(g, _)| g + 1).max().unwrap_or(0);
            // Was this indicator the last one counted for this SLO (not one it came back to)?
            let newest_of_slo = stored
                .iter()
                .filter(|((n, _), _)| n == &slo.name)
                .max_by_key(|(_, (_, last))| *last)
                .is_none_or(|((_, v), _)| v.starts_with(&format!("{hash}.")));
            let (generation, backfill) = match complete {
                Some(g) if g + 1 == next && at_open && newest_of_slo => (g, false),
                _ => (next, true),
            };
            match CompiledSlo::compile(&slo, generation) {
                Ok(c) => compiled_fresh.push((slo, Arc::new(c), backfill)),
                Err(e) => errors.extend(e),
            }
        }
        for slo in &keep_as_is {
            // Expressions are unchanged, but check anyway (a store schema may have changed).
            if let Err(e) = CompiledSlo::compile(slo, 0) {
                errors.extend(e);
            }
        }
        if !errors.is_empty() {
            return Err(EngineError::Spec(errors));
        }

        let now = inner.clock.now();
        // Load counts of reused generations.
        for (slo, c, backfill) in &compiled_fresh {
            if *backfill {
                continue;
            }
            let from = now - keep(slo);
            let sql = format!(
                "SELECT group_value, slice_start, sum(good) AS good, sum(total) AS total \
                 FROM slo_counts WHERE slo = {} AND slo_version = {} AND slice_start >= '{}' \
                 GROUP BY 1, 2",
                quote(&slo.name),
                quote(&c.version),
                chrono::DateTime::from_timestamp_nanos(from)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            );
            let mut series: BTreeMap<String, Series> = BTreeMap::new();
            let mut loaded = Vec::new();
            for b in inner.sql(&sql).await? {
                for (g, t, counts) in group_counts(&b, "group_value", "slice_start") {
                    if counts.total == 0 && counts.good == 0 {
                        continue; // a backfill's completion marker
                    }
                    c.know_group(&g);
                    if inner.in_maintenance(slo, t) {
                        continue;
                    }
                    series
                        .entry(g.clone())
                        .or_default()
                        .add(now, keep(slo), t, counts);
                    loaded.push((g, t, counts));
                }
            }
            if !slo.indicator.metrics().is_empty() {
                // Live counting of counters goes on from each series' last stored point.
                self.count_metric_points(slo, c, now - 6 * sightline_common::clock::HOUR)
                    .await?;
            }
            report.loaded.push(slo.name.clone());
            self.install(slo.clone(), c.clone(), series, &loaded);
        }

        // Backfill new generations: plan the queries while writes are held back, so that they
        // see exactly the events written before live counting of the new generation starts.
        let to_backfill: Vec<_> = compiled_fresh.iter().filter(|(_, _, b)| *b).collect();
        let mut plans = Vec::new();
        {
            let _paused = inner.store.pause_writes().await;
            for (slo, c, _) in &to_backfill {
                let pending = match backfill_sql(slo, now - keep(slo)) {
                    Some(sql) => {
                        let df = inner
                            .query
                            .context()
                            .sql(&sql)
                            .await
                            .map_err(|e| EngineError::Query(format!("{e} (in {sql})")))?;
                        let plan = df
                            .create_physical_plan()
                            .await
                            .map_err(|e| EngineError::Query(e.to_string()))?;
                        Pending::Plan(plan)
                    }
                    // Counter increases depend on each series' previous point: metric SLOs
                    // are counted while writes wait, so that live counting goes on from the
                    // last stored point of every series.
                    None => {
                        Pending::Counted(self.count_metric_points(slo, c, now - keep(slo)).await?)
                    }
                };
                plans.push((slo, c, pending));
                self.install(slo.clone(), c.clone(), BTreeMap::new(), &[]);
            }
            for slo in &keep_as_is {
                self.update_spec(slo.clone());
            }
            self.remove_missing(&keep_as_is, &compiled_fresh, now);
            self.publish_active();
        }
        let mut failures = Vec::new();
        for (slo, c, pending) in plans {
            let started = std::time::Instant::now();
            let mut counts = match pending {
                Pending::Plan(plan) => {
                    let task = inner.query.context().task_ctx();
                    let batches = match datafusion::physical_plan::collect(plan, task).await {
                        Ok(b) => b,
                        Err(e) => {
                            // Not half counted: the SLO leaves the set, and the next reload
                            // (the watcher retries on the next tick) counts it anew.
                            self.drop_entry(&slo.name);
                            failures.push(format!("{}: backfill failed: {e}", slo.name));
                            continue;
                        }
                    };
                    let mut rows = Vec::new();
                    for b in &batches {
                        rows.extend(group_counts(b, "g", "slice"));
                    }
                    cap_groups(rows, slo.max_groups)
                }
                Pending::Counted(counts) => counts,
            };
            for (g, _) in counts.keys() {
                c.know_group(g);
            }
            // The marker row: this generation's backfill is complete.
            counts
                .entry((String::new(), floor(now, MINUTE)))
                .or_default();
            let batch = counter::counts_batch(&[(&slo.name, &c.version, ORIGIN_BACKFILL, counts)])
                .map_err(|e| EngineError::Store(e.to_string()))?;
            if let Some(batch) = batch {
                let rows = counter::read_counts(&batch);
                if let Err(e) = inner.store.write(vec![(Table::SloCounts, batch)]).await {
                    self.drop_entry(&slo.name);
                    failures.push(format!("{}: cannot store its backfill: {e}", slo.name));
                    continue;
                }
                inner.apply_counts(&rows);
                if let Some(e) = inner.entries().get_mut(&slo.name) {
                    let rows: Vec<(String, Nanos, Counts)> = rows
                        .into_iter()
                        .filter(|(_, _, _, t, _)| !inner.in_maintenance(slo, *t))
                        .map(|(_, _, g, t, c)| (g, t, c))
                        .collect();
                    e.derive_slices_from(&rows, inner.clock.now());
                }
            }
            inner
                .metrics
                .backfill_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(slo = %slo.name, version = %c.version, elapsed = ?started.elapsed(), "backfilled the SLO from stored events");
            report.backfilled.push(slo.name.clone());
        }
        self.restore_alerts().await?;
        inner.metrics.slos.set(inner.entries().len() as i64);
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(EngineError::Query(failures.join("; ")))
        }
    }

    /// Takes an SLO out of the set (and out of live counting).
    fn drop_entry(&self, name: &str) {
        self.inner.entries().remove(name);
        self.publish_active();
    }

    /// Counts the stored points of a metric SLO since `from` (oldest first), leaving the
    /// compiled SLO with the last point of every series.
    async fn count_metric_points(
        &self,
        slo: &Slo,
        c: &CompiledSlo,
        from: Nanos,
    ) -> Result<SliceCounts, EngineError> {
        let mut counts = SliceCounts::new();
        for b in self.inner.sql(&metric_points_sql(slo, from)).await? {
            if let Err(e) = c.count(&b, &mut counts) {
                self.inner.metrics.counting_errors.inc();
                tracing::warn!(slo = %slo.name, error = %e, "cannot count stored points");
            }
        }
        Ok(counts)
    }

    fn install(
        &self,
        slo: Slo,
        compiled: Arc<CompiledSlo>,
        series: BTreeMap<String, Series>,
        rows: &[(String, Nanos, Counts)],
    ) {
        let now = self.inner.clock.now();
        let slo = Arc::new(slo);
        let mut entries = self.inner.entries();
        let alerts = entries
            .remove(&slo.name)
            .map(|e| e.alerts)
            .unwrap_or_default();
        let mut entry = Entry {
            slo: slo.clone(),
            compiled,
            series,
            slices: BTreeMap::new(),
            frozen: BTreeMap::new(),
            frozen_until: i64::MIN,
            alerts,
        };
        // A backfill installs first, without rows, and derives its slices when they arrive.
        if !rows.is_empty() {
            entry.derive_slices_from(rows, now);
        }
        entries.insert(slo.name.clone(), entry);
    }

    fn update_spec(&self, slo: Slo) {
        if let Some(e) = self.inner.entries().get_mut(&slo.name) {
            e.slo = Arc::new(slo);
        }
    }

    /// Drops SLOs no longer in the set, resolving their firing alerts.
    fn remove_missing(&self, kept: &[Slo], fresh: &[(Slo, Arc<CompiledSlo>, bool)], now: Nanos) {
        let names: std::collections::HashSet<&str> = kept
            .iter()
            .map(|s| s.name.as_str())
            .chain(fresh.iter().map(|(s, _, _)| s.name.as_str()))
            .collect();
        let mut gone = Vec::new();
        {
            let mut entries = self.inner.entries();
            entries.retain(|name, e| {
                if names.contains(name.as_str()) {
                    return true;
                }
                for a in e.alerts.values_mut() {
                    let obs = alert::Observation::cleared();
                    if let Some(t) = a.step(&e.slo, obs, now)
                        && t.state == "resolved"
                    {
                        gone.push(t);
                    }
                }
                false
            });
        }
        if !gone.is_empty() {
            let engine = self.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.record(&gone).await {
                    tracing::error!(error = %e, "cannot record alert transitions");
                }
            });
        }
    }

    fn publish_active(&self) {
        let active: Vec<Arc<CompiledSlo>> = self
            .inner
            .entries()
            .values()
            .map(|e| e.compiled.clone())
            .collect();
        *self.inner.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
    }

    /// Restores alert states from the recorded transitions: an alert whose last transition
    /// was `firing` is still firing (and does not fire again).
    async fn restore_alerts(&self) -> Result<(), EngineError> {
        let now = self.inner.clock.now();
        let sql = format!(
            "SELECT fingerprint, state, CAST(time AS BIGINT) AS t, CAST(starts_at AS BIGINT) AS s \
             FROM slo_alerts WHERE time >= '{}' ORDER BY time",
            rfc3339(now - 93 * DAY)
        );
        let mut last: BTreeMap<String, (String, i64, Option<i64>)> = BTreeMap::new();
        for b in self.inner.sql(&sql).await? {
            let (Some(f), Some(st), Some(t)) = (
                strings(&b, "fingerprint"),
                strings(&b, "state"),
                int64s(&b, "t"),
            ) else {
                continue;
            };
            let s = int64s(&b, "s");
            for r in 0..b.num_rows() {
                let starts = s.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r));
                last.insert(f.value(r).into(), (st.value(r).into(), t.value(r), starts));
            }
        }
        let mut entries = self.inner.entries();
        for e in entries.values_mut() {
            let groups: Vec<String> = if e.series.is_empty() {
                vec![String::new()]
            } else {
                e.series.keys().cloned().collect()
            };
            for rule in alert::rules(&e.slo) {
                for g in &groups {
                    let key = (rule.clone(), g.clone());
                    if e.alerts.contains_key(&key) {
                        continue;
                    }
                    let mut a = Alert::new(&e.slo, rule.clone(), g);
                    match last.get(&a.fingerprint) {
                        Some((state, t, starts)) if state == "firing" => {
                            a.state = State::Firing;
                            a.since = Some(*t);
                            a.firing_since = starts.or(Some(*t));
                        }
                        // A pending alert is not restored: its condition is judged afresh (a
                        // pending that cleared leaves no row, so the last one can be stale).
                        _ => {}
                    }
                    e.alerts.insert(key, a);
                }
            }
        }
        Ok(())
    }

    /// Evaluates every SLO at the clock's time: statuses, alert rules and state changes.
    /// Records the transitions in `slo_alerts`, sends them to subscribers and returns them.
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
    async fn record(&self, transitions: &[Transition]) -> Result<(), EngineError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let batch = alerts_batch(transitions).map_err(|e| EngineError::Store(e.to_string()))?;
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

    /// Every firing alert now, with its annotations (what notifications are made of).
    pub fn firing(&self) -> Vec<FiringAlert> {
        let entries = self.inner.entries();
        let mut out = Vec::new();
        for e in entries.values() {
            for a in e.alerts.values().filter(|a| a.state == State::Firing) {
                let values = a
                    .last
                    .as_ref()
                    .map(|o| o.values.clone())
                    .unwrap_or_default();
                out.push(FiringAlert {
                    slo: e.slo.name.clone(),
                    fingerprint: a.fingerprint.clone(),
                    labels: a.labels.clone(),
                    annotations: alert::annotations(&e.slo, &a.rule, &a.group, &values),
                    starts_at: a.firing_since.or(a.since).unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Every SLO's view, by name.
    pub fn list(&self) -> Vec<SloView> {
        let now = self.inner.clock.now();
        self.inner
            .entries()
            .values()
            .map(|e| view(e, now))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<SloView> {
        let now = self.inner.clock.now();
        self.inner.entries().get(name).map(|e| view(e, now))
    }

    /// The SLO's SLI, budget remaining and 1h burn rate at every `step` (rounded up to 15
    /// minutes) from `from` to `to` (at most the counts kept in memory).
    pub fn history(
        &self,
        name: &str,
        from: Nanos,
        to: Nanos,
        step: Nanos,
    ) -> Option<Vec<HistoryPoint>> {
        let now = self.inner.clock.now();
        let entries = self.inner.entries();
        let e = entries.get(name)?;
        let step = step.clamp(COARSE, crate::window::MAX_WINDOW);
        let step = (step + COARSE - 1) / COARSE * COARSE;
        let from = from.max(now - crate::window::MAX_WINDOW - DAY);
        let oldest = now - keep(&e.slo) + DAY;
        let mut t = floor(from.max(oldest), COARSE) + COARSE;
        let end = to.min(now);
        let mut points = Vec::new();
        while t <= end && points.len() < 10_000 {
            let (ws, _) = match e.slo.window {
                Window::Rolling(d) => (floor(t - d, COARSE), t),
                Window::Calendar { .. } => e.slo.window.period(t - 1),
            };
            let total = sum_all(e.evaluated(), ws, t);
            let hour = sum_all(e.evaluated(), t - sightline_common::clock::HOUR, t);
            points.push(HistoryPoint {
                at: rfc3339(t),
                good: total.good,
                total: total.total,
                sli: total.ratio(),
                budget_remaining: status::budget(total, e.slo.objective).map(|b| b.remaining),
                burn_rate_1h: status::burn_rate(hour, e.slo.objective),
            });
            t += step;
        }
        Some(points)
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
                let digest = dir_digest(d);
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

/// Counts of every group in `[from, to)`.
fn sum_all(groups: &BTreeMap<String, Series>, from: Nanos, to: Nanos) -> Counts {
    let mut c = Counts::default();
    for s in groups.values() {
        c.add(s.sum(from, to));
    }
    c
}

/// A backfill in progress: a planned query over events, or metric points already counted.
enum Pending {
    Plan(Arc<dyn datafusion::physical_plan::ExecutionPlan>),
    Counted(SliceCounts),
}

/// What has changed in a reload.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReloadReport {
    /// SLOs whose counts were loaded from `slo_counts`.
    pub loaded: Vec<String>,
    /// SLOs counted anew from stored events.
    pub backfilled: Vec<String>,
}

fn view(e: &Entry, now: Nanos) -> SloView {
    let slo = &e.slo;
    let indicator = match &slo.indicator {
        Indicator::Events {
            table,
            filter,
            good,
        } => IndicatorView {
            kind: table.name(),
            filter: filter.as_ref().map(|f| f.sql.clone()),
            good: Some(good.sql.clone()),
            metrics: Vec::new(),
            threshold: None,
        },
        Indicator::MetricRatio { good, total } => IndicatorView {
            kind: "metric_ratio",
            filter: total.filter.as_ref().map(|f| f.sql.clone()),
            good: good.filter.as_ref().map(|f| f.sql.clone()),
            metrics: vec![good.metric.clone(), total.metric.clone()],
            threshold: None,
        },
        Indicator::MetricLatency {
            selector,
            threshold,
        } => IndicatorView {
            kind: "metric_latency",
            filter: selector.filter.as_ref().map(|f| f.sql.clone()),
            good: None,
            metrics: vec![selector.metric.clone()],
            threshold: Some(*threshold),
        },
    };
    let groups: Vec<GroupView> = if slo.group_by.is_some() {
        e.evaluated()
            .iter()
            .map(|(g, s)| GroupView {
                group: g.clone(),
                status: StatusView::from(&status::status(s, slo.objective, &slo.window, now)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let overall = overall_status(e, now);
    let alerts: Vec<AlertView> = e
        .alerts
        .values()
        .map(|a| AlertView {
            rule: a.rule.name().into(),
            group: a.group.clone(),
            state: a.state,
            severity: a.labels.get("severity").cloned().unwrap_or_default(),
            fingerprint: a.fingerprint.clone(),
            labels: a.labels.clone(),
            since: a.since.map(rfc3339),
            firing_since: a.firing_since.map(rfc3339),
            values: a
                .last
                .as_ref()
                .map(|o| o.values.clone())
                .unwrap_or_default(),
        })
        .collect();
    let alert_state = if alerts.iter().any(|a| a.state == State::Firing) {
        "firing"
    } else if alerts.iter().any(|a| a.state == State::Pending) {
        "pending"
    } else {
        "ok"
    };
    SloView {
        name: slo.name.clone(),
        service: slo.service.clone(),
        description: slo.description.clone(),
        objective: slo.objective,
        window: slo.window.describe(),
        indicator,
        group_by: slo.group_by.as_ref().map(|g| g.sql.clone()),
        version: e.compiled.version.clone(),
        labels: slo.labels.clone(),
        timeslice: slo.timeslice.map(|t| TimesliceView {
            slice: format!("{}m", t.slice / MINUTE),
            good_ratio: t.good_ratio,
        }),
        alert_state,
        status: StatusView::from(&overall),
        alerts,
        groups,
    }
}

/// The status of an SLO over all its groups (counts summed per window).
fn overall_status(e: &Entry, now: Nanos) -> Status {
    let slo = &e.slo;
    if e.evaluated().len() <= 1 {
        let empty = Series::default();
        let s = e.evaluated().values().next().unwrap_or(&empty);
        return status::status(s, slo.objective, &slo.window, now);
    }
    let (start, end) = slo.window.bounds(now);
    let c = sum_all(e.evaluated(), start, end);
    let burn_rates = BURN_WINDOWS
        .iter()
        .map(|(name, w)| {
            let (from, to) = trailing(now, *w);
            let c = sum_all(e.evaluated(), from, to);
            BurnRate {
                window: name,
                good: c.good,
                total: c.total,
                burn_rate: status::burn_rate(c, slo.objective),
            }
        })
        .collect();
    Status {
        at: now,
        window_start: start,
        window_end: end,
        good: c.good,
        total: c.total,
        sli: c.ratio(),
        budget: status::budget(c, slo.objective),
        burn_rates,
        exhausted_at: None,
    }
}

/// `slo_alerts` rows.
fn alerts_batch(ts: &[Transition]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let ts_col = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
    };
    let str_col = |f: &dyn Fn(&Transition) -> String| -> ArrayRef {
        Arc::new(StringArray::from(ts.iter().map(f).collect::<Vec<_>>()))
    };
    let f64_col = |key: &str| -> ArrayRef {
        Arc::new(Float64Array::from(
            ts.iter()
                .map(|t| t.values.get(key).copied())
                .collect::<Vec<_>>(),
        ))
    };
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for t in ts {
        for (k, v) in &t.labels {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        labels.append(true)?;
    }
    let columns: Vec<ArrayRef> = vec![
        ts_col(ts.iter().map(|t| Some(t.at)).collect()),
        str_col(&|t| t.slo.clone()),
        str_col(&|t| t.rule.clone()),
        str_col(&|t| t.group.clone()),
        str_col(&|t| t.fingerprint.clone()),
        str_col(&|t| t.state.to_string()),
        str_col(&|t| t.labels.get("severity").cloned().unwrap_or_default()),
        ts_col(ts.iter().map(|t| t.starts_at).collect()),
        Arc::new(labels.finish()),
        f64_col("threshold"),
        f64_col("burn_rate_long"),
        f64_col("burn_rate_short"),
        f64_col("budget_remaining"),
    ];
    RecordBatch::try_new(Table::SloAlerts.schema(), columns)
}

/// Every SLO in the `*.yaml` / `*.yml` files of `dir` (sorted by name); all problems of all
/// files at once.
pub fn load_dir(dir: &Path) -> Result<Vec<Slo>, Vec<SpecError>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            vec![SpecError {
                file: dir.display().to_string(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the SLO directory: {e}"),
            }]
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match crate::spec::parse_file(&f) {
            Ok(s) => slos.extend(s),
            Err(e) => errors.extend(e),
        }
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for s in &slos {
        if let Some(other) = names.insert(s.name.clone(), s.source.clone()) {
            errors.push(SpecError {
                file: s.source.clone(),
                line: s.pos.line,
                column: s.pos.column,
                field: "name".into(),
                message: format!("{:?} is also the name of an SLO in {other}", s.name),
            });
        }
    }
    if errors.is_empty() {
        Ok(slos)
    } else {
        Err(errors)
    }
}

/// Names, sizes and modification times of the spec files: changes when a file does.
fn dir_digest(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}
