//! Alert rules and their states.
//!
//! Each SLO group has one alert per burn-rate tier, plus budget-exhausted and no-data alerts
//! when enabled. An alert goes inactive → pending (its condition holds, `pending_for` has not
//! passed) → firing → resolved (the condition cleared) → inactive. Firing and resolved (and
//! pending) transitions are recorded in the `slo_alerts` table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rollup::Series;
use crate::spec::{Slo, Tier};
use crate::status::{Status, burn_rate};
use crate::window::trailing;
use sightline_common::clock::Nanos;

pub const BURN_RATE_ALERT: &str = "SLOBurnRate";
pub const BUDGET_EXHAUSTED_ALERT: &str = "SLOBudgetExhausted";
pub const NO_DATA_ALERT: &str = "SLONoData";

/// Which rule an alert belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Rule {
    Tier(String),
    BudgetExhausted,
    NoData,
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Tier(t) => t,
            Rule::BudgetExhausted => "budget-exhausted",
            Rule::NoData => "no-data",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

/// What a rule saw at one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub active: bool,
    /// Burn rates over the long and short windows (tiers), or budget remaining, etc.
    pub values: BTreeMap<String, f64>,
}

impl Observation {
    /// The condition does not hold (its rule or SLO went away).
    pub fn cleared() -> Self {
        Self {
            active: false,
            values: BTreeMap::new(),
        }
    }
}

/// One alert (rule × group) and its state.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub rule: Rule,
    pub group: String,
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    pub state: State,
    /// When the current state began (pending or firing).
    pub since: Option<Nanos>,
    /// When it started firing (kept across ticks while firing).
    pub firing_since: Option<Nanos>,
    pub last: Option<Observation>,
}

/// A change of state worth recording and notifying.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub at: Nanos,
    pub slo: String,
    pub rule: String,
    pub group: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// `pending`, `firing` or `resolved`.
    pub state: &'static str,
    /// When it started firing (for `firing` and `resolved`).
    pub starts_at: Option<Nanos>,
    pub values: BTreeMap<String, f64>,
}

/// FNV-1a (64-bit) over the sorted labels: the same set of labels always gives the same
/// fingerprint, across restarts and versions.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let bytes = labels
        .iter()
        .flat_map(|(k, v)| k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]));
    format!("{:016x}", crate::counter::fnv1a(bytes))
}

/// The labels of an alert of `slo`'s `rule` for `group` (empty when not grouped).
pub fn labels(slo: &Slo, rule: &Rule, group: &str) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = slo.labels.clone();
    let (alertname, severity) = match rule {
        Rule::Tier(t) => (
            BURN_RATE_ALERT,
            slo.alerting
                .tiers
                .iter()
                .find(|x| &x.name == t)
                .map_or("page", |x| x.severity.as_str()),
        ),
        Rule::BudgetExhausted => (BUDGET_EXHAUSTED_ALERT, "ticket"),
        Rule::NoData => (NO_DATA_ALERT, "ticket"),
    };
    l.insert("alertname".into(), alertname.into());
    l.insert("slo".into(), slo.name.clone());
    l.insert("service".into(), slo.service.clone());
    l.insert("severity".into(), severity.into());
    l.insert("tier".into(), rule.name().into());
    if !group.is_empty() {
        l.insert("group".into(), group.into());
    }
    l
}

/// The rules of `slo`.
pub fn rules(slo: &Slo) -> Vec<Rule> {
    let mut r: Vec<Rule> = slo
        .alerting
        .tiers
        .iter()
        .map(|t| Rule::Tier(t.name.clone()))
        .collect();
    if slo.alerting.budget_exhausted {
        r.push(Rule::BudgetExhausted);
    }
    if slo.alerting.no_data_after.is_some() {
        r.push(Rule::NoData);
    }
    r
}

