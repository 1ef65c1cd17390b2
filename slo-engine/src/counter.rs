//! Counting good and valid events as they arrive.
//!
//! An SLO's SQL expressions are compiled once into DataFusion physical expressions over its
//! table's schema, then evaluated on every batch written to that table. The per-minute counts
//! are returned as `slo_counts` rows, which the store writes in the same WAL record as the
//! batch: counts and events are durable together, never one without the other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, MapArray, RecordBatch,
    StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use sightline_store::schema::Table;

use crate::rollup::Counts;
use crate::spec::{Expr, Indicator, MetricSelector, OTHER_GROUP, Slo, SpecError};
use sightline_common::clock::{MINUTE, Nanos, floor};

/// Where a count row came from.
pub const ORIGIN_LIVE: &str = "live";
pub const ORIGIN_BACKFILL: &str = "backfill";

/// An SLO's indicator, ready to count batches.
#[derive(Debug)]
pub struct CompiledSlo {
    pub name: String,
    /// Identifies what is counted (table and expressions) and the generation of the counts.
    pub version: String,
    pub table: Table,
    kind: Kind,
    group: Option<Arc<dyn PhysicalExpr>>,
    max_groups: usize,
    /// Groups seen so far; past `max_groups`, new ones count as [`OTHER_GROUP`].
    groups: Mutex<HashSet<String>>,
    /// Metric indicators: the last point of every cumulative series, to count increases.
    last_points: Mutex<HashMap<String, LastPoint>>,
}

#[derive(Debug)]
enum Kind {
    Events {
        /// The filter and its SQL (SLOs with the same filter share its evaluation).
        filter: Option<(String, Arc<dyn PhysicalExpr>)>,
        good: Arc<dyn PhysicalExpr>,
    },
    Ratio {
        good: Selector,
        total: Selector,
    },
    Latency {
        selector: Selector,
        threshold: f64,
    },
}

