//! Import of OpenSLO v1 documents (`apiVersion: openslo/v1`, `kind: SLO`, with an inline
//! indicator or an `indicatorRef` to a `kind: SLI` document in the same file) into Sightline's
//! SLOs.
//!
//! OpenSLO leaves data sources to vendors; Sightline's is `metricSource.type: sightline` with
//! `spec.table` (`spans` or `logs`) and `spec.filter` (an SQL condition). A `ratioMetric`'s
//! total filter becomes the indicator's filter and its good filter the `good` condition
//! (evaluated on valid events); a `thresholdMetric`'s `spec.value` (a column or expression)
//! compared with the objective's `op` and `value` becomes the `good` condition.
//! `budgetingMethod: Timeslices` becomes a timeslice SLO.
//!
//! The documents are read into drafts ([`crate::spec::draft`]) that keep the position of every
//! value in the OpenSLO file, and validated like native specs: every error names the user's
//! file, line and OpenSLO field (`spec.objectives[0].target`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::spec::draft::{At, Draft, DraftEvents, DraftIndicator, DraftTimeslice};
use crate::spec::{Pos, Slo, SpecError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: Metadata,
    spec: Option<Spanned<Spec>>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: Spanned<String>,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Label>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// OpenSLO labels are a value or a list of values.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Label {
    One(String),
    Many(Vec<String>),
}

/// The spec of an SLO or of an SLI document (the fields of both; OpenSLO documents carry
/// vendor fields, which are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    service: Option<Spanned<String>>,
    description: Option<String>,
    indicator: Option<Spanned<InlineSli>>,
    indicator_ref: Option<Spanned<String>>,
    time_window: Option<Spanned<Vec<Spanned<TimeWindow>>>>,
    budgeting_method: Option<String>,
    objectives: Option<Spanned<Vec<Spanned<Objective>>>>,
    // Of SLI documents (and inline indicators' specs).
    ratio_metric: Option<Spanned<RatioMetric>>,
    threshold_metric: Option<Spanned<MetricSourceOf>>,
}

