//! Import of OpenSLO v1 documents (`apiVersion: openslo/v1`, `kind: SLO`, with an inline
//! indicator or an `indicatorRef` to a `kind: SLI` document in the same file) into Sightline's
//! native spec.
//!
//! OpenSLO leaves data sources to vendors; Sightline's is `metricSource.type: sightline` with
//! `spec.table` (`spans` or `logs`) and `spec.filter` (an SQL condition). A `ratioMetric`'s
//! total filter becomes the indicator's filter and its good filter the `good` condition
//! (evaluated on valid events); a `thresholdMetric`'s `spec.value` (a column or expression)
//! compared with the objective's `op` and `value` becomes the `good` condition.
//! `budgetingMethod: Timeslices` becomes a timeslice SLO.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::spec::{Pos, SpecError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: Metadata,
    spec: Option<Spanned<Value>>,
}

/// Any YAML value: OpenSLO specs carry vendor fields, read here only as far as needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: Spanned<String>,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Value>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => m.get(key),
        _ => None,
    }
}

fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// True when `text` holds OpenSLO documents.
pub fn is_openslo(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("apiVersion:") && l.contains("openslo/"))
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
}

/// The events of a `metricSource` with `type: sightline`: (table, filter).
fn source(v: Option<&Value>) -> Result<(String, Option<String>, Option<String>), String> {
    let ms = v
        .and_then(|v| get(v, "metricSource"))
        .ok_or("needs a metricSource")?;
    let ty = string(get(ms, "type")).unwrap_or_default();
    if !ty.eq_ignore_ascii_case("sightline") {
        return Err(format!(
            "metricSource.type {ty:?} is not supported: use type: sightline with spec.table \
             (spans or logs) and spec.filter (an SQL condition)"
        ));
    }
    let spec = get(ms, "spec").ok_or("metricSource needs a spec")?;
    let table = string(get(spec, "table")).ok_or("metricSource.spec needs a table")?;
    if table != "spans" && table != "logs" {
        return Err(format!(
            "metricSource.spec.table {table:?}: use spans or logs"
        ));
    }
    Ok((
        table,
        string(get(spec, "filter")),
        string(get(spec, "value")),
    ))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Converts the OpenSLO documents in `text` to native YAML (one document per SLO objective).
pub fn to_native(file: &str, text: &str) -> Result<String, Vec<SpecError>> {
    let docs: Vec<Doc> = serde_saphyr::from_multiple(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        vec![SpecError {
            file: file.into(),
            line,
            column,
            field: String::new(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        }]
    })?;
    let mut imp = Import {
        file,
        errors: Vec::new(),
    };
    let slis: BTreeMap<String, Value> = docs
        .iter()
        .filter(|d| d.kind.value == "SLI")
        .filter_map(|d| {
            Some((
                d.metadata.name.value.clone(),
                d.spec.as_ref()?.value.clone(),
            ))
        })
        .collect();
    let mut out = Vec::new();
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
        let pos = Pos::from(&d.metadata.name);
        let Some(spec) = &d.spec else {
            imp.error(pos, "spec", "an SLO needs a spec");
            continue;
        };
        let spec_pos = Pos::from(spec);
        let spec = &spec.value;
        let indicator = match (get(spec, "indicator"), string(get(spec, "indicatorRef"))) {
            (Some(i), _) => get(i, "spec").cloned(),
            (None, Some(r)) => match slis.get(&r) {
                Some(s) => Some(s.clone()),
                None => {
                    imp.error(
                        spec_pos,
                        "spec.indicatorRef",
                        format!("no SLI named {r:?} in this file"),
                    );
                    continue;
                }
            },
            (None, None) => None,
        };
        let Some(indicator) = indicator else {
            imp.error(
                spec_pos,
                "spec.indicator",
                "needs an indicator (or indicatorRef)",
            );
            continue;
        };
        let window = match get(spec, "timeWindow") {
            Some(Value::List(ws)) if !ws.is_empty() => window(&ws[0]),
            _ => Err("needs a timeWindow".to_string()),
        };
        let (window, zone) = match window {
            Ok(w) => w,
            Err(e) => {
                imp.error(spec_pos, "spec.timeWindow", e);
                continue;
            }
        };
        let timeslices = string(get(spec, "budgetingMethod"))
            .is_some_and(|m| m == "Timeslices" || m == "RatioTimeslices");
        let objectives = match get(spec, "objectives") {
            Some(Value::List(o)) if !o.is_empty() => o.clone(),
            _ => {
                imp.error(spec_pos, "spec.objectives", "needs at least one objective");
                continue;
            }
        };
        for (i, obj) in objectives.iter().enumerate() {
            let field = format!("spec.objectives[{i}]");
            let Some(target) = number(get(obj, "target")) else {
                imp.error(
                    spec_pos,
                    &format!("{field}.target"),
                    "needs a target, e.g. 0.999",
                );
                continue;
            };
            let events = if let Some(r) = get(&indicator, "ratioMetric") {
                match (source(get(r, "total")), source(get(r, "good"))) {
                    (Ok((tt, tf, _)), Ok((gt, gf, _))) if tt == gt => {
                        Ok((tt, tf, gf.unwrap_or_else(|| "true".into())))
                    }
                    (Ok(_), Ok(_)) => Err("good and total must read the same table".to_string()),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            } else if let Some(t) = get(&indicator, "thresholdMetric") {
                match source(Some(t)) {
                    Ok((table, filter, Some(value))) => {
                        let op = match string(get(obj, "op")).as_deref() {
                            Some("lte") => Ok("<="),
                            Some("lt") => Ok("<"),
                            Some("gte") => Ok(">="),
                            Some("gt") => Ok(">"),
                            other => Err(format!("{field}.op {other:?}: use lte, lt, gte or gt")),
                        };
                        match (op, number(get(obj, "value"))) {
                            (Ok(op), Some(v)) => Ok((table, filter, format!("{value} {op} {v}"))),
                            (Err(e), _) => Err(e),
                            (_, None) => Err(format!("{field} needs a value")),
                        }
                    }
                    Ok(_) => Err(
                        "a thresholdMetric's metricSource.spec needs a value (a column \
                                  such as duration_ns)"
                            .to_string(),
                    ),
                    Err(e) => Err(e),
                }
            } else {
                Err("the indicator needs a ratioMetric or a thresholdMetric".to_string())
            };
            let (table, filter, good) = match events {
                Ok(e) => e,
                Err(e) => {
                    imp.error(spec_pos, "spec.indicator", e);
                    continue;
                }
            };
            let name = if objectives.len() == 1 {
                d.metadata.name.value.clone()
            } else {
                format!("{}-{i}", d.metadata.name.value)
            };
            let mut y = format!("name: {}\n", quote(&name));
            if let Some(s) = string(get(spec, "service")) {
                y += &format!("service: {}\n", quote(&s));
            }
            let description = string(get(spec, "description"))
                .or_else(|| d.metadata.display_name.clone())
                .unwrap_or_default();
            if !description.is_empty() {
                y += &format!("description: {}\n", quote(&description));
            }
            y += &format!("objective: {}\n", target * 100.0);
            y += &format!("window: {window}\n");
            if let Some(z) = &zone {
                y += &format!("time_zone: {}\n", quote(z));
            }
            y += &format!("indicator:\n  {table}:\n");
            if let Some(f) = filter {
                y += &format!("    filter: {}\n", quote(&f));
            }
            y += &format!("    good: {}\n", quote(&good));
            if timeslices {
                let slice = string(get(obj, "timeSliceWindow")).unwrap_or_else(|| "1m".into());
                let ratio = number(get(obj, "timeSliceTarget")).unwrap_or(target);
                y += &format!(
                    "timeslice:\n  slice: {slice}\n  good_ratio: {}%\n",
                    ratio * 100.0
                );
            }
            let labels: Vec<(String, String)> = d
                .metadata
                .labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), string(Some(v))?)))
                .collect();
            if !labels.is_empty() {
                y += "labels:\n";
                for (k, v) in labels {
                    y += &format!("  {}: {}\n", quote(&k), quote(&v));
                }
            }
            if !d.metadata.annotations.is_empty() {
                y += "annotations:\n";
                for (k, v) in &d.metadata.annotations {
                    y += &format!("  {}: {}\n", quote(k), quote(v));
                }
            }
            out.push(y);
        }
    }
    if imp.errors.is_empty() {
        Ok(out.join("---\n"))
    } else {
        Err(imp.errors)
    }
}

