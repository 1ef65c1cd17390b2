//! The SQL engine: DataFusion over the stored tables, read-only, with a timeout, a row limit
//! and a memory limit, on a runtime of its own so heavy scans never stall ingestion.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
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

/// Runs SQL over the store.
pub struct QueryEngine {
    ctx: SessionContext,
    limits: QueryLimits,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl QueryEngine {
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
            runtime: Some(runtime),
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

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only SQL statement.
    pub async fn execute(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let rt = self
            .runtime
            .as_ref()
            .ok_or_else(|| QueryError::Internal("query runtime stopped".into()))?;
        let bounds = self.limits.sql;
        bounds.check_len(sql).map_err(QueryError::Invalid)?;
        let ctx = self.ctx.clone();
        let sql = sql.to_string();
        let max_rows = self.limits.max_rows;
        let handle = rt.spawn(async move {
            let state = ctx.state();
            let dialect = state.config().options().sql_parser.dialect;
            let recursion_limit = state.config().options().sql_parser.recursion_limit.get();
            let statement = state
                .sql_to_statement(&sql, &dialect)
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
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await?;
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
            Ok::<_, QueryError>(QueryOutput {
                schema,
                batches,
                truncated,
            })
        });
        let abort = handle.abort_handle();
        match tokio::time::timeout(self.limits.timeout, handle).await {
            Err(_) => {
                abort.abort();
                Err(QueryError::Timeout(self.limits.timeout))
            }
            Ok(Err(join)) => Err(QueryError::Internal(format!("query task failed: {join}"))),
            Ok(Ok(result)) => result,
        }
    }
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
