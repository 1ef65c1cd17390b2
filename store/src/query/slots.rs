//! Where queries run, and how many at once.
//!
//! Each query runs on threads of its own — a thread that drives it and `threads` workers for
//! its partitions — at a lower CPU priority than ingest (nice 10), so the operating system
//! shares the cores between queries and never lets them starve the receivers. At most
//! `max_running` queries run at once and `max_queued` wait for a place (their wait counts in
//! their timeout); past that a query is refused at once as busy.
//!
//! A query that times out or whose caller goes away is told to stop: it is dropped the next
//! time it yields, which DataFusion's operators do between batches. Its place is given back
//! only once its threads have really stopped, so work that outlives its answer still counts.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::QueryError;
use crate::sql_bounds::QUERY_THREAD_STACK_BYTES;

/// The nice value of query threads (ingest runs at the process's own, normally 0): under load
/// a query thread gets about a tenth of the CPU time of an ingest thread.
const QUERY_NICE: i32 = 10;

/// How long a stopped query's threads are waited for before its place is given back anyway
/// (a single batch of an expensive function can take this long; see the docs).
const STOP_WAIT: Duration = Duration::from_secs(600);

/// The places for running queries, shared by the engines cloned from one.
#[derive(Debug)]
pub(crate) struct Slots {
    running: Arc<Semaphore>,
    max_running: usize,
    queued: AtomicUsize,
    max_queued: usize,
    /// Worker threads per query.
    threads: usize,
    /// The tenant whose places these are (`None`: the places of all queries).
    tenant: Option<String>,
}

/// Counts of the query places, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotStats {
    pub running: usize,
    pub queued: usize,
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub(crate) fn new(max_running: usize, max_queued: usize, threads: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(max_running.max(1))),
            max_running: max_running.max(1),
            queued: AtomicUsize::new(0),
            max_queued,
            threads: threads.max(1),
            tenant: None,
        }
    }

    /// The places of one tenant's queries, inside those of all queries.
    pub(crate) fn tenant(name: &str, max_running: usize, max_queued: usize) -> Self {
        Self {
            tenant: Some(name.to_string()),
            ..Self::new(max_running, max_queued, 1)
        }
    }

    pub(crate) fn stats(&self) -> SlotStats {
        SlotStats {
            running: self.max_running - self.running.available_permits(),
            queued: self.queued.load(Ordering::Acquire),
        }
    }

    /// A place, at once or after waiting in the queue until `deadline`.
    pub(crate) async fn admit(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, QueryError> {
        if let Ok(permit) = self.running.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(QueryError::Busy(match &self.tenant {
                None => format!(
                    "{} queries are running and {} are waiting, the most Sightline takes \
                     (query.max_running, query.max_queued); retry later",
                    self.max_running, self.max_queued
                ),
                Some(tenant) => format!(
                    "{} queries of tenant {tenant:?} are running and {} are waiting, the most \
                     one tenant may have (tenants: query_share of query.max_running, \
                     query.max_queued); retry later",
                    self.max_running, self.max_queued
                ),
            }));
        }
        let _leave = Leave(&self.queued);
        match tokio::time::timeout_at(deadline, self.running.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(QueryError::Internal("the query slots are closed".into())),
            Err(_) => Err(QueryError::Timeout(timeout)),
        }
    }

    /// Runs `work` in a place of its own until it ends or `deadline` passes (then it is told
    /// to stop, as it is when the returned future is dropped). `tenant`, the place the query
    /// holds among its tenant's, is given back with this one, once the query's threads stop.
    pub(crate) async fn run<T, F>(
        &self,
        deadline: Instant,
        timeout: Duration,
        tenant: Option<OwnedSemaphorePermit>,
        work: F,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let permit = self.admit(deadline, timeout).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (answer, answered) = oneshot::channel();
        let threads = self.threads;
        std::thread::Builder::new()
            .name("sightline-query".into())
            .stack_size(QUERY_THREAD_STACK_BYTES)
            .spawn(move || {
                lower_priority();
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("sightline-query-worker")
                    .thread_stack_size(QUERY_THREAD_STACK_BYTES)
                    .on_thread_start(lower_priority)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = answer.send(Err(QueryError::Internal(format!(
                            "cannot start the query's threads: {e}"
                        ))));
                        return;
                    }
                };
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a thread of its own, started for this query"
                )]
                let outcome = runtime.block_on(async move {
                    tokio::select! {
                        result = work => Some(result),
                        _ = stopped => None,
                    }
                });
                if let Some(result) = outcome {
                    let _ = answer.send(result);
                }
                // The place is free once the query's workers have finished what they are
                // doing, not before.
                runtime.shutdown_timeout(STOP_WAIT);
                drop(permit);
                drop(tenant);
            })
            .map_err(|e| QueryError::Internal(format!("cannot start a query thread: {e}")))?;
        // Dropping `stop` — on timeout, or when this future is dropped — stops the query.
        let _stop_on_drop = stop;
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(QueryError::Internal("the query thread ended".into())),
            Err(_) => Err(QueryError::Timeout(timeout)),
        }
    }
}

/// Lowers the calling thread's CPU priority (on Linux the nice value is per thread).
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, QUERY_NICE) {
        tracing::debug!(error = %e, "cannot lower a query thread's priority");
    }
}
