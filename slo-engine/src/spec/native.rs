//! The native YAML format (documented in `docs/slo.md`), read with the position of every value.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::draft::{
    At, Draft, DraftAlerting, DraftEvents, DraftIndicator, DraftSelector, DraftTier, DraftTimeslice,
};
use super::{Pos, SpecError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    #[serde(rename = "apiVersion")]
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    name: Spanned<String>,
    service: Option<Spanned<String>>,
    description: Option<String>,
    objective: Spanned<f64>,
    window: Spanned<String>,
    time_zone: Option<Spanned<String>>,
    indicator: Spanned<RawIndicator>,
    group_by: Option<Spanned<String>>,
    max_groups: Option<Spanned<usize>>,
    alerting: Option<RawAlerting>,
    timeslice: Option<Spanned<RawTimeslice>>,
    #[serde(default)]
    exclude_maintenance: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndicator {
    spans: Option<RawEvents>,
    logs: Option<RawEvents>,
    metric_ratio: Option<RawMetricRatio>,
    metric_latency: Option<RawMetricLatency>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricRatio {
    good: RawSelector,
    total: RawSelector,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    metric: Spanned<String>,
    filter: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricLatency {
    metric: Spanned<String>,
    filter: Option<Spanned<String>>,
    threshold: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    filter: Option<Spanned<String>>,
    good: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeslice {
    slice: Spanned<String>,
    good_ratio: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    tiers: Option<Vec<Spanned<RawTier>>>,
    min_events: Option<u64>,
    pending_for: Option<Spanned<String>>,
    budget_exhausted: Option<bool>,
    no_data_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    name: Spanned<String>,
    severity: Spanned<String>,
    long: Spanned<String>,
    short: Spanned<String>,
    burn_rate: Option<Spanned<f64>>,
    budget_spent: Option<Spanned<String>>,
}

fn at<T: Clone>(s: &Spanned<T>, field: impl Into<String>) -> At<T> {
    At::new(s.value.clone(), Pos::from(s), field)
}

/// Reads every SLO document of `text` (errors of the YAML itself have a position, no field).
pub(super) fn read(file: &str, text: &str) -> Result<Vec<(Draft, Vec<SpecError>)>, Vec<SpecError>> {
    let docs: Vec<RawSlo> =
        serde_saphyr::from_multiple(text).map_err(|e| vec![super::yaml_error(file, &e)])?;
    Ok(docs.into_iter().map(|raw| draft(file, raw)).collect())
}

/// A document as a draft, and the problems only the native format has (its header).
fn draft(file: &str, raw: RawSlo) -> (Draft, Vec<SpecError>) {
    let mut errors = Vec::new();
    if let Some(v) = &raw.api_version
        && v.value != "sightline/v1"
    {
        errors.push(SpecError::new(
            file,
            v.into(),
            "apiVersion",
            format!(
                "{:?} is not supported: use sightline/v1 (OpenSLO documents are imported \
                 with `sightline slo import`)",
                v.value
            ),
        ));
    }
    if let Some(k) = &raw.kind
        && k.value != "SLO"
    {
        errors.push(SpecError::new(
            file,
            k.into(),
            "kind",
            format!("{:?}: only SLO is supported", k.value),
        ));
    }
    let events = |e: &RawEvents, kind: &str| DraftEvents {
        filter: e
            .filter
            .as_ref()
            .map(|f| at(f, format!("indicator.{kind}.filter"))),
        good: at(&e.good, format!("indicator.{kind}.good")),
    };
    let selector =
        |metric: &Spanned<String>, filter: &Option<Spanned<String>>, field: &str| DraftSelector {
            metric: at(metric, format!("{field}.metric")),
            filter: filter.as_ref().map(|f| at(f, format!("{field}.filter"))),
        };
    let i = &raw.indicator.value;
    let indicator = At::new(
        DraftIndicator {
            spans: i.spans.as_ref().map(|e| events(e, "spans")),
            logs: i.logs.as_ref().map(|e| events(e, "logs")),
            metric_ratio: i.metric_ratio.as_ref().map(|r| {
                (
                    selector(
                        &r.good.metric,
                        &r.good.filter,
                        "indicator.metric_ratio.good",
                    ),
                    selector(
                        &r.total.metric,
                        &r.total.filter,
                        "indicator.metric_ratio.total",
                    ),
                )
            }),
            metric_latency: i.metric_latency.as_ref().map(|l| {
                (
                    selector(&l.metric, &l.filter, "indicator.metric_latency"),
                    at(&l.threshold, "indicator.metric_latency.threshold"),
                )
            }),
        },
        Pos::from(&raw.indicator),
        "indicator",
    );
    let alerting = raw.alerting.map(|a| DraftAlerting {
        tiers: a.tiers.map(|tiers| {
            tiers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let f = format!("alerting.tiers[{i}]");
                    let v = &t.value;
                    At::new(
                        DraftTier {
                            name: at(&v.name, format!("{f}.name")),
                            severity: at(&v.severity, format!("{f}.severity")),
                            long: at(&v.long, format!("{f}.long")),
                            short: at(&v.short, format!("{f}.short")),
                            burn_rate: v
                                .burn_rate
                                .as_ref()
                                .map(|r| at(r, format!("{f}.burn_rate"))),
                            budget_spent: v
                                .budget_spent
                                .as_ref()
                                .map(|b| at(b, format!("{f}.budget_spent"))),
                        },
                        Pos::from(t),
                        f,
                    )
                })
                .collect()
        }),
        min_events: a.min_events,
        pending_for: a
            .pending_for
            .as_ref()
            .map(|p| at(p, "alerting.pending_for")),
        budget_exhausted: a.budget_exhausted,
        no_data_after: a
            .no_data_after
            .as_ref()
            .map(|n| at(n, "alerting.no_data_after")),
    });
    let draft = Draft {
        name: at(&raw.name, "name"),
        service: raw.service.as_ref().map(|s| at(s, "service")),
        description: raw.description,
        objective: at(&raw.objective, "objective"),
        window: at(&raw.window, "window"),
        time_zone: raw.time_zone.as_ref().map(|t| at(t, "time_zone")),
        indicator,
        group_by: raw.group_by.as_ref().map(|g| at(g, "group_by")),
        max_groups: raw.max_groups.as_ref().map(|m| at(m, "max_groups")),
        alerting,
        timeslice: raw.timeslice.as_ref().map(|t| {
            At::new(
                DraftTimeslice {
                    slice: at(&t.value.slice, "timeslice.slice"),
                    good_ratio: at(&t.value.good_ratio, "timeslice.good_ratio"),
                },
                Pos::from(t),
                "timeslice",
            )
        }),
        exclude_maintenance: raw.exclude_maintenance,
        labels: raw.labels,
        annotations: raw.annotations,
    };
    (draft, errors)
}
