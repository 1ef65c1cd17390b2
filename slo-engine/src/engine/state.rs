//! What the engine tells about its SLOs: their status and alerts now, their history, and the
//! alerts that fire (what notifications are made of). Plain data; the API renders it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos, floor};

use super::Engine;
use super::entry::{Entry, fine_from_all, keep, overall_status, sum_all};
use crate::alert::{self, Alert, State};
use crate::rollup::{Counts, Series};
use crate::spec::Slo;
use crate::status::{self, Status};
use crate::window::{COARSE, MAX_WINDOW, window_end};

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

/// One SLO now.
#[derive(Debug, Clone)]
pub struct SloState {
    pub slo: Arc<Slo>,
    /// The indicator's version and generation (changes when its counts start over).
    pub version: String,
    /// Over all groups.
    pub status: Status,
    /// Per group, for grouped SLOs (empty otherwise).
    pub groups: Vec<(String, Status)>,
    /// Every alert (rule × group) and its state.
    pub alerts: Vec<Alert>,
}

impl SloState {
    /// firing, pending or ok: the worst of its alerts.
    pub fn alert_state(&self) -> &'static str {
        if self.alerts.iter().any(|a| a.state == State::Firing) {
            "firing"
        } else if self.alerts.iter().any(|a| a.state == State::Pending) {
            "pending"
        } else {
            "ok"
        }
    }
}

/// The most points one history answer has.
pub const MAX_HISTORY_POINTS: usize = 5_000;

/// An SLO's history.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub points: Vec<HistoryPoint>,
    /// The start of the oldest time slice with events (a minute, or 15 minutes for counts
    /// older than the per-minute ones): where the SLO's life begins, as far as counts are kept.
    pub first_event: Option<Nanos>,
}

/// One point of an SLO's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    pub at: Nanos,
    /// Over the SLO's window ending at `at`.
    pub good: u64,
    pub total: u64,
    pub sli: Option<f64>,
    pub budget_remaining: Option<f64>,
    /// Burn rate over the hour before `at`.
    pub burn_rate_1h: Option<f64>,
}

/// The oldest slice with events over all groups.
fn first_slice(groups: &BTreeMap<String, Series>) -> Option<Nanos> {
    groups.values().filter_map(Series::first_slice).min()
}

