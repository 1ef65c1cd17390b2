//! Grouping and deciding: which alerts go to which receiver's group, when a group is looked
//! at (`group_wait` after it appears, then every `group_interval`), and whether it needs a
//! notification then (new firing alerts, alerts that resolved, or `repeat_interval` passed
//! since the last one), judged against the notification log so that nothing is announced
//! twice — also across restarts.

use std::collections::{BTreeMap, BTreeSet};

use sightline_common::clock::Nanos;
use sightline_slo::engine::FiringAlert;

use crate::message::{AlertOut, Notification};
use crate::outbox::{GroupId, LogEntry};
use crate::route::Route;

#[derive(Debug)]
struct Group {
    route: String,
    labels: BTreeMap<String, String>,
    order: Vec<String>,
    members: BTreeSet<String>,
    next_flush: Nanos,
}

/// A notification to queue, and the log entry it replaces (restored if queuing fails).
#[derive(Debug)]
pub struct Queued {
    pub notification: Notification,
    pub previous: Option<LogEntry>,
}

#[derive(Debug)]
pub struct Dispatcher {
    root: Route,
    send_resolved: BTreeMap<String, bool>,
    external_url: String,
    /// Every alert in some group, by fingerprint.
    alerts: BTreeMap<String, AlertOut>,
    groups: BTreeMap<GroupId, Group>,
    pub log: BTreeMap<GroupId, LogEntry>,
    next_seq: u64,
    /// Alerts rebuilt from the log at start: routed again when first seen firing, so that a
    /// changed route tree takes effect for alerts that fire across a restart.
    unrouted: BTreeSet<String>,
}

use sightline_common::clock::nanos;

/// The UI page of an SLO.
pub fn slo_url(external_url: &str, slo: &str) -> String {
    let mut u = String::with_capacity(slo.len());
    for b in slo.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                u.push(b as char)
            }
            b => u.push_str(&format!("%{b:02X}")),
        }
    }
    format!("{}/slos/{u}", external_url.trim_end_matches('/'))
}

/// Annotations a resolved alert also carries as they were when it fired.
const AT_FIRING: &[&str] = &[
    "burn_rate_long",
    "burn_rate_short",
    "budget_remaining",
    "description",
];

impl Dispatcher {
    /// `log` and `next_seq` come from the outbox; groups that announced firing alerts are
    /// rebuilt from the log, so that alerts which resolved while Sightline was down are
    /// announced as resolved.
    pub fn new(
        root: Route,
        send_resolved: BTreeMap<String, bool>,
        external_url: String,
        log: BTreeMap<GroupId, LogEntry>,
        next_seq: u64,
        now: Nanos,
    ) -> Self {
        let mut d = Self {
            root,
            send_resolved,
            external_url,
            alerts: BTreeMap::new(),
            groups: BTreeMap::new(),
            log,
            next_seq,
            unrouted: BTreeSet::new(),
        };
        for (id, e) in &d.log {
            if e.firing.is_empty() || !d.send_resolved.contains_key(&id.0) {
                continue;
            }
            let route = d.root.find(&e.route).unwrap_or(&d.root);
            d.groups.insert(
                id.clone(),
                Group {
                    route: route.id.clone(),
                    labels: e.group_labels.clone(),
                    order: e.group_by.clone(),
                    members: e.firing.keys().cloned().collect(),
                    next_flush: now + nanos(route.group_wait),
                },
            );
            for (fp, a) in &e.firing {
                d.alerts.entry(fp.clone()).or_insert_with(|| a.clone());
                d.unrouted.insert(fp.clone());
            }
        }
        d
    }

    /// Takes the engine's firing alerts: new ones join their groups, missing ones resolve
    /// (keeping the annotations they fired with).
    pub fn observe(&mut self, firing: &[FiringAlert], now: Nanos) {
        self.observe_with(firing, now, |_| None);
    }

