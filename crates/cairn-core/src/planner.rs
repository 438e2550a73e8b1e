//! Physical planning of checkpoints: one `QueryPlanner` that registers
//! Cairn's extension planner, and `CheckpointExec`, which writes a lazy
//! checkpoint the first time it runs and then reads it back.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::internal_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};

use crate::fingerprint::Fingerprint;
use crate::node::{CheckpointNode, CheckpointSpec};

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
        let (fingerprint, found) = node.spec().find(session).await?;
        if let Some(m) = found {
            return m
                .scan_exec(session.runtime_env(), Some(partitions))
                .map(Some);
        }
        Ok(Some(Arc::new(CheckpointExec::new(
            Arc::clone(input),
            Arc::clone(node.spec()),
            fingerprint,
        ))))
    }
}

/// Runs its input once, all partitions at once, into a checkpoint, then
/// serves the checkpoint. Nothing is returned before the checkpoint is
/// committed, so a reader that stops early (`LIMIT`) still leaves a whole
/// checkpoint behind, or none if the query is cancelled.
#[derive(Debug)]
pub struct CheckpointExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<CheckpointSpec>,
    fingerprint: Fingerprint,
    properties: Arc<PlanProperties>,
    /// The scan every partition reads once the checkpoint is written: one
    /// instance, since a Parquet scan hands out its files across partitions.
    scan: Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>,
}

impl CheckpointExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        spec: Arc<CheckpointSpec>,
        fingerprint: Fingerprint,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            spec,
            fingerprint,
            properties: Arc::new(properties),
            scan: Arc::default(),
        }
    }
}

impl DisplayAs for CheckpointExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CheckpointExec: kind={}, id={}, dir={}",
            self.spec.kind(),
            self.fingerprint.id,
            self.spec.store().url()
        )
    }
}

impl ExecutionPlan for CheckpointExec {
    fn name(&self) -> &str {
        "CheckpointExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("CheckpointExec needs one child");
        };
        Ok(Arc::new(Self::new(
            input,
            Arc::clone(&self.spec),
            self.fingerprint.clone(),
        )))
    }

    /// A fresh scan for a re-execution: the old one has handed out its files.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            Arc::clone(&self.input),
            Arc::clone(&self.spec),
            self.fingerprint.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = self.properties.partitioning.partition_count();
        let write = self.spec.materialize(
            self.fingerprint.clone(),
            Arc::clone(&self.input),
            Arc::clone(&context),
        );
        let shared_scan = Arc::clone(&self.scan);
        let stream = futures::stream::once(async move {
            let materialized = write.await.map_err(DataFusionError::Shared)?;
            let scan =
                {
                    let mut scan = shared_scan.lock().expect("checkpoint scan poisoned");
                    match scan.as_ref() {
                        Some(s) => Arc::clone(s),
                        None => Arc::clone(scan.insert(
                            materialized.scan_exec(&context.runtime_env(), Some(partitions))?,
                        )),
                    }
                };
            scan.execute(partition, context)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream.boxed(),
        )))
    }
}
