//! A new set of SLOs: which keep their counts, which load a stored generation, which are
//! counted anew (a backfill), and which leave (their alerts resolve).
//!
//! The order matters for exactness. Writes are held back ([`Store::pause_writes`]) only while
//! the backfills' snapshots are taken and live counting of the new generations is installed, so
//! that every event is counted exactly once: by the backfill if it was written before, live if
//! after. The backfills then run while ingest goes on.
//!
//! [`Store::pause_writes`]: sightline_store::Store::pause_writes

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::Array;

use sightline_common::clock::{HOUR, MINUTE, Nanos, floor};
use sightline_store::schema::Table;

use super::backfill::Pending;
use super::entry::{Entry, keep};
use super::queries::{self, group_counts, int64s, strings};
use super::{Engine, EngineError, ReloadReport};
use crate::alert::{self, Alert, State, Transition};
use crate::counter::{self, CompiledSlo, ORIGIN_BACKFILL};
use crate::rollup::{Counts, Series};
use crate::spec::Slo;

/// Per stored (slo, version): whether its backfill completed, and when it was last written.
type Generations = BTreeMap<(String, String), (bool, i64)>;

/// An SLO that needs counts: compiled for a generation, and whether it must be backfilled.
type Fresh = (Slo, Arc<CompiledSlo>, bool);

impl Engine {
    /// `at_open`: no write has happened since the store opened, so the newest stored
    /// generation of an SLO (live until the last shutdown) can be loaded instead of counted
    /// again. Later, an indicator that comes back gets a new generation: the old one missed
    /// the events of the time it was not active.
    pub(super) async fn reload_inner(
        &self,
        slos: Vec<Slo>,
        at_open: bool,
    ) -> Result<ReloadReport, EngineError> {
        let inner = &self.inner;
        let _busy = inner.busy.lock().await;
        let mut report = ReloadReport::default();
        let (keep_as_is, fresh) = self.split_kept(slos);
        let names: Vec<&str> = fresh.iter().map(|s| s.name.as_str()).collect();
        let stored = if names.is_empty() {
            Generations::new()
        } else {
            self.stored_generations(&names).await?
        };
        let fresh = compile_fresh(fresh, &keep_as_is, &stored, at_open)?;

        let now = inner.clock.now();
        for (slo, c, backfill) in &fresh {
            if !*backfill {
                self.load_generation(slo, c, now).await?;
                report.loaded.push(slo.name.clone());
            }
        }

        // Backfills: their snapshots are taken while writes wait, so that they see exactly the
        // events written before live counting of the new generation starts.
        let mut pending = Vec::new();
        let resolved;
        {
            let _paused = inner.store.pause_writes().await;
            for (slo, c, _) in fresh.iter().filter(|(_, _, b)| *b) {
                pending.push((slo, c, self.plan_backfill(slo, c, now).await?));
                self.install(slo.clone(), c.clone(), BTreeMap::new(), &[]);
            }
            for slo in &keep_as_is {
                self.update_spec(slo.clone());
            }
            resolved = self.remove_missing(&keep_as_is, &fresh, now);
            self.publish_active();
        }
        // Recorded once writes go on again.
        if let Err(e) = self.record(&resolved).await {
            tracing::error!(error = %e, "cannot record alert transitions");
        }
        let mut failures = Vec::new();
        for (slo, c, p) in pending {
            match self.finish_backfill(slo, c, p, now).await {
                Ok(()) => report.backfilled.push(slo.name.clone()),
                Err(e) => {
                    // Not half counted: the SLO leaves the set, and the next reload (the
                    // watcher retries on the next tick) counts it anew.
                    self.drop_entry(&slo.name);
                    failures.push(format!("{}: {e}", slo.name));
                }
            }
        }
        self.restore_alerts().await?;
        inner.metrics.slos.set(inner.entries().len() as i64);
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(EngineError::Query(failures.join("; ")))
        }
    }

    /// SLOs whose counts in memory still serve (same indicator, reaching as far back as the
    /// window needs), and the ones that need counts.
    fn split_kept(&self, slos: Vec<Slo>) -> (Vec<Slo>, Vec<Slo>) {
        let entries = self.inner.entries();
        slos.into_iter().partition(|slo| {
            let hash = counter::indicator_hash(slo);
            entries.get(&slo.name).is_some_and(|e| {
                e.compiled.version.starts_with(&format!("{hash}.")) && keep(slo) <= keep(&e.slo)
            })
        })
    }

    async fn stored_generations(&self, names: &[&str]) -> Result<Generations, EngineError> {
        let mut stored = Generations::new();
        for b in self.inner.batches(&queries::generations_sql(names)).await? {
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
        Ok(stored)
    }

    /// Loads the stored counts of a complete generation into memory.
    async fn load_generation(
        &self,
        slo: &Slo,
        c: &Arc<CompiledSlo>,
        now: Nanos,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let sql = queries::stored_counts_sql(&slo.name, &c.version, now - keep(slo));
        let mut series: BTreeMap<String, Series> = BTreeMap::new();
        let mut loaded = Vec::new();
        for b in inner.batches(&sql).await? {
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
            self.count_metric_points(slo, c, now - 6 * HOUR).await?;
        }
        self.install(slo.clone(), c.clone(), series, &loaded);
        Ok(())
    }

    /// Stores a finished backfill's counts (and the marker of a complete generation) and
    /// adds them to memory.
    async fn finish_backfill(
        &self,
        slo: &Slo,
        c: &Arc<CompiledSlo>,
        pending: Pending,
        now: Nanos,
    ) -> Result<(), String> {
        let inner = &self.inner;
        let started = std::time::Instant::now();
        let mut counts = self
            .run_backfill(slo, c, pending)
            .await
            .map_err(|e| format!("backfill failed: {e}"))?;
        for (g, _) in counts.keys() {
            c.know_group(g);
        }
        // The marker row: this generation's backfill is complete.
        counts
            .entry((String::new(), floor(now, MINUTE)))
            .or_default();
        let batch = counter::counts_batch(&[(&slo.name, &c.version, ORIGIN_BACKFILL, counts)])
            .map_err(|e| format!("cannot build its counts: {e}"))?;
        if let Some(batch) = batch {
            let rows = counter::read_counts(&batch);
            inner
                .store
                .write(vec![(Table::SloCounts, batch)])
                .await
                .map_err(|e| format!("cannot store its backfill: {e}"))?;
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
        Ok(())
    }

    /// Takes an SLO out of the set (and out of live counting).
    fn drop_entry(&self, name: &str) {
        self.inner.entries().remove(name);
        self.publish_active();
    }

    pub(super) fn install(
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

    /// Drops SLOs no longer in the set; returns the resolutions of their firing alerts.
    fn remove_missing(&self, kept: &[Slo], fresh: &[Fresh], now: Nanos) -> Vec<Transition> {
        let names: HashSet<&str> = kept
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
        gone
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
        let mut last: BTreeMap<String, (String, i64, Option<i64>)> = BTreeMap::new();
        for b in self.inner.batches(&queries::transitions_sql(now)).await? {
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
                    // A pending alert is not restored: its condition is judged afresh (a
                    // pending that cleared leaves no row, so the last one can be stale).
                    if let Some((state, t, starts)) = last.get(&a.fingerprint)
                        && state == "firing"
                    {
                        a.state = State::Firing;
                        a.since = Some(*t);
                        a.firing_since = starts.or(Some(*t));
                    }
                    e.alerts.insert(key, a);
                }
            }
        }
        Ok(())
    }

    /// Counts the stored points of a metric SLO since `from` (oldest first), leaving the
    /// compiled SLO with the last point of every series.
    pub(super) async fn count_metric_points(
        &self,
        slo: &Slo,
        c: &CompiledSlo,
        from: Nanos,
    ) -> Result<counter::SliceCounts, EngineError> {
        let mut counts = counter::SliceCounts::new();
        for b in self
            .inner
            .batches(&queries::metric_points_sql(slo, from))
            .await?
        {
            if let Err(e) = c.count(&b, &mut counts) {
                self.inner.metrics.counting_errors.inc();
                tracing::warn!(slo = %slo.name, error = %e, "cannot count stored points");
            }
        }
        Ok(counts)
    }
}

