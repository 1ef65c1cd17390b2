//! Counting good and valid events as they arrive.
//!
//! An SLO's SQL expressions are compiled once into DataFusion physical expressions over its
//! table's schema, then evaluated on every batch written to that table. The per-minute counts
//! are returned as `slo_counts` rows, which the store writes in the same WAL record as the
//! batch: counts and events are durable together, never one without the other.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use sightline_store::schema::Table;

use crate::clock::{MINUTE, Nanos, floor};
use crate::rollup::Counts;
use crate::spec::{Expr, Indicator, OTHER_GROUP, Slo, SpecError};

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
    filter: Option<Arc<dyn PhysicalExpr>>,
    good: Arc<dyn PhysicalExpr>,
    group: Option<Arc<dyn PhysicalExpr>>,
    max_groups: usize,
    /// Groups seen so far; past `max_groups`, new ones count as [`OTHER_GROUP`].
    groups: Mutex<HashSet<String>>,
}

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
    let Indicator::Events {
        table,
        filter,
        good,
    } = &slo.indicator;
    fnv(&[
        table.name(),
        filter.as_ref().map_or("", |f| f.sql.as_str()),
        &good.sql,
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
        let Indicator::Events {
            table,
            filter,
            good,
        } = &slo.indicator;
        let ctx = SessionContext::new();
        let schema = DFSchema::try_from(table.schema()).map_err(|e| {
            vec![SpecError {
                file: slo.source.clone(),
                line: slo.pos.line,
                column: slo.pos.column,
                field: "indicator".into(),
                message: e.to_string(),
            }]
        })?;
        let mut errors = Vec::new();
        let mut compile = |e: &Expr, boolean: bool| {
            compile_expr(&ctx, &schema, e, boolean, &slo.source)
                .map_err(|x| errors.push(x))
                .ok()
        };
        let filter = filter.as_ref().map(|f| compile(f, true));
        let good = compile(good, true);
        let group = slo.group_by.as_ref().map(|g| compile(g, false));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: slo.name.clone(),
            version: format!("{}.{generation}", indicator_hash(slo)),
            table: *table,
            filter: filter.flatten(),
            good: good.ok_or_else(Vec::new)?,
            group: group.flatten(),
            max_groups: slo.max_groups,
            groups: Mutex::new(HashSet::new()),
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
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let mask = |e: &Arc<dyn PhysicalExpr>| -> datafusion::error::Result<BooleanArray> {
            let a = e.evaluate(batch)?.into_array(n)?;
            let a = cast(&a, &DataType::Boolean)?;
            a.as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| datafusion::error::DataFusionError::Internal("not boolean".into()))
        };
        let valid = self.filter.as_ref().map(mask).transpose()?;
        let good = mask(&self.good)?;
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
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("no time column".into()))?;
        let mut known = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        // Rows of a batch mostly share their group and minute: add up runs of equal keys and
        // touch the map once per run.
        let mut run: Option<(&str, Nanos)> = None;
        let mut acc = Counts::default();
        for i in 0..n {
            // NULL is neither valid nor good.
            if let Some(v) = &valid
                && !(v.is_valid(i) && v.value(i))
            {
                continue;
            }
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
            acc.total += 1;
            if good.is_valid(i) && good.value(i) {
                acc.good += 1;
            }
        }
        if let Some((g, slice)) = run {
            into.entry((g.to_string(), slice)).or_default().add(acc);
        }
        Ok(())
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
