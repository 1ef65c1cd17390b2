//! The SQL engine: DataFusion over the stored tables, read-only and bounded — in time (a
//! timeout, after which the query stops), in places (a bounded number running, a bounded queue,
//! "busy" past it), in CPU (query threads run at a lower priority than ingest), in memory (a
//! pool for all queries with a share per query, functions that build large values bounded,
//! spilling to a bounded directory or not at all) and in the size of the answer (rows and
//! bytes).
//!
//! Every query, also the store's internal readers' (SLO backfills), goes through
//! [`QueryEngine`]: [`QueryEngine::execute`] for an answer, or [`QueryEngine::plan`] (which
//! fixes the snapshot of the store it reads) then [`QueryEngine::collect`] or
//! [`QueryEngine::stream`]. DataFusion itself stays inside this crate.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::catalog::TableCatalog;
use crate::provider::StoreTable;
use crate::schema::{TRACES_VIEW_SQL, Table};
pub use crate::sql_bounds::SqlBounds;
pub use shared::{QueryShared, TenantShare};
pub use slots::SlotStats;

mod functions;
mod pace;
mod pool;
mod shared;
mod slots;

/// Rows per batch inside a query (DataFusion's default is 8192).
const BATCH_ROWS: usize = 1024;

/// Limits applied to every query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// From the moment a query is asked for (its wait for a place included) to its answer.
    pub timeout: Duration,
    /// Rows returned at most; the answer says when it was cut.
    pub max_rows: usize,
    /// Bytes of (Arrow) answer returned at most; the answer says when it was cut.
    pub max_result_bytes: usize,
    /// Memory all queries together may use for sorts, joins, aggregations and answers.
    pub memory_bytes: usize,
    /// Memory one query may use of it.
    pub max_query_memory_bytes: usize,
    /// Worker threads of each query.
    pub threads: usize,
    /// Queries running at once; more wait.
    pub max_running: usize,
    /// Queries waiting at once; more are refused as busy.
    pub max_queued: usize,
    /// What one call of a function that builds values (repeat, lpad, range...) may build per
    /// batch of rows.
    pub max_function_bytes: usize,
    /// Where sorts and aggregations that outgrow their memory spill, and how much; `None`:
    /// they fail instead.
    pub spill: Option<Spill>,
    /// Length and nesting depth of the SQL text, checked before planning.
    pub sql: SqlBounds,
}

/// A directory for spilled query data and its size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spill {
    /// Emptied when the engine starts.
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
            max_result_bytes: 32 << 20,
            memory_bytes: 256 << 20,
            max_query_memory_bytes: 128 << 20,
            threads: 2,
            max_running: 16,
            max_queued: 64,
            max_function_bytes: 64 << 20,
            spill: None,
            sql: SqlBounds::default(),
        }
    }
}

/// Why a query failed. Every variant is the caller's to fix, except `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error("query exceeded the timeout of {0:?}")]
    Timeout(Duration),
    /// Too many queries running and waiting: retry later.
    #[error("{0}")]
    Busy(String),
    #[error("query exceeded the memory limit: {0}")]
    ResourcesExhausted(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
            DataFusionError::Internal(m) => QueryError::Internal(m.clone()),
            DataFusionError::IoError(m) => QueryError::Internal(m.to_string()),
            DataFusionError::ObjectStore(m) => QueryError::Internal(m.to_string()),
            _ => QueryError::Invalid(e.strip_backtrace()),
        }
    }
}

/// The answer to a query; its memory counts in the query pool until it is dropped.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// True when rows past `max_rows` (or bytes past `max_result_bytes`) were left out.
    pub truncated: bool,
    /// The answer's share of the query pool.
    _memory: Option<Arc<MemoryReservation>>,
}

impl QueryOutput {
    /// An answer made elsewhere (tests, tools), outside the query pool.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>, truncated: bool) -> Self {
        Self {
            schema,
            batches,
            truncated,
            _memory: None,
        }
    }
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Runs SQL over the store. Cheap to clone; clones share the query places, the memory pool and
/// the tables (see [`QueryEngine::with_timeout`]).
#[derive(Clone)]
pub struct QueryEngine {
    /// Every table but `audit`.
    ctx: SessionContext,
    /// Every table, `audit` included (see [`QueryEngine::with_audit`]).
    audit_ctx: SessionContext,
    /// Whether this engine's queries see `audit`.
    audit: bool,
    limits: QueryLimits,
    /// The places of all queries.
    slots: Arc<slots::Slots>,
    /// The places of this engine's tenant, held while more than the counted tenants are open.
    tenant_slots: Option<(Arc<slots::Slots>, Arc<std::sync::atomic::AtomicUsize>)>,
    /// The pool of this engine's queries (its tenant's share of all, or all).
    pool: Arc<dyn MemoryPool>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A read-only query planned against a snapshot of the store: the buffers and files it reads
/// were fixed when it was planned, however long it waits to run.
pub struct PlannedQuery {
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

impl std::fmt::Debug for PlannedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedQuery")
            .field("schema", &self.plan.schema())
            .finish_non_exhaustive()
    }
}