fn state_of(e: &Entry, now: Nanos) -> SloState {
    let slo = &e.slo;
    let since = |sum: &dyn Fn(Nanos, Nanos) -> Counts, fine_from| {
        status::exhausted_since(sum, fine_from, slo.objective, &slo.window, now)
    };
    let groups = if slo.group_by.is_some() {
        e.evaluated()
            .iter()
            .map(|(g, s)| {
                let mut st = status::status(s, slo.objective, &slo.window, now);
                st.exhausted_since = since(&|f, t| s.sum(f, t), s.fine_from());
                (g.clone(), st)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut status = overall_status(e, now);
    let groups_all = e.evaluated();
    status.exhausted_since = since(&|f, t| sum_all(groups_all, f, t), fine_from_all(groups_all));
    SloState {
        slo: slo.clone(),
        version: e.compiled.version.clone(),
        status,
        groups,
        alerts: e.alerts.values().cloned().collect(),
    }
}

impl Engine {
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

    /// The annotations of the alert `fingerprint` if it is not firing now: with the values of
    /// the evaluation that cleared it and wording that says it resolved (what a resolved
    /// notification carries). `None` when it fires or no longer exists.
    pub fn resolved_annotations(&self, fingerprint: &str) -> Option<BTreeMap<String, String>> {
        let entries = self.inner.entries();
        entries.values().find_map(|e| {
            let a = e.alerts.values().find(|a| a.fingerprint == fingerprint)?;
            if a.state == State::Firing {
                return None;
            }
            let values = a.last.as_ref()?.values.clone();
            Some(alert::resolved_annotations(
                &e.slo, &a.rule, &a.group, &values,
            ))
        })
    }

    /// Where a history starts by default: the start of the SLO's window now, or a minute
    /// before its first events (see [`History::first_event`]) if they are younger, so a new
    /// SLO's charts begin with its first minute. `None` for an unknown SLO.
    pub fn history_start(&self, name: &str) -> Option<Nanos> {
        let now = self.inner.clock.now();
        let entries = self.inner.entries();
        let e = entries.get(name)?;
        let (window_start, _) = e.slo.window.bounds(now);
        Some(first_slice(e.evaluated()).map_or(window_start, |f| {
            window_start.max(floor(f, MINUTE) - MINUTE)
        }))
    }

    /// Every SLO now, by name.
    pub fn list(&self) -> Vec<SloState> {
        let now = self.inner.clock.now();
        self.inner
            .entries()
            .values()
            .map(|e| state_of(e, now))
            .collect()
    }

    /// One SLO now.
    pub fn get(&self, name: &str) -> Option<SloState> {
        let now = self.inner.clock.now();
        self.inner.entries().get(name).map(|e| state_of(e, now))
    }

    /// The SLO's SLI, budget remaining and 1h burn rate at every `step` (at least a minute)
    /// from `from` to `to`, as far back as counts are kept: at multiples of `step` (of 15
    /// minutes, where the counts are older than the per-minute ones), and a last point now.
    /// At most [`MAX_HISTORY_POINTS`]; `None` for an unknown SLO.
    pub fn history(&self, name: &str, from: Nanos, to: Nanos, step: Nanos) -> Option<History> {
        let now = self.inner.clock.now();
        let entries = self.inner.entries();
        let e = entries.get(name)?;
        let groups = e.evaluated();
        let step = step.clamp(MINUTE, MAX_WINDOW);
        let step = (step + MINUTE - 1) / MINUTE * MINUTE;
        let fine_from = fine_from_all(groups);
        let oldest = now - keep(&e.slo) + DAY;
        let last = window_end(now);
        let end = to.min(now);
        // The points' times first, then their sums: one pass over each group's slices (its
        // running totals) instead of a window's worth of slices per point, so the engine's
        // lock — which ingest takes too — is held for time linear in the data, not in points
        // times windows.
        let mut times = Vec::new();
        let mut t = floor(from.max(oldest), step) + step;
        // Where counts are per 15 minutes: the nearest multiple of 15 minutes at or under step.
        let coarse_step = (step / COARSE * COARSE).max(COARSE);
        while t < last && t <= end && times.len() < MAX_HISTORY_POINTS {
            let coarse = t - HOUR < fine_from;
            if coarse && t % COARSE != 0 {
                t = floor(t + COARSE - 1, COARSE);
                continue;
            }
            times.push(t);
            t += if coarse { coarse_step } else { step };
        }
        // `to` in the minute in progress: the window ending now.
        if to >= floor(now, MINUTE) && times.len() < MAX_HISTORY_POINTS {
            times.push(last);
        }
        let windows: Vec<Nanos> = times
            .iter()
            .map(|&t| e.slo.window.bounds(t - 1).0)
            .collect();
        let mut totals = vec![Counts::default(); times.len()];
        let mut hours = vec![Counts::default(); times.len()];
        for series in groups.values() {
            let sums = series.sums();
            for (i, &t) in times.iter().enumerate() {
                totals[i].add(sums.sum(windows[i], t));
                hours[i].add(sums.sum(t - HOUR, t));
            }
        }
        let points = times
            .iter()
            .zip(totals.iter().zip(&hours))
            .map(|(&t, (total, hour))| HistoryPoint {
                at: t.min(now),
                good: total.good,
                total: total.total,
                sli: total.ratio(),
                budget_remaining: status::budget(*total, e.slo.objective).map(|b| b.remaining),
                burn_rate_1h: status::burn_rate(*hour, e.slo.objective),
            })
            .collect();
        let first_event = first_slice(groups);
        Some(History {
            points,
            first_event,
        })
    }
}
