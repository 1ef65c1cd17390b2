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
use crate::memtable::Memtable;
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
    flushing: Vec<RecordBatch>,
    files: Vec<Arc<DataFile>>,
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
    /// Opens the catalog of `table` in `dir`, listing the files already there and removing
    /// temporary files that a crash left behind.
    pub fn open(table: Table, dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let files = scan_files(&dir)?;
        Ok(Self {
            table,
            dir,
            state: RwLock::new(State {
                files: files.into_iter().map(Arc::new).collect(),
                ..Default::default()
            }),
            flush_lock: tokio::sync::Mutex::new(()),
        })
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

    /// Adds an acknowledged batch; queries see it from now on.
    pub fn append(&self, batch: RecordBatch) {
        self.write().active.push(batch);
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.read();
        let mut batches = s.flushing.clone();
        batches.extend(s.active.batches().iter().cloned());
        Snapshot {
            batches,
            files: s.files.clone(),
        }
    }

    pub fn stats(&self) -> BufferStats {
        let s = self.read();
        BufferStats {
            rows: s.active.rows() + s.flushing.iter().map(|b| b.num_rows()).sum::<usize>(),
            bytes: s.active.bytes()
                + s.flushing
                    .iter()
                    .map(|b| b.get_array_memory_size())
                    .sum::<usize>(),
            oldest: s.active.oldest(),
            files: s.files.len(),
        }
    }

    /// Writes everything buffered to Parquet and publishes the files. Returns the new files.
    /// On failure the rows go back to the buffer, so nothing is lost and a later flush retries.
    pub async fn flush(&self) -> Result<Vec<Arc<DataFile>>> {
        let _guard = self.flush_lock.lock().await;
        let batches = {
            let mut s = self.write();
            let taken = s.active.take();
            s.flushing = taken.clone();
            taken
        };
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let table = self.table;
        let dir = self.dir.clone();
        let to_write = batches.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::writer::write_files(table, &dir, &to_write))
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
            for file in read_dir_sorted(&hour)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if name.ends_with(&format!(".{}", paths::TMP_EXT)) {
                    tracing::warn!(path = %file.display(), "removing unfinished file left by a crash");
                    std::fs::remove_file(&file).map_err(|e| StoreError::io(&file, e))?;
                    continue;
                }
                let Some((min_time, max_time)) = paths::parse_data_file_name(name) else {
                    continue;
                };
                let meta = std::fs::metadata(&file).map_err(|e| StoreError::io(&file, e))?;
                files.push(DataFile {
                    rows: 0,
                    size: meta.len(),
                    path: file,
                    min_time,
                    max_time,
                });
            }
        }
    }
    Ok(files)
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
