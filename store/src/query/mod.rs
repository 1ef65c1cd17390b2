//! The SQL engine: DataFusion over the stored tables, read-only, with a timeout, a row limit
//! and a memory limit, on a runtime of its own so heavy scans never stall ingestion.
//!
//! Every query, also the store's internal readers' (SLO backfills), goes through
//! [`QueryEngine`]: [`QueryEngine::execute`] for an answer, or [`QueryEngine::plan`] (which
//! fixes the snapshot of the store it reads) then [`QueryEngine::collect`] or
//! [`QueryEngine::stream`]. Work runs on the query runtime, within the timeout, and is
//! cancelled when its caller goes away; DataFusion itself stays inside this crate.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::catalog::TableCatalog;
use crate::provider::StoreTable;
use crate::schema::{TRACES_VIEW_SQL, Table};
use crate::sql_bounds::QUERY_THREAD_STACK_BYTES;
pub use crate::sql_bounds::SqlBounds;

/// Limits applied to every query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub timeout: Duration,
    /// Rows returned at most; the answer says when it was cut.
    pub max_rows: usize,
    /// Memory the query engine may use for sorts, joins and aggregations, in bytes.
    pub memory_bytes: usize,
    /// Worker threads of the query runtime.
    pub threads: usize,
    /// Length and nesting depth of the SQL text, checked before planning.
    pub sql: SqlBounds,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
            memory_bytes: 512 * 1024 * 1024,
            threads: 2,
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

/// The answer to a query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// True when rows past `max_rows` were left out.
    pub truncated: bool,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Runs SQL over the store. Cheap to clone; clones share the runtime, the memory pool and the
/// tables (see [`QueryEngine::with_timeout`]).
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    limits: QueryLimits,
    runtime: Arc<QueryRuntime>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The query threads; stopped when the last engine sharing them goes.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A task on the query runtime that is cancelled when its owner goes (a client that hangs up,
/// a caller that stops reading).
struct Owned<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
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
    _task: Owned<()>,
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
    /// Registers the tables over `catalogs` and starts the query runtime.
    ///
    /// # Errors
    /// [`QueryError::Internal`] when the runtime cannot start or a table cannot be registered.
    pub async fn new(
        catalogs: &[Arc<TableCatalog>],
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        let config = SessionConfig::new()
            .with_target_partitions(limits.threads.max(1))
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config_rt(config, runtime_env);
        for catalog in catalogs {
            ctx.register_table(
                catalog.table().name(),
                Arc::new(StoreTable::new(catalog.clone())),
            )?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .thread_name("sightline-query")
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("cannot start query runtime: {e}")))?;
        let engine = Self {
            ctx,
            limits,
            runtime: Arc::new(QueryRuntime(Some(runtime))),
        };
        if catalogs.iter().any(|c| c.table() == Table::TraceFragments) {
            let plan = engine
                .ctx
                .state()
                .create_logical_plan(TRACES_VIEW_SQL)
                .await?;
            let view = datafusion::datasource::ViewTable::new(plan, Some(TRACES_VIEW_SQL.into()));
            engine.ctx.register_table("traces", Arc::new(view))?;
        }
        Ok(engine)
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

    /// Runs `work` on the query runtime within the timeout; cancelled when the returned future
    /// is dropped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let rt = self
            .runtime
            .0
            .as_ref()
            .ok_or_else(|| QueryError::Internal("query runtime stopped".into()))?;
        let mut task = Owned(rt.spawn(work));
        match tokio::time::timeout(self.limits.timeout, &mut task.0).await {
            Err(_) => Err(QueryError::Timeout(self.limits.timeout)),
            Ok(Err(join)) => Err(QueryError::Internal(format!("query task failed: {join}"))),
            Ok(Ok(result)) => result,
        }
    }

    /// Plans one read-only SQL statement on the query runtime: its snapshot of the store is
    /// taken now.
    ///
    /// # Errors
    /// [`QueryError::Invalid`] for SQL that does not parse or plan (or is too long or too
    /// deep), [`QueryError::Refused`] for anything but a query, [`QueryError::Timeout`].
    pub async fn plan(&self, sql: &str) -> Result<PlannedQuery, QueryError> {
        self.limits
            .sql
            .check_len(sql)
            .map_err(QueryError::Invalid)?;
        let (ctx, bounds, sql) = (self.ctx.clone(), self.limits.sql, sql.to_string());
        self.run(async move { plan(&ctx, bounds, &sql).await })
            .await
    }

    /// Runs a planned query to its end, keeping at most `max_rows` rows.
    ///
    /// # Errors
    /// [`QueryError::Timeout`], [`QueryError::ResourcesExhausted`] past the memory limit,
    /// [`QueryError::Invalid`] for errors of evaluation (a cast that fails on a value).
    pub async fn collect(&self, planned: PlannedQuery) -> Result<QueryOutput, QueryError> {
        let max_rows = self.limits.max_rows;
        self.run(async move { collect(planned, max_rows).await })
            .await
    }

    /// Plans and runs one read-only SQL statement within one timeout (see [`Self::plan`] and
    /// [`Self::collect`] for the errors).
    pub async fn execute(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        self.limits
            .sql
            .check_len(sql)
            .map_err(QueryError::Invalid)?;
        let (ctx, bounds, sql) = (self.ctx.clone(), self.limits.sql, sql.to_string());
        let max_rows = self.limits.max_rows;
        self.run(async move { collect(plan(&ctx, bounds, &sql).await?, max_rows).await })
            .await
    }

    /// Runs a planned query, handing its batches over as they come (no row limit): for
    /// internal readers of much data. The timeout counts from now to the last batch,
    /// including the time the reader takes; dropping the stream cancels the query.
    ///
    /// # Errors
    /// The stream yields the errors of [`Self::collect`], then ends.
    pub fn stream(&self, planned: PlannedQuery) -> Result<QueryStream, QueryError> {
        let rt = self
            .runtime
            .0
            .as_ref()
            .ok_or_else(|| QueryError::Internal("query runtime stopped".into()))?;
        let schema = planned.schema();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let timeout = self.limits.timeout;
        let task = rt.spawn(async move {
            let run = async {
                let mut batches = execute_stream(planned.plan, planned.task)?;
                while let Some(batch) = batches.next().await {
                    if tx.send(batch.map_err(QueryError::from)).await.is_err() {
                        break; // the reader is gone
                    }
                }
                Ok::<_, QueryError>(())
            };
            let outcome = match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(QueryError::Timeout(timeout)),
            };
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(QueryStream {
            schema,
            rx,
            _task: Owned(task),
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

/// Runs a planned query, keeping at most `max_rows` rows.
async fn collect(planned: PlannedQuery, max_rows: usize) -> Result<QueryOutput, QueryError> {
    let schema = planned.schema();
    let mut stream = execute_stream(planned.plan, planned.task)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if rows + batch.num_rows() > max_rows {
            batches.push(batch.slice(0, max_rows - rows));
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        batches.push(batch);
    }
    Ok(QueryOutput {
        schema,
        batches,
        truncated,
    })
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