#[derive(Debug)]
struct Selector {
    metric: String,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The last point seen of a cumulative series.
#[derive(Debug, Clone)]
struct LastPoint {
    start: i64,
    time: i64,
    values: [f64; 2],
}

/// A cumulative series seen for the first time counts its whole value only if it started
/// this recently (a process that just began); otherwise the point is a baseline.
pub const FRESH_SERIES: Nanos = 5 * MINUTE;

/// Filter results for one batch, by the filter's SQL.
pub type MaskCache = HashMap<String, BooleanArray>;

/// Counts per (group, minute).
pub type SliceCounts = BTreeMap<(String, Nanos), Counts>;

/// FNV-1a, 64-bit: small, stable across versions and platforms (stored fingerprints and
/// versions depend on it).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a of NUL-separated parts, hex.
pub fn fnv(parts: &[&str]) -> String {
    format!(
        "{:016x}",
        fnv1a(parts.iter().flat_map(|p| p.bytes().chain([0])))
    )
}

/// What determines an SLO's counts: when it changes, counts start over (with a backfill).
pub fn indicator_hash(slo: &Slo) -> String {
    let what = match &slo.indicator {
        Indicator::Events {
            table,
            filter,
            good,
        } => format!(
            "{}\u{1f}{}\u{1f}{}",
            table.name(),
            filter.as_ref().map_or("", |f| f.sql.as_str()),
            good.sql
        ),
        Indicator::MetricRatio { good, total } => format!(
            "ratio\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            good.metric,
            good.filter.as_ref().map_or("", |f| f.sql.as_str()),
            total.metric,
            total.filter.as_ref().map_or("", |f| f.sql.as_str())
        ),
        Indicator::MetricLatency {
            selector,
            threshold,
        } => format!(
            "latency\u{1f}{}\u{1f}{}\u{1f}{threshold}",
            selector.metric,
            selector.filter.as_ref().map_or("", |f| f.sql.as_str())
        ),
    };
    fnv(&[
        &what,
        slo.group_by.as_ref().map_or("", |g| g.sql.as_str()),
        &slo.max_groups.to_string(),
        &slo.timeslice
            .map_or(String::new(), |t| format!("{}/{}", t.slice, t.good_ratio)),
    ])
}

fn compile_expr(
    ctx: &SessionContext,
    schema: &DFSchema,
    e: &Expr,
    boolean: bool,
    source: &str,
) -> Result<Arc<dyn PhysicalExpr>, SpecError> {
    let err = |message: String| SpecError {
        file: source.into(),
        line: e.pos.line,
        column: e.pos.column,
        field: e.field.clone(),
        message,
    };
    let logical = ctx
        .parse_sql_expr(&e.sql, schema)
        .map_err(|x| err(format!("{:?} is not a valid SQL expression: {x}", e.sql)))?;
    let ty = logical
        .get_type(schema)
        .map_err(|x| err(format!("{:?}: {x}", e.sql)))?;
    if boolean && ty != DataType::Boolean && ty != DataType::Null {
        return Err(err(format!(
            "{:?} is of type {ty}, but must be true or false (a condition such as \
             status_code != 'error')",
            e.sql
        )));
    }
    ctx.create_physical_expr(logical, schema)
        .map_err(|x| err(format!("{:?} cannot be evaluated: {x}", e.sql)))
}

impl CompiledSlo {
    /// Compiles `slo`'s expressions against its table's schema; errors name the field and
    /// position. `generation` distinguishes successive counts of the same indicator.
    pub fn compile(slo: &Slo, generation: u32) -> Result<Self, Vec<SpecError>> {
        let table = slo.indicator.table();
        let ctx = SessionContext::new();
        let schema = DFSchema::try_from(table.schema()).map_err(|e| {
            vec![SpecError::new(
                &slo.source,
                slo.pos,
                "indicator",
                e.to_string(),
            )]
        })?;
        let mut errors = Vec::new();
        let mut compile = |e: &Expr, boolean: bool| {
            compile_expr(&ctx, &schema, e, boolean, &slo.source)
                .map_err(|x| errors.push(x))
                .ok()
        };
        let mut selector = |sel: &MetricSelector| Selector {
            metric: sel.metric.clone(),
            filter: sel.filter.as_ref().and_then(|f| compile(f, true)),
        };
        let kind = match &slo.indicator {
            Indicator::Events { filter, good, .. } => {
                let filter = filter
                    .as_ref()
                    .and_then(|f| Some((f.sql.clone(), compile(f, true)?)));
                compile(good, true).map(|good| Kind::Events { filter, good })
            }
            Indicator::MetricRatio { good, total } => Some(Kind::Ratio {
                good: selector(good),
                total: selector(total),
            }),
            Indicator::MetricLatency {
                selector: sel,
                threshold,
            } => Some(Kind::Latency {
                selector: selector(sel),
                threshold: *threshold,
            }),
        };
        let group = slo.group_by.as_ref().and_then(|g| compile(g, false));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: slo.name.clone(),
            version: format!("{}.{generation}", indicator_hash(slo)),
            table,
            kind: kind.ok_or_else(Vec::new)?,
            group,
            max_groups: slo.max_groups,
            groups: Mutex::new(HashSet::new()),
            last_points: Mutex::new(HashMap::new()),
        })
    }

    /// Remembers a group seen in stored counts (for the cardinality cap).
    pub fn know_group(&self, g: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g.into());
    }

    /// Counts valid and good events of `batch` (of this SLO's table) per group and minute.
    pub fn count(
        &self,
        batch: &RecordBatch,
        into: &mut SliceCounts,
    ) -> datafusion::error::Result<()> {
        self.count_shared(batch, into, &mut MaskCache::new())
    }

    /// Like [`CompiledSlo::count`], sharing filter results with the other SLOs counting the
    /// same batch through `cache`.
    pub fn count_shared(
        &self,
        batch: &RecordBatch,
        into: &mut SliceCounts,
        cache: &mut MaskCache,
    ) -> datafusion::error::Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let internal = |m: &str| datafusion::error::DataFusionError::Internal(m.into());
        let mask = |e: &Arc<dyn PhysicalExpr>| -> datafusion::error::Result<BooleanArray> {
            let a = e.evaluate(batch)?.into_array(n)?;
            let a = cast(&a, &DataType::Boolean)?;
            a.as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| internal("not boolean"))
        };
        let groups: Option<ArrayRef> = match &self.group {
            Some(g) => Some(cast(&g.evaluate(batch)?.into_array(n)?, &DataType::Utf8)?),
            None => None,
        };
        let groups = groups
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<StringArray>());
        let times = batch
            .column_by_name(self.table.time_column())
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .ok_or_else(|| internal("no time column"))?;
        // (row, good, total) of every counted row, in row order.
        let mut counted: Vec<(usize, u64, u64)> = Vec::new();
        match &self.kind {
            Kind::Events { filter, good } => {
                let valid = match filter {
                    Some((sql, f)) => match cache.get(sql) {
                        Some(m) => Some(m.clone()),
                        None => {
                            let m = mask(f)?;
                            cache.insert(sql.clone(), m.clone());
                            Some(m)
                        }
                    },
                    None => None,
                };
                // Nothing valid in this batch: nothing more to evaluate.
                if valid.as_ref().is_some_and(|v| v.true_count() == 0) {
                    return Ok(());
                }
                let good = mask(good)?;
                for i in 0..n {
                    // NULL is neither valid nor good.
                    if let Some(v) = &valid
                        && !(v.is_valid(i) && v.value(i))
                    {
                        continue;
                    }
                    counted.push((i, u64::from(good.is_valid(i) && good.value(i)), 1));
                }
            }
            Kind::Ratio { good, total } => {
                let mut last = self.last_points.lock().unwrap_or_else(|e| e.into_inner());
                for (side, sel) in [(0usize, good), (1, total)] {
                    let rows = metric_rows(batch, sel, &mask)?;
                    let points = MetricPoints::of(batch)?;
                    for i in rows {
                        let Some(value) = points.sum_value(i) else {
                            continue;
                        };
                        let key = format!("{side}\u{1f}{}", points.series_key(i));
                        if let Some([inc, _]) = points.increase(&mut last, key, i, [value, 0.0]) {
                            let inc = inc.round() as u64;
                            counted.push(if side == 0 { (i, inc, 0) } else { (i, 0, inc) });
                        }
                    }
                }
            }
            Kind::Latency {
                selector,
                threshold,
            } => {
                let mut last = self.last_points.lock().unwrap_or_else(|e| e.into_inner());
                let rows = metric_rows(batch, selector, &mask)?;
                let points = MetricPoints::of(batch)?;
                for i in rows {
                    let Some((good, total)) = points.histogram_split(i, *threshold) else {
                        continue;
                    };
                    let key = points.series_key(i);
                    if let Some([g, t]) = points.increase(&mut last, key, i, [good, total]) {
                        counted.push((i, g.round() as u64, t.round() as u64));
                    }
                }
            }
        }
        let mut known = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        // Rows of a batch mostly share their group and minute: add up runs of equal keys and
        // touch the map once per run.
        let mut run: Option<(&str, Nanos)> = None;
        let mut acc = Counts::default();
        for (i, good, total) in counted {
            let group = match groups {
                Some(g) if g.is_valid(i) => g.value(i),
                _ => "",
            };
            let group = if known.contains(group) {
                group
            } else if known.len() < self.max_groups {
                known.insert(group.to_string());
                group
            } else {
                OTHER_GROUP
            };
            let key = (group, floor(times.value(i), MINUTE));
            if run != Some(key) {
                if let Some((g, slice)) = run {
                    into.entry((g.to_string(), slice)).or_default().add(acc);
                }
                run = Some(key);
                acc = Counts::default();
            }
            acc.add(Counts::new(good, total));
        }
        if let Some((g, slice)) = run {
            into.entry((g.to_string(), slice)).or_default().add(acc);
        }
        Ok(())
    }
}