/// Evaluates `rule` of `slo` on a group's counts.
pub fn observe(
    slo: &Slo,
    rule: &Rule,
    series: &Series,
    status: &Status,
    now: Nanos,
) -> Observation {
    let mut values = BTreeMap::new();
    let active = match rule {
        Rule::Tier(name) => {
            if let Some(b) = &status.budget {
                values.insert("budget_remaining".into(), b.remaining);
            }
            match slo.alerting.tiers.iter().find(|t| &t.name == name) {
                Some(tier) => tier_active(slo, tier, series, now, &mut values),
                None => false,
            }
        }
        Rule::BudgetExhausted => match &status.budget {
            Some(b) => {
                values.insert("budget_remaining".into(), b.remaining);
                b.remaining <= 0.0
            }
            None => false,
        },
        Rule::NoData => {
            let after = slo.alerting.no_data_after.unwrap_or(i64::MAX);
            let quiet_since = series.last_event;
            if let Some(t) = quiet_since {
                values.insert("seconds_since_last_event".into(), (now - t) as f64 / 1e9);
            }
            // Quiet for `after`: no event newer than `now - after`.
            match quiet_since {
                Some(t) => now - t >= after,
                None => true,
            }
        }
    };
    Observation { active, values }
}

fn tier_active(
    slo: &Slo,
    tier: &Tier,
    series: &Series,
    now: Nanos,
    values: &mut BTreeMap<String, f64>,
) -> bool {
    let threshold = tier.burn_rate(slo.window.length(now));
    let (lf, lt) = trailing(now, tier.long);
    let (sf, st) = trailing(now, tier.short);
    let long = series.sum(lf, lt);
    let short = series.sum(sf, st);
    values.insert("threshold".into(), threshold);
    values.insert("long_window_events".into(), long.total as f64);
    let (Some(bl), Some(bs)) = (
        burn_rate(long, slo.objective),
        burn_rate(short, slo.objective),
    ) else {
        return false;
    };
    values.insert("burn_rate_long".into(), bl);
    values.insert("burn_rate_short".into(), bs);
    long.total >= slo.alerting.min_events && bl >= threshold && bs >= threshold
}

fn percent(x: f64) -> String {
    let p = format!("{:.3}", x * 100.0);
    let p = p.trim_end_matches('0').trim_end_matches('.');
    format!("{p}%")
}

/// `1h`, `30m`, `7d`: a window as specs write it.
pub fn window_name(d: Nanos) -> String {
    use sightline_common::clock::{DAY, HOUR, MINUTE};
    match d {
        d if d % DAY == 0 => format!("{}d", d / DAY),
        d if d % HOUR == 0 => format!("{}h", d / HOUR),
        d => format!("{}m", d / MINUTE),
    }
}

/// What an alert is about: the SLO, and its group if it has one.
fn subject(slo: &Slo, group: &str) -> String {
    if group.is_empty() {
        slo.name.clone()
    } else {
        format!("{} ({group})", slo.name)
    }
}

/// Alertmanager-style annotations of an alert: the SLO's own (runbook…) plus `summary`,
/// `description` and the facts behind the alert (`objective`, `window`, the tier's windows,
/// burn rates and threshold, `budget_remaining`), numbers rounded for people.
pub fn annotations(
    slo: &Slo,
    rule: &Rule,
    group: &str,
    values: &BTreeMap<String, f64>,
) -> BTreeMap<String, String> {
    build_annotations(slo, rule, group, values, false)
}

/// The annotations of an alert that has resolved, with `values` from the evaluation that
/// cleared it: the same facts as [`annotations`], numbers as they are now, and a summary and
/// description that say it is over (the SLO's own `summary`/`description` win, as for firing).
pub fn resolved_annotations(
    slo: &Slo,
    rule: &Rule,
    group: &str,
    values: &BTreeMap<String, f64>,
) -> BTreeMap<String, String> {
    build_annotations(slo, rule, group, values, true)
}

