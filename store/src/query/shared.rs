//! What the query engines of every tenant share ([`QueryShared`]), and a tenant's part of it
//! ([`TenantShare`]).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use super::slots::Slots;
use super::{QueryError, QueryLimits};

/// What the query engines of every tenant share: the places for running queries, the pool
/// of query memory and the spill directory. One per process, so that `query.max_running`,
/// `query.memory_limit` and `query.max_spill_bytes` bound all queries however many tenants
/// there are.
#[derive(Clone)]
pub struct QueryShared {
    pub(super) slots: Arc<Slots>,
    pub(super) pool: Arc<dyn MemoryPool>,
    pub(super) runtime_env: Arc<RuntimeEnv>,
    /// Tenants with an engine: the tenants' shares hold while there is more than one.
    pub(super) tenants: Arc<AtomicUsize>,
    pub(super) limits: QueryLimits,
}

impl std::fmt::Debug for QueryShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryShared")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl QueryShared {
    /// The places, pool and spill directory of `limits` (the directory is emptied: what an
    /// earlier run left there is garbage now).
    ///
    /// # Errors
    /// [`QueryError::Internal`] when the spill directory cannot be made.
    pub fn new(limits: &QueryLimits) -> Result<Self, QueryError> {
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(limits.memory_bytes),
            std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN),
        ));
        let disk = match &limits.spill {
            Some(spill) => {
                let _ = std::fs::remove_dir_all(&spill.dir);
                std::fs::create_dir_all(&spill.dir).map_err(|e| {
                    QueryError::Internal(format!("cannot create {}: {e}", spill.dir.display()))
                })?;
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![spill.dir.clone()]))
                    .with_max_temp_directory_size(spill.max_bytes)
            }
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        };
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_disk_manager_builder(disk)
            .build_arc()?;
        Ok(Self {
            slots: Arc::new(Slots::new(
                limits.max_running,
                limits.max_queued,
                limits.threads,
            )),
            pool,
            runtime_env,
            tenants: Arc::new(AtomicUsize::new(0)),
            limits: limits.clone(),
        })
    }

    /// Bytes all queries of all tenants hold now.
    pub fn memory_in_use(&self) -> usize {
        self.pool.reserved()
    }
}

/// A tenant's part of the [`QueryShared`]: its name and shares.
#[derive(Debug, Clone, Copy)]
pub struct TenantShare<'a> {
    pub tenant: &'a str,
    /// Of `query.max_running` (and as many waiting as `query.max_queued`).
    pub places: f64,
    /// Of `query.memory_limit`.
    pub memory: f64,
}
