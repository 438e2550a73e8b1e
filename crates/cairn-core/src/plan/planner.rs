//! Physical planning of checkpoints: one `QueryPlanner` that registers
//! Cairn's extension planner, which plans each checkpoint node as a scan of
//! its checkpoint once written, or a `CheckpointExec` that writes it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::internal_err;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::materialize::{Planned, plan_checkpoint};
use super::node::CheckpointNode;
use crate::exec::CheckpointExec;

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
        self.planner
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// Plans a `CheckpointNode`: a scan once it is committed, otherwise a
/// `CheckpointExec` that writes it when the plan first runs.
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
        let Some(node) = node.as_any().downcast_ref::<CheckpointNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("Checkpoint needs one input");
        };
        let partitions = input.output_partitioning().partition_count();
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