    /// As [`Self::observe`], with `resolved(fingerprint)` giving a resolving alert's
    /// annotations now (the engine's [`Engine::resolved_annotations`]): a resolved
    /// notification then carries the figures that cleared it, and those it fired with as
    /// `<name>_at_firing`.
    ///
    /// [`Engine::resolved_annotations`]: sightline_slo::Engine::resolved_annotations
    pub fn observe_with(
        &mut self,
        firing: &[FiringAlert],
        now: Nanos,
        resolved: impl Fn(&str) -> Option<BTreeMap<String, String>>,
    ) {
        let mut seen = BTreeSet::new();
        for f in firing {
            seen.insert(f.fingerprint.as_str());
            let url = slo_url(&self.external_url, &f.slo);
            let mut annotations = f.annotations.clone();
            annotations.insert("slo_url".into(), url.clone());
            let out = AlertOut {
                fingerprint: f.fingerprint.clone(),
                status: "firing".into(),
                labels: f.labels.clone(),
                annotations,
                starts_at: f.starts_at,
                ends_at: None,
                generator_url: url,
            };
            let was_firing = self
                .alerts
                .get(&f.fingerprint)
                .is_some_and(|a| a.status == "firing");
            self.alerts.insert(f.fingerprint.clone(), out);
            let restored = self.unrouted.remove(&f.fingerprint);
            if !was_firing || restored {
                let targets = self.route(&f.fingerprint, &f.labels, now);
                if restored {
                    // Groups of the old route tree that this alert no longer belongs to.
                    for (id, g) in self.groups.iter_mut() {
                        if !targets.contains(id) {
                            g.members.remove(&f.fingerprint);
                        }
                    }
                    self.groups.retain(|_, g| !g.members.is_empty());
                }
            }
        }
        for a in self.alerts.values_mut() {
            if a.status == "firing" && !seen.contains(a.fingerprint.as_str()) {
                a.status = "resolved".into();
                a.ends_at = Some(now);
                if let Some(mut current) = resolved(&a.fingerprint) {
                    for k in AT_FIRING {
                        if let Some(v) = a.annotations.get(*k) {
                            current.insert(format!("{k}_at_firing"), v.clone());
                        }
                    }
                    if let Some(url) = a.annotations.get("slo_url") {
                        current.insert("slo_url".into(), url.clone());
                    }
                    a.annotations = current;
                }
            }
        }
    }

    /// Adds an alert to the groups its routes send it to; returns those groups.
    fn route(
        &mut self,
        fp: &str,
        labels: &BTreeMap<String, String>,
        now: Nanos,
    ) -> BTreeSet<GroupId> {
        let mut targets = BTreeSet::new();
        for route in self.root.matching(labels) {
            let (group_labels, key) = route.group(labels);
            for receiver in &route.receivers {
                targets.insert((receiver.clone(), key.clone()));
                self.groups
                    .entry((receiver.clone(), key.clone()))
                    .or_insert_with(|| Group {
                        route: route.id.clone(),
                        labels: group_labels.clone(),
                        order: route.group_order(),
                        members: BTreeSet::new(),
                        next_flush: now + nanos(route.group_wait),
                    })
                    .members
                    .insert(fp.to_string());
            }
        }
        targets
    }

