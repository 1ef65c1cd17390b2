//! What the engine tells about its SLOs: their status and alerts now, their history, and the
//! alerts that fire (what notifications are made of). Plain data; the API renders it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sightline_common::clock::{DAY, HOUR, Nanos, floor};

use super::Engine;
use super::entry::{Entry, keep, overall_status, sum_all};
use crate::alert::{self, Alert, State};
use crate::spec::Slo;
use crate::status::{self, Status};
use crate::window::{COARSE, MAX_WINDOW, Window};

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

fn state_of(e: &Entry, now: Nanos) -> SloState {
    let slo = &e.slo;
    let groups = if slo.group_by.is_some() {
        e.evaluated()
            .iter()
            .map(|(g, s)| {
                (
                    g.clone(),
                    status::status(s, slo.objective, &slo.window, now),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    SloState {
        slo: slo.clone(),
        version: e.compiled.version.clone(),
        status: overall_status(e, now),
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
        let step = step.clamp(COARSE, MAX_WINDOW);
        let step = (step + COARSE - 1) / COARSE * COARSE;
        let from = from.max(now - MAX_WINDOW - DAY);
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
            let hour = sum_all(e.evaluated(), t - HOUR, t);
            points.push(HistoryPoint {
                at: t,
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
}
