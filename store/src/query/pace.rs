//! Nested-loop joins that pause: a join without an equality condition compares each batch of
//! its probe side with every row of its build side without yielding, so a huge one told to
//! stop would keep its thread until the pairs of a whole batch are done. The probe side is fed
//! to it in small slices, with a pause after each, which bounds that to
//! `build rows × PROBE_ROWS` comparisons.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// Rows of the probe side per slice.
const PROBE_ROWS: usize = 256;

/// Puts a [`Paced`] under the probe side of every nested-loop join.
#[derive(Debug)]
pub(crate) struct PaceNestedLoops;

impl PhysicalOptimizerRule for PaceNestedLoops {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if !node.is::<NestedLoopJoinExec>() {
                return Ok(Transformed::no(node));
            }
            let children: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().cloned().collect();
            let [build, probe] = children.as_slice() else {
                return Ok(Transformed::no(node));
            };
            if probe.is::<Paced>() {
                return Ok(Transformed::no(node));
            }
            let paced: Arc<dyn ExecutionPlan> = Arc::new(Paced {
                input: probe.clone(),
            });
            Ok(Transformed::yes(node.replace_children(
                vec![build.clone(), paced],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "sightline_pace_nested_loops"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Its input's batches in slices of [`PROBE_ROWS`], with a pause (a yield to the runtime,
/// where a stopped query is dropped) after each.
#[derive(Debug)]
pub(crate) struct Paced {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for Paced {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PacedExec: rows={PROBE_ROWS}")
    }
}

impl ExecutionPlan for Paced {
    fn name(&self) -> &str {
        "PacedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue) // it has none
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.into_iter().next() {
            Some(input) => Ok(Arc::new(Paced { input })),
            None => Ok(self),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.input.schema();
        let input = self.input.execute(partition, context)?;
        let sliced = input.flat_map(|batch| {
            let slices: Vec<Result<_>> = match batch {
                Ok(b) => (0..b.num_rows())
                    .step_by(PROBE_ROWS)
                    .map(|at| Ok(b.slice(at, PROBE_ROWS.min(b.num_rows() - at))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(slices)
        });
        let paced = sliced.then(|slice| async move {
            tokio::task::yield_now().await;
            slice
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, paced)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    #[tokio::test]
    async fn nested_loop_joins_are_paced_and_answer_the_same() {
        let sql = "SELECT count(*) AS n FROM range(3000) a, range(700) b WHERE a.value < b.value";
        let plain = SessionContext::new();
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new())
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(PaceNestedLoops))
            .build();
        let paced = SessionContext::new_with_state(state);
        let plan = paced
            .sql(sql)
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical");
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        assert!(shown.contains("PacedExec"), "{shown}");
        let count = |ctx: SessionContext| async move {
            let batches = ctx
                .sql(sql)
                .await
                .expect("plans")
                .collect()
                .await
                .expect("runs");
            arrow::util::pretty::pretty_format_batches(&batches)
                .expect("formats")
                .to_string()
        };
        assert_eq!(count(paced).await, count(plain).await);
    }
}
