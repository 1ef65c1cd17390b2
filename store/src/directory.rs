//! The stores of every tenant, as the receivers see them: each tenant's data is a [`Store`] of
//! its own (its directory, write-ahead log, buffers and files), found by the tenant's name,
//! and the ceilings that protect the process add up all of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Result, Store, StoreError};

/// A boxed future of a directory's answer.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<Store>>> + Send + 'a>>;

// The default methods name `Store::…` explicitly: `Arc<Store>` is a directory too, and
// `s.memory_in_use()` on one would call the directory's method, itself, for ever.

/// Where the receivers find a tenant's store, and what all stores hold together.
pub trait StoreDirectory: Send + Sync + std::fmt::Debug {
    /// The store of `tenant` (a name [`sightline_common::tenant::check_tenant`] accepts),
    /// opened on first use.
    fn store<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a>;
    /// The stores open now.
    fn open_stores(&self) -> Vec<Arc<Store>>;

    /// The store of `tenant` if it is open (never opens one).
    fn open_store(&self, tenant: &str) -> Option<Arc<Store>> {
        self.open_stores()
            .into_iter()
            .find(|s| s.tenant() == tenant)
    }
    /// How many stores are open.
    fn open_count(&self) -> usize {
        self.open_stores().len()
    }

    /// Memory every store accounts for (buffered rows, flush working memory).
    fn memory_in_use(&self) -> usize {
        self.open_stores()
            .iter()
            .map(|s| Store::memory_in_use(s))
            .sum()
    }
    /// Bytes the queries of every store hold of their memory pools.
    fn query_memory_bytes(&self) -> usize {
        self.open_stores()
            .iter()
            .map(|s| Store::query_memory_bytes(s))
            .sum()
    }
    /// Bytes of every store's Parquet files.
    fn parquet_disk_bytes(&self) -> u64 {
        self.open_stores()
            .iter()
            .map(|s| Store::parquet_disk_bytes(s))
            .sum()
    }
    /// Bytes of every store's write-ahead log.
    fn wal_disk_bytes(&self) -> u64 {
        self.open_stores()
            .iter()
            .map(|s| Store::wal_disk_bytes(s))
            .sum()
    }
    /// The process's resident memory, where it can be read.
    fn resident_bytes(&self) -> Option<u64> {
        crate::memory::RssSampler::shared().map(|r| r.bytes())
    }
    /// Asks every store to write all it buffers to Parquet (memory is short).
    fn request_flush(&self) {
        for s in self.open_stores() {
            Store::request_flush(&s);
        }
    }
}

/// One store is a directory of one tenant (tools and tests).
impl StoreDirectory for Arc<Store> {
    fn store<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a> {
        Box::pin(async move {
            if tenant == self.tenant() {
                Ok(self.clone())
            } else {
                Err(StoreError::Tenant(format!(
                    "tenant {tenant:?} has no store here"
                )))
            }
        })
    }

    fn open_stores(&self) -> Vec<Arc<Store>> {
        vec![self.clone()]
    }
}