fn build_annotations(
    slo: &Slo,
    rule: &Rule,
    group: &str,
    values: &BTreeMap<String, f64>,
    resolved: bool,
) -> BTreeMap<String, String> {
    let mut a = slo.annotations.clone();
    let v = |k: &str| values.get(k).copied().filter(|x| x.is_finite());
    let what = subject(slo, group);
    let objective = format!(
        "objective {} over {}",
        percent(slo.objective),
        slo.window.describe()
    );
    a.insert("objective".into(), percent(slo.objective));
    a.insert("window".into(), slo.window.describe());
    if let Some(b) = v("budget_remaining") {
        a.insert("budget_remaining".into(), percent(b));
    }
    let budget = v("budget_remaining").map_or(String::new(), |b| {
        if b > 0.0 {
            format!(" {} of the error budget remains.", percent(b))
        } else {
            let still = if resolved { "still " } else { "" };
            format!(
                " The error budget is {still}spent ({} of it used).",
                percent(1.0 - b)
            )
        }
    });
    let (summary, description) = match rule {
        Rule::Tier(name) => {
            let tier = slo.alerting.tiers.iter().find(|t| &t.name == name);
            let (long, short) = tier.map_or((String::new(), String::new()), |t| {
                (window_name(t.long), window_name(t.short))
            });
            if tier.is_some() {
                a.insert("long_window".into(), long.clone());
                a.insert("short_window".into(), short.clone());
            }
            for k in ["burn_rate_long", "burn_rate_short", "threshold"] {
                if let Some(x) = v(k) {
                    a.insert(k.into(), format!("{x:.2}"));
                }
            }
            if resolved {
                let num =
                    |k: &str| v(k).map_or_else(|| "no data".to_string(), |x| format!("{x:.2}"));
                (
                    format!("{what} is no longer burning its error budget too fast ({name})"),
                    format!(
                        "Resolved: burn rate now {} over {long} and {} over {short}, threshold {} \
                         ({objective}).{budget}",
                        num("burn_rate_long"),
                        num("burn_rate_short"),
                        num("threshold"),
                    ),
                )
            } else {
                let num = |k: &str| v(k).unwrap_or(f64::NAN);
                (
                    format!("{what} is burning its error budget too fast ({name})"),
                    format!(
                        "Burn rate {:.2} over {long} and {:.2} over {short}, threshold {:.2} \
                         ({objective}).{budget}",
                        num("burn_rate_long"),
                        num("burn_rate_short"),
                        num("threshold"),
                    ),
                )
            }
        }
        Rule::BudgetExhausted if resolved => (
            format!("{what} has error budget again"),
            format!(
                "Resolved: the error budget of {} over {} is no longer exhausted.{budget}",
                percent(slo.objective),
                slo.window.describe()
            ),
        ),
        Rule::BudgetExhausted => (
            format!("{what} has spent its whole error budget"),
            format!(
                "The error budget of {} over {} is exhausted.{budget}",
                percent(slo.objective),
                slo.window.describe()
            ),
        ),
        Rule::NoData if resolved => (
            format!("{what} receives events again"),
            "Resolved: events arrive again.".into(),
        ),
        Rule::NoData => (
            format!("{what} has received no events"),
            match v("seconds_since_last_event") {
                Some(s) => format!("The last event arrived {s:.0}s ago."),
                None => "No event has arrived since the SLO was loaded.".into(),
            },
        ),
    };
    a.entry("summary".into()).or_insert(summary);
    a.entry("description".into()).or_insert(description);
    a
}

impl Alert {
    pub fn new(slo: &Slo, rule: Rule, group: &str) -> Self {
        let labels = labels(slo, &rule, group);
        Self {
            fingerprint: fingerprint(&labels),
            labels,
            rule,
            group: group.into(),
            state: State::Inactive,
            since: None,
            firing_since: None,
            last: None,
        }
    }

