//! The write-ahead log: every write is framed, appended and (by default) fsync'd before its
//! sender is acknowledged; concurrent writes share one fsync (group commit).
//!
//! On disk: `<data_dir>/wal/<first_seq:020>.wal` segments of records
//!
//! ```text
//! magic "SLWL" | version u8 | flags u8 | 2 reserved bytes | payload length u32 LE | CRC-32 of payload u32 LE
//! payload: seq u64 LE | entries (zstd-compressed when flags bit 0 is set)
//! entries: entry count u16 LE | per entry: table u8 | length u32 LE | Arrow IPC stream
//! ```
//!
//! Records carry a sequence number that increases by one per write. One thread owns the open
//! segment: it takes every queued write, appends them, fsyncs once, applies them to the
//! buffers in sequence order and only then answers the writers. Replay at start reads the
//! segments in order; a torn tail (a crash mid-append, or zeros left by a power loss) is cut
//! off, a damaged segment is copied to `wal/corrupt/` for inspection and cut before the damage,
//! and neither stops the server from starting.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::metrics::WalMetrics;
use crate::schema::Table;

const MAGIC: &[u8; 4] = b"SLWL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 16;
/// No single record may be larger than this (a bound for replay of a damaged length field).
const MAX_RECORD_BYTES: usize = 1 << 30;
/// Flags bit: the entries are zstd-compressed.
const FLAG_ZSTD: u8 = 1;
/// Fast zstd: Arrow IPC of telemetry shrinks several times even at level 1.
const ZSTD_LEVEL: i32 = 1;
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

/// One logged write.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub batches: Vec<(Table, RecordBatch)>,
}

fn table_code(t: Table) -> u8 {
    match t {
        Table::Spans => 1,
        Table::Logs => 2,
        Table::Metrics => 3,
        Table::TraceFragments => 4,
        Table::SloCounts => 5,
        Table::SloAlerts => 6,
        Table::Notifications => 7,
    }
}

fn table_of(code: u8) -> Option<Table> {
    Table::ALL.into_iter().find(|t| table_code(*t) == code)
}

/// Encodes and compresses the entries of a record (everything but the sequence number).
pub fn encode_entries(batches: &[(Table, RecordBatch)]) -> Result<Vec<u8>> {
    let raw = encode_entries_raw(batches)?;
    zstd::bulk::compress(&raw, ZSTD_LEVEL).map_err(|e| StoreError::io("wal", e))
}

fn encode_entries_raw(batches: &[(Table, RecordBatch)]) -> Result<Vec<u8>> {
    let count = u16::try_from(batches.len()).map_err(|_| StoreError::SchemaMismatch {
        table: "wal",
        reason: "too many batches in one write".into(),
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(&count.to_le_bytes());
    for (table, batch) in batches {
        let mut ipc = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut ipc, &batch.schema())?;
            w.write(batch)?;
            w.finish()?;
        }
        out.push(table_code(*table));
        out.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        out.extend_from_slice(&ipc);
    }
    Ok(out)
}

/// Decodes a payload (seq + compressed entries) back into a record.
pub fn decode_payload(payload: &[u8], flags: u8) -> std::result::Result<WalRecord, String> {
    if payload.len() < 8 {
        return Err("payload ends early".into());
    }
    let (seq, entries) = payload.split_at(8);
    if flags & FLAG_ZSTD == 0 {
        return decode_entries(seq, entries);
    }
    let raw = zstd::bulk::decompress(entries, MAX_RECORD_BYTES)
        .map_err(|e| format!("bad zstd entries: {e}"))?;
    decode_entries(seq, &raw)
}

fn decode_entries(seq: &[u8], entries: &[u8]) -> std::result::Result<WalRecord, String> {
    let seq = u64::from_le_bytes(seq.try_into().map_err(|_| "seq")?);
    let take = |buf: &mut &[u8], n: usize| -> std::result::Result<Vec<u8>, String> {
        if buf.len() < n {
            return Err("payload ends early".into());
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head.to_vec())
    };
    let mut buf = entries;
    let count = u16::from_le_bytes(take(&mut buf, 2)?.try_into().map_err(|_| "count")?);
    let mut batches = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let code = take(&mut buf, 1)?[0];
        let table = table_of(code).ok_or_else(|| format!("unknown table code {code}"))?;
        let len = u32::from_le_bytes(take(&mut buf, 4)?.try_into().map_err(|_| "len")?) as usize;
        let ipc = take(&mut buf, len)?;
        let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .map_err(|e| format!("bad Arrow IPC: {e}"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("bad Arrow IPC: {e}"))?;
            if batch.schema() != table.schema() {
                return Err(format!("batch for {} has another schema", table.name()));
            }
            batches.push((table, batch));
        }
    }
    if !buf.is_empty() {
        return Err("trailing bytes after the last entry".into());
    }
    Ok(WalRecord { seq, batches })
}

