//! Flushing: buffers become Parquet files when they are big or old enough, when memory is
//! short, on demand and at shutdown; the WAL then drops what the files hold.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::metrics::{FlushLabel, TableLabel};
use crate::{FlushReport, Result, Store, Table, catalog};

impl Store {
    /// Lets the WAL drop every segment whose writes are all in Parquet.
    pub(crate) fn truncate_wal(&self) {
        // Read the applied sequence first: a write applied after this load is not covered
        // by `upto`, and one applied before it is visible in the memtables checked next.
        let applied = self.last_seq.load(Ordering::Acquire);
        let unflushed = self
            .catalogs
            .values()
            .filter_map(|c| c.first_unflushed_seq())
            .min();
        let upto = unflushed.map_or(applied, |first| applied.min(first - 1));
        self.wal.truncate(upto);
    }

    /// Publishes a table's buffer and file counts; returns them.
    pub(crate) fn update_gauges(&self, table: Table) -> catalog::BufferStats {
        let stats = self.catalogs[&table].stats();
        let label = TableLabel {
            table: table.name(),
        };
        self.metrics
            .buffered_rows
            .get_or_create(&label)
            .set(stats.rows as i64);
        self.metrics
            .buffered_bytes
            .get_or_create(&label)
            .set(stats.bytes as i64);
        self.metrics
            .files
            .get_or_create(&label)
            .set(stats.files as i64);
        stats
    }

    /// Flushes one table's buffer to Parquet.
    ///
    /// # Errors
    /// When the files or the watermark cannot be written; the rows stay buffered.
    pub async fn flush_table(&self, table: Table) -> Result<usize> {
        let started = Instant::now();
        // Concatenating and sorting the buffer copies it about twice over.
        let _working = self
            .working
            .reserve(2 * self.catalogs[&table].stats().bytes);
        let result = self.catalogs[&table].flush().await;
        let label = TableLabel {
            table: table.name(),
        };
        let outcome = match &result {
            Ok(files) if files.is_empty() => None,
            Ok(files) => {
                let rows: u64 = files.iter().map(|f| f.rows).sum();
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                self.metrics.flushed_rows.get_or_create(&label).inc_by(rows);
                self.metrics
                    .flushed_bytes
                    .get_or_create(&label)
                    .inc_by(bytes);
                Some("ok")
            }
            Err(e) => {
                tracing::error!(table = table.name(), error = %e, "flush failed; rows stay buffered");
                Some("error")
            }
        };
        if let Some(outcome) = outcome {
            self.metrics
                .flushes
                .get_or_create(&FlushLabel {
                    table: table.name(),
                    outcome,
                })
                .inc();
            self.metrics
                .flush_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
        }
        self.update_gauges(table);
        if matches!(&result, Ok(files) if !files.is_empty()) {
            self.truncate_wal();
        }
        result.map(|files| files.len())
    }

    /// Flushes every table; returns the number of files written per table.
    ///
    /// # Errors
    /// The first table's failure (every table is tried); its rows stay buffered.
    pub async fn flush_all(&self) -> Result<FlushReport> {
        let mut report = FlushReport::new();
        let mut first_error = None;
        for table in Table::ALL {
            match self.flush_table(table).await {
                Ok(n) => {
                    report.insert(table.name(), n);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Asks the flusher to write every buffer to Parquet now (memory is short).
    pub fn request_flush(&self) {
        self.flush_everything.store(true, Ordering::Release);
        self.wake_flusher.notify_one();
    }

    /// Tables whose buffer is due for a flush (by size or age, or everything on request).
    fn due_tables(&self) -> Vec<Table> {
        let everything = self.flush_everything.swap(false, Ordering::AcqRel);
        Table::ALL
            .into_iter()
            .filter(|t| {
                let s = self.catalogs[t].stats();
                (everything && s.rows > 0)
                    || s.bytes >= self.config.flush_max_bytes
                    || s.oldest
                        .is_some_and(|o| o.elapsed() >= self.config.flush_interval)
            })
            .collect()
    }

    /// Runs the background flusher until `stop` resolves: flushes buffers that are too big or
    /// too old. Returns when stopped (the caller flushes what is left with [`Store::close`]).
    pub async fn run_flusher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let tick = (self.config.flush_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(tick) => {}
                _ = self.wake_flusher.notified() => {}
            }
            for table in self.due_tables() {
                // Errors are logged and counted in flush_table; rows stay buffered for a retry.
                let _ = self.flush_table(table).await;
            }
        }
    }
}
