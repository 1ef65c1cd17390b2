//! Query memory: one pool for all queries (`query.memory_limit`) and, inside it, a share per
//! query (`query.max_query_memory_bytes`), so that one query cannot take what every other
//! query needs. Sorts, joins, aggregations and a query's collected answer reserve from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// One query's share of the pool of all queries.
#[derive(Debug)]
pub(crate) struct QueryPool {
    all: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl QueryPool {
    pub(crate) fn new(all: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            all,
            limit,
            used: AtomicUsize::new(0),
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
        if used + additional > self.limit {
            self.used.fetch_sub(additional, Ordering::AcqRel);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} needs {additional} bytes more, and the query holds {used} of the {} \
                 bytes one query may use (query.max_query_memory_bytes)",
                reservation.consumer().name(),
                self.limit
            )));
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
}
