//! The `audit` table's writer: admin actions are written before they are answered
//! ([`AuditLog::write`]); authentication failures and key changes, which a client can cause
//! in numbers, go through a bounded queue written about every 200 ms
//! ([`AuditSink::record`]; past [`QUEUE`] waiting events new ones are dropped and counted in
//! `sightline_audit_dropped_total`). Either way a row reaches the WAL like any other write.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array as _, ArrayRef, StringArray, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sightline_common::auth::{AuditEvent, AuditSink};

use crate::query::QueryError;
use crate::{Result, Store, Table};

/// Events waiting to be written, at most.
pub const QUEUE: usize = 4096;
/// Events written per batch from the queue, at most.
const BATCH: usize = 1024;
const LINGER: Duration = Duration::from_millis(200);

/// Records audit events in the store.
#[derive(Debug)]
pub struct AuditLog {
    store: Arc<Store>,
    tx: tokio::sync::mpsc::Sender<AuditEvent>,
    dropped: Counter,
    failed: Counter,
}

/// Writes the queued events until stopped (see [`AuditLog::new`]).
#[derive(Debug)]
pub struct AuditWriter {
    log: Arc<AuditLog>,
    rx: tokio::sync::mpsc::Receiver<AuditEvent>,
}

impl AuditLog {
    /// The log over `store`, and the writer of its queue, to be run as a task.
    pub fn new(store: Arc<Store>, registry: &mut Registry) -> (Arc<AuditLog>, AuditWriter) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let log = Arc::new(AuditLog {
            store,
            tx,
            dropped: Counter::default(),
            failed: Counter::default(),
        });
        registry.register(
            "sightline_audit_dropped",
            "Audit events (authentication failures, key changes) dropped because too many were \
             waiting to be written",
            log.dropped.clone(),
        );
        registry.register(
            "sightline_audit_write_failures",
            "Audit events the store refused to write (the server log says why)",
            log.failed.clone(),
        );
        let writer = AuditWriter {
            log: log.clone(),
            rx,
        };
        (log, writer)
    }

    /// Writes `event` durably now.
    ///
    /// # Errors
    /// When the store refuses the write (it is counted and should be logged by the caller).
    pub async fn write(&self, event: AuditEvent) -> Result<()> {
        self.write_all(&[event]).await
    }

    async fn write_all(&self, events: &[AuditEvent]) -> Result<()> {
        let result = self
            .store
            .write(vec![(Table::Audit, batch(events)?)])
            .await
            .map(drop);
        if result.is_err() {
            self.failed.inc_by(events.len() as u64);
        }
        result
    }

    /// The time of the newest key change the audit holds (0 if none), so that changes made
    /// while the server was stopped can be recorded at start.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn last_key_change(
        engine: &crate::query::QueryEngine,
    ) -> std::result::Result<i64, QueryError> {
        let out = engine
            .with_audit()
            .execute(
                "SELECT CAST(max(time) AS BIGINT) AS t FROM audit \
                 WHERE action IN ('key.create', 'key.revoke')",
            )
            .await?;
        Ok(out
            .batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .filter(|a| !a.is_empty() && a.is_valid(0))
                    .map(|a| a.value(0))
            })
            .unwrap_or(0))
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
        }
    }
}

impl AuditWriter {
    /// Writes queued events in batches until `stop`, then what is still queued.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut events = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                n = self.rx.recv_many(&mut events, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    // A moment for more to arrive, so that a burst is one write.
                    tokio::time::sleep(LINGER).await;
                    let room = BATCH.saturating_sub(events.len());
                    if room > 0 {
                        while let Ok(e) = self.rx.try_recv() {
                            events.push(e);
                            if events.len() >= BATCH {
                                break;
                            }
                        }
                    }
                    self.write(&mut events).await;
                }
            }
        }
        while let Ok(e) = self.rx.try_recv() {
            events.push(e);
        }
        self.write(&mut events).await;
    }

    async fn write(&self, events: &mut Vec<AuditEvent>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.log.write_all(events).await {
            tracing::warn!(error = %e, events = events.len(), "audit events not written");
        }
        events.clear();
    }
}

/// The rows of `events`, in the `audit` schema.
///
/// # Errors
/// Never for events made by [`AuditEvent`]'s constructors (the schema is fixed).
pub fn batch(events: &[AuditEvent]) -> Result<RecordBatch> {
    let strings = |f: &dyn Fn(&AuditEvent) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(events.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from_iter_values(events.iter().map(|e| e.time))
                .with_timezone("UTC"),
        ),
        strings(&|e| Some(e.tenant.clone())),
        strings(&|e| Some(e.action.to_string())),
        strings(&|e| e.key_id.clone()),
        strings(&|e| e.client.map(|c| c.to_string())),
        strings(&|e| Some(e.via.to_string())),
        strings(&|e| e.target.clone()),
        strings(&|e| e.detail.clone()),
    ];
    Ok(RecordBatch::try_new(Table::Audit.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    fn event(action: &'static str, time: i64) -> AuditEvent {
        AuditEvent {
            time,
            tenant: "default".into(),
            action,
            key_id: Some("3f9c0a1b2c3d4e5f".into()),
            client: Some("127.0.0.1".parse().expect("ip")),
            via: "api",
            target: None,
            detail: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_stored_and_only_an_audit_engine_sees_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut registry = Registry::default();
        let store = Store::open(StoreConfig::new(dir.path()), &mut registry)
            .await
            .expect("open");
        let engine = store
            .query_engine(Default::default())
            .await
            .expect("engine");
        let (log, writer) = AuditLog::new(store.clone(), &mut registry);
        let stop = stop_signal();
        let running = tokio::spawn(writer.run(stop.1));
        log.write(event("flush", 5)).await.expect("write");
        log.record(event("key.create", 7));
        log.record(event("key.revoke", 9));
        let _ = stop.0.send(());
        running.await.expect("writer");
        let out = engine
            .with_audit()
            .execute("SELECT action, key_id, client_address FROM audit ORDER BY time")
            .await
            .expect("query");
        assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(AuditLog::last_key_change(&engine).await.expect("query"), 9);
        // Without the audit: no such table, and information_schema does not list it.
        let e = engine
            .execute("SELECT count(*) FROM audit")
            .await
            .expect_err("hidden");
        assert!(e.to_string().contains("audit"), "{e}");
        let tables = engine
            .execute("SELECT table_name FROM information_schema.tables WHERE table_name = 'audit'")
            .await
            .expect("query");
        assert_eq!(
            tables.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            0
        );
    }

    /// A stop signal for the writer: the sender and the future it completes.
    fn stop_signal() -> (
        tokio::sync::oneshot::Sender<()>,
        impl std::future::Future<Output = ()>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, async move {
            let _ = rx.await;
        })
    }
}
