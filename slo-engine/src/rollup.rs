//! Good/valid event counts of one SLO (and group) per time slice, in memory: per minute for the
//! fine horizon (3 days and a bit, the longest burn-rate window) and per 15 minutes for as long
//! as the longest budget window. Every event is added to both, so a window sum can take its
//! old part from the coarse slices and its recent part from the fine ones.

use std::collections::VecDeque;

use crate::window::{COARSE, FINE_HORIZON};
use sightline_common::clock::{MINUTE, Nanos, floor};

/// Good and valid (total) events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub good: u64,
    pub total: u64,
}

impl Counts {
    pub fn new(good: u64, total: u64) -> Self {
        Self { good, total }
    }

    pub fn bad(&self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    pub fn add(&mut self, other: Counts) {
        self.good = self.good.saturating_add(other.good);
        self.total = self.total.saturating_add(other.total);
    }

    /// Good events over valid events; `None` without any event ("no data", never NaN).
    pub fn ratio(&self) -> Option<f64> {
        (self.total > 0).then(|| self.good as f64 / self.total as f64)
    }
}

/// Slices of one width, contiguous from `start`.
#[derive(Debug, Clone)]
struct Ring {
    step: Nanos,
    start: Nanos,
    slots: VecDeque<Counts>,
}

impl Ring {
    fn new(step: Nanos) -> Self {
        Self {
            step,
            start: 0,
            slots: VecDeque::new(),
        }
    }

    fn end(&self) -> Nanos {
        self.start + self.slots.len() as Nanos * self.step
    }

    fn add(&mut self, t: Nanos, c: Counts) {
        let slice = floor(t, self.step);
        if self.slots.is_empty() {
            self.start = slice;
            self.slots.push_back(c);
            return;
        }
        while slice < self.start {
            self.slots.push_front(Counts::default());
            self.start -= self.step;
        }
        while slice >= self.end() {
            self.slots.push_back(Counts::default());
        }
        let i = ((slice - self.start) / self.step) as usize;
        self.slots[i].add(c);
    }

    /// The slots of `[from, to)` (both multiples of the step), as an index range.
    fn slots_of(&self, from: Nanos, to: Nanos) -> std::ops::Range<usize> {
        if self.slots.is_empty() || to <= from {
            return 0..0;
        }
        let lo = ((from.max(self.start) - self.start) / self.step) as usize;
        let hi = ((to.min(self.end()) - self.start).max(0) / self.step) as usize;
        lo.min(hi)..hi
    }

    /// Sum over `[from, to)`; both are multiples of the step.
    fn sum(&self, from: Nanos, to: Nanos) -> Counts {
        let mut total = Counts::default();
        for c in self.slots.range(self.slots_of(from, to)) {
            total.add(*c);
        }
        total
    }

    /// Running totals: element `i` is the sum of the first `i` slots.
    fn running(&self) -> Vec<Counts> {
        let mut out = Vec::with_capacity(self.slots.len() + 1);
        let mut total = Counts::default();
        out.push(total);
        for c in &self.slots {
            total.add(*c);
            out.push(total);
        }
        out
    }

    /// [`Ring::sum`] from the running totals `running` of this ring, in two look-ups.
    fn sum_from_running(&self, running: &[Counts], from: Nanos, to: Nanos) -> Counts {
        let r = self.slots_of(from, to);
        match (running.get(r.start), running.get(r.end)) {
            (Some(lo), Some(hi)) if r.end > r.start => Counts {
                good: hi.good.saturating_sub(lo.good),
                total: hi.total.saturating_sub(lo.total),
            },
            _ => Counts::default(),
        }
    }

    fn trim_before(&mut self, t: Nanos) {
        while !self.slots.is_empty() && self.start + self.step <= t {
            self.slots.pop_front();
            self.start += self.step;
        }
        if self.slots.is_empty() {
            self.start = 0;
        }
    }

    /// Non-empty slices, oldest first.
    fn iter(&self) -> impl Iterator<Item = (Nanos, Counts)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.total > 0 || c.good > 0)
            .map(|(i, c)| (self.start + i as Nanos * self.step, *c))
    }
}

/// The counts of one SLO group.
#[derive(Debug, Clone)]
pub struct Series {
    fine: Ring,
    coarse: Ring,
    /// The fine slices hold every event from here on (older ones are only in the coarse).
    fine_from: Nanos,
    /// The newest event time seen, for the no-data alert.
    pub last_event: Option<Nanos>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            fine: Ring::new(MINUTE),
            coarse: Ring::new(COARSE),
            fine_from: i64::MIN,
            last_event: None,
        }
    }
}

impl Series {
    /// Adds events that happened at `t`. Events older than `now - keep` are dropped.
    pub fn add(&mut self, now: Nanos, keep: Nanos, t: Nanos, c: Counts) {
        if c.total == 0 && c.good == 0 {
            return;
        }
        if t < now - keep {
            return;
        }
        self.advance(now);
        if t >= self.fine_from {
            self.fine.add(t, c);
        }
        self.coarse.add(t, c);
        if c.total > 0 {
            self.last_event = Some(self.last_event.map_or(t, |l| l.max(t)));
        }
    }

    /// Moves the fine horizon to `now`.
    fn advance(&mut self, now: Nanos) {
        let from = floor(now, MINUTE) - FINE_HORIZON;
        if from > self.fine_from {
            self.fine_from = from;
            self.fine.trim_before(from);
        }
    }

