//! The catalog of one table: what is buffered and which Parquet files hold the rest.
//!
//! Buffers and files change together under one lock, so a reader's [`Snapshot`] sees every row
//! exactly once: before a flush the rows are in `active`, while it runs in `flushing`, and the
//! moment its files are published the `flushing` batches are dropped in the same critical
//! section.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use arrow::record_batch::RecordBatch;
use object_store::path::Path as ObjectPath;

use crate::error::{Result, StoreError};
use crate::memtable::{Memtable, Taken};
use crate::paths;
use crate::schema::Table;
use crate::storage::Storage;
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
    tenant: String,
    storage: Storage,
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
    /// Opens the catalog of `tenant`'s `table` in `storage`, listing the files already there.
    /// What a crash left behind is cleaned up: unfinished uploads and temporary files, the
    /// half of an unfinished compaction ([`crate::compaction::recover`]), and the files of a
    /// flush that did not finish (newer than the watermark; their rows are still in the WAL).
    ///
    /// # Errors
    /// When the storage cannot be listed or read, or holds a compaction log of a newer release.
    pub async fn open(storage: Storage, tenant: &str, table: Table) -> Result<Self> {
        let prefix = paths::object::table_prefix(tenant, table);
        storage.sweep_staged(&prefix);
        let flushed_seq = read_watermark(&storage, tenant, table).await?;
        let objects = storage.list(&prefix).await?;
        let gone: HashSet<ObjectPath> = crate::compaction::recover(&storage, &objects).await?;
        let mut files = Vec::new();
        for meta in objects.into_iter().filter(|m| !gone.contains(&m.location)) {
            let path = meta.location;
            if path
                .filename()
                .is_some_and(|n| n.ends_with(&format!(".{}", paths::TMP_EXT)))
            {
                tracing::warn!(%path, "removing an unfinished file left by a crash");
                storage.delete(&path).await?;
                continue;
            }
            let Some((_, _, _, info)) = paths::object::parse_data_file(&path)
                .filter(|(t, tb, _, _)| t == tenant && *tb == table)
            else {
                continue;
            };
            if info.wal_seq > flushed_seq {
                tracing::warn!(%path, "removing a file of an unfinished flush; its rows are replayed from the WAL");
                storage.delete(&path).await?;
                continue;
            }
            files.push(Arc::new(DataFile {
                rows: 0,
                size: meta.size,
                path,
                min_time: info.min_time,
                max_time: info.max_time,
                wal_seq: info.wal_seq,
            }));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            table,
            tenant: tenant.to_string(),
            storage,
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

    /// The tenant whose table this is.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Where the table's files are.
    pub fn storage(&self) -> &Storage {
        &self.storage
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
        let previous = self.flushed_seq();
        let written = crate::writer::write_files(
            &self.storage,
            &self.tenant,
            self.table,
            taken.batches,
            last_seq,
        )
        .await;
        // The watermark is what makes the files count: a crash before it is written leaves
        // files newer than the watermark, removed at the next start and replayed from the WAL.
        let written = match written {
            Ok(files) => {
                match write_watermark(&self.storage, &self.tenant, self.table, last_seq).await {
                    Ok(()) => Ok(files),
                    Err(e) => {
                        // The rows go back to the buffer: their files must not count later. Put
                        // the old watermark back (the new one may have landed) and drop the files.
                        if let Err(restore) =
                            write_watermark(&self.storage, &self.tenant, self.table, previous).await
                        {
                            tracing::error!(error = %restore, "cannot restore the flush watermark");
                        }
                        crate::writer::delete_files(&self.storage, &files).await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
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

async fn read_watermark(storage: &Storage, tenant: &str, table: Table) -> Result<u64> {
    let path = paths::object::watermark(tenant, table);
    let Some(bytes) = storage.read(&path).await? else {
        return Ok(0);
    };
    String::from_utf8_lossy(&bytes).trim().parse().map_err(|e| {
        StoreError::io(
            path.as_ref(),
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad watermark: {e}"),
            ),
        )
    })
}

/// Records durably that every write up to `seq` is in this table's files.
async fn write_watermark(storage: &Storage, tenant: &str, table: Table, seq: u64) -> Result<()> {
    let path = paths::object::watermark(tenant, table);
    storage.write(&path, seq.to_string().into()).await
}