impl PlannedQuery {
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }
}

/// The batches of a running query, in order. Dropping it cancels the query.
pub struct QueryStream {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, QueryError>>,
    /// Runs the query; dropped with the stream, which stops it.
    _running: tokio::task::JoinHandle<()>,
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self._running.abort();
    }
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch, an error (after which the stream ends), or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, QueryError>> {
        self.rx.recv().await
    }
}

impl QueryEngine {
    /// Registers the tables over `catalogs`, and the bounded functions, with places, memory
    /// and spill space of its own.
    ///
    /// # Errors
    /// [`QueryError::Internal`] when the spill directory cannot be made or a table cannot be
    /// registered.
    pub async fn new(
        catalogs: &[Arc<TableCatalog>],
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        let shared = QueryShared::new(&limits)?;
        Self::in_shared(catalogs, limits, &shared, None).await
    }

    /// As [`Self::new`], running in the places, memory and spill space of `shared`, within
    /// the tenant's share of them when `tenant` is given.
    ///
    /// # Errors
    /// [`QueryError::Internal`] when a table cannot be registered.
    pub async fn in_shared(
        catalogs: &[Arc<TableCatalog>],
        limits: QueryLimits,
        shared: &QueryShared,
        tenant: Option<TenantShare<'_>>,
    ) -> Result<Self, QueryError> {
        let runtime_env = shared.runtime_env.clone();
        for catalog in catalogs {
            catalog.storage().register(&runtime_env);
        }
        let (pool, tenant_slots) = match tenant {
            None => (shared.pool.clone(), None),
            Some(t) => {
                shared
                    .tenants
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                let memory = (shared.limits.memory_bytes as f64 * t.memory) as usize;
                let places = ((shared.limits.max_running as f64 * t.places).ceil() as usize).max(1);
                let pool: Arc<dyn MemoryPool> = Arc::new(pool::QueryPool::tenant(
                    shared.pool.clone(),
                    memory,
                    t.tenant,
                    shared.tenants.clone(),
                ));
                let slots = Arc::new(slots::Slots::tenant(
                    t.tenant,
                    places,
                    shared.limits.max_queued,
                ));
                (pool, Some((slots, shared.tenants.clone())))
            }
        };
        let config = SessionConfig::new()
            .with_target_partitions(limits.threads.max(1))
            // A stopped query stops between batches: smaller batches stop sooner (an
            // expensive expression is evaluated a batch at a time, without a pause).
            .with_batch_size(BATCH_ROWS)
            .with_information_schema(true);
        let mut contexts = Vec::new();
        for with_audit in [false, true] {
            let state = SessionStateBuilder::new()
                .with_config(config.clone())
                .with_runtime_env(runtime_env.clone())
                .with_default_features()
                .with_physical_optimizer_rule(Arc::new(pace::PaceNestedLoops))
                .build();
            let ctx = SessionContext::new_with_state(state);
            functions::register(&ctx, limits.max_function_bytes);
            for catalog in catalogs {
                if catalog.table() == Table::Audit && !with_audit {
                    continue;
                }
                ctx.register_table(
                    catalog.table().name(),
                    Arc::new(StoreTable::new(catalog.clone())),
                )?;
            }
            if catalogs.iter().any(|c| c.table() == Table::TraceFragments) {
                let plan = ctx.state().create_logical_plan(TRACES_VIEW_SQL).await?;
                let view =
                    datafusion::datasource::ViewTable::new(plan, Some(TRACES_VIEW_SQL.into()));
                ctx.register_table("traces", Arc::new(view))?;
            }
            contexts.push(ctx);
        }
        let (Some(audit_ctx), Some(ctx)) = (contexts.pop(), contexts.pop()) else {
            return Err(QueryError::Internal("no query context".into()));
        };
        Ok(Self {
            ctx,
            audit_ctx,
            audit: false,
            slots: shared.slots.clone(),
            tenant_slots,
            limits,
            pool,
        })
    }

