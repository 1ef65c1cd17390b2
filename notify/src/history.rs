//! Rows of the `notifications` table: one when a notification is queued, one per delivery
//! attempt, one when it is given up.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use sightline_common::clock::Nanos;
use sightline_store::schema::Table;

use crate::message::Notification;

#[derive(Debug, Clone)]
pub struct Row {
    pub time: Nanos,
    pub notification_id: String,
    pub receiver: String,
    pub integration: &'static str,
    pub group_key: String,
    pub status: String,
    pub alerts: i64,
    pub fingerprints: String,
    /// queued, delivered, retrying, rejected or expired.
    pub outcome: &'static str,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
}

impl Row {
    pub fn new(
        n: &Notification,
        integration: &'static str,
        outcome: &'static str,
        time: Nanos,
    ) -> Self {
        Self {
            time,
            notification_id: n.id.clone(),
            receiver: n.receiver.clone(),
            integration,
            group_key: n.group_key.clone(),
            status: n.status.clone(),
            alerts: n.alerts.len() as i64,
            fingerprints: n.fingerprints(),
            outcome,
            attempt: 0,
            status_code: None,
            error: None,
            latency_ms: None,
        }
    }
}

pub fn batch(rows: &[Row]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let s = |f: &dyn Fn(&Row) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(|r| r.time).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        s(&|r| r.notification_id.clone()),
        s(&|r| r.receiver.clone()),
        s(&|r| r.integration.to_string()),
        s(&|r| r.group_key.clone()),
        s(&|r| r.status.clone()),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.alerts).collect::<Vec<_>>(),
        )),
        s(&|r| r.fingerprints.clone()),
        s(&|r| r.outcome.to_string()),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.status_code).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.latency_ms).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(Table::Notifications.schema(), columns)
}
