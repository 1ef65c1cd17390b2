//! The route tree. An alert enters at the root (which matches everything) and goes down:
//! at each level the children are tried in order, and the first that matches takes it
//! (unless it says `continue`, then the next siblings are tried too). Where no child matches,
//! the route itself takes it. Children inherit `group_by` and the timings they leave out.

use std::collections::BTreeMap;
use std::time::Duration;

use sightline_slo::matcher::{Matcher, matches_all};

use crate::config::{
    DEFAULT_GROUP_BY, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL,
    RouteConfig,
};

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the tree (`0`, `0.1`, `0.1.0`), stable while the config is.
    pub id: String,
    /// Alertmanager-style key prefix: `{}` for the root, then `/{matchers}` per level.
    pub key: String,
    pub matchers: Vec<Matcher>,
    pub receivers: Vec<String>,
    /// `None`: group by every label.
    pub group_by: Option<Vec<String>>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub continue_: bool,
    pub routes: Vec<Route>,
}

impl Route {
    pub fn root(c: &RouteConfig) -> Self {
        let defaults = Route {
            id: String::new(),
            key: String::new(),
            matchers: Vec::new(),
            receivers: Vec::new(),
            group_by: Some(DEFAULT_GROUP_BY.iter().map(|s| s.to_string()).collect()),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            continue_: false,
            routes: Vec::new(),
        };
        Self::build(c, &defaults, "0".into(), "{}".into())
    }

    fn build(c: &RouteConfig, parent: &Route, id: String, key: String) -> Self {
        let mut receivers: Vec<String> = c.receiver.iter().chain(&c.receivers).cloned().collect();
        receivers.dedup();
        if receivers.is_empty() {
            receivers = parent.receivers.clone();
        }
        let group_by = match &c.group_by {
            Some(g) if g.iter().any(|l| l == "...") => None,
            Some(g) => Some(g.clone()),
            None => parent.group_by.clone(),
        };
        let mut r = Route {
            id,
            key,
            matchers: c.matchers.clone(),
            receivers,
            group_by,
            group_wait: c.group_wait.unwrap_or(parent.group_wait),
            group_interval: c.group_interval.unwrap_or(parent.group_interval),
            repeat_interval: c.repeat_interval.unwrap_or(parent.repeat_interval),
            continue_: c.continue_,
            routes: Vec::new(),
        };
        r.routes = c
            .routes
            .iter()
            .enumerate()
            .map(|(i, child)| {
                let m: Vec<String> = child.matchers.iter().map(|m| m.to_string()).collect();
                let key = format!("{}/{{{}}}", r.key, m.join(","));
                Self::build(child, &r, format!("{}.{i}", r.id), key)
            })
            .collect();
        r
    }

    /// The routes that take an alert with these labels.
    pub fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<&Route> {
        if !matches_all(&self.matchers, labels) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for child in &self.routes {
            let taken = child.matching(labels);
            if !taken.is_empty() {
                out.extend(taken);
                if !child.continue_ {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    pub fn find(&self, id: &str) -> Option<&Route> {
        if self.id == id {
            return Some(self);
        }
        self.routes.iter().find_map(|r| r.find(id))
    }

    /// The group labels of an alert on this route, and the group key.
    /// A tenant's alerts never share a group with another's, whatever `group_by` says.
    pub fn group(&self, labels: &BTreeMap<String, String>) -> (BTreeMap<String, String>, String) {
        let mut group: BTreeMap<String, String> = match &self.group_by {
            None => labels.clone(),
            Some(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        };
        if let Some(tenant) = labels.get("tenant") {
            group.insert("tenant".into(), tenant.clone());
        }
        let inner: Vec<String> = group
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect();
        let key = format!("{}:{{{}}}", self.key, inner.join(", "));
        (group, key)
    }

    /// Label names in `group_by` order (empty when grouping by every label).
    pub fn group_order(&self) -> Vec<String> {
        self.group_by.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Route {
        let c: RouteConfig = toml::from_str(
            r#"
            receiver = "default"
            group_wait = "5s"
            [[routes]]
            matchers = ['severity="page"']
            receiver = "pager"
            continue = true
            group_by = ["slo"]
            [[routes]]
            matchers = ['service=~"checkout|cart"']
            receiver = "shop-team"
            repeat_interval = "1h"
            [[routes.routes]]
            matchers = ['tier="budget-exhausted"']
            receiver = "shop-managers"
            [[routes]]
            matchers = ['service="checkout"']
            receiver = "never-reached-for-checkout"
            "#,
        )
        .expect("valid in this test");
        Route::root(&c)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn receivers(r: &Route, l: &[(&str, &str)]) -> Vec<String> {
        r.matching(&labels(l))
            .iter()
            .flat_map(|r| r.receivers.clone())
            .collect()
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let r = tree();
        assert_eq!(receivers(&r, &[("severity", "ticket")]), ["default"]);
        assert_eq!(
            receivers(&r, &[("severity", "page"), ("service", "checkout")]),
            ["pager", "shop-team"]
        );
        assert_eq!(
            receivers(&r, &[("service", "cart"), ("tier", "budget-exhausted")]),
            ["shop-managers"]
        );
        assert_eq!(receivers(&r, &[("severity", "page")]), ["pager"]);
    }

    #[test]
    fn children_inherit_and_group_keys_are_stable() {
        let r = tree();
        let shop = r.find("0.1").expect("valid in this test");
        assert_eq!(shop.group_wait, Duration::from_secs(5));
        assert_eq!(shop.repeat_interval, Duration::from_secs(3600));
        assert_eq!(
            shop.group_by.as_deref(),
            Some(&["slo".to_string(), "severity".to_string()][..])
        );
        let managers = r.find("0.1.0").expect("valid in this test");
        assert_eq!(managers.repeat_interval, Duration::from_secs(3600));
        let (g, key) = shop.group(&labels(&[
            ("slo", "checkout \"x\""),
            ("severity", "page"),
            ("tier", "a"),
        ]));
        assert_eq!(g.len(), 2);
        assert_eq!(
            key,
            r#"{}/{service=~"checkout|cart"}:{severity="page", slo="checkout \"x\""}"#
        );
    }
}