    /// Moves the state machine with an observation at `now`; returns the transition, if any.
    pub fn step(&mut self, slo: &Slo, obs: Observation, now: Nanos) -> Option<Transition> {
        let pending_for = slo.alerting.pending_for;
        let before = self.state;
        match (self.state, obs.active) {
            (State::Inactive, true) if pending_for == 0 => {
                self.state = State::Firing;
                self.since = Some(now);
                self.firing_since = Some(now);
            }
            (State::Inactive, true) => {
                self.state = State::Pending;
                self.since = Some(now);
            }
            (State::Pending, true) if now - self.since.unwrap_or(now) >= pending_for => {
                self.state = State::Firing;
                self.since = Some(now);
                self.firing_since = Some(now);
            }
            (State::Pending, false) | (State::Firing, false) => {
                self.state = State::Inactive;
                self.since = None;
            }
            _ => {}
        }
        let kind = match (before, self.state) {
            (State::Inactive, State::Pending) => Some("pending"),
            (b, State::Firing) if b != State::Firing => Some("firing"),
            (State::Firing, State::Inactive) => Some("resolved"),
            _ => None,
        };
        let starts_at = self.firing_since;
        if self.state == State::Inactive {
            self.firing_since = None;
        }
        let values = obs.values.clone();
        self.last = Some(obs);
        kind.map(|state| Transition {
            at: now,
            slo: slo.name.clone(),
            rule: self.rule.name().into(),
            group: self.group.clone(),
            fingerprint: self.fingerprint.clone(),
            labels: self.labels.clone(),
            state,
            starts_at: if state == "pending" { None } else { starts_at },
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_state_the_facts_for_people() {
        let slo = crate::spec::parse(
            "t.yaml",
            "name: checkout\nobjective: 99.9\nwindow: 30d\nindicator:\n  spans:\n    good: \"status_code != 'error'\"\nannotations:\n  runbook: https://r.example/x\n",
        )
        .expect("valid in this test")
        .remove(0);
        let values = BTreeMap::from([
            ("burn_rate_long".to_string(), 21.4),
            ("burn_rate_short".to_string(), 25.03),
            ("threshold".to_string(), 14.4),
            ("budget_remaining".to_string(), 0.712),
        ]);
        let a = annotations(&slo, &Rule::Tier("page-1h".into()), "", &values);
        assert_eq!(
            a["description"],
            "Burn rate 21.40 over 1h and 25.03 over 5m, threshold 14.40 (objective 99.9% over \
             30d). 71.2% of the error budget remains."
        );
        assert_eq!(a["runbook"], "https://r.example/x");
        assert_eq!(
            (a["long_window"].as_str(), a["short_window"].as_str()),
            ("1h", "5m")
        );
        let spent = BTreeMap::from([("budget_remaining".to_string(), -1.5)]);
        let a = annotations(&slo, &Rule::BudgetExhausted, "eu", &spent);
        assert_eq!(
            a["summary"],
            "checkout (eu) has spent its whole error budget"
        );
        assert!(a["description"].ends_with("The error budget is spent (250% of it used)."));

        // Resolved: the same facts as they are now, and wording that says it is over.
        let cleared = BTreeMap::from([
            ("burn_rate_long".to_string(), 14.25),
            ("threshold".to_string(), 14.4),
            ("budget_remaining".to_string(), -0.5),
        ]);
        let a = resolved_annotations(&slo, &Rule::Tier("page-1h".into()), "", &cleared);
        assert_eq!(
            a["summary"],
            "checkout is no longer burning its error budget too fast (page-1h)"
        );
        assert_eq!(
            a["description"],
            "Resolved: burn rate now 14.25 over 1h and no data over 5m, threshold 14.40 \
             (objective 99.9% over 30d). The error budget is still spent (150% of it used)."
        );
        assert_eq!(a["burn_rate_long"], "14.25");
        assert_eq!(a["runbook"], "https://r.example/x");
        let a = resolved_annotations(&slo, &Rule::BudgetExhausted, "eu", &cleared);
        assert_eq!(a["summary"], "checkout (eu) has error budget again");
        let a = resolved_annotations(&slo, &Rule::NoData, "", &BTreeMap::new());
        assert_eq!(a["description"], "Resolved: events arrive again.");
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let mut a = BTreeMap::new();
        a.insert("slo".to_string(), "x".to_string());
        let mut b = a.clone();
        b.insert("tier".into(), "page-1h".into());
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // Pinned: fingerprints are stored and must not change between versions.
        assert_eq!(fingerprint(&a), "a55d5701972ef8b5");
    }
}
