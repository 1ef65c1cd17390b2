//! The catalog of one table: what is buffered and which Parquet files hold the rest.
//!
//! Buffers and files change together under one lock, so a reader's [`Snapshot`] sees every row
//! exactly once: before a flush the rows are in `active`, while it runs in `flushing`, and the
//! moment its files are published the `flushing` batches are dropped in the same critical
//! section.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arrow::record_batch::RecordBatch;

use crate::error::{Result, StoreError};
use crate::memtable::{Memtable, Taken};
use crate::paths;
use crate::schema::Table;
use crate::writer::DataFile;

/// A consistent view of a table for one query.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub batches: Vec<RecordBatch>,
    pub files: Vec<Arc<DataFile>>,
}

#[derive(Debug, Default)]
struct State {
    active: Memtable,
    flushing: Taken,
    files: Vec<Arc<DataFile>>,
    /// Every write with a sequence number up to this one is in `files` (for this table).
    flushed_seq: u64,
}

/// A table's buffers and files.
#[derive(Debug)]
pub struct TableCatalog {
    table: Table,
    dir: PathBuf,
    state: RwLock<State>,
    /// Serialises flushes of this table.
    flush_lock: tokio::sync::Mutex<()>,
}

/// Sizes reported to metrics and the flusher.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufferStats {
    pub rows: usize,
    pub bytes: usize,
    pub oldest: Option<std::time::Instant>,
    pub files: usize,
}

