//! Live counting: every write's events are counted for the active SLOs (a [`WriteHook`]), and
//! the counts reach the in-memory series once the write is durable.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use sightline_common::clock::Nanos;
use sightline_store::WriteHook;
use sightline_store::schema::Table;

use super::Inner;
use super::entry::{Entry, keep};
use crate::counter::{self, ORIGIN_LIVE, SliceCounts};
use crate::rollup::Counts;
use crate::spec::Slo;

/// Counts events of every write for the active SLOs (see [`WriteHook`]).
#[derive(Debug)]
pub(super) struct Counter(pub(super) std::sync::Weak<Inner>);

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
    pub(super) fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds counted rows to the in-memory series of their SLO (if it is that version).
    pub(super) fn apply_counts(&self, rows: &[(String, String, String, Nanos, Counts)]) {
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
    pub(super) fn in_maintenance(&self, slo: &Slo, t: Nanos) -> bool {
        slo.exclude_maintenance && !self.maintenance.is_empty() && {
            let labels = slo.match_labels();
            self.maintenance
                .iter()
                .any(|w| w.active_at(t) && w.applies_to(&labels))
        }
    }
}