    /// Counts of events in `[from, to)`. Both must be minute boundaries; where `from` is
    /// before the fine horizon it must be a 15-minute boundary, and so must `to` if it is too.
    pub fn sum(&self, from: Nanos, to: Nanos) -> Counts {
        self.split_sum(
            from,
            to,
            |a, b| self.fine.sum(a, b),
            |a, b| self.coarse.sum(a, b),
        )
    }

    /// A sum split where [`Series::sum`] splits it, each part summed by `fine` or `coarse`.
    fn split_sum(
        &self,
        from: Nanos,
        to: Nanos,
        fine: impl Fn(Nanos, Nanos) -> Counts,
        coarse: impl Fn(Nanos, Nanos) -> Counts,
    ) -> Counts {
        if from >= self.fine_from {
            return fine(from, to);
        }
        // Old part from the coarse slices, up to a 15-minute boundary inside the fine horizon.
        let split = (floor(self.fine_from, COARSE) + COARSE).min(to);
        let mut c = coarse(from, split);
        if to > split {
            c.add(fine(split, to));
        }
        c
    }

    /// For many sums over one series (a history's points): running totals made once, in time
    /// linear in the slices, after which each sum takes constant time instead of time linear
    /// in its window.
    pub fn sums(&self) -> Sums<'_> {
        Sums {
            series: self,
            fine: self.fine.running(),
            coarse: self.coarse.running(),
        }
    }

    /// Forgets slices no window can reach any more.
    pub fn trim(&mut self, now: Nanos, keep: Nanos) {
        self.advance(now);
        self.coarse.trim_before(floor(now - keep, COARSE));
    }

    /// Non-empty minute slices of the fine horizon, oldest first.
    pub fn minutes(&self) -> impl Iterator<Item = (Nanos, Counts)> + '_ {
        self.fine.iter()
    }

    /// Where the per-minute counts start: sums that begin earlier begin at 15-minute
    /// boundaries.
    pub fn fine_from(&self) -> Nanos {
        self.fine_from
    }

    /// The start of the oldest slice with events: a minute if it is within the per-minute
    /// counts, else 15 minutes.
    pub fn first_slice(&self) -> Option<Nanos> {
        let (coarse, _) = self.coarse.iter().next()?;
        if coarse + COARSE > self.fine_from
            && let Some((minute, _)) = self.fine.iter().next()
        {
            return Some(minute.max(coarse));
        }
        Some(coarse)
    }

    pub fn is_empty(&self) -> bool {
        self.coarse.slots.is_empty()
    }
}

/// A series' running totals (see [`Series::sums`]).
#[derive(Debug)]
pub struct Sums<'a> {
    series: &'a Series,
    fine: Vec<Counts>,
    coarse: Vec<Counts>,
}

impl Sums<'_> {
    /// [`Series::sum`], with the same rules for `from` and `to`.
    pub fn sum(&self, from: Nanos, to: Nanos) -> Counts {
        let s = self.series;
        s.split_sum(
            from,
            to,
            |a, b| s.fine.sum_from_running(&self.fine, a, b),
            |a, b| s.coarse.sum_from_running(&self.coarse, a, b),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::trailing;
    use proptest::prelude::*;
    use sightline_common::clock::DAY;

    const KEEP: Nanos = 40 * DAY;

    fn brute(events: &[(Nanos, Counts)], from: Nanos, to: Nanos) -> Counts {
        let mut c = Counts::default();
        for (t, e) in events {
            if *t >= from && *t < to {
                c.add(*e);
            }
        }
        c
    }

    proptest! {
        /// Window sums equal a brute-force sum over the raw events, for every window length,
        /// with gaps, bursts and events arriving out of order.
        #[test]
        fn sums_match_brute_force(
            raw in prop::collection::vec((0i64..(35 * DAY), 0u64..5, 0u64..5), 0..400),
            now_offset in 0i64..(2 * DAY),
        ) {
            let base = 1_800_000_000 * sightline_common::clock::SECOND;
            let now = base + 35 * DAY + now_offset;
            let events: Vec<(Nanos, Counts)> = raw
                .into_iter()
                .map(|(t, g, b)| (base + t, Counts::new(g, g + b)))
                .collect();
            let mut s = Series::default();
            for (t, c) in &events {
                s.add(now, KEEP, *t, *c);
            }
            s.trim(now, KEEP);
            let sums = s.sums();
            for w in [5 * MINUTE, 30 * MINUTE, 3600 * 1_000_000_000, DAY, 3 * DAY, 7 * DAY, 30 * DAY] {
                let (from, to) = trailing(now, w);
                prop_assert_eq!(s.sum(from, to), brute(&events, from, to), "window {}", w);
                prop_assert_eq!(sums.sum(from, to), s.sum(from, to), "running, window {}", w);
                // Windows ending in the past, as a history's points do.
                for back in [MINUTE, 17 * MINUTE, 6 * 3600 * 1_000_000_000, 2 * DAY] {
                    let (from, to) = trailing(now - back, w);
                    // (sums reaching past the per-minute counts start at 15-minute boundaries)
                    let from = floor(from, COARSE);
                    prop_assert_eq!(sums.sum(from, to), brute(&events, from, to), "window {} ending {} ago", w, back);
                }
            }
        }
    }

    #[test]
    fn no_events_is_no_data() {
        assert_eq!(Counts::default().ratio(), None);
        assert_eq!(Counts::new(1, 2).ratio(), Some(0.5));
    }
}