impl TableCatalog {
    /// Opens the catalog of `table` in `dir`, listing the files already there. What a crash
    /// left behind is cleaned up: temporary files, and the files of a flush that did not
    /// finish (newer than the watermark; their rows are still in the WAL).
    pub fn open(table: Table, dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let flushed_seq = read_watermark(&dir)?;
        let mut files = Vec::new();
        for f in scan_files(&dir)? {
            if f.wal_seq > flushed_seq {
                tracing::warn!(path = %f.path.display(), "removing a file of an unfinished flush; its rows are replayed from the WAL");
                std::fs::remove_file(&f.path).map_err(|e| StoreError::io(&f.path, e))?;
            } else {
                files.push(Arc::new(f));
            }
        }
        Ok(Self {
            table,
            dir,
            state: RwLock::new(State {
                files,
                flushed_seq,
                ..Default::default()
            }),
            flush_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Every write up to this WAL sequence number is in this table's Parquet files.
    pub fn flushed_seq(&self) -> u64 {
        self.read().flushed_seq
    }

    /// The oldest WAL sequence number whose rows are only in memory, if any.
    pub fn first_unflushed_seq(&self) -> Option<u64> {
        let s = self.read();
        match (s.flushing.seqs, s.active.seqs()) {
            (Some((a, _)), Some((b, _))) => Some(a.min(b)),
            (a, b) => a.or(b).map(|(first, _)| first),
        }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The table's files now.
    pub fn files(&self) -> Vec<Arc<DataFile>> {
        self.read().files.clone()
    }

    /// Replaces `inputs` by `output` in one step (a compaction). Returns false, changing
    /// nothing, if an input is no longer in the catalog.
    pub fn swap_files(&self, inputs: &[Arc<DataFile>], output: Arc<DataFile>) -> bool {
        let mut s = self.write();
        if !inputs
            .iter()
            .all(|i| s.files.iter().any(|f| f.path == i.path))
        {
            return false;
        }
        s.files.retain(|f| !inputs.iter().any(|i| i.path == f.path));
        s.files.push(output);
        true
    }

    /// Takes `gone` out of the catalog (retention); returns those that were in it.
    pub fn remove_files(&self, gone: &[Arc<DataFile>]) -> Vec<Arc<DataFile>> {
        let mut s = self.write();
        let (removed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.files)
            .into_iter()
            .partition(|f| gone.iter().any(|g| g.path == f.path));
        s.files = kept;
        removed
    }

    /// Adds the batch of the write with WAL sequence number `seq`; queries see it from now on.
    /// Writes must arrive in sequence order.
    pub fn append(&self, seq: u64, batch: RecordBatch) {
        self.write().active.push(seq, batch);
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.read();
        let mut batches = s.flushing.batches.clone();
        batches.extend(s.active.batches().iter().cloned());
        Snapshot {
            batches,
            files: s.files.clone(),
        }
    }

    pub fn stats(&self) -> BufferStats {
        let s = self.read();
        BufferStats {
            rows: s.active.rows() + s.flushing.rows,
            bytes: s.active.bytes() + s.flushing.bytes,
            oldest: s.active.oldest(),
            files: s.files.len(),
        }
    }

    /// Writes everything buffered to Parquet, records the new watermark and publishes the
    /// files. Returns the new files. On failure the rows go back to the buffer, so nothing is
    /// lost and a later flush retries.
    ///
    /// # Errors
    /// When a file or the watermark cannot be written (nothing is published then).
    pub async fn flush(&self) -> Result<Vec<Arc<DataFile>>> {
        let _guard = self.flush_lock.lock().await;
        let taken = {
            let mut s = self.write();
            let taken = s.active.take();
            s.flushing = taken.clone();
            taken
        };
        let Some((_, last_seq)) = taken.seqs.filter(|_| !taken.batches.is_empty()) else {
            self.write().flushing = Taken::default();
            return Ok(Vec::new());
        };
        let table = self.table;
        let dir = self.dir.clone();
        let to_write = taken.batches;
        let previous = self.flushed_seq();
        let written = tokio::task::spawn_blocking(move || {
            let files = crate::writer::write_files(table, &dir, &to_write, last_seq)?;
            // The watermark is what makes the files count: a crash before it is written leaves
            // files newer than the watermark, removed at the next start and replayed from the WAL.
            if let Err(e) = write_watermark(&dir, last_seq) {
                // The rows go back to the buffer: their files must not count later. Put the
                // old watermark back (its rename may have happened) and drop the files.
                if let Err(restore) = write_watermark(&dir, previous) {
                    tracing::error!(error = %restore, "cannot restore the flush watermark");
                }
                for f in &files {
                    let _ = std::fs::remove_file(&f.path);
                }
                return Err(e);
            }
            Ok(files)
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::io(
                &self.dir,
                std::io::Error::other(format!("flush task failed: {e}")),
            ))
        });
        let mut s = self.write();
        let flushing = std::mem::take(&mut s.flushing);
        match written {
            Ok(files) => {
                let files: Vec<Arc<DataFile>> = files.into_iter().map(Arc::new).collect();
                s.files.extend(files.iter().cloned());
                s.flushed_seq = last_seq;
                Ok(files)
            }
            Err(e) => {
                s.active.restore_front(flushing);
                Err(e)
            }
        }
    }
}

/// Lists the data files under a table directory (`date=*/hour=*/*.parquet`).
fn scan_files(dir: &Path) -> Result<Vec<DataFile>> {
    let mut files = Vec::new();
    for date in read_dir_sorted(dir)? {
        let Some(date_name) = date.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !date.is_dir() {
            continue;
        }
        for hour in read_dir_sorted(&date)? {
            let Some(hour_name) = hour.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !hour.is_dir() || paths::parse_partition(&date_name, hour_name).is_none() {
                continue;
            }
            crate::compaction::recover_partition(&hour)?;
            for file in read_dir_sorted(&hour)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if name.ends_with(&format!(".{}", paths::TMP_EXT)) {
                    tracing::warn!(path = %file.display(), "removing unfinished file left by a crash");
                    std::fs::remove_file(&file).map_err(|e| StoreError::io(&file, e))?;
                    continue;
                }
                let Some(info) = paths::parse_data_file_name(name) else {
                    continue;
                };
                let meta = std::fs::metadata(&file).map_err(|e| StoreError::io(&file, e))?;
                files.push(DataFile {
                    rows: 0,
                    size: meta.len(),
                    path: file,
                    min_time: info.min_time,
                    max_time: info.max_time,
                    wal_seq: info.wal_seq,
                });
            }
        }
    }
    Ok(files)
}

fn read_watermark(dir: &Path) -> Result<u64> {
    let path = dir.join(paths::WATERMARK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            StoreError::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad watermark: {e}"),
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// Records durably that every write up to `seq` is in this table's files.
fn write_watermark(dir: &Path, seq: u64) -> Result<()> {
    let path = dir.join(paths::WATERMARK_FILE);
    sightline_common::durable::write_atomically(&path, seq.to_string().as_bytes())
        .map_err(|e| StoreError::io(&path, e))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| StoreError::io(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| StoreError::io(dir, e))?;
    entries.sort();
    Ok(entries)
}