    /// When the next group is due.
    pub fn next_due(&self) -> Option<Nanos> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// Looks at every group that is due. Returns the notifications to queue (the log already
    /// updated for them) and whether the log changed.
    pub fn flush(
        &mut self,
        now: Nanos,
        muted: &dyn Fn(&BTreeMap<String, String>) -> bool,
    ) -> (Vec<Queued>, bool) {
        let mut out = Vec::new();
        let mut log_changed = false;
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            let route = self.root.find(&g.route).unwrap_or(&self.root);
            let send_resolved = self.send_resolved.get(&id.0).copied().unwrap_or(true);
            let entry = self.log.get(&id);
            let members: Vec<&AlertOut> = g
                .members
                .iter()
                .filter_map(|fp| self.alerts.get(fp))
                .filter(|a| !muted(&a.labels))
                .collect();
            let firing: Vec<&AlertOut> = members
                .iter()
                .copied()
                .filter(|a| a.status == "firing")
                .collect();
            // Only alerts this receiver heard firing are announced as resolved.
            let resolved: Vec<&AlertOut> = members
                .iter()
                .copied()
                .filter(|a| {
                    a.status == "resolved"
                        && entry.is_some_and(|e| e.firing.contains_key(&a.fingerprint))
                })
                .collect();
            let needed = match entry {
                None => !firing.is_empty(),
                Some(e) => {
                    if firing
                        .iter()
                        .any(|a| !e.firing.contains_key(&a.fingerprint))
                    {
                        true
                    } else if firing.is_empty() {
                        !resolved.is_empty()
                    } else if send_resolved
                        && resolved
                            .iter()
                            .any(|a| !e.resolved.contains(&a.fingerprint))
                    {
                        true
                    } else {
                        now - e.at >= nanos(route.repeat_interval)
                    }
                }
            };
            if needed {
                let mut alerts: Vec<AlertOut> = firing.iter().map(|a| (*a).clone()).collect();
                if send_resolved {
                    alerts.extend(resolved.iter().map(|a| (*a).clone()));
                }
                let previous = entry.cloned();
                if alerts.is_empty() {
                    // All resolved, and this receiver does not want to hear it: only the log
                    // learns (so that the alerts are announced again if they fire again).
                    let mut e = previous.clone().unwrap_or_default();
                    e.firing.clear();
                    e.resolved = resolved.iter().map(|a| a.fingerprint.clone()).collect();
                    e.at = now;
                    self.log.insert(id.clone(), e);
                } else {
                    let status = if firing.is_empty() {
                        "resolved"
                    } else {
                        "firing"
                    };
                    let n = Notification {
                        id: crate::message::new_id(),
                        seq: self.next_seq,
                        receiver: id.0.clone(),
                        group_key: id.1.clone(),
                        group_labels: g.labels.clone(),
                        group_by: g.order.clone(),
                        status: status.into(),
                        alerts,
                        external_url: self.external_url.clone(),
                        created_at: now,
                    };
                    self.next_seq += 1;
                    self.log.insert(id.clone(), LogEntry::after(&n, &route.id));
                    out.push(Queued {
                        notification: n,
                        previous,
                    });
                }
                log_changed = true;
            }
            // Resolved alerts leave the group once it has been looked at. Those not announced
            // (muted, or not wanted) are forgotten by the log too, so that firing again is
            // news.
            let gone: Vec<String> = g
                .members
                .iter()
                .filter(|fp| self.alerts.get(*fp).is_none_or(|a| a.status != "firing"))
                .cloned()
                .collect();
            if let Some(e) = self.log.get_mut(&id) {
                for fp in &gone {
                    if e.firing.remove(fp).is_some() {
                        log_changed = true;
                    }
                }
            }
            g.members.retain(|fp| !gone.contains(fp));
            g.next_flush = now + nanos(route.group_interval);
            if g.members.is_empty() {
                self.groups.remove(&id);
            }
        }
        // Alerts in no group any more are forgotten.
        let kept: BTreeSet<&String> = self.groups.values().flat_map(|g| &g.members).collect();
        self.alerts
            .retain(|fp, a| a.status == "firing" || kept.contains(fp));
        // Log entries of groups that are gone (or of receivers no longer configured) are
        // dropped after a day.
        let before = self.log.len();
        self.log.retain(|id, e| {
            self.send_resolved.contains_key(&id.0)
                && (self.groups.contains_key(id) || now - e.at < sightline_common::clock::DAY)
        });
        log_changed |= self.log.len() != before;
        (out, log_changed)
    }

    /// Undoes a notification that could not be queued: the log forgets it, and its alerts
    /// go back into their group, which is looked at again soon.
    pub fn unqueue(&mut self, q: Queued, now: Nanos) {
        let n = q.notification;
        let id = (n.receiver.clone(), n.group_key.clone());
        match q.previous {
            Some(e) => self.log.insert(id.clone(), e),
            None => self.log.remove(&id),
        };
        let route = self
            .log
            .get(&id)
            .map(|e| e.route.clone())
            .unwrap_or_else(|| self.root.id.clone());
        let g = self.groups.entry(id).or_insert_with(|| Group {
            route,
            labels: n.group_labels.clone(),
            order: n.group_by.clone(),
            members: BTreeSet::new(),
            next_flush: now,
        });
        g.next_flush = g.next_flush.min(now + sightline_common::clock::SECOND);
        for a in n.alerts {
            g.members.insert(a.fingerprint.clone());
            self.alerts.entry(a.fingerprint.clone()).or_insert(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_common::clock::SECOND;

    fn root() -> Route {
        let c: crate::config::RouteConfig = toml::from_str(
            r#"
            receiver = "hook"
            group_wait = "10s"
            group_interval = "1m"
            repeat_interval = "1h"
            "#,
        )
        .expect("valid in this test");
        Route::root(&c)
    }

    fn firing(slo: &str, tier: &str) -> FiringAlert {
        let labels = BTreeMap::from([
            ("slo".to_string(), slo.to_string()),
            ("severity".to_string(), "page".to_string()),
            ("tier".to_string(), tier.to_string()),
        ]);
        FiringAlert {
            slo: slo.into(),
            fingerprint: sightline_slo::alert::fingerprint(&labels),
            labels,
            annotations: BTreeMap::new(),
            starts_at: 0,
        }
    }

    fn dispatcher(log: BTreeMap<GroupId, LogEntry>, now: Nanos) -> Dispatcher {
        Dispatcher::new(
            root(),
            BTreeMap::from([("hook".to_string(), true)]),
            "http://s".into(),
            log,
            1,
            now,
        )
    }

    fn statuses(q: &[Queued]) -> Vec<(String, usize)> {
        q.iter()
            .map(|q| (q.notification.status.clone(), q.notification.alerts.len()))
            .collect()
    }

    #[test]
    fn a_resolved_alert_carries_the_figures_that_cleared_it_and_those_it_fired_with() {
        let never = |_: &BTreeMap<String, String>| false;
        let mut d = dispatcher(BTreeMap::new(), 0);
        let mut a = firing("checkout", "page-1h");
        a.annotations
            .insert("burn_rate_long".into(), "22.65".into());
        a.annotations
            .insert("description".into(), "Burn rate 22.65 over 1h".into());
        d.observe(std::slice::from_ref(&a), 0);
        assert_eq!(
            statuses(&d.flush(10 * SECOND, &never).0),
            [("firing".into(), 1)]
        );
        let now = |fp: &str| {
            (fp == a.fingerprint).then(|| {
                BTreeMap::from([
                    ("burn_rate_long".to_string(), "0.80".to_string()),
                    (
                        "description".to_string(),
                        "Resolved: burn rate now 0.80".to_string(),
                    ),
                ])
            })
        };
        d.observe_with(&[], 20 * SECOND, now);
        let (q, _) = d.flush(80 * SECOND, &never);
        assert_eq!(statuses(&q), [("resolved".into(), 1)]);
        let got = &q[0].notification.alerts[0].annotations;
        assert_eq!(got["burn_rate_long"], "0.80");
        assert_eq!(got["description"], "Resolved: burn rate now 0.80");
        assert_eq!(got["burn_rate_long_at_firing"], "22.65");
        assert_eq!(got["description_at_firing"], "Burn rate 22.65 over 1h");
        assert_eq!(got["slo_url"], "http://s/slos/checkout");
    }

    #[test]
    fn a_group_waits_then_notifies_once_repeats_and_resolves() {
        let never = |_: &BTreeMap<String, String>| false;
        let mut d = dispatcher(BTreeMap::new(), 0);
        let a = firing("checkout", "page-1h");
        let b = firing("checkout", "page-6h");
        d.observe(std::slice::from_ref(&a), 0);
        assert!(d.flush(9 * SECOND, &never).0.is_empty(), "group_wait");
        d.observe(&[a.clone(), b.clone()], 9 * SECOND);
        let (q, _) = d.flush(10 * SECOND, &never);
        assert_eq!(statuses(&q), [("firing".into(), 2)]);
        assert_eq!(
            q[0].notification.group_key,
            r#"{}:{severity="page", slo="checkout"}"#
        );
        // Nothing new: nothing sent, also at the next interval.
        d.observe(&[a.clone(), b.clone()], 70 * SECOND);
        assert!(d.flush(70 * SECOND, &never).0.is_empty());
        // An hour later: repeated.
        d.observe(&[a.clone(), b.clone()], 3610 * SECOND);
        assert_eq!(
            statuses(&d.flush(3610 * SECOND, &never).0),
            [("firing".into(), 2)]
        );
        // One resolves: sent with both statuses; then the other: resolved.
        d.observe(std::slice::from_ref(&a), 3620 * SECOND);
        let (q, _) = d.flush(3670 * SECOND, &never);
        assert_eq!(statuses(&q), [("firing".into(), 2)]);
        assert_eq!(q[0].notification.alerts[1].status, "resolved");
        d.observe(&[], 3700 * SECOND);
        let (q, _) = d.flush(3730 * SECOND, &never);
        assert_eq!(statuses(&q), [("resolved".into(), 1)]);
        assert!(d.groups.is_empty() && d.alerts.is_empty());
        d.observe(&[], 3800 * SECOND);
        assert!(d.flush(3800 * SECOND, &never).0.is_empty());
    }

    #[test]
    fn muted_alerts_are_not_announced_and_a_restart_does_not_repeat() {
        let mut d = dispatcher(BTreeMap::new(), 0);
        let a = firing("checkout", "page-1h");
        let s = firing("search", "page-1h");
        d.observe(&[a.clone(), s.clone()], 0);
        let mute_search = |l: &BTreeMap<String, String>| l["slo"] == "search";
        let (q, _) = d.flush(10 * SECOND, &mute_search);
        assert_eq!(statuses(&q), [("firing".into(), 1)]);
        assert_eq!(q[0].notification.group_labels["slo"], "checkout");
        // Restart with the log: the firing alert is not announced again…
        let mut d2 = dispatcher(d.log.clone(), 20 * SECOND);
        d2.observe(std::slice::from_ref(&a), 20 * SECOND);
        assert!(d2.flush(40 * SECOND, &mute_search).0.is_empty());
        // …but one that resolved while Sightline was down is announced as resolved.
        let mut d3 = dispatcher(d.log.clone(), 20 * SECOND);
        d3.observe(&[], 20 * SECOND);
        let (q, _) = d3.flush(30 * SECOND, &mute_search);
        assert_eq!(statuses(&q), [("resolved".into(), 1)]);
        assert_eq!(q[0].notification.alerts[0].ends_at, Some(20 * SECOND));
    }

    #[test]
    fn a_changed_route_tree_takes_over_alerts_that_fire_across_a_restart() {
        let never = |_: &BTreeMap<String, String>| false;
        let a = firing("checkout", "page-1h");
        let mut d = dispatcher(BTreeMap::new(), 0);
        d.observe(std::slice::from_ref(&a), 0);
        assert_eq!(d.flush(10 * SECOND, &never).0.len(), 1);
        // Restart with group_by changed to ["tier"]: the alert moves to its new group, which
        // has not heard of it; the old group is gone and announces nothing.
        let c: crate::config::RouteConfig =
            toml::from_str("receiver = \"hook\"\ngroup_by = [\"tier\"]\ngroup_wait = \"10s\"")
                .expect("valid in this test");
        let mut d2 = Dispatcher::new(
            Route::root(&c),
            BTreeMap::from([("hook".to_string(), true)]),
            "http://s".into(),
            d.log.clone(),
            5,
            20 * SECOND,
        );
        d2.observe(std::slice::from_ref(&a), 20 * SECOND);
        let (q, _) = d2.flush(30 * SECOND, &never);
        assert_eq!(statuses(&q), [("firing".into(), 1)]);
        assert_eq!(q[0].notification.group_key, r#"{}:{tier="page-1h"}"#);
        assert_eq!(d2.groups.len(), 1);
    }

    #[test]
    fn an_alert_that_resolved_while_muted_is_news_when_it_fires_again() {
        let a = firing("checkout", "page-1h");
        let mut d = dispatcher(BTreeMap::new(), 0);
        d.observe(std::slice::from_ref(&a), 0);
        let never = |_: &BTreeMap<String, String>| false;
        assert_eq!(d.flush(10 * SECOND, &never).0.len(), 1);
        let all = |_: &BTreeMap<String, String>| true;
        d.observe(&[], 20 * SECOND);
        assert!(
            d.flush(70 * SECOND, &all).0.is_empty(),
            "muted: no resolved notification"
        );
        d.observe(std::slice::from_ref(&a), 80 * SECOND);
        let (q, _) = d.flush(90 * SECOND, &never);
        assert_eq!(statuses(&q), [("firing".into(), 1)]);
    }

    #[test]
    fn a_notification_that_could_not_be_queued_is_made_again() {
        let never = |_: &BTreeMap<String, String>| false;
        let a = firing("checkout", "page-1h");
        let mut d = dispatcher(BTreeMap::new(), 0);
        d.observe(std::slice::from_ref(&a), 0);
        assert_eq!(d.flush(10 * SECOND, &never).0.len(), 1);
        d.observe(&[], 20 * SECOND);
        let (mut q, _) = d.flush(70 * SECOND, &never);
        assert_eq!(statuses(&q), [("resolved".into(), 1)]);
        d.unqueue(q.remove(0), 70 * SECOND);
        let (q, _) = d.flush(71 * SECOND, &never);
        assert_eq!(statuses(&q), [("resolved".into(), 1)]);
    }

    #[test]
    fn alerts_that_resolve_before_their_group_is_due_are_not_announced() {
        let never = |_: &BTreeMap<String, String>| false;
        let mut d = dispatcher(BTreeMap::new(), 0);
        d.observe(&[firing("checkout", "page-1h")], 0);
        d.observe(&[], 5 * SECOND);
        assert!(d.flush(10 * SECOND, &never).0.is_empty());
        assert!(d.groups.is_empty());
    }

    #[test]
    fn slo_urls_are_escaped() {
        assert_eq!(slo_url("http://x/", "a b/c"), "http://x/slos/a%20b%2Fc");
    }
}
