//! `slo_counts` rows: written with the events they count, read back at start and by reloads.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use sightline_common::clock::Nanos;
use sightline_store::schema::Table;

use super::SliceCounts;
use crate::rollup::Counts;

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
