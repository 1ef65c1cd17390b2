//! SQL expressions over a table's columns, compiled once and evaluated on each of its batches:
//! the SLO engine's filters, good-event conditions and groupings. DataFusion compiles them;
//! nothing outside the store sees it.
//!
//! ```
//! use sightline_store::{Table, expr::RowExpr};
//! let e = RowExpr::compile(Table::Spans, "status_code != 'error'").expect("valid");
//! assert_eq!(e.data_type(), &arrow::datatypes::DataType::Boolean);
//! ```

use std::sync::{Arc, LazyLock};

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Visit;

use crate::schema::Table;
use crate::sql_bounds::SqlBounds;

/// How long and deep an expression may be: expressions are evaluated on every write, on the
/// writer's own thread, so they are bounded more tightly than queries.
pub const EXPR_BOUNDS: SqlBounds = SqlBounds {
    max_sql_bytes: 16 * 1024,
    max_depth: 64,
};

/// Why an expression cannot be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot be evaluated: {0}")]
    Evaluate(String),
}

/// A compiled expression of one table.
#[derive(Debug, Clone)]
pub struct RowExpr {
    sql: String,
    expr: Arc<dyn PhysicalExpr>,
    data_type: DataType,
}

/// Compiling needs a session (functions, options), never its tables.
static SESSION: LazyLock<SessionContext> = LazyLock::new(SessionContext::new);

impl RowExpr {
    /// Compiles `sql` against `table`'s schema.
    ///
    /// # Errors
    /// [`ExprError::Invalid`] when it is too long or too deep ([`EXPR_BOUNDS`]), does not
    /// parse, names an unknown column or function, or mixes types.
    pub fn compile(table: Table, sql: &str) -> Result<Self, ExprError> {
        let invalid = |e: &dyn std::fmt::Display| ExprError::Invalid(e.to_string());
        EXPR_BOUNDS.check_len(sql).map_err(ExprError::Invalid)?;
        let state = SESSION.state();
        let dialect = state.config().options().sql_parser.dialect;
        let parsed = state
            .sql_to_expr_with_alias(sql, &dialect)
            .map_err(|e| invalid(&e.strip_backtrace()))?;
        EXPR_BOUNDS
            .check_visited(|v| parsed.expr.visit(v))
            .map_err(ExprError::Invalid)?;
        let schema = DFSchema::try_from(table.schema()).map_err(|e| invalid(&e))?;
        let logical = state
            .create_logical_expr_from_sql_expr(parsed, &schema)
            .map_err(|e| invalid(&e.strip_backtrace()))?;
        let data_type = logical
            .get_type(&schema)
            .map_err(|e| invalid(&e.strip_backtrace()))?;
        let expr = state
            .create_physical_expr(logical, &schema)
            .map_err(|e| invalid(&e.strip_backtrace()))?;
        Ok(Self {
            sql: sql.to_string(),
            expr,
            data_type,
        })
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The type of its values.
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }

    /// The columns it reads.
    pub fn columns(&self) -> Vec<String> {
        let mut names: Vec<String> = collect_columns(&self.expr)
            .into_iter()
            .map(|c| c.name().to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The same expression over batches of `schema` (a projection of the table holding every
    /// column it reads).
    ///
    /// # Errors
    /// [`ExprError::Invalid`] when `schema` lacks one of its columns.
    pub fn for_schema(&self, schema: &Schema) -> Result<Self, ExprError> {
        let expr = reassign_expr_columns(self.expr.clone(), schema)
            .map_err(|e| ExprError::Invalid(e.strip_backtrace()))?;
        Ok(Self {
            sql: self.sql.clone(),
            expr,
            data_type: self.data_type.clone(),
        })
    }

    /// Its value for every row of `batch`.
    ///
    /// # Errors
    /// [`ExprError::Evaluate`] when a value cannot be computed (a failing cast).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, ExprError> {
        self.expr
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| ExprError::Evaluate(e.strip_backtrace()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_compile_evaluate_and_follow_a_projection() {
        let batch = crate::fixtures::sample_batch(Table::Spans, 3, 1);
        let e =
            RowExpr::compile(Table::Spans, "duration_ns > 1000 AND kind <> 'x'").expect("compiles");
        assert_eq!(e.data_type(), &DataType::Boolean);
        assert_eq!(e.columns(), ["duration_ns", "kind"]);
        let full = e.evaluate(&batch).expect("evaluates");
        let cols: Vec<usize> = ["kind", "duration_ns"]
            .iter()
            .map(|c| batch.schema().index_of(c).expect("column"))
            .collect();
        let projected = batch.project(&cols).expect("project");
        let narrow = e
            .for_schema(&projected.schema())
            .expect("rebinds")
            .evaluate(&projected)
            .expect("evaluates");
        assert_eq!(&full, &narrow);
    }

    #[test]
    fn bad_and_hostile_expressions_are_refused_with_a_reason() {
        for (sql, words) in [
            ("no_such_column = 1", "no_such_column"),
            ("kind = ", "SQL"),
            (&vec!["true"; 100].join(" OR "), "too complex"),
            (&format!("kind = '{}'", "x".repeat(20_000)), "bytes long"),
        ] {
            let e = RowExpr::compile(Table::Spans, sql).expect_err(sql);
            assert!(e.to_string().contains(words), "{sql:.40}: {e}");
        }
    }
}
