//! Helpers shared by the store's unit tests.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;

use crate::query::QueryEngine;
use crate::schema::Table;

/// `n` trace fragments with ids `first..first + n` (as 32 hex digits), 1 µs apart from `t0`.
pub(crate) fn fragments(first: usize, n: usize, t0: i64) -> RecordBatch {
    let ids: Vec<String> = (first..first + n).map(|i| format!("{i:032x}")).collect();
    let times: Vec<i64> = (0..n as i64).map(|i| t0 + i * 1_000).collect();
    RecordBatch::try_new(
        Table::TraceFragments.schema(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC")),
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(StringArray::from(vec![Some("root"); n])),
            Arc::new(Int64Array::from(vec![1; n])),
            Arc::new(Int64Array::from(vec![0; n])),
        ],
    )
    .expect("batch")
}

/// The trace ids in a batch's first column.
pub(crate) fn ids_of(batch: &RecordBatch) -> Vec<String> {
    let a = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("ids");
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

/// Every trace id in `trace_fragments`, sorted.
pub(crate) async fn stored_ids(engine: &QueryEngine) -> Vec<String> {
    let out = engine
        .execute("SELECT trace_id FROM trace_fragments ORDER BY trace_id")
        .await
        .expect("query");
    out.batches.iter().flat_map(ids_of).collect()
}
