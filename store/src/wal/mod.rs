//! The write-ahead log: every write is framed, appended and (by default) fsync'd before its
//! sender is acknowledged; concurrent writes share one fsync (group commit).
//!
//! On disk: `<data_dir>/wal/<first_seq:020>.wal` segments of records, whose byte format and
//! versions [`record`] describes; [`replay()`] reads them back at start.
//!
//! Records carry a sequence number that increases by one per write. One thread owns the open
//! segment: it takes every queued write, appends them, fsyncs once, applies them to the
//! buffers in sequence order and only then answers the writers. Replay at start reads the
//! segments in order; a torn tail (a crash mid-append, or zeros left by a power loss) is cut
//! off, a damaged segment is copied to `wal/corrupt/` for inspection and cut before the damage,
//! and neither stops the server from starting.

pub mod record;
pub mod replay;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::metrics::WalMetrics;
use crate::schema::Table;
use record::frame;
pub use record::{RecordError, WalRecord, decode_payload, encode_entries};
pub use replay::{ReplayReport, replay};
use replay::{list_segments, segment_name};

const SEGMENT_EXT: &str = "wal";

/// When an acknowledged write is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged after fsync: a crash of the process or the machine loses nothing acked.
    Fsync,
    /// Acknowledged after the write reaches the OS; fsync'd at least every `interval`. A crash
    /// of the process loses nothing acked; a power loss or kernel crash loses at most the last
    /// `interval` of acknowledged writes.
    Batched { interval: Duration },
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            durability: Durability::Fsync,
            segment_bytes: 64 << 20,
        }
    }
}

/// Receives every durable write, in sequence order, before its writer is answered.
pub type Apply = Arc<dyn Fn(u64, Vec<(Table, RecordBatch)>) + Send + Sync>;

/// A queued write: its encoded entries, its batches, and where to answer.
type Pending = (
    Vec<u8>,
    Vec<(Table, RecordBatch)>,
    oneshot::Sender<Result<u64>>,
);

enum Request {
    Append {
        entries: Vec<u8>,
        batches: Vec<(Table, RecordBatch)>,
        done: oneshot::Sender<Result<u64>>,
    },
    /// Fsync now (the batched mode's timer).
    Sync,
    /// Remove closed segments whose records all have `seq <= upto`.
    Truncate { upto: u64 },
    /// Write what is queued, fsync and stop.
    Shutdown,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    last_seq: u64,
    path: PathBuf,
    bytes: u64,
}

