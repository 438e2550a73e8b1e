//! Physical planning of checkpoints: one `QueryPlanner` that registers
//! Cairn's extension planner, which plans each checkpoint node as a scan of
//! its checkpoint once written, or a `CheckpointExec` that writes it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::internal_err;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::output_requirements::OutputRequirements;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::materialize::{Planned, plan_checkpoint};
use super::node::CheckpointNode;
use super::reuse::{SharedPlans, SharedScan};
use super::reuse_plans::take_optimized;
use super::write_job::CheckpointWrite;
use crate::exec::{CheckpointExec, PartitionWriteExec, SharedPlansExec, SharedScanExec, store_for};
use crate::store::SessionStores;

/// Cairn's query planner: DataFusion's, plus the checkpoint operator.
pub struct CairnQueryPlanner {
    planner: DefaultPhysicalPlanner,
}

impl fmt::Debug for CairnQueryPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CairnQueryPlanner")
    }
}

impl Default for CairnQueryPlanner {
    fn default() -> Self {
        Self {
            planner: DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
                CheckpointPlanner,
            )]),
        }
    }
}

#[async_trait]
impl QueryPlanner for CairnQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A checkpoint committed in the background that failed fails the
        // session's next statement, never silently.
        if let Some(failed) = SessionStores::of(session.config()).and_then(|s| s.commit_failure()) {
            return Err(failed.into());
        }
        let logical_plan = take_optimized(logical_plan);
        let plan = self
            .planner
            .create_physical_plan(&logical_plan, session)
            .await?;
        shared_plans_first(plan)
    }
}

/// DataFusion runs a query's uncorrelated scalar subqueries before the
/// query, in a `ScalarSubqueryExec` at the top of the plan; the sub-plans
/// the query shares with them must be computed before that, so the
/// `SharedPlansExec` goes above it.
fn shared_plans_first(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            let Some(subqueries) = node.downcast_ref::<ScalarSubqueryExec>() else {
                return Ok(Transformed::no(node));
            };
            let children = subqueries.children();
            let Some(shared) = children[0].downcast_ref::<SharedPlansExec>() else {
                return Ok(Transformed::no(node));
            };
            let mut shared_children: Vec<Arc<dyn ExecutionPlan>> =
                shared.children().into_iter().cloned().collect();
            let body = shared_children.pop().expect("a shared plan has its query");
            let mut below: Vec<Arc<dyn ExecutionPlan>> = vec![body];
            below.extend(children[1..].iter().map(|c| Arc::clone(c)));
            let query = Arc::clone(&node).replace_children(
                below,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?;
            shared_children.push(query);
            Ok(Transformed::yes(
                Arc::new(SharedPlansExec::try_new(shared_children)?) as Arc<dyn ExecutionPlan>,
            ))
        })?
        .data)
}

/// Plans a `CheckpointNode`: a scan once it is committed, otherwise a
/// `CheckpointExec` that writes it when the plan first runs; and the
/// sub-plans a query computes once (`SharedPlans`, `SharedScan`).
#[derive(Debug)]
pub struct CheckpointPlanner;

#[async_trait]
impl ExtensionPlanner for CheckpointPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if node.as_any().is::<SharedPlans>() {
            // The query's ORDER BY, marked where DataFusion will look for it.
            let mut children = physical_inputs.to_vec();
            let body = children.pop().expect("a shared plan has its query");
            let body =
                OutputRequirements::new_add_mode().optimize(body, session.config_options())?;
            children.push(body);
            return Ok(Some(Arc::new(SharedPlansExec::try_new(children)?)));
        }
        if let Some(scan) = node.as_any().downcast_ref::<SharedScan>() {
            return Ok(Some(Arc::new(SharedScanExec::new(
                Arc::clone(scan.run()),
                scan.tag().to_string(),
                Arc::clone(scan.schema().inner()),
                scan.target_partitions(),
            ))));
        }
        if let Some(write) = node.as_any().downcast_ref::<CheckpointWrite>() {
            let [input] = physical_inputs else {
                return internal_err!("CheckpointWrite needs one input");
            };
            let store = store_for(write.dir(), &session.task_ctx())?;
            let compression = write.compression().parse().map_err(|e| {
                DataFusionError::Plan(format!(
                    "unknown checkpoint codec '{}': {e}",
                    write.compression()
                ))
            })?;
            return Ok(Some(Arc::new(PartitionWriteExec::new(
                Arc::clone(input),
                store,
                write.id().to_string(),
                write.attempt().to_string(),
                compression,
            ))));
        }
        let Some(node) = node.as_any().downcast_ref::<CheckpointNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("Checkpoint needs one input");
        };
        let partitions = input.output_partitioning().partition_count();
        if node.auto().is_some() {
            // Its reads are planned before it runs: give them its size.
            let estimate = StatisticsContext::new().compute(input.as_ref(), &StatisticsArgs::new());
            if let Ok(estimate) = estimate {
                node.run().set_estimate(estimate);
            }
        }
        match plan_checkpoint(node, session).await? {
            Planned::Found(m) => m.scan_exec_as(&input.schema(), Some(partitions)).map(Some),
            Planned::Write(task) => Ok(Some(Arc::new(CheckpointExec::new(
                Arc::clone(input),
                task,
                Arc::clone(node.run()),
            )))),
        }
    }
}