/// Rows of `batch` (of `metrics`) that are points of `sel`'s metric and pass its filter.
fn metric_rows(
    batch: &RecordBatch,
    sel: &Selector,
    mask: &dyn Fn(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<BooleanArray>,
) -> datafusion::error::Result<Vec<usize>> {
    let names = batch
        .column_by_name("metric_name")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("no metric_name".into()))?;
    let filter = sel.filter.as_ref().map(mask).transpose()?;
    Ok((0..batch.num_rows())
        .filter(|&i| names.value(i) == sel.metric)
        .filter(|&i| filter.as_ref().is_none_or(|f| f.is_valid(i) && f.value(i)))
        .collect())
}

/// The columns of `metrics` rows that metric indicators read.
struct MetricPoints<'a> {
    batch: &'a RecordBatch,
    metric_type: &'a StringArray,
    temporality: &'a StringArray,
    monotonic: &'a BooleanArray,
    value: &'a Float64Array,
    count: &'a UInt64Array,
    start: &'a TimestampNanosecondArray,
    time: &'a TimestampNanosecondArray,
    buckets: &'a ListArray,
    bounds: &'a ListArray,
}

impl<'a> MetricPoints<'a> {
    fn of(batch: &'a RecordBatch) -> datafusion::error::Result<Self> {
        fn col<'b, T: 'static>(b: &'b RecordBatch, name: &str) -> datafusion::error::Result<&'b T> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!("metrics column {name}"))
                })
        }
        Ok(Self {
            batch,
            metric_type: col(batch, "metric_type")?,
            temporality: col(batch, "temporality")?,
            monotonic: col(batch, "is_monotonic")?,
            value: col(batch, "value")?,
            count: col(batch, "count")?,
            start: col(batch, "start_time")?,
            time: col(batch, "time")?,
            buckets: col(batch, "bucket_counts")?,
            bounds: col(batch, "explicit_bounds")?,
        })
    }

    /// A monotonic sum's value (an UpDownCounter's increases are not events: none).
    fn sum_value(&self, i: usize) -> Option<f64> {
        let monotonic = self.monotonic.is_valid(i) && self.monotonic.value(i);
        (self.metric_type.value(i) == "sum" && monotonic && self.value.is_valid(i))
            .then(|| self.value.value(i))
    }

    /// (observations at or under `threshold`, all observations) of a histogram point, when
    /// `threshold` is one of its bucket bounds.
    fn histogram_split(&self, i: usize, threshold: f64) -> Option<(f64, f64)> {
        if self.metric_type.value(i) != "histogram" || !self.count.is_valid(i) {
            return None;
        }
        let bounds = self.bounds.value(i);
        let bounds = bounds.as_any().downcast_ref::<Float64Array>()?;
        let buckets = self.buckets.value(i);
        let buckets = buckets.as_any().downcast_ref::<UInt64Array>()?;
        // OTLP: one more bucket than bounds; anything else is malformed and counts nothing.
        if buckets.len() != bounds.len() + 1 {
            return None;
        }
        let tolerance = 1e-9 * threshold.abs().max(1.0);
        let at = (0..bounds.len()).find(|&b| (bounds.value(b) - threshold).abs() <= tolerance)?;
        // Bucket b holds observations in (bounds[b-1], bounds[b]].
        let good = (0..=at).fold(0u64, |g, b| g.saturating_add(buckets.value(b)));
        Some((good as f64, self.count.value(i) as f64))
    }

    /// What identifies a series: the metric, the resource, the scope and the attributes.
    fn series_key(&self, i: usize) -> String {
        let mut key = String::new();
        for name in ["metric_name", "service_name", "scope_name"] {
            if let Some(c) = self
                .batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                && c.is_valid(i)
            {
                key.push_str(c.value(i));
            }
            key.push('\u{1f}');
        }
        for name in ["resource_attributes", "attributes"] {
            if let Some(m) = self
                .batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<MapArray>())
            {
                let entries = m.value(i);
                let k = entries.column(0).as_any().downcast_ref::<StringArray>();
                let v = entries.column(1).as_any().downcast_ref::<StringArray>();
                if let (Some(k), Some(v)) = (k, v) {
                    for e in 0..k.len() {
                        key.push_str(k.value(e));
                        key.push('=');
                        if v.is_valid(e) {
                            key.push_str(v.value(e));
                        }
                        key.push('\u{1e}');
                    }
                }
            }
            key.push('\u{1f}');
        }
        key
    }

    /// The increase a point adds: its values for delta temporality; for cumulative, the
    /// difference from the series' previous point, the whole value after a reset (a new start
    /// time, or a value that went down), and nothing for the first point of a series that did
    /// not just start (a baseline) or for a point not newer than the previous one.
    fn increase(
        &self,
        last: &mut HashMap<String, LastPoint>,
        key: String,
        i: usize,
        values: [f64; 2],
    ) -> Option<[f64; 2]> {
        if self.temporality.is_valid(i) && self.temporality.value(i) == "delta" {
            return Some(values);
        }
        let time = self.time.value(i);
        let start = if self.start.is_valid(i) {
            self.start.value(i)
        } else {
            0
        };
        let point = LastPoint {
            start,
            time,
            values,
        };
        match last.get(&key) {
            None => {
                last.insert(key, point);
                (start > 0 && time - start <= FRESH_SERIES).then_some(values)
            }
            Some(prev) if time <= prev.time => None,
            Some(prev) => {
                let reset =
                    start != prev.start || values.iter().zip(prev.values).any(|(v, p)| *v < p);
                let inc = if reset {
                    values
                } else {
                    [values[0] - prev.values[0], values[1] - prev.values[1]]
                };
                last.insert(key, point);
                Some(inc)
            }
        }
    }
}

