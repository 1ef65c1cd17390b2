//! Admission: whether a request's next bytes fit under the memory, resident-memory and disk
//! ceilings, and the share of the memory ceiling each request holds until it is answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sightline_store::directory::StoreDirectory;

use crate::error::IngestError;
use crate::ingest::{Signal, Transport};
use crate::limits::Limits;
use crate::quota::{Quota, Quotas};

/// What admission decides with: every tenant's store's memory, the requests in flight, the
/// ceilings.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) stores: Arc<dyn StoreDirectory>,
    pub(crate) limits: Limits,
    /// Bytes of requests admitted and not yet answered.
    pub(crate) inflight: AtomicUsize,
    /// Each tenant's rate and share.
    pub(crate) quotas: Quotas,
}

/// A request's share of the memory ceiling, grown as the request costs more (its body as it
/// arrives, its decoded structs, its rows) and given back when it is answered.
#[derive(Debug)]
pub struct Admitted {
    pub(crate) admission: Arc<Admission>,
    pub(crate) signal: Signal,
    pub(crate) transport: Transport,
    /// Whose data the request carries.
    pub(crate) tenant: String,
    pub(crate) quota: Arc<Quota>,
    pub(crate) bytes: usize,
}

impl Admitted {
    /// Takes `bytes` more, or refuses (retryably) when that would pass a ceiling.
    ///
    /// # Errors
    /// [`IngestError::Unavailable`] when memory is short.
    pub fn try_grow(&mut self, bytes: usize) -> Result<(), IngestError> {
        self.admission.check(self.signal, self.transport, bytes)?;
        self.admission
            .check_share(&self.tenant, &self.quota, bytes)?;
        self.admission.inflight.fetch_add(bytes, Ordering::AcqRel);
        self.quota.hold(bytes);
        self.bytes += bytes;
        Ok(())
    }

    /// Charges the decoded request's items and bytes to its tenant's rate.
    ///
    /// # Errors
    /// [`IngestError::OverQuota`] when the tenant went over its rate since the request was
    /// let in.
    pub fn charge(&self, items: u64, bytes: usize) -> Result<(), IngestError> {
        self.quota
            .charge(&self.tenant, items, bytes, std::time::Instant::now())
    }

    /// Gives back `bytes` of what is held (memory the request no longer uses).
    pub fn release(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.admission.inflight.fetch_sub(bytes, Ordering::AcqRel);
        self.quota.give_back(bytes);
        self.bytes -= bytes;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The tenant whose data the request carries.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission
            .inflight
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.quota.give_back(self.bytes);
    }
}

const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// A tenant over its stored bytes waits for retention, which runs every maintenance
/// interval: asking again every second would only cost both sides.
const STORED_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl Admission {
    /// Memory in use: buffered rows, flush working memory, and requests being processed.
    pub(crate) fn memory_in_use(&self) -> usize {
        self.stores.memory_in_use() + self.inflight.load(Ordering::Acquire)
    }

    /// Whether `bytes` more of `tenant`'s fit in its share of the memory ceiling (while more
    /// than one tenant is open: a server with one tenant gives it the whole ceiling).
    pub(crate) fn check_share(
        &self,
        tenant: &str,
        quota: &Quota,
        bytes: usize,
    ) -> Result<(), IngestError> {
        if self.stores.open_count() < 2 {
            return Ok(());
        }
        let Some(store) = self.stores.open_store(tenant) else {
            return Ok(());
        };
        let share = crate::quota::memory_share(&quota.limits, self.limits.max_memory_bytes);
        let in_use = store.memory_in_use() + quota.held();
        if in_use.saturating_add(bytes) <= share {
            return Ok(());
        }
        store.request_flush();
        quota.count_refusal("memory");
        Err(IngestError::OverQuota {
            message: format!(
                "tenant {tenant:?} holds {in_use} bytes, its share of the memory ceiling is \
                 {share} (tenants: memory_share of limits.max_memory_bytes); retry later"
            ),
            retry_after: RETRY_AFTER,
        })
    }

    /// Whether `tenant`'s data is within the disk it may fill (`max_stored_bytes`: its
    /// Parquet files and write-ahead log), checked before its request is read.
    pub(crate) fn check_stored(&self, tenant: &str, quota: &Quota) -> Result<(), IngestError> {
        let ceiling = quota.limits.max_stored_bytes as u64;
        if ceiling == 0 {
            return Ok(());
        }
        let Some(store) = self.stores.open_store(tenant) else {
            return Ok(());
        };
        let stored = store.parquet_disk_bytes() + store.wal_disk_bytes();
        if stored <= ceiling {
            return Ok(());
        }
        quota.count_refusal("stored");
        Err(IngestError::OverQuota {
            message: format!(
                "tenant {tenant:?} stores {stored} bytes, more than the {ceiling} it may \
                 (tenants: max_stored_bytes); retry once retention has made room"
            ),
            retry_after: STORED_RETRY_AFTER,
        })
    }

    /// Whether `bytes` more fit under the ceilings: the memory for buffered and in-flight
    /// data, the process's resident memory, the write-ahead log's disk space.
    pub(crate) fn check(
        &self,
        signal: Signal,
        transport: Transport,
        bytes: usize,
    ) -> Result<(), IngestError> {
        let refuse = |what: String| {
            // Make room: write every buffer to Parquet now.
            self.stores.request_flush();
            tracing::debug!(signal = signal.name(), transport = transport.name(), %what, "refusing a request");
            IngestError::Unavailable {
                message: what,
                retry_after: RETRY_AFTER,
            }
        };
        let in_use = self.memory_in_use();
        if in_use.saturating_add(bytes) > self.limits.max_memory_bytes {
            return Err(refuse(format!(
                "Sightline is over its memory ceiling ({in_use} of {} bytes buffered or in \
                 flight); retry later",
                self.limits.max_memory_bytes
            )));
        }
        // The resident ceiling holds new data back only while Sightline holds data a flush
        // will free: memory the allocator keeps after a flush must never lock ingest out.
        // What queries hold is theirs (query.memory_limit, counted apart in the config's
        // check): a heavy query must not push ingest into refusals.
        if let (Some(ceiling), Some(rss)) = (
            self.limits.max_resident_bytes,
            self.stores
                .resident_bytes()
                .map(|rss| rss.saturating_sub(self.stores.query_memory_bytes() as u64)),
        ) && rss as f64 >= ceiling as f64 * crate::limits::RESIDENT_ADMISSION_SHARE
            && in_use >= self.limits.max_memory_bytes / 8
        {
            return Err(refuse(format!(
                "Sightline's resident memory is near its ceiling ({rss} of {ceiling} bytes, \
                 {in_use} bytes of it buffered or in flight); retry later"
            )));
        }
        if let Some(ceiling) = self.limits.max_parquet_bytes {
            let parquet = self.stores.parquet_disk_bytes();
            if parquet > ceiling {
                return Err(IngestError::Unavailable {
                    message: format!(
                        "Sightline's Parquet files are over their disk ceiling ({parquet} of \
                         {ceiling} bytes, limits.max_parquet_bytes); retry once retention has \
                         made room"
                    ),
                    retry_after: RETRY_AFTER,
                });
            }
        }
        let wal = self.stores.wal_disk_bytes();
        if wal > self.limits.max_wal_bytes {
            return Err(refuse(format!(
                "Sightline's write-ahead log is over its disk ceiling ({wal} of {} bytes); \
                 retry later",
                self.limits.max_wal_bytes
            )));
        }
        Ok(())
    }
}