    /// This engine for a tenant's administrators: the same threads, memory and limits, and
    /// the `audit` table too (no other engine's query can name it, nor see it in
    /// `information_schema`).
    pub fn with_audit(&self) -> Self {
        let mut e = self.clone();
        e.audit = true;
        e
    }

    /// This engine for the server's own readers of a tenant's data (SLO counting and
    /// backfills): the same tables and memory, in the places of all queries but not held to
    /// the tenant's share of them — what a tenant's users ask for must not hold up the
    /// server's own work for the tenant, which can run a query while it reads another.
    pub fn for_internal_readers(&self) -> Self {
        let mut e = self.clone();
        e.tenant_slots = None;
        e
    }

    /// Bytes this engine's queries hold of their pool now (its tenant's, or all).
    pub fn memory_in_use(&self) -> usize {
        self.pool.reserved()
    }

    /// Queries running and waiting now.
    pub fn slot_stats(&self) -> slots::SlotStats {
        self.slots.stats()
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// This engine with another timeout (for internal work such as SLO backfills, which may
    /// read days of data): the same threads, memory pool and tables.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut e = self.clone();
        e.limits.timeout = timeout;
        e
    }

    /// Runs `work` in a query place within the timeout; stopped when the returned future is
    /// dropped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let timeout = self.limits.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        // A place among the tenant's first (while tenants share the server), then among all.
        let tenant = match &self.tenant_slots {
            Some((slots, open)) if open.load(std::sync::atomic::Ordering::Acquire) > 1 => {
                Some(slots.admit(deadline, timeout).await?)
            }
            _ => None,
        };
        self.slots.run(deadline, timeout, tenant, work).await
    }

    /// Plans one read-only SQL statement in a query place: its snapshot of the store is
    /// taken now.
    ///
    /// # Errors
    /// [`QueryError::Invalid`] for SQL that does not parse or plan (or is too long or too
    /// deep), [`QueryError::Refused`] for anything but a query, [`QueryError::Timeout`].
    pub async fn plan(&self, sql: &str) -> Result<PlannedQuery, QueryError> {
        self.run(self.planning(sql)?).await
    }

    /// The work of planning `sql` (its length checked at once), to run in a query place.
    fn planning(
        &self,
        sql: &str,
    ) -> Result<impl Future<Output = Result<PlannedQuery, QueryError>> + Send + 'static, QueryError>
    {
        self.limits
            .sql
            .check_len(sql)
            .map_err(QueryError::Invalid)?;
        let ctx = self.query_context();
        let (bounds, sql) = (self.limits.sql, sql.to_string());
        Ok(async move { plan(&ctx, bounds, &sql).await })
    }

    /// A context for one query: the shared tables and functions, its own share of memory.
    fn query_context(&self) -> SessionContext {
        let base = if self.audit {
            &self.audit_ctx
        } else {
            &self.ctx
        };
        let mut env = (*base.runtime_env()).clone();
        env.memory_pool = Arc::new(pool::QueryPool::new(
            self.pool.clone(),
            self.limits.max_query_memory_bytes,
        ));
        let state = SessionStateBuilder::new_from_existing(base.state())
            .with_runtime_env(Arc::new(env))
            .build();
        SessionContext::new_with_state(state)
    }

    /// Runs a planned query to its end, keeping at most `max_rows` rows.
    ///
    /// # Errors
    /// [`QueryError::Timeout`], [`QueryError::ResourcesExhausted`] past the memory limit,
    /// [`QueryError::Invalid`] for errors of evaluation (a cast that fails on a value).
    pub async fn collect(&self, planned: PlannedQuery) -> Result<QueryOutput, QueryError> {
        let (max_rows, max_bytes) = (self.limits.max_rows, self.limits.max_result_bytes);
        self.run(async move { collect(planned, max_rows, max_bytes).await })
            .await
    }

    /// Plans and runs one read-only SQL statement within one timeout (see [`Self::plan`] and
    /// [`Self::collect`] for the errors).
    pub async fn execute(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let planning = self.planning(sql)?;
        let (max_rows, max_bytes) = (self.limits.max_rows, self.limits.max_result_bytes);
        self.run(async move { collect(planning.await?, max_rows, max_bytes).await })
            .await
    }

    /// Runs a planned query, handing its batches over as they come (no row limit): for
    /// internal readers of much data. The timeout counts from now to the last batch,
    /// including the time the reader takes; dropping the stream cancels the query.
    ///
    /// # Errors
    /// The stream yields the errors of [`Self::collect`], then ends.
    pub fn stream(&self, planned: PlannedQuery) -> Result<QueryStream, QueryError> {
        let schema = planned.schema();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let engine = self.clone();
        #[allow(
            clippy::disallowed_methods,
            reason = "owned by the stream, aborted with it"
        )]
        let running = tokio::spawn(async move {
            let sender = tx.clone();
            let outcome = engine
                .run(async move {
                    let mut batches = execute_stream(planned.plan, planned.task)?;
                    while let Some(batch) = batches.next().await {
                        if sender.send(batch.map_err(QueryError::from)).await.is_err() {
                            break; // the reader is gone
                        }
                    }
                    Ok::<_, QueryError>(())
                })
                .await;
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(QueryStream {
            schema,
            rx,
            _running: running,
        })
    }
}

