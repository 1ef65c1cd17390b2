//! What the engine reads from and writes to the store: the SQL of its internal queries (over
//! its own tables and the events' time column, never a spec's expressions), readers of their
//! answers, and the `slo_alerts` rows it writes.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampNanosecondArray,
};
use sightline_common::clock::{DAY, Nanos};
use sightline_store::schema::Table;

use crate::alert::Transition;
use crate::counter::ORIGIN_BACKFILL;
use crate::rollup::Counts;
use crate::spec::Slo;

/// A SQL string literal.
pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A nanosecond time as a SQL timestamp literal.
fn time(t: Nanos) -> String {
    quote(
        &chrono::DateTime::from_timestamp_nanos(t)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    )
}

/// Per stored (slo, version): whether its backfill completed, and the last minute written.
pub(super) fn generations_sql(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| quote(n)).collect();
    format!(
        "SELECT slo, slo_version, max(CASE WHEN origin = '{ORIGIN_BACKFILL}' THEN 1 ELSE 0 END) AS complete, \
         max(CAST(slice_start AS BIGINT)) AS last \
         FROM slo_counts WHERE slo IN ({}) GROUP BY 1, 2",
        names.join(", ")
    )
}

/// The stored counts of one generation since `from`, per group and minute.
pub(super) fn stored_counts_sql(slo: &str, version: &str, from: Nanos) -> String {
    format!(
        "SELECT group_value, CAST(slice_start AS BIGINT) AS slice_start, sum(good) AS good, \
         sum(total) AS total FROM slo_counts WHERE slo = {} AND slo_version = {} AND \
         slice_start >= {} GROUP BY 1, 2",
        quote(slo),
        quote(version),
        time(from),
    )
}

/// The stored points of a metric SLO's metrics since `from`, oldest first.
pub(super) fn metric_points_sql(slo: &Slo, from: Nanos) -> String {
    let names: Vec<String> = slo.indicator.metrics().iter().map(|m| quote(m)).collect();
    format!(
        "SELECT * FROM metrics WHERE metric_name IN ({}) AND time >= {} ORDER BY time",
        names.join(", "),
        time(from),
    )
}

/// The columns `columns` of `table`'s events since `from` (what a backfill counts).
pub(super) fn events_sql(table: Table, columns: &[String], from: Nanos) -> String {
    let columns: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    format!(
        "SELECT {} FROM {} WHERE {} >= {}",
        columns.join(", "),
        table.name(),
        ident(table.time_column()),
        time(from),
    )
}

/// The recorded alert transitions of the last 93 days, oldest first.
pub(super) fn transitions_sql(now: Nanos) -> String {
    format!(
        "SELECT fingerprint, state, CAST(time AS BIGINT) AS t, CAST(starts_at AS BIGINT) AS s \
         FROM slo_alerts WHERE time >= {} ORDER BY time",
        time(now - 93 * DAY)
    )
}

pub(super) fn strings(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let c = batch.column_by_name(name)?;
    let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok()?;
    c.as_any().downcast_ref::<StringArray>().cloned()
}

pub(super) fn int64s(batch: &RecordBatch, name: &str) -> Option<Int64Array> {
    let c = batch.column_by_name(name)?;
    let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).ok()?;
    c.as_any().downcast_ref::<Int64Array>().cloned()
}

/// (group, slice start, counts) rows of a query answer with `good` and `total` columns.
pub(super) fn group_counts(
    b: &RecordBatch,
    group: &str,
    slice: &str,
) -> Vec<(String, Nanos, Counts)> {
    let (Some(g), Some(t), Some(good), Some(total)) = (
        strings(b, group),
        int64s(b, slice),
        int64s(b, "good"),
        int64s(b, "total"),
    ) else {
        return Vec::new();
    };
    (0..b.num_rows())
        .map(|r| {
            (
                g.value(r).to_string(),
                t.value(r),
                Counts::new(good.value(r).max(0) as u64, total.value(r).max(0) as u64),
            )
        })
        .collect()
}

/// `slo_alerts` rows.
pub(super) fn alerts_batch(ts: &[Transition]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let ts_col = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
    };
    let str_col = |f: &dyn Fn(&Transition) -> String| -> ArrayRef {
        Arc::new(StringArray::from(ts.iter().map(f).collect::<Vec<_>>()))
    };
    let f64_col = |key: &str| -> ArrayRef {
        Arc::new(Float64Array::from(
            ts.iter()
                .map(|t| t.values.get(key).copied())
                .collect::<Vec<_>>(),
        ))
    };
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for t in ts {
        for (k, v) in &t.labels {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        labels.append(true)?;
    }
    let columns: Vec<ArrayRef> = vec![
        ts_col(ts.iter().map(|t| Some(t.at)).collect()),
        str_col(&|t| t.slo.clone()),
        str_col(&|t| t.rule.clone()),
        str_col(&|t| t.group.clone()),
        str_col(&|t| t.fingerprint.clone()),
        str_col(&|t| t.state.to_string()),
        str_col(&|t| t.labels.get("severity").cloned().unwrap_or_default()),
        ts_col(ts.iter().map(|t| t.starts_at).collect()),
        Arc::new(labels.finish()),
        f64_col("threshold"),
        f64_col("burn_rate_long"),
        f64_col("burn_rate_short"),
        f64_col("budget_remaining"),
    ];
    RecordBatch::try_new(Table::SloAlerts.schema(), columns)
}
