//! Query memory: one pool for all queries of all tenants (`query.memory_limit`), inside it a
//! share per tenant (`tenants.query_memory_share`, while more than one tenant is open) and
//! inside that a share per query (`query.max_query_memory_bytes`), so that neither one query
//! nor one tenant can take what the others need. Sorts, joins, aggregations and a query's
//! collected answer reserve from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// One query's or one tenant's share of the pool around it.
#[derive(Debug)]
pub(crate) struct QueryPool {
    all: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
    whose: Whose,
}

/// Whose share a pool is.
#[derive(Debug)]
enum Whose {
    Query,
    /// A tenant's, which holds while `open` counts more than one tenant.
    Tenant {
        name: String,
        open: Arc<AtomicUsize>,
    },
}

impl QueryPool {
    /// One query's share of `all`.
    pub(crate) fn new(all: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            all,
            limit,
            used: AtomicUsize::new(0),
            whose: Whose::Query,
        }
    }

    /// A tenant's share of `all`, held while `open` counts more than one tenant.
    pub(crate) fn tenant(
        all: Arc<dyn MemoryPool>,
        limit: usize,
        name: &str,
        open: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            all,
            limit,
            used: AtomicUsize::new(0),
            whose: Whose::Tenant {
                name: name.to_string(),
                open,
            },
        }
    }

    fn holds(&self) -> bool {
        match &self.whose {
            Whose::Query => true,
            Whose::Tenant { open, .. } => open.load(Ordering::Acquire) > 1,
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a query's share: {} of {} bytes used",
            self.reserved(),
            self.limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "sightline-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.all.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.all.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::AcqRel);
        self.all.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::AcqRel);
        self.all.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let used = self.used.fetch_add(additional, Ordering::AcqRel);
        if used + additional > self.limit && self.holds() {
            self.used.fetch_sub(additional, Ordering::AcqRel);
            let consumer = reservation.consumer().name();
            let limit = self.limit;
            return Err(DataFusionError::ResourcesExhausted(match &self.whose {
                Whose::Query => format!(
                    "{consumer} needs {additional} bytes more, and the query holds {used} of \
                     the {limit} bytes one query may use (query.max_query_memory_bytes)"
                ),
                Whose::Tenant { name, .. } => format!(
                    "{consumer} needs {additional} bytes more, and the queries of tenant \
                     {name:?} hold {used} of the {limit} bytes its queries may use together \
                     (tenants: query_memory_share of query.memory_limit)"
                ),
            }));
        }
        if let Err(e) = self.all.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_query_gets_its_share_and_all_queries_the_whole() {
        let all: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(100));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(all.clone(), 60));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(all.clone(), 60));
        let ra = MemoryConsumer::new("sort").register(&a);
        let rb = MemoryConsumer::new("join").register(&b);
        ra.try_grow(50).expect("within the query's share");
        let err = ra.try_grow(20).expect_err("past the query's share");
        assert!(err.to_string().contains("max_query_memory_bytes"), "{err}");
        rb.try_grow(40).expect("within both");
        assert!(rb.try_grow(20).is_err(), "past what all queries may use");
        assert_eq!((a.reserved(), b.reserved(), all.reserved()), (50, 40, 90));
        ra.free();
        rb.try_grow(20).expect("room again");
        assert_eq!(all.reserved(), 60);
    }

    #[test]
    fn a_tenant_gets_its_share_once_another_tenant_is_open() {
        let all: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(100));
        let open = Arc::new(AtomicUsize::new(1));
        let t: Arc<dyn MemoryPool> =
            Arc::new(QueryPool::tenant(all.clone(), 50, "team-a", open.clone()));
        let q: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(t.clone(), 80));
        let r = MemoryConsumer::new("sort").register(&q);
        r.try_grow(70)
            .expect("alone, the tenant has the whole pool");
        r.shrink(70);
        open.store(2, Ordering::Release);
        r.try_grow(40).expect("within the tenant's share");
        let err = r.try_grow(20).expect_err("past the tenant's share");
        assert!(err.to_string().contains("team-a"), "{err}");
        assert!(err.to_string().contains("query_memory_share"), "{err}");
        assert_eq!((q.reserved(), t.reserved(), all.reserved()), (40, 40, 40));
    }
}
