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

    /// Sum over `[from, to)`; both are multiples of the step.
    fn sum(&self, from: Nanos, to: Nanos) -> Counts {
        let mut total = Counts::default();
        if self.slots.is_empty() || to <= from {
            return total;
        }
        let lo = ((from.max(self.start) - self.start) / self.step) as usize;
        let hi = ((to.min(self.end()) - self.start).max(0) / self.step) as usize;
        for c in self.slots.range(lo.min(hi)..hi) {
            total.add(*c);
        }
        total
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
        if from >= self.fine_from {
            return self.fine.sum(from, to);
        }
        // Old part from the coarse slices, up to a 15-minute boundary inside the fine horizon.
        let split = (floor(self.fine_from, COARSE) + COARSE).min(to);
        let mut c = self.coarse.sum(from, split);
        if to > split {
            c.add(self.fine.sum(split, to));
        }
        c
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
            for w in [5 * MINUTE, 30 * MINUTE, 3600 * 1_000_000_000, DAY, 3 * DAY, 7 * DAY, 30 * DAY] {
                let (from, to) = trailing(now, w);
                prop_assert_eq!(s.sum(from, to), brute(&events, from, to), "window {}", w);
            }
        }
    }

    #[test]
    fn no_events_is_no_data() {
        assert_eq!(Counts::default().ratio(), None);
        assert_eq!(Counts::new(1, 2).ratio(), Some(0.5));
    }
}
