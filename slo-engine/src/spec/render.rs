//! An SLO written back in the native YAML format (what `sightline slo import` prints for
//! OpenSLO files). Reading the text again gives the same SLO.

use std::fmt::Write as _;

use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos, SECOND};

use super::{Alerting, Indicator, MetricSelector, Slo, Threshold};
use crate::window::{CalendarPeriod, Window};

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration in the largest unit that divides it.
fn duration(d: Nanos) -> String {
    for (unit, name) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")] {
        if d % unit == 0 {
            return format!("{}{name}", d / unit);
        }
    }
    format!("{}s", d / SECOND)
}

/// A fraction as a percentage, without float noise (`0.999` → `99.9`).
fn percent(f: f64) -> String {
    let p = format!("{:.10}", f * 100.0);
    p.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn selector(out: &mut String, indent: &str, s: &MetricSelector) {
    let _ = writeln!(out, "{indent}metric: {}", quote(&s.metric));
    if let Some(f) = &s.filter {
        let _ = writeln!(out, "{indent}filter: {}", quote(&f.sql));
    }
}

/// The native YAML document of `slo`.
pub fn to_yaml(slo: &Slo) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "name: {}", quote(&slo.name));
    let _ = writeln!(y, "service: {}", quote(&slo.service));
    if !slo.description.is_empty() {
        let _ = writeln!(y, "description: {}", quote(&slo.description));
    }
    let _ = writeln!(y, "objective: {}", percent(slo.objective));
    match slo.window {
        Window::Rolling(d) => {
            let _ = writeln!(y, "window: {}", duration(d));
        }
        Window::Calendar { period, zone } => {
            let p = match period {
                CalendarPeriod::Week => "week",
                CalendarPeriod::Month => "month",
                CalendarPeriod::Quarter => "quarter",
            };
            let _ = writeln!(y, "window: {p}\ntime_zone: {}", quote(zone.name()));
        }
    }
    y.push_str("indicator:\n");
    match &slo.indicator {
        Indicator::Events {
            table,
            filter,
            good,
        } => {
            let _ = writeln!(y, "  {}:", table.name());
            if let Some(f) = filter {
                let _ = writeln!(y, "    filter: {}", quote(&f.sql));
            }
            let _ = writeln!(y, "    good: {}", quote(&good.sql));
        }
        Indicator::MetricRatio { good, total } => {
            y.push_str("  metric_ratio:\n    good:\n");
            selector(&mut y, "      ", good);
            y.push_str("    total:\n");
            selector(&mut y, "      ", total);
        }
        Indicator::MetricLatency {
            selector: s,
            threshold,
        } => {
            y.push_str("  metric_latency:\n");
            selector(&mut y, "    ", s);
            let _ = writeln!(y, "    threshold: {threshold:?}");
        }
    }
    if let Some(g) = &slo.group_by {
        let _ = writeln!(
            y,
            "group_by: {}\nmax_groups: {}",
            quote(&g.sql),
            slo.max_groups
        );
    }
    if slo.alerting != Alerting::default() {
        alerting(&mut y, &slo.alerting);
    }
    if let Some(t) = slo.timeslice {
        let _ = writeln!(
            y,
            "timeslice:\n  slice: {}\n  good_ratio: {}%",
            duration(t.slice),
            percent(t.good_ratio)
        );
    }
    if slo.exclude_maintenance {
        y.push_str("exclude_maintenance: true\n");
    }
    for (key, map) in [("labels", &slo.labels), ("annotations", &slo.annotations)] {
        if !map.is_empty() {
            let _ = writeln!(y, "{key}:");
            for (k, v) in map {
                let _ = writeln!(y, "  {}: {}", quote(k), quote(v));
            }
        }
    }
    y
}

fn alerting(y: &mut String, a: &Alerting) {
    let _ = writeln!(
        y,
        "alerting:\n  min_events: {}\n  pending_for: {}\n  budget_exhausted: {}",
        a.min_events,
        if a.pending_for == 0 {
            "0".to_string()
        } else {
            duration(a.pending_for)
        },
        a.budget_exhausted
    );
    if let Some(n) = a.no_data_after {
        let _ = writeln!(y, "  no_data_after: {}", duration(n));
    }
    y.push_str("  tiers:\n");
    for t in &a.tiers {
        let threshold = match t.threshold {
            Threshold::BurnRate(r) => format!("burn_rate: {r:?}"),
            Threshold::BudgetSpent(f) => format!("budget_spent: {}%", percent(f)),
        };
        let _ = writeln!(
            y,
            "    - {{name: {}, severity: {}, long: {}, short: {}, {threshold}}}",
            quote(&t.name),
            quote(&t.severity),
            duration(t.long),
            duration(t.short),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    /// Equal but for where they were read.
    fn same(a: &Slo, b: &Slo) -> bool {
        let strip = |s: &Slo| {
            let mut s = s.clone();
            s.source.clear();
            s.pos = Default::default();
            for e in [
                s.group_by.as_mut(),
                match &mut s.indicator {
                    Indicator::Events { good, .. } => Some(good),
                    _ => None,
                },
            ]
            .into_iter()
            .flatten()
            {
                e.pos = Default::default();
            }
            if let Indicator::Events {
                filter: Some(f), ..
            } = &mut s.indicator
            {
                f.pos = Default::default();
            }
            if let Indicator::MetricRatio { good, total } = &mut s.indicator {
                for sel in [good, total] {
                    if let Some(f) = &mut sel.filter {
                        f.pos = Default::default();
                    }
                }
            }
            s
        };
        strip(a) == strip(b)
    }

    #[test]
    fn every_kind_of_slo_reads_back_the_same() {
        let texts = [
            "name: a\nobjective: 99.95\nwindow: 28d\nindicator:\n  spans:\n    filter: \"kind = 'server' AND name LIKE '%\\\"x\\\"%'\"\n    good: \"status_code != 'error'\"\ngroup_by: http_route\nmax_groups: 20\nlabels:\n  team: \"pay\\nments\"\n",
            "name: b\nobjective: 99\nwindow: month\ntime_zone: Europe/Berlin\nindicator:\n  logs:\n    good: \"severity_number < 17\"\ntimeslice:\n  slice: 2m\n  good_ratio: 95%\nexclude_maintenance: true\nannotations:\n  runbook: https://x\n",
            "name: c\nobjective: 99.9\nwindow: 7d\nindicator:\n  metric_ratio:\n    good:\n      metric: ok\n      filter: \"attributes['a'] = 'b'\"\n    total:\n      metric: all\nalerting:\n  min_events: 3\n  pending_for: 2m\n  no_data_after: 1h\n  tiers:\n    - {name: fast, severity: page, long: 1h, short: 5m, burn_rate: 14.4}\n    - {name: slow, severity: ticket, long: 6h, short: 30m, budget_spent: 5%}\n",
            "name: d\nobjective: 99.5\nwindow: 90m\nindicator:\n  metric_latency:\n    metric: http.server.request.duration\n    threshold: 0.25\n",
        ];
        for text in texts {
            let slo = parse("in.yaml", text).expect(text).remove(0);
            let yaml = to_yaml(&slo);
            let again = parse("out.yaml", &yaml).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
            assert!(same(&slo, &again[0]), "{slo:#?}\n{yaml}\n{:#?}", again[0]);
        }
    }
}
