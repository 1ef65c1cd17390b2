//! One SLO in memory: its counts per group, its timeslice verdicts and its alerts, and the
//! statuses computed from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use sightline_common::clock::{DAY, MINUTE, Nanos, floor};

use crate::alert::{Alert, Rule};
use crate::counter::CompiledSlo;
use crate::rollup::{Counts, Series};
use crate::spec::Slo;
use crate::status::{self, BURN_WINDOWS, BurnRate, Status};
use crate::window::{COARSE, FINE_HORIZON, Window, trailing};

/// How long counts of `slo` are kept in memory.
pub(super) fn keep(slo: &Slo) -> Nanos {
    let window = match slo.window {
        Window::Rolling(d) => d + COARSE,
        Window::Calendar { .. } => crate::window::MAX_WINDOW,
    };
    window.max(FINE_HORIZON) + DAY
}

pub(super) struct Entry {
    pub(super) slo: Arc<Slo>,
    pub(super) compiled: Arc<CompiledSlo>,
    /// Event counts per group.
    pub(super) series: BTreeMap<String, Series>,
    /// Timeslice SLOs: per group, one event per finished slice (good when the slice met its
    /// ratio): `frozen` for slices older than the fine horizon (final), plus the recent ones,
    /// judged again on every tick from the minute counts so that late events count.
    pub(super) slices: BTreeMap<String, Series>,
    pub(super) frozen: BTreeMap<String, Series>,
    /// Slices starting before this are in `frozen`.
    pub(super) frozen_until: Nanos,
    pub(super) alerts: BTreeMap<(Rule, String), Alert>,
}

/// A slice's verdict is final this long after it ends (room for export delays).
const SETTLE: Nanos = MINUTE;
/// Slices older than this are judged once more and frozen, while their minutes are still kept.
const FREEZE_AGE: Nanos = FINE_HORIZON - sightline_common::clock::HOUR;

impl Entry {
    /// The counts budgets and alerts are computed on: events, or slices for timeslice SLOs.
    pub(super) fn evaluated(&self) -> &BTreeMap<String, Series> {
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
    pub(super) fn derive_slices(&mut self, now: Nanos) {
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
    pub(super) fn derive_slices_from(&mut self, rows: &[(String, Nanos, Counts)], now: Nanos) {
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

/// Counts of every group in `[from, to)`.
pub(super) fn sum_all(groups: &BTreeMap<String, Series>, from: Nanos, to: Nanos) -> Counts {
    let mut c = Counts::default();
    for s in groups.values() {
        c.add(s.sum(from, to));
    }
    c
}

/// Where every group's per-minute counts have begun: sums over all groups that start earlier
/// start at 15-minute boundaries.
pub(super) fn fine_from_all(groups: &BTreeMap<String, Series>) -> Nanos {
    groups
        .values()
        .map(Series::fine_from)
        .max()
        .unwrap_or(i64::MIN)
}

/// The status of an SLO over all its groups (counts summed per window).
pub(super) fn overall_status(e: &Entry, now: Nanos) -> Status {
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
        exhausted_since: None,
    }
}