#[derive(Debug, Deserialize)]
struct InlineSli {
    spec: Option<Box<Spanned<Spec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeWindow {
    duration: Option<Spanned<String>>,
    #[serde(default)]
    is_rolling: bool,
    calendar: Option<Calendar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Calendar {
    time_zone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Objective {
    target: Option<Spanned<f64>>,
    op: Option<Spanned<String>>,
    value: Option<Spanned<f64>>,
    time_slice_target: Option<Spanned<f64>>,
    time_slice_window: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
struct RatioMetric {
    good: Option<Spanned<MetricSourceOf>>,
    total: Option<Spanned<MetricSourceOf>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricSourceOf {
    metric_source: Option<Spanned<MetricSource>>,
}

#[derive(Debug, Deserialize)]
struct MetricSource {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    spec: Option<Spanned<SourceSpec>>,
}

#[derive(Debug, Deserialize)]
struct SourceSpec {
    table: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
}

/// True when `text` holds OpenSLO documents.
pub fn is_openslo(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("apiVersion:") && l.contains("openslo/"))
}

fn at<T: Clone>(s: &Spanned<T>, field: impl Into<String>) -> At<T> {
    At::new(s.value.clone(), Pos::from(s), field)
}

/// The events a metric source describes.
struct Source {
    table: At<String>,
    filter: Option<At<String>>,
    value: Option<At<String>>,
}

struct Import<'a> {
    file: &'a str,
    errors: Vec<SpecError>,
}

impl Import<'_> {
    fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.errors
            .push(SpecError::new(self.file, pos, field, message));
    }

    /// The `metricSource` of `m` (at `field`), which must be of type `sightline`.
    fn source(&mut self, m: &Spanned<MetricSourceOf>, field: &str) -> Option<Source> {
        let Some(ms) = &m.value.metric_source else {
            self.error(m.into(), field, "needs a metricSource");
            return None;
        };
        let field = format!("{field}.metricSource");
        let ty = ms.value.kind.as_ref();
        if !ty.is_some_and(|t| t.value.eq_ignore_ascii_case("sightline")) {
            let pos = ty.map_or(Pos::from(ms), Pos::from);
            self.error(
                pos,
                &format!("{field}.type"),
                format!(
                    "{:?} is not supported: use type: sightline with spec.table (spans or logs) \
                     and spec.filter (an SQL condition)",
                    ty.map(|t| t.value.as_str()).unwrap_or_default()
                ),
            );
            return None;
        }
        let Some(spec) = &ms.value.spec else {
            self.error(ms.into(), &field, "needs a spec");
            return None;
        };
        let field = format!("{field}.spec");
        let Some(table) = &spec.value.table else {
            self.error(spec.into(), &field, "needs a table (spans or logs)");
            return None;
        };
        if table.value != "spans" && table.value != "logs" {
            self.error(
                table.into(),
                &format!("{field}.table"),
                format!("{:?}: use spans or logs", table.value),
            );
            return None;
        }
        Some(Source {
            table: at(table, format!("{field}.table")),
            filter: spec
                .value
                .filter
                .as_ref()
                .map(|f| at(f, format!("{field}.filter"))),
            value: spec
                .value
                .value
                .as_ref()
                .map(|v| at(v, format!("{field}.value"))),
        })
    }

    /// The events of an SLO's indicator for one objective: (table, filter, good).
    fn events(
        &mut self,
        sli: &Spec,
        sli_field: &str,
        sli_pos: Pos,
        obj: &Spanned<Objective>,
        obj_field: &str,
    ) -> Option<DraftIndicator> {
        let (table, filter, good) = if let Some(r) = &sli.ratio_metric {
            let f = format!("{sli_field}.ratioMetric");
            let (Some(good), Some(total)) = (&r.value.good, &r.value.total) else {
                self.error(r.into(), &f, "a ratioMetric needs good and total");
                return None;
            };
            let good = self.source(good, &format!("{f}.good"));
            let total = self.source(total, &format!("{f}.total"))?;
            let good = good?;
            if good.table.value != total.table.value {
                self.error(
                    good.table.pos,
                    &good.table.field,
                    "good and total must read the same table",
                );
                return None;
            }
            let condition = good
                .filter
                .unwrap_or_else(|| At::new("true".into(), good.table.pos, &good.table.field));
            (total.table, total.filter, condition)
        } else if let Some(t) = &sli.threshold_metric {
            let f = format!("{sli_field}.thresholdMetric");
            let source = self.source(t, &f)?;
            let Some(value) = source.value else {
                self.error(
                    source.table.pos,
                    &format!("{f}.metricSource.spec"),
                    "a thresholdMetric's metricSource.spec needs a value (a column such as \
                     duration_ns)",
                );
                return None;
            };
            let o = &obj.value;
            let op = match o.op.as_ref().map(|op| op.value.as_str()) {
                Some("lte") => "<=",
                Some("lt") => "<",
                Some("gte") => ">=",
                Some("gt") => ">",
                other => {
                    let pos = o.op.as_ref().map_or(Pos::from(obj), Pos::from);
                    self.error(
                        pos,
                        &format!("{obj_field}.op"),
                        format!("{other:?}: use lte, lt, gte or gt"),
                    );
                    return None;
                }
            };
            let Some(v) = &o.value else {
                self.error(obj.into(), &format!("{obj_field}.value"), "needs a value");
                return None;
            };
            let good = At::new(
                format!("{} {op} {}", value.value, v.value),
                Pos::from(v),
                format!("{obj_field}.value"),
            );
            (source.table, source.filter, good)
        } else {
            self.error(
                sli_pos,
                sli_field,
                "the indicator needs a ratioMetric or a thresholdMetric",
            );
            return None;
        };
        let events = DraftEvents { filter, good };
        Some(match table.value.as_str() {
            "logs" => DraftIndicator {
                logs: Some(events),
                ..Default::default()
            },
            _ => DraftIndicator {
                spans: Some(events),
                ..Default::default()
            },
        })
    }

    /// (native window, time zone) of an OpenSLO `timeWindow` entry.
    fn window(
        &mut self,
        w: &Spanned<TimeWindow>,
        field: &str,
    ) -> Option<(At<String>, Option<At<String>>)> {
        let Some(duration) = &w.value.duration else {
            self.error(w.into(), field, "a timeWindow needs a duration");
            return None;
        };
        let dfield = format!("{field}.duration");
        let d = duration.value.as_str();
        if w.value.is_rolling {
            if d.ends_with('M') || d.ends_with('Q') || d.ends_with('Y') {
                self.error(
                    duration.into(),
                    &dfield,
                    format!("a rolling window of {d} is not supported: use days"),
                );
                return None;
            }
            return Some((at(duration, dfield), None));
        }
        let period = match d {
            "1w" | "7d" => "week",
            "1M" => "month",
            "1Q" | "3M" => "quarter",
            other => {
                self.error(
                    duration.into(),
                    &dfield,
                    format!("a calendar window of {other} is not supported: use 1w, 1M or 1Q"),
                );
                return None;
            }
        };
        let zone = w
            .value
            .calendar
            .as_ref()
            .and_then(|c| c.time_zone.as_ref())
            .map(|z| at(z, format!("{field}.calendar.timeZone")));
        Some((At::new(period.into(), Pos::from(duration), dfield), zone))
    }

    /// Drafts of the SLOs of one OpenSLO `SLO` document (one per objective).
    fn slo(&mut self, d: &Doc, slis: &BTreeMap<&str, &Spanned<Spec>>) -> Vec<Draft> {
        let name_pos = Pos::from(&d.metadata.name);
        let Some(spec) = &d.spec else {
            self.error(name_pos, "spec", "an SLO needs a spec");
            return Vec::new();
        };
        let spec_pos = Pos::from(spec);
        let s = &spec.value;
        let (sli, sli_field, sli_pos) = match (&s.indicator, &s.indicator_ref) {
            (Some(i), _) => match &i.value.spec {
                Some(inner) => (&inner.value, "spec.indicator.spec", Pos::from(&**inner)),
                None => {
                    self.error(i.into(), "spec.indicator", "needs a spec");
                    return Vec::new();
                }
            },
            (None, Some(r)) => match slis.get(r.value.as_str()) {
                Some(sli) => (&sli.value, "spec", Pos::from(*sli)),
                None => {
                    self.error(
                        r.into(),
                        "spec.indicatorRef",
                        format!("no SLI named {:?} in this file", r.value),
                    );
                    return Vec::new();
                }
            },
            (None, None) => {
                self.error(
                    spec_pos,
                    "spec.indicator",
                    "needs an indicator (or indicatorRef)",
                );
                return Vec::new();
            }
        };
        let window = match s.time_window.as_ref().and_then(|w| w.value.first()) {
            Some(w) => self.window(w, "spec.timeWindow[0]"),
            None => {
                self.error(spec_pos, "spec.timeWindow", "needs a timeWindow");
                None
            }
        };
        let Some((window, time_zone)) = window else {
            return Vec::new();
        };
        let timeslices = s
            .budgeting_method
            .as_deref()
            .is_some_and(|m| m == "Timeslices" || m == "RatioTimeslices");
        let objectives = match &s.objectives {
            Some(o) if !o.value.is_empty() => &o.value,
            _ => {
                self.error(spec_pos, "spec.objectives", "needs at least one objective");
                return Vec::new();
            }
        };
        let labels: BTreeMap<String, String> = d
            .metadata
            .labels
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Label::One(s) => s.clone(),
                    Label::Many(all) => all.join(","),
                };
                (k.clone(), v)
            })
            .collect();
        let mut out = Vec::new();
        for (i, obj) in objectives.iter().enumerate() {
            let field = format!("spec.objectives[{i}]");
            let Some(target) = &obj.value.target else {
                self.error(
                    obj.into(),
                    &format!("{field}.target"),
                    "needs a target, e.g. 0.999",
                );
                continue;
            };
            if !(target.value > 0.0 && target.value < 1.0) {
                self.error(
                    target.into(),
                    &format!("{field}.target"),
                    format!(
                        "{} is not a fraction between 0 and 1 (exclusive), e.g. 0.999",
                        target.value
                    ),
                );
                continue;
            }
            let Some(indicator) = self.events(sli, sli_field, sli_pos, obj, &field) else {
                continue;
            };
            let name = if objectives.len() == 1 {
                d.metadata.name.value.clone()
            } else {
                format!("{}-{i}", d.metadata.name.value)
            };
            let timeslice = timeslices.then(|| {
                let slice = obj.value.time_slice_window.as_ref().map_or_else(
                    || {
                        At::new(
                            "1m".into(),
                            Pos::from(obj),
                            format!("{field}.timeSliceWindow"),
                        )
                    },
                    |w| at(w, format!("{field}.timeSliceWindow")),
                );
                let ratio = obj.value.time_slice_target.as_ref().unwrap_or(target);
                At::new(
                    DraftTimeslice {
                        slice,
                        good_ratio: At::new(
                            format!("{}%", ratio.value * 100.0),
                            Pos::from(ratio),
                            format!("{field}.timeSliceTarget"),
                        ),
                    },
                    Pos::from(obj),
                    field.clone(),
                )
            });
            out.push(Draft {
                name: At::new(name, name_pos, "metadata.name"),
                service: s.service.as_ref().map(|v| at(v, "spec.service")),
                description: s
                    .description
                    .clone()
                    .or_else(|| d.metadata.display_name.clone()),
                objective: At::new(
                    target.value * 100.0,
                    Pos::from(target),
                    format!("{field}.target"),
                ),
                window: window.clone(),
                time_zone: time_zone.clone(),
                indicator: At::new(indicator, sli_pos, sli_field),
                group_by: None,
                max_groups: None,
                alerting: None,
                timeslice,
                exclude_maintenance: false,
                labels: labels.clone(),
                annotations: d.metadata.annotations.clone(),
            });
        }
        out
    }
}