/// Parses, checks and plans `sql` (logical and physical plan).
async fn plan(
    ctx: &SessionContext,
    bounds: SqlBounds,
    sql: &str,
) -> Result<PlannedQuery, QueryError> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let recursion_limit = state.config().options().sql_parser.recursion_limit.get();
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(|e| parser_limit(e, recursion_limit))?;
    bounds.check(&statement).map_err(QueryError::Invalid)?;
    let plan = state.statement_to_plan(statement).await?;
    refuse_writes(&plan)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| QueryError::Refused(e.strip_backtrace()))?;
    let df = ctx.execute_logical_plan(plan).await?;
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    Ok(PlannedQuery { plan, task })
}

/// Runs a planned query, keeping at most `max_rows` rows and `max_bytes` bytes, and what the
/// query's memory share has room for; the answer holds its memory in the share.
async fn collect(
    planned: PlannedQuery,
    max_rows: usize,
    max_bytes: usize,
) -> Result<QueryOutput, QueryError> {
    let schema = planned.schema();
    let memory = MemoryConsumer::new("the query's answer").register(planned.task.memory_pool());
    let mut stream = execute_stream(planned.plan, planned.task)?;
    let mut batches = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let mut batch = batch?;
        if rows + batch.num_rows() > max_rows {
            batch = batch.slice(0, max_rows - rows);
            truncated = true;
        }
        let size = batch_bytes(&batch);
        if bytes + size > max_bytes {
            // Keep the rows that fit, about.
            let fit = (batch.num_rows() as u128 * (max_bytes - bytes) as u128 / size.max(1) as u128)
                as usize;
            batch = batch.slice(0, fit);
            truncated = true;
        }
        let size = batch_bytes(&batch).min(size);
        if memory.try_grow(size).is_err() {
            // No memory for more of the answer: it is cut here, as it is at its limits.
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        bytes += size;
        batches.push(batch);
        if truncated {
            break;
        }
    }
    Ok(QueryOutput {
        schema,
        batches,
        truncated,
        _memory: Some(Arc::new(memory)),
    })
}

/// Bytes of the rows of `batch` (not of the buffers it may share with other batches, as the
/// slices an aggregation emits do).
fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// The parser's own nesting bound, said in the words of [`SqlBounds::check`].
fn parser_limit(e: DataFusionError, limit: usize) -> QueryError {
    use datafusion::sql::sqlparser::parser::ParserError;
    match e.find_root() {
        DataFusionError::SQL(err, _) if matches!(**err, ParserError::RecursionLimitExceeded) => {
            QueryError::Invalid(format!(
                "the statement is too complex: parentheses, subqueries, CASE or function calls \
                 nested more than {limit} deep"
            ))
        }
        _ => e.into(),
    }
}

/// Sightline's SQL is read-only: anything that would change data, tables or settings is
/// refused with a message that says so.
fn refuse_writes(plan: &LogicalPlan) -> Result<(), QueryError> {
    let what = match plan {
        LogicalPlan::Ddl(ddl) => Some(ddl.name().to_string()),
        LogicalPlan::Dml(dml) => Some(format!("{} (DML)", dml.op)),
        LogicalPlan::Copy(_) => Some("COPY".to_string()),
        LogicalPlan::Statement(s) => Some(s.name().to_string()),
        _ => None,
    };
    match what {
        Some(what) => Err(QueryError::Refused(format!(
            "Sightline's SQL is read-only: {what} is not allowed; only queries (SELECT, WITH, \
             EXPLAIN, SHOW, DESCRIBE) are"
        ))),
        None => Ok(()),
    }
}
