//! DataFusion table over a [`TableCatalog`]: the buffered batches ∪ the Parquet files, taken
//! from one snapshot so that every row is read exactly once.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use crate::catalog::TableCatalog;
use crate::writer::DataFile;

/// A stored table as DataFusion sees it.
#[derive(Debug)]
pub struct StoreTable {
    catalog: Arc<TableCatalog>,
    schema: SchemaRef,
}

impl StoreTable {
    pub fn new(catalog: Arc<TableCatalog>) -> Self {
        let schema = catalog.table().schema();
        Self { catalog, schema }
    }
}

/// Inclusive bounds on the time column implied by a query's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    pub min: i64,
    pub max: i64,
}

impl Default for TimeBounds {
    fn default() -> Self {
        Self {
            min: i64::MIN,
            max: i64::MAX,
        }
    }
}

impl TimeBounds {
    /// Narrows the bounds with every top-level conjunct of the form `col <op> literal`.
    pub fn from_filters(column: &str, filters: &[Expr]) -> Self {
        let mut b = Self::default();
        for f in filters {
            b.narrow(column, f);
        }
        b
    }

    fn narrow(&mut self, column: &str, expr: &Expr) {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(column, left);
                    self.narrow(column, right);
                    return;
                }
                let (op, value) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => match op.swap() {
                        Some(op) => (op, v),
                        None => return,
                    },
                    _ => return,
                };
                let Some(ns) = timestamp_ns(value) else {
                    return;
                };
                match op {
                    Operator::Gt | Operator::GtEq => self.min = self.min.max(ns),
                    Operator::Lt | Operator::LtEq => self.max = self.max.min(ns),
                    Operator::Eq => {
                        self.min = self.min.max(ns);
                        self.max = self.max.min(ns);
                    }
                    _ => {}
                }
            }
            Expr::Between(between) if !between.negated => {
                if let Expr::Column(c) = between.expr.as_ref()
                    && c.name == column
                {
                    if let Expr::Literal(v, _) = between.low.as_ref()
                        && let Some(ns) = timestamp_ns(v)
                    {
                        self.min = self.min.max(ns);
                    }
                    if let Expr::Literal(v, _) = between.high.as_ref()
                        && let Some(ns) = timestamp_ns(v)
                    {
                        self.max = self.max.min(ns);
                    }
                }
            }
            _ => {}
        }
    }

    pub fn overlaps(&self, file: &DataFile) -> bool {
        file.max_time >= self.min && file.min_time <= self.max
    }
}

/// Nanoseconds of a timestamp literal; `None` for anything else. Rounds outward, so the bounds
/// only ever grow (a microsecond bound covers its whole microsecond).
fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune files and row groups; DataFusion still applies them to every row.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snapshot = self.catalog.snapshot();
        let bounds = TimeBounds::from_filters(self.catalog.table().time_column(), filters);
        let partitions = state.config().target_partitions().max(1);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let files: Vec<&Arc<DataFile>> = snapshot
            .files
            .iter()
            .filter(|f| bounds.overlaps(f))
            .collect();
        if !files.is_empty() {
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
            for (i, f) in files.iter().enumerate() {
                groups[i % partitions].push(PartitionedFile::new(f.path.to_string(), f.size));
            }
            let mut source = ParquetSource::new(self.schema.clone());
            if let Some(predicate) = conjunction(filters.iter().cloned()) {
                let df_schema = DFSchema::try_from(self.schema.clone())?;
                let physical = state.create_physical_expr(predicate, &df_schema)?;
                source = source.with_predicate(physical);
            }
            let url = self.catalog.storage().url().clone();
            let config = FileScanConfigBuilder::new(url, Arc::new(source))
                .with_file_groups(
                    groups
                        .into_iter()
                        .filter(|g| !g.is_empty())
                        .map(FileGroup::new)
                        .collect(),
                )
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }

        if !snapshot.batches.is_empty() {
            let mut parts: Vec<Vec<_>> = vec![Vec::new(); partitions.min(snapshot.batches.len())];
            let n = parts.len();
            for (i, b) in snapshot.batches.into_iter().enumerate() {
                parts[i % n].push(b);
            }
            inputs.push(MemorySourceConfig::try_new_exec(
                &parts,
                self.schema.clone(),
                projection.cloned(),
            )?);
        }

        if inputs.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn bounds_come_from_comparisons_and_between() {
        let f = vec![
            col("time").gt_eq(ts(10)),
            col("time").lt(ts(100)).and(col("x").eq(lit(1))),
        ];
        assert_eq!(
            TimeBounds::from_filters("time", &f),
            TimeBounds { min: 10, max: 100 }
        );
        let f = vec![col("time").between(ts(5), ts(7))];
        assert_eq!(
            TimeBounds::from_filters("time", &f),
            TimeBounds { min: 5, max: 7 }
        );
        let f = vec![ts(50).lt(col("time"))];
        assert_eq!(TimeBounds::from_filters("time", &f).min, 50);
    }

    #[test]
    fn bounds_ignore_other_columns_and_disjunctions() {
        let f = vec![
            col("other").gt(ts(10)),
            col("time").gt(ts(1)).or(col("time").lt(ts(0))),
        ];
        assert_eq!(TimeBounds::from_filters("time", &f), TimeBounds::default());
    }
}