/// (native window, time zone) of an OpenSLO `timeWindow` entry.
fn window(w: &Value) -> Result<(String, Option<String>), String> {
    let duration = string(get(w, "duration")).ok_or("a timeWindow needs a duration")?;
    let rolling = matches!(get(w, "isRolling"), Some(Value::Bool(true)));
    if rolling {
        if duration.ends_with('M') || duration.ends_with('Q') || duration.ends_with('Y') {
            return Err(format!(
                "a rolling window of {duration} is not supported: use days"
            ));
        }
        return Ok((duration, None));
    }
    let period = match duration.as_str() {
        "1w" | "7d" => "week",
        "1M" => "month",
        "1Q" | "3M" => "quarter",
        other => {
            return Err(format!(
                "a calendar window of {other} is not supported: use 1w, 1M or 1Q"
            ));
        }
    };
    let zone = get(w, "calendar").and_then(|c| string(get(c, "timeZone")));
    Ok((period.to_string(), zone))
}

/// Imports the OpenSLO documents in `text` as native SLOs.
pub fn import(file: &str, text: &str) -> Result<Vec<crate::spec::Slo>, Vec<SpecError>> {
    let native = to_native(file, text)?;
    crate::spec::parse(file, &native).map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                e.message = format!("{} (in the SLO imported from OpenSLO)", e.message);
                e
            })
            .collect()
    })
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
}