/// Compiles the SLOs that need counts: a complete stored generation is reused when nothing
/// was written since it was live; otherwise a new generation is counted from scratch
/// (backfill + live). Every SLO is compiled, the kept ones too (a store schema may have
/// changed), and every problem of every SLO is reported at once.
fn compile_fresh(
    fresh: Vec<Slo>,
    kept: &[Slo],
    stored: &Generations,
    at_open: bool,
) -> Result<Vec<Fresh>, EngineError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for slo in fresh {
        let hash = counter::indicator_hash(&slo);
        let of_indicator = |v: &str| v.starts_with(&format!("{hash}."));
        let generations: Vec<(u32, bool)> = stored
            .iter()
            .filter(|((n, v), _)| n == &slo.name && of_indicator(v))
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
            .is_none_or(|((_, v), _)| of_indicator(v));
        let (generation, backfill) = match complete {
            Some(g) if g + 1 == next && at_open && newest_of_slo => (g, false),
            _ => (next, true),
        };
        match CompiledSlo::compile(&slo, generation) {
            Ok(c) => out.push((slo, Arc::new(c), backfill)),
            Err(e) => errors.extend(e),
        }
    }
    for slo in kept {
        if let Err(e) = CompiledSlo::compile(slo, 0) {
            errors.extend(e);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(EngineError::Spec(errors))
    }
}