struct Writer {
    config: WalConfig,
    file: File,
    current: Segment,
    closed: Vec<Segment>,
    next_seq: u64,
    dirty: bool,
    last_sync: Instant,
    poisoned: Option<String>,
    apply: Apply,
    metrics: WalMetrics,
    disk_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Writer {
    fn open_segment(dir: &Path, first_seq: u64) -> Result<(File, Segment)> {
        let path = dir.join(segment_name(first_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let bytes = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        sightline_common::durable::sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        Ok((
            file,
            Segment {
                first_seq,
                last_seq: first_seq.saturating_sub(1),
                path,
                bytes,
            },
        ))
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty {
            let started = Instant::now();
            self.file.sync_data()?;
            self.metrics.fsyncs.inc();
            self.metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn update_disk_gauge(&self) {
        let total = self.current.bytes + self.closed.iter().map(|s| s.bytes).sum::<u64>();
        self.disk_bytes
            .store(total, std::sync::atomic::Ordering::Release);
        self.metrics.disk_bytes.set(total as i64);
    }

    fn rotate(&mut self) -> Result<()> {
        self.sync()
            .map_err(|e| StoreError::io(&self.current.path, e))?;
        let (file, segment) = Self::open_segment(&self.config.dir, self.next_seq)?;
        let old = std::mem::replace(&mut self.current, segment);
        self.file = file;
        if old.last_seq >= old.first_seq {
            self.closed.push(old);
        } else {
            // Nothing was written to it.
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(())
    }

    fn truncate(&mut self, upto: u64) {
        // The open segment is closed first when everything in it may go.
        if self.current.last_seq >= self.current.first_seq
            && self.current.last_seq <= upto
            && let Err(e) = self.rotate()
        {
            tracing::warn!(error = %e, "cannot rotate the write-ahead log");
        }
        self.closed.retain(|s| {
            if s.last_seq > upto {
                return true;
            }
            match std::fs::remove_file(&s.path) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(segment = %s.path.display(), error = %e, "cannot remove WAL segment");
                    true
                }
            }
        });
        self.update_disk_gauge();
    }

    /// Appends a group of writes with one fsync, applies them in order, then answers.
    fn append_group(&mut self, group: Vec<Pending>) {
        if let Some(reason) = &self.poisoned {
            for (_, _, done) in group {
                let _ = done.send(Err(StoreError::io(
                    &self.current.path,
                    std::io::Error::other(format!("write-ahead log unusable: {reason}")),
                )));
            }
            return;
        }
        let first_seq = self.next_seq;
        let mut buf = Vec::new();
        for (i, (entries, _, _)) in group.iter().enumerate() {
            frame(first_seq + i as u64, entries, &mut buf);
        }
        let before = self.current.bytes;
        let mut result = self.file.write_all(&buf);
        if result.is_ok() {
            self.dirty = true;
            if self.config.durability == Durability::Fsync {
                result = self.sync();
            }
        }
        if let Err(e) = result {
            // Cut the partial append so the segment stays readable, then report the failure.
            let repaired = self
                .file
                .set_len(before)
                .and_then(|()| self.file.sync_all());
            if let Err(repair) = repaired {
                self.poisoned = Some(format!("{e}; could not cut the partial append: {repair}"));
            }
            tracing::error!(error = %e, "write-ahead log append failed");
            self.metrics.errors.inc();
            for (_, _, done) in group {
                let _ = done.send(Err(StoreError::io(
                    &self.current.path,
                    std::io::Error::new(e.kind(), e.to_string()),
                )));
            }
            return;
        }
        self.metrics.appends.inc_by(group.len() as u64);
        self.metrics.bytes.inc_by(buf.len() as u64);
        self.metrics.group_size.observe(group.len() as f64);
        self.current.bytes += buf.len() as u64;
        self.next_seq += group.len() as u64;
        self.current.last_seq = self.next_seq - 1;
        for (i, (_, batches, done)) in group.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            (self.apply)(seq, batches);
            let _ = done.send(Ok(seq));
        }
        if self.current.bytes >= self.config.segment_bytes
            && let Err(e) = self.rotate()
        {
            tracing::warn!(error = %e, "cannot rotate the write-ahead log");
        }
        self.update_disk_gauge();
    }

    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        /// A group never holds more than this many writes.
        const MAX_GROUP: usize = 256;
        while let Some(first) = rx.blocking_recv() {
            let mut group = Vec::new();
            let mut pending = Some(first);
            loop {
                match pending.take() {
                    Some(Request::Append {
                        entries,
                        batches,
                        done,
                    }) => group.push((entries, batches, done)),
                    Some(Request::Sync) => {
                        if let Err(e) = self.sync() {
                            tracing::error!(error = %e, "write-ahead log fsync failed");
                            self.metrics.errors.inc();
                        }
                    }
                    Some(Request::Truncate { upto }) => {
                        if !group.is_empty() {
                            self.append_group(std::mem::take(&mut group));
                        }
                        self.truncate(upto);
                    }
                    Some(Request::Shutdown) => {
                        if !group.is_empty() {
                            self.append_group(std::mem::take(&mut group));
                        }
                        if let Err(e) = self.sync() {
                            tracing::error!(error = %e, "final write-ahead log fsync failed");
                        }
                        if self.current.bytes == 0 {
                            let _ = std::fs::remove_file(&self.current.path);
                        }
                        return;
                    }
                    None => {}
                }
                if group.len() >= MAX_GROUP {
                    break;
                }
                match rx.try_recv() {
                    Ok(r) => pending = Some(r),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.append_group(group);
            }
        }
        // Every sender is gone.
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "final write-ahead log fsync failed");
        }
    }
}

/// The open write-ahead log.
pub struct Wal {
    dir: PathBuf,
    tx: mpsc::Sender<Request>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
    disk_bytes: Arc<std::sync::atomic::AtomicU64>,
    durability: Durability,
}

impl Drop for Wal {
    /// Without [`Wal::close`]: the writer still finishes what is queued before the WAL's
    /// owner (and its directory lock) goes away.
    fn drop(&mut self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            if self.tx.try_send(Request::Shutdown).is_err() {
                tracing::warn!("write-ahead log queue full at drop; not waiting for its writer");
                return;
            }
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Starts the WAL in `config.dir` (after [`replay()`]): new records get sequence numbers from
    /// `next_seq`; `existing` are the segments replay left in place, still needed until the
    /// data they hold is flushed. `apply` receives every write, in sequence order, once durable.
    pub fn start(
        config: WalConfig,
        next_seq: u64,
        apply: Apply,
        metrics: WalMetrics,
    ) -> Result<Self> {
        std::fs::create_dir_all(&config.dir).map_err(|e| StoreError::io(&config.dir, e))?;
        let mut closed = Vec::new();
        for (first, path) in list_segments(&config.dir)? {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| StoreError::io(&path, e))?
                .len();
            if bytes == 0 {
                // Created but never written (a crash right after a rotation).
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                continue;
            }
            // Replayed segments end before `next_seq`; their exact last seq is unknown here, and
            // the next segment's first seq bounds it.
            closed.push(Segment {
                first_seq: first,
                last_seq: next_seq.saturating_sub(1),
                path,
                bytes,
            });
        }
        for i in 0..closed.len().saturating_sub(1) {
            closed[i].last_seq = closed[i + 1].first_seq.saturating_sub(1);
        }
        let dir = config.dir.clone();
        let (file, current) = Writer::open_segment(&config.dir, next_seq)?;
        let disk_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let durability = config.durability;
        let writer = Writer {
            config,
            file,
            current,
            closed,
            next_seq,
            dirty: false,
            last_sync: Instant::now(),
            poisoned: None,
            apply,
            metrics,
            disk_bytes: disk_bytes.clone(),
        };
        writer.update_disk_gauge();
        let (tx, rx) = mpsc::channel(4096);
        let thread = std::thread::Builder::new()
            .name("sightline-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("wal thread", e))?;
        let ticker = match durability {
            Durability::Fsync => None,
            Durability::Batched { interval } => {
                let tx = tx.clone();
                Some(
                    std::thread::Builder::new()
                        .name("sightline-wal-sync".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(interval);
                                if tx.blocking_send(Request::Sync).is_err() {
                                    return;
                                }
                            }
                        })
                        .map_err(|e| StoreError::io("wal sync thread", e))?,
                )
            }
        };
        Ok(Self {
            dir,
            tx,
            thread: Mutex::new(Some(thread)),
            ticker: Mutex::new(ticker),
            disk_bytes,
            durability,
        })
    }