fn frame(seq: u64, entries: &[u8], out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(8 + entries.len());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(entries);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[FLAG_ZSTD, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Why reading a segment stopped before its end.
#[derive(Debug)]
enum Stop {
    /// The last record is incomplete: what a crash in the middle of an append leaves.
    Incomplete(String),
    /// A complete record is damaged (checksum, magic, content).
    Damaged(String),
}

/// Reads records from a segment until its end or the first bad record.
/// Returns the records, the offset after the last good one, and what stopped the reading.
fn read_segment(path: &Path) -> Result<(Vec<WalRecord>, u64, Option<Stop>)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(path, e))?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    let problem = loop {
        if pos == bytes.len() {
            break None;
        }
        if bytes.len() - pos < HEADER_LEN {
            break Some(Stop::Incomplete(format!(
                "incomplete record header at offset {pos}"
            )));
        }
        let h = &bytes[pos..pos + HEADER_LEN];
        if bytes[pos..].iter().all(|b| *b == 0) {
            // A power loss can leave a zero-filled tail after the last complete write.
            break Some(Stop::Incomplete(format!(
                "zero-filled tail at offset {pos}"
            )));
        }
        if &h[0..4] != MAGIC || h[4] != VERSION {
            break Some(Stop::Damaged(format!(
                "bad magic or version at offset {pos}"
            )));
        }
        let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if len > MAX_RECORD_BYTES {
            break Some(Stop::Damaged(format!(
                "record at offset {pos} claims {len} bytes"
            )));
        }
        if bytes.len() - pos - HEADER_LEN < len {
            break Some(Stop::Incomplete(format!(
                "record at offset {pos} is cut short"
            )));
        }
        let payload = &bytes[pos + HEADER_LEN..pos + HEADER_LEN + len];
        if crc32fast::hash(payload) != crc {
            // A checksum mismatch on the very last record is a torn write too.
            let reason = format!("checksum mismatch at offset {pos}");
            break Some(if pos + HEADER_LEN + len == bytes.len() {
                Stop::Incomplete(reason)
            } else {
                Stop::Damaged(reason)
            });
        }
        match decode_payload(payload, h[5]) {
            Ok(r) => records.push(r),
            Err(e) => {
                break Some(Stop::Damaged(format!(
                    "undecodable record at offset {pos}: {e}"
                )));
            }
        }
        pos += HEADER_LEN + len;
    };
    Ok((records, pos as u64, problem))
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{SEGMENT_EXT}")
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let path = entry.map_err(|e| StoreError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(first) = name
            .strip_suffix(&format!(".{SEGMENT_EXT}"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// What replay found.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: usize,
    pub last_seq: u64,
    /// Segments whose tail was cut (a crash in the middle of an append).
    pub torn_tails: usize,
    /// Copies (in `corrupt/`) of segments with a damaged record inside.
    pub quarantined: Vec<PathBuf>,
}

/// Reads every record of the WAL in `dir`, in order, handing each to `apply`. Repairs what a
/// crash can leave behind: a torn tail is cut; a damaged segment is copied to `corrupt/` and
/// cut before the damage (its good records were replayed), with a warning.
pub fn replay(dir: &Path, mut apply: impl FnMut(WalRecord)) -> Result<ReplayReport> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let segments = list_segments(dir)?;
    let mut report = ReplayReport {
        segments: segments.len(),
        ..Default::default()
    };
    let n = segments.len();
    for (i, (_, path)) in segments.into_iter().enumerate() {
        let (records, good_len, problem) = read_segment(&path)?;
        for r in records {
            report.records += 1;
            report.last_seq = report.last_seq.max(r.seq);
            apply(r);
        }
        let Some(stop) = problem else { continue };
        let file_len = std::fs::metadata(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .len();
        // A crash mid-append leaves an incomplete last record in the last segment. Anything
        // else is damage: keep a copy for inspection. Either way the segment is cut after its
        // last good record, which stays in place: its records are only in memory until the
        // next flush, and must survive another crash.
        match (&stop, i + 1 == n) {
            (Stop::Incomplete(problem), true) => {
                tracing::warn!(segment = %path.display(), %problem, cut_bytes = file_len - good_len,
                    "cutting the torn tail of the write-ahead log");
                report.torn_tails += 1;
            }
            (Stop::Incomplete(problem) | Stop::Damaged(problem), _) => {
                let corrupt_dir = dir.join("corrupt");
                std::fs::create_dir_all(&corrupt_dir)
                    .map_err(|e| StoreError::io(&corrupt_dir, e))?;
                let target = corrupt_dir.join(path.file_name().unwrap_or_default());
                tracing::warn!(segment = %path.display(), %problem, copied_to = %target.display(),
                    "write-ahead log segment is damaged; its readable records were replayed, a \
                     copy was kept for inspection and the segment was cut before the damage");
                std::fs::copy(&path, &target).map_err(|e| StoreError::io(&target, e))?;
                crate::writer::sync_dir(&corrupt_dir)?;
                report.quarantined.push(target);
            }
        }
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        f.set_len(good_len).map_err(|e| StoreError::io(&path, e))?;
        f.sync_all().map_err(|e| StoreError::io(&path, e))?;
    }
    Ok(report)
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
        crate::writer::sync_dir(dir)?;
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
    /// Starts the WAL in `config.dir` (after [`replay`]): new records get sequence numbers from
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

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let entries = encode_entries(&[(Table::TraceFragments, fragment(9))]).expect("encode");
        let mut payload = 5u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&entries);
        let r = decode_payload(&payload, FLAG_ZSTD).expect("decode");
        assert_eq!(r.seq, 5);
        assert_eq!(id_of(&r.batches[0].1), format!("{:032x}", 9));
        assert!(decode_payload(&payload[..payload.len() - 3], FLAG_ZSTD).is_err());
        assert!(decode_payload(b"short", FLAG_ZSTD).is_err());
        // Uncompressed entries decode too, and a wrong table code is caught.
        let mut raw = 5u64.to_le_bytes().to_vec();
        raw.extend_from_slice(
            &encode_entries_raw(&[(Table::TraceFragments, fragment(9))]).expect("encode"),
        );
        assert_eq!(decode_payload(&raw, 0).expect("decode").seq, 5);
        raw[10] = 1; // spans: schema mismatch
        assert!(decode_payload(&raw, 0).is_err());
    }
}
