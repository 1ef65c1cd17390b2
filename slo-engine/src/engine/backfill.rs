//! Counting stored events for a new generation of an SLO, with the very expressions live
//! counting uses: the events since the start of the kept window are scanned (only the columns
//! the expressions read) and every batch goes through [`CompiledSlo::count_with`]. No spec
//! expression is pasted into query text, so a backfill and live counting cannot disagree about
//! what an expression means.

use std::collections::{BTreeMap, HashSet};

use sightline_common::clock::Nanos;
use sightline_store::query::PlannedQuery;

use super::entry::keep;
use super::queries;
use super::{Engine, EngineError};
use crate::counter::{CompiledSlo, GroupCap, MaskCache, SliceCounts};
use crate::spec::{OTHER_GROUP, Slo};

/// A backfill whose snapshot is taken: events to scan, or metric points already counted.
pub(super) enum Pending {
    Scan(PlannedQuery),
    Counted(SliceCounts),
}

/// How many distinct groups a backfill counts on their own before it keeps the busiest
/// `max_groups` of them: a bound on its memory whatever the stored cardinality.
const COUNTED_GROUPS_PER_KEPT: usize = 4;

impl Engine {
    /// Takes the backfill's snapshot (call while writes are held back).
    pub(super) async fn plan_backfill(
        &self,
        slo: &Slo,
        c: &CompiledSlo,
        now: Nanos,
    ) -> Result<Pending, EngineError> {
        let from = now - keep(slo);
        if !slo.indicator.metrics().is_empty() {
            // Counter increases depend on each series' previous point: metric SLOs are counted
            // while writes wait, so that live counting goes on from the last stored point of
            // every series.
            return Ok(Pending::Counted(
                self.count_metric_points(slo, c, from).await?,
            ));
        }
        let sql = queries::events_sql(c.table, &c.columns(), from);
        let planned = self
            .inner
            .query
            .plan(&sql)
            .await
            .map_err(|e| EngineError::Query(format!("{e} (in {sql})")))?;
        Ok(Pending::Scan(planned))
    }

    /// Runs a planned backfill: counts every stored event, then keeps the busiest groups.
    pub(super) async fn run_backfill(
        &self,
        slo: &Slo,
        c: &CompiledSlo,
        pending: Pending,
    ) -> Result<SliceCounts, EngineError> {
        let planned = match pending {
            Pending::Counted(counts) => return Ok(counts),
            Pending::Scan(p) => p,
        };
        let exprs = c
            .for_schema(&planned.schema())
            .map_err(|e| EngineError::Query(e.to_string()))?;
        let mut stream = self
            .inner
            .query
            .stream(planned)
            .map_err(|e| EngineError::Query(e.to_string()))?;
        let mut counts = SliceCounts::new();
        let mut known = HashSet::new();
        let limit = slo.max_groups.saturating_mul(COUNTED_GROUPS_PER_KEPT);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| EngineError::Query(e.to_string()))?;
            let cap = GroupCap::Within {
                known: &mut known,
                limit,
            };
            c.count_with(&exprs, &batch, &mut counts, &mut MaskCache::new(), cap)
                .map_err(|e| EngineError::Query(e.to_string()))?;
        }
        Ok(cap_groups(counts, slo.max_groups))
    }
}

/// Folds counts into at most `max_groups` groups (the busiest), the rest into
/// [`OTHER_GROUP`].
fn cap_groups(counts: SliceCounts, max_groups: usize) -> SliceCounts {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((g, _), c) in &counts {
        if g != OTHER_GROUP {
            *totals.entry(g).or_default() += c.total;
        }
    }
    if totals.len() <= max_groups {
        return counts;
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: HashSet<String> = ranked
        .iter()
        .take(max_groups)
        .map(|(g, _)| g.to_string())
        .collect();
    let mut out = SliceCounts::new();
    for ((g, slice), c) in counts {
        let g = if kept.contains(&g) {
            g
        } else {
            OTHER_GROUP.to_string()
        };
        out.entry((g, slice)).or_default().add(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Counts;

    #[test]
    fn the_busiest_groups_are_kept_and_the_rest_counted_together() {
        let mut counts = SliceCounts::new();
        for (g, total) in [("a", 5), ("b", 50), ("c", 20), (OTHER_GROUP, 1)] {
            counts.insert((g.to_string(), 0), Counts::new(total, total));
        }
        let capped = cap_groups(counts.clone(), 2);
        let groups: Vec<(&str, u64)> = capped
            .iter()
            .map(|((g, _), c)| (g.as_str(), c.total))
            .collect();
        assert_eq!(groups, [(OTHER_GROUP, 6), ("b", 50), ("c", 20)]);
        assert_eq!(cap_groups(counts.clone(), 3), counts);
    }
}