    /// Logs a write. Returns its sequence number once it is durable (per the durability mode)
    /// and applied to the buffers.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the append or the fsync failed (nothing of it counts),
    /// [`StoreError::ShuttingDown`] once the log is closed.
    pub async fn append(&self, batches: Vec<(Table, RecordBatch)>) -> Result<u64> {
        let entries = encode_entries(&batches)?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request::Append {
                entries,
                batches,
                done,
            })
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        wait.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Lets the WAL drop every record with `seq <= upto` (its data is in Parquet).
    pub fn truncate(&self, upto: u64) {
        let _ = self.tx.try_send(Request::Truncate { upto });
    }

    /// Bytes the WAL holds on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// After [`Wal::close`], when every write is in Parquet: removes every segment.
    pub fn remove_all_after_close(&self) -> Result<()> {
        if self
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        for (_, path) in list_segments(&self.dir)? {
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        self.disk_bytes
            .store(0, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Stops the writer after it has written (and fsync'd) everything queued before this
    /// call. Later appends fail with `ShuttingDown`. Safe to call twice.
    pub async fn close(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = self.tx.send(Request::Shutdown).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ticker) = ticker {
            // It exits at its next tick, when its send finds the writer gone.
            drop(ticker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::record::HEADER_LEN;
    use super::replay::read_segment;
    use super::*;
    use prometheus_client::registry::Registry;

    fn fragment(id: u64) -> RecordBatch {
        crate::testing::fragments(id as usize, 1, id as i64)
    }

    fn id_of(batch: &RecordBatch) -> String {
        crate::testing::ids_of(batch).remove(0)
    }

    fn start(dir: &Path, next_seq: u64, applied: Arc<Mutex<Vec<(u64, String)>>>) -> Wal {
        let apply: Apply = Arc::new(move |seq, batches| {
            let mut a = applied.lock().expect("lock");
            for (_, b) in batches {
                a.push((seq, id_of(&b)));
            }
        });
        let mut config = WalConfig::new(dir);
        config.segment_bytes = 4096;
        Wal::start(
            config,
            next_seq,
            apply,
            WalMetrics::new(&mut Registry::default()),
        )
        .expect("start")
    }

    /// Logs one fragment per id to a new WAL in `dir`, closes it, and returns its last segment.
    async fn logged(dir: &Path, ids: std::ops::Range<u64>) -> PathBuf {
        let wal = start(dir, 1, Arc::new(Mutex::new(Vec::new())));
        for i in ids {
            wal.append(vec![(Table::TraceFragments, fragment(i))])
                .await
                .expect("append");
        }
        wal.close().await;
        list_segments(dir).expect("list").pop().expect("segment").1
    }

    fn replayed(dir: &Path) -> (Vec<(u64, String)>, ReplayReport) {
        let mut out = Vec::new();
        let report = replay(dir, |r| {
            for (_, b) in &r.batches {
                out.push((r.seq, id_of(b)));
            }
        })
        .expect("replay");
        (out, report)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_applied_in_order_and_replay_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let applied = Arc::new(Mutex::new(Vec::new()));
        let wal = Arc::new(start(dir.path(), 1, applied.clone()));
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..25u64 {
                    let seq = wal
                        .append(vec![(Table::TraceFragments, fragment(t * 1000 + i))])
                        .await
                        .expect("append");
                    seqs.push(seq);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("join"));
        }
        all.sort();
        assert_eq!(
            all,
            (1..=200).collect::<Vec<_>>(),
            "one seq per write, no gaps"
        );
        wal.close().await;
        let applied = applied.lock().expect("lock").clone();
        let seqs: Vec<u64> = applied.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=200).collect::<Vec<_>>(),
            "applied in sequence order"
        );
        let (again, report) = replayed(dir.path());
        assert_eq!(again, applied);
        assert!(report.segments > 1, "small segments rotate");
        assert_eq!(report.last_seq, 200);
        assert_eq!((report.torn_tails, report.quarantined.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = logged(dir.path(), 0..3).await;
        let len = std::fs::metadata(&last).expect("meta").len();
        // A crash in the middle of the third append.
        OpenOptions::new()
            .write(true)
            .open(&last)
            .expect("open")
            .set_len(len - 7)
            .expect("truncate");
        let (records, report) = replayed(dir.path());
        assert_eq!(records.len(), 2);
        assert_eq!(report.torn_tails, 1);
        // Cut for good: a second replay finds a clean log.
        let (records, report) = replayed(dir.path());
        assert_eq!((records.len(), report.torn_tails), (2, 0));
    }

    #[tokio::test]
    async fn a_zero_filled_tail_is_cut_like_a_torn_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = logged(dir.path(), 1..2).await;
        let mut f = OpenOptions::new().append(true).open(&last).expect("open");
        f.write_all(&[0u8; 4096]).expect("zeros");
        drop(f);
        let (records, report) = replayed(dir.path());
        assert_eq!((records.len(), report.torn_tails), (1, 1));
        assert!(report.quarantined.is_empty());
    }

    #[tokio::test]
    async fn a_damaged_segment_is_copied_aside_and_cut_before_the_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        logged(dir.path(), 0..40).await;
        let segments = list_segments(dir.path()).expect("list");
        assert!(segments.len() >= 3);
        // Flip a byte in the middle of the first segment's second record.
        let (_, first) = &segments[0];
        let mut bytes = std::fs::read(first).expect("read");
        let (records, _, _) = read_segment(first).expect("read");
        assert!(records.len() >= 3, "the damaged record is not the last one");
        let first_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let at = HEADER_LEN + first_len + HEADER_LEN + 5;
        bytes[at] ^= 0xff;
        std::fs::write(first, &bytes).expect("write");
        let (replayed_records, report) = replayed(dir.path());
        assert_eq!(report.quarantined.len(), 1);
        assert!(report.quarantined[0].starts_with(dir.path().join("corrupt")));
        assert!(report.quarantined[0].exists(), "kept for inspection");
        assert!(first.exists(), "the good prefix stays in the log");
        // Records of the other segments, and the first one before the damage, are all there.
        assert_eq!(replayed_records.len(), 40 - records.len() + 1);
        assert_eq!(replayed_records[0].0, 1);
    }

    /// Writes one record of record format `format` holding `batch` as `version` of `table`.
    fn write_record(dir: &Path, seq: u64, format: u8, entries: &[u8]) {
        std::fs::create_dir_all(dir).expect("dir");
        let mut payload = seq.to_le_bytes().to_vec();
        payload.extend_from_slice(entries);
        let mut bytes = record::MAGIC.to_vec();
        bytes.extend_from_slice(&[format, 0, 0, 0]);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.join(segment_name(seq)), bytes).expect("write");
    }

    fn ipc_entry(table_code: u8, version: Option<u16>, batch: &RecordBatch) -> Vec<u8> {
        let mut ipc = Vec::new();
        {
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema()).expect("ipc");
            w.write(batch).expect("ipc");
            w.finish().expect("ipc");
        }
        let mut out = 1u16.to_le_bytes().to_vec();
        out.push(table_code);
        if let Some(v) = version {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        out.extend_from_slice(&ipc);
        out
    }

    #[test]
    fn a_record_with_a_schema_one_column_shorter_replays_with_nulls_in_that_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = crate::fixtures::sample_batch(Table::Notifications, 3, 4);
        let short = full
            .project(&(0..full.num_columns() - 1).collect::<Vec<_>>())
            .expect("project");
        // Record format 1 (no schema version: version 1 of every table).
        write_record(dir.path(), 1, 1, &ipc_entry(7, None, &short));
        let mut seen = Vec::new();
        let report = replay(dir.path(), |r| seen.extend(r.batches)).expect("replay");
        assert_eq!((report.records, report.quarantined.len()), (1, 0));
        let (table, batch) = &seen[0];
        assert_eq!(*table, Table::Notifications);
        assert_eq!(batch.schema(), Table::Notifications.schema());
        assert_eq!(
            batch
                .column_by_name("latency_ms")
                .expect("col")
                .null_count(),
            3
        );
        assert_eq!(batch.column(1), full.column(1));
    }

    #[test]
    fn a_record_of_a_newer_release_stops_the_start_and_changes_nothing() {
        for (format, version) in [(record::FORMAT + 1, 1), (record::FORMAT, 99)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let batch = crate::fixtures::sample_batch(Table::Notifications, 2, 1);
            write_record(dir.path(), 1, format, &ipc_entry(7, Some(version), &batch));
            let path = dir.path().join(segment_name(1));
            let before = std::fs::read(&path).expect("read");
            let err = replay(dir.path(), |_| {}).expect_err("newer");
            assert!(matches!(err, StoreError::NewerFormat { .. }), "{err}");
            assert!(err.to_string().contains("newer release"), "{err}");
            assert_eq!(std::fs::read(&path).expect("read"), before, "nothing cut");
            assert!(!dir.path().join("corrupt").exists(), "nothing set aside");
        }
    }
}
