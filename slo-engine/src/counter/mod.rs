//! Counting good and valid events as they arrive, and from stored events (backfills).
//!
//! An SLO's SQL expressions are compiled once ([`RowExpr`], by the store) over its table's
//! schema, then evaluated on every batch written to that table. The per-minute counts are
//! returned as `slo_counts` rows ([`rows`]), which the store writes in the same WAL record as
//! the batch: counts and events are durable together, never one without the other. A backfill
//! evaluates the very same expressions on the stored events ([`CompiledSlo::for_schema`]).

mod metric;
pub mod rows;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema};
use sightline_common::clock::{MINUTE, Nanos, floor};
use sightline_store::expr::{ExprError, RowExpr};
use sightline_store::schema::Table;

use crate::rollup::Counts;
use crate::spec::{Expr, Indicator, MetricSelector, OTHER_GROUP, Slo, SpecError};
use metric::{MetricPoints, metric_rows};
pub use rows::{counts_batch, read_counts};

/// Where a count row came from.
pub const ORIGIN_LIVE: &str = "live";
pub const ORIGIN_BACKFILL: &str = "backfill";

/// Why a batch could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error(transparent)]
    Expr(#[from] ExprError),
    #[error("the batch has no usable {0} column")]
    Column(&'static str),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// An SLO's indicator, ready to count batches.
#[derive(Debug)]
pub struct CompiledSlo {
    pub name: String,
    /// Identifies what is counted (table and expressions) and the generation of the counts.
    pub version: String,
    pub table: Table,
    exprs: Exprs,
    max_groups: usize,
    /// Groups seen so far; past `max_groups`, new ones count as [`OTHER_GROUP`].
    groups: Mutex<HashSet<String>>,
    /// Metric indicators: the last point of every cumulative series, to count increases.
    last_points: Mutex<HashMap<String, LastPoint>>,
}

/// The compiled expressions of an indicator, bound to a schema (the table's, or a projection
/// of it).
#[derive(Debug, Clone)]
pub struct Exprs {
    kind: Kind,
    group: Option<RowExpr>,
}

#[derive(Debug, Clone)]
enum Kind {
    Events {
        /// SLOs with the same filter share its evaluation (by its SQL).
        filter: Option<RowExpr>,
        good: RowExpr,
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

#[derive(Debug, Clone)]
struct Selector {
    metric: String,
    filter: Option<RowExpr>,
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

/// How groups past the SLO's `max_groups` are counted.
#[derive(Debug)]
pub enum GroupCap<'a> {
    /// As they arrive (live counting): the first `max_groups` values seen keep their own
    /// counts, later ones count as [`OTHER_GROUP`].
    FirstSeen,
    /// The values in `known`, and new ones while it holds fewer than `limit`, get their own
    /// counts, the rest count as [`OTHER_GROUP`] (a backfill counts more than it keeps, then
    /// keeps the busiest).
    Within {
        known: &'a mut HashSet<String>,
        limit: usize,
    },
}

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

/// A boolean mask of `e` over `batch` (NULL stays NULL: neither valid nor good).
fn mask(e: &RowExpr, batch: &RecordBatch) -> Result<BooleanArray, CountError> {
    let a = cast(&e.evaluate(batch)?, &DataType::Boolean)?;
    a.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or(CountError::Column("boolean"))
}

/// Compiles one expression of `slo`; errors point at the expression's line and field.
fn compile_expr(table: Table, e: &Expr, boolean: bool, source: &str) -> Result<RowExpr, SpecError> {
    let err = |message: String| SpecError {
        file: source.into(),
        line: e.pos.line,
        column: e.pos.column,
        field: e.field.clone(),
        message,
    };
    let compiled = RowExpr::compile(table, &e.sql)
        .map_err(|x| err(format!("{:?} is not a valid SQL expression: {x}", e.sql)))?;
    let ty = compiled.data_type();
    if boolean && ty != &DataType::Boolean && ty != &DataType::Null {
        return Err(err(format!(
            "{:?} is of type {ty}, but must be true or false (a condition such as \
             status_code != 'error')",
            e.sql
        )));
    }
    Ok(compiled)
}

impl Exprs {
    fn all(&self) -> Vec<&RowExpr> {
        let mut out: Vec<&RowExpr> = self.group.iter().collect();
        match &self.kind {
            Kind::Events { filter, good } => out.extend(filter.iter().chain([good])),
            Kind::Ratio { good, total } => {
                out.extend(good.filter.iter().chain(total.filter.iter()));
            }
            Kind::Latency { selector, .. } => out.extend(selector.filter.iter()),
        }
        out
    }

    /// The same expressions over batches of `schema`.
    fn for_schema(&self, schema: &Schema) -> Result<Self, ExprError> {
        let bind = |e: &RowExpr| e.for_schema(schema);
        let selector = |s: &Selector| -> Result<Selector, ExprError> {
            Ok(Selector {
                metric: s.metric.clone(),
                filter: s.filter.as_ref().map(bind).transpose()?,
            })
        };
        let kind = match &self.kind {
            Kind::Events { filter, good } => Kind::Events {
                filter: filter.as_ref().map(bind).transpose()?,
                good: bind(good)?,
            },
            Kind::Ratio { good, total } => Kind::Ratio {
                good: selector(good)?,
                total: selector(total)?,
            },
            Kind::Latency {
                selector: s,
                threshold,
            } => Kind::Latency {
                selector: selector(s)?,
                threshold: *threshold,
            },
        };
        Ok(Self {
            kind,
            group: self.group.as_ref().map(bind).transpose()?,
        })
    }
}

impl CompiledSlo {
    /// Compiles `slo`'s expressions against its table's schema; errors name the field and
    /// position. `generation` distinguishes successive counts of the same indicator.
    pub fn compile(slo: &Slo, generation: u32) -> Result<Self, Vec<SpecError>> {
        let table = slo.indicator.table();
        let mut errors = Vec::new();
        let mut compile = |e: &Expr, boolean: bool| {
            compile_expr(table, e, boolean, &slo.source)
                .map_err(|x| errors.push(x))
                .ok()
        };
        let mut selector = |sel: &MetricSelector| Selector {
            metric: sel.metric.clone(),
            filter: sel.filter.as_ref().and_then(|f| compile(f, true)),
        };
        let kind = match &slo.indicator {
            Indicator::Events { filter, good, .. } => {
                let filter = filter.as_ref().and_then(|f| compile(f, true));
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
            exprs: Exprs {
                kind: kind.ok_or_else(Vec::new)?,
                group,
            },
            max_groups: slo.max_groups,
            groups: Mutex::new(HashSet::new()),
            last_points: Mutex::new(HashMap::new()),
        })
    }

    /// The columns of its table that counting reads (its expressions' and the time column).
    pub fn columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exprs
            .all()
            .iter()
            .flat_map(|e| e.columns())
            .chain([self.table.time_column().to_string()])
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Its expressions over batches of `schema` (a projection holding [`Self::columns`]).
    ///
    /// # Errors
    /// When `schema` lacks one of the columns.
    pub fn for_schema(&self, schema: &Schema) -> Result<Exprs, ExprError> {
        self.exprs.for_schema(schema)
    }

    /// Remembers a group seen in stored counts (for the cardinality cap).
    pub fn know_group(&self, g: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g.into());
    }

    /// Counts valid and good events of `batch` (of this SLO's table) per group and minute.
    ///
    /// # Errors
    /// When an expression cannot be evaluated on the batch, or a column is missing.
    pub fn count(&self, batch: &RecordBatch, into: &mut SliceCounts) -> Result<(), CountError> {
        self.count_shared(batch, into, &mut MaskCache::new())
    }

    /// Like [`CompiledSlo::count`], sharing filter results with the other SLOs counting the
    /// same batch through `cache`.
    ///
    /// # Errors
    /// As [`CompiledSlo::count`].
    pub fn count_shared(
        &self,
        batch: &RecordBatch,
        into: &mut SliceCounts,
        cache: &mut MaskCache,
    ) -> Result<(), CountError> {
        self.count_with(&self.exprs, batch, into, cache, GroupCap::FirstSeen)
    }

    /// Counts `batch` with `exprs` (bound to its schema), capping groups by `cap`.
    ///
    /// # Errors
    /// As [`CompiledSlo::count`].
    pub fn count_with(
        &self,
        exprs: &Exprs,
        batch: &RecordBatch,
        into: &mut SliceCounts,
        cache: &mut MaskCache,
        cap: GroupCap<'_>,
    ) -> Result<(), CountError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let groups: Option<ArrayRef> = match &exprs.group {
            Some(g) => Some(cast(&g.evaluate(batch)?, &DataType::Utf8)?),
            None => None,
        };
        let groups = groups
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<StringArray>());
        let times = batch
            .column_by_name(self.table.time_column())
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .ok_or(CountError::Column("time"))?;
        // (row, good, total) of every counted row, in row order.
        let mut counted: Vec<(usize, u64, u64)> = Vec::new();
        match &exprs.kind {
            Kind::Events { filter, good } => {
                let valid = match filter {
                    Some(f) => match cache.get(f.sql()) {
                        Some(m) => Some(m.clone()),
                        None => {
                            let m = mask(f, batch)?;
                            cache.insert(f.sql().to_string(), m.clone());
                            Some(m)
                        }
                    },
                    None => None,
                };
                // Nothing valid in this batch: nothing more to evaluate.
                if valid.as_ref().is_some_and(|v| v.true_count() == 0) {
                    return Ok(());
                }
                let good = mask(good, batch)?;
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
                    let rows = metric_rows(batch, sel)?;
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
                let rows = metric_rows(batch, selector)?;
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
        let mut live;
        let (known, limit) = match cap {
            GroupCap::FirstSeen => {
                live = self.groups.lock().unwrap_or_else(|e| e.into_inner());
                (&mut *live, self.max_groups)
            }
            GroupCap::Within { known, limit } => (known, limit),
        };
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
            } else if known.len() < limit {
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