/// Imports the OpenSLO documents in `text` as Sightline SLOs; errors name the line and the
/// OpenSLO field in `file`.
pub fn import(file: &str, text: &str) -> Result<Vec<Slo>, Vec<SpecError>> {
    let docs: Vec<Doc> =
        serde_saphyr::from_multiple(text).map_err(|e| vec![crate::spec::yaml_error(file, &e)])?;
    let mut imp = Import {
        file,
        errors: Vec::new(),
    };
    let slis: BTreeMap<&str, &Spanned<Spec>> = docs
        .iter()
        .filter(|d| d.kind.value == "SLI")
        .filter_map(|d| Some((d.metadata.name.value.as_str(), d.spec.as_ref()?)))
        .collect();
    let mut drafts = Vec::new();
    for d in &docs {
        if d.api_version.value != "openslo/v1" {
            imp.error(
                (&d.api_version).into(),
                "apiVersion",
                format!("{:?}: only openslo/v1 is supported", d.api_version.value),
            );
            continue;
        }
        if d.kind.value != "SLO" {
            continue; // SLIs are used through indicatorRef; other kinds have no native form.
        }
        drafts.extend(imp.slo(d, &slis).into_iter().map(|d| (d, Vec::new())));
    }
    let validated = crate::spec::validate_all(file, drafts);
    match (validated, imp.errors) {
        (Ok(slos), errors) if errors.is_empty() => Ok(slos),
        (Ok(_), errors) => Err(errors),
        (Err(mut e), errors) => {
            e.extend(errors);
            e.sort_by_key(|e| (e.line, e.column));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATIO: &str = "\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  displayName: Checkout availability
  labels:
    team: payments
spec:
  service: checkout
  indicator:
    metadata:
      name: checkout-errors
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: sightline
            spec:
              table: spans
              filter: \"status_code != 'error'\"
        total:
          metricSource:
            type: sightline
            spec:
              table: spans
              filter: \"service_name = 'checkout' AND kind = 'server'\"
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: good
      target: 0.999
";

    #[test]
    fn a_ratio_slo_becomes_a_native_one() {
        let slos = import("o.yaml", RATIO).expect("import");
        assert_eq!(slos.len(), 1);
        let s = &slos[0];
        assert_eq!(s.name, "checkout-availability");
        assert_eq!(s.service, "checkout");
        assert!((s.objective - 0.999).abs() < 1e-12);
        assert_eq!(
            s.window,
            crate::window::Window::Rolling(28 * sightline_common::clock::DAY)
        );
        assert_eq!(s.labels["team"], "payments");
        let crate::spec::Indicator::Events { filter, good, .. } = &s.indicator else {
            panic!("{:?}", s.indicator);
        };
        assert_eq!(good.sql, "status_code != 'error'");
        assert_eq!(
            filter.as_ref().map(|f| f.sql.as_str()),
            Some("service_name = 'checkout' AND kind = 'server'")
        );
    }

    #[test]
    fn threshold_and_timeslices_through_an_sli_reference() {
        let text = "\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: latency
spec:
  thresholdMetric:
    metricSource:
      type: sightline
      spec:
        table: spans
        filter: \"service_name = 'api'\"
        value: duration_ns
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-latency
spec:
  service: api
  indicatorRef: latency
  timeWindow:
    - duration: 1M
      isRolling: false
      calendar:
        startTime: 2026-01-01 00:00:00
        timeZone: Europe/Berlin
  budgetingMethod: Timeslices
  objectives:
    - target: 0.99
      op: lte
      value: 300000000
      timeSliceTarget: 0.95
      timeSliceWindow: 1m
";
        let slos = import("t.yaml", text).expect("import");
        let s = &slos[0];
        let crate::spec::Indicator::Events { good, .. } = &s.indicator else {
            panic!("{:?}", s.indicator);
        };
        assert_eq!(good.sql, "duration_ns <= 300000000");
        assert!(matches!(s.window, crate::window::Window::Calendar { .. }));
        let t = s.timeslice.expect("timeslice");
        assert!((t.good_ratio - 0.95).abs() < 1e-12);
    }

    #[test]
    fn foreign_data_sources_are_explained() {
        let text = RATIO.replace("type: sightline", "type: prometheus");
        let errors = import("p.yaml", &text).expect_err("prometheus");
        assert!(errors[0].message.contains("not supported"), "{}", errors[0]);
        assert!(errors[0].line > 0);
    }

    #[test]
    fn errors_name_the_line_and_the_openslo_field_of_the_users_file() {
        // A bad filter is found by validation, and reported where the user wrote it.
        let text = RATIO.replace("filter: \"status_code != 'error'\"", "filter: \"\"");
        let errors = import("q.yaml", &text).expect_err("empty filter");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.line, 21, "{e}");
        assert_eq!(
            e.field,
            "spec.indicator.spec.ratioMetric.good.metricSource.spec.filter"
        );
        // A target out of range, and a calendar window not supported.
        let text = RATIO
            .replace("target: 0.999", "target: 99.9")
            .replace("duration: 28d", "duration: 2w")
            .replace("isRolling: true", "isRolling: false");
        let errors = import("r.yaml", &text).expect_err("two problems");
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(got, [(29, "spec.timeWindow[0].duration")], "{errors:?}");
        let text = RATIO.replace("target: 0.999", "target: 99.9");
        let errors = import("s.yaml", &text).expect_err("target");
        assert_eq!(
            (errors[0].line, errors[0].field.as_str()),
            (34, "spec.objectives[0].target")
        );
    }

    #[test]
    fn imported_slos_render_as_native_yaml_that_reads_back() {
        let slos = import("o.yaml", RATIO).expect("import");
        let yaml = crate::spec::render::to_yaml(&slos[0]);
        let again = crate::spec::parse("native.yaml", &yaml).expect("native");
        assert_eq!(again[0].name, "checkout-availability");
        assert_eq!(again[0].labels, slos[0].labels);
        assert_eq!(again[0].window, slos[0].window);
    }
}