/// `slo_counts` rows for the counts of several SLOs.
pub fn counts_batch(
    rows: &[(&str, &str, &str, SliceCounts)],
) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
    let (mut slo, mut version, mut origin, mut group) = (vec![], vec![], vec![], vec![]);
    let (mut slice, mut good, mut total) = (vec![], vec![], vec![]);
    for (name, ver, org, counts) in rows {
        for ((g, s), c) in counts {
            slo.push(*name);
            version.push(*ver);
            origin.push(*org);
            group.push(g.as_str());
            slice.push(*s);
            good.push(c.good as i64);
            total.push(c.total as i64);
        }
    }
    if slo.is_empty() {
        return Ok(None);
    }
    let schema = Table::SloCounts.schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(slo)),
        Arc::new(StringArray::from(version)),
        Arc::new(StringArray::from(group)),
        Arc::new(TimestampNanosecondArray::from(slice).with_timezone("UTC")),
        Arc::new(Int64Array::from(good)),
        Arc::new(Int64Array::from(total)),
        Arc::new(StringArray::from(origin)),
    ];
    RecordBatch::try_new(schema, columns).map(Some)
}

/// Reads `slo_counts` rows back: (slo, version, group, slice, counts).
pub fn read_counts(batch: &RecordBatch) -> Vec<(String, String, String, Nanos, Counts)> {
    let s = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    };
    let i = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
    };
    let t = batch
        .column_by_name("slice_start")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
    let (Some(slo), Some(ver), Some(grp), Some(t), Some(good), Some(total)) = (
        s("slo"),
        s("slo_version"),
        s("group_value"),
        t,
        i("good"),
        i("total"),
    ) else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .map(|r| {
            (
                slo.value(r).to_string(),
                ver.value(r).to_string(),
                grp.value(r).to_string(),
                t.value(r),
                Counts::new(good.value(r).max(0) as u64, total.value(r).max(0) as u64),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn slo(extra: &str, good: &str) -> Slo {
        let text = format!(
            "name: t\nobjective: 99\nwindow: 7d\n{extra}indicator:\n  spans:\n    filter: \"kind = 'server'\"\n    good: \"{good}\"\n"
        );
        parse("t.yaml", &text).expect("spec").remove(0)
    }

    #[test]
    fn expressions_are_checked_against_the_table() {
        let errors = CompiledSlo::compile(&slo("", "no_such_column = 1"), 0).expect_err("bad");
        assert_eq!(errors[0].field, "indicator.spans.good");
        assert_eq!(errors[0].line, 7);
        assert!(
            errors[0].message.contains("no_such_column"),
            "{}",
            errors[0]
        );

        let errors = CompiledSlo::compile(&slo("", "duration_ns + 1"), 0).expect_err("type");
        assert!(errors[0].message.contains("true or false"), "{}", errors[0]);

        let ok = CompiledSlo::compile(
            &slo("group_by: http_route\n", "duration_ns <= 300000000"),
            0,
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn versions_follow_the_indicator_not_the_objective() {
        let a = indicator_hash(&slo("", "status_code != 'error'"));
        let b = indicator_hash(&slo("", "status_code = 'ok'"));
        let mut c = slo("", "status_code != 'error'");
        c.objective = 0.5;
        assert_ne!(a, b);
        assert_eq!(a, indicator_hash(&c));
    }
}
