//! Sub-plans that one query reads more than once, computed once: a
//! [`SharedPlansExec`] at the top of the query runs each shared sub-plan
//! into a local checkpoint (innermost first), then runs the query, whose
//! [`SharedScanExec`]s read those checkpoints.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::internal_err;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::checkpoint::CheckpointExec;
use super::materialized::CheckpointRun;

/// Runs its first children (each a [`CheckpointExec`] of a shared
/// sub-plan, inner ones first) to completion, then serves its last child,
/// the query.
///
/// DataFusion looks for the order a query must keep (its `ORDER BY`) below
/// single-child operators only: the planner marks it inside the query (an
/// `OutputRequirementExec`) before this operator is put on top.
#[derive(Debug)]
pub struct SharedPlansExec {
    children: Vec<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
}

impl SharedPlansExec {
    /// The shared sub-plans, then the query.
    pub fn try_new(children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Self> {
        let Some(body) = children.last() else {
            return internal_err!("SharedPlansExec needs the query as its last child");
        };
        let properties = Arc::clone(body.properties());
        Ok(Self {
            children,
            properties,
        })
    }

    fn shared(&self) -> &[Arc<dyn ExecutionPlan>] {
        &self.children[..self.children.len() - 1]
    }
}

impl DisplayAs for SharedPlansExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SharedPlansExec: {} sub-plan(s) computed once, before the query",
            self.shared().len()
        )
    }
}

impl ExecutionPlan for SharedPlansExec {
    fn name(&self) -> &str {
        "SharedPlansExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.children.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        let mut keeps = vec![false; self.children.len()];
        keeps[self.children.len() - 1] = true;
        keeps
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.children.len()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::try_new(children)?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let shared: Vec<Arc<dyn ExecutionPlan>> = self.shared().to_vec();
        let body = Arc::clone(self.children.last().expect("checked when built"));
        let schema = self.schema();
        let stream = futures::stream::once(async move {
            // In order: a later sub-plan may read an earlier one.
            for plan in shared {
                let Some(checkpoint) = plan.downcast_ref::<CheckpointExec>() else {
                    return internal_err!(
                        "a shared sub-plan must run as a CheckpointExec, not {}",
                        plan.name()
                    );
                };
                checkpoint.materialize(Arc::clone(&context)).await?;
            }
            body.execute(partition, context)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        match input_stats.last() {
            Some(body) => Ok(Arc::clone(body)),
            None => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }

    fn child_stats_requests(
        &self,
        partition: Option<usize>,
    ) -> Vec<datafusion::physical_plan::statistics::ChildStats> {
        use datafusion::physical_plan::statistics::ChildStats;
        let mut requests = vec![ChildStats::Skip; self.children.len()];
        requests[self.children.len() - 1] = ChildStats::At(partition);
        requests
    }
}

/// Reads a shared sub-plan that [`SharedPlansExec`] computed before the
/// query started.
#[derive(Debug)]
pub struct SharedScanExec {
    run: Arc<CheckpointRun>,
    /// The short tag EXPLAIN shows on the sub-plan and its reads.
    tag: String,
    properties: Arc<PlanProperties>,
    /// One scan for every partition, made at the first read.
    scan: Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>,
}

impl SharedScanExec {
    /// A read of the sub-plan whose run is `run`, in `partitions` partitions.
    pub fn new(run: Arc<CheckpointRun>, tag: String, schema: SchemaRef, partitions: usize) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            run,
            tag,
            properties: Arc::new(properties),
            scan: Arc::default(),
        }
    }
}

impl DisplayAs for SharedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedScanExec: #{}", self.tag)
    }
}

impl ExecutionPlan for SharedScanExec {
    fn name(&self) -> &str {
        "SharedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("SharedScanExec has no children");
        }
        Ok(self)
    }

    /// A fresh scan for a re-execution.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            Arc::clone(&self.run),
            self.tag.clone(),
            self.schema(),
            self.properties.partitioning.partition_count(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(materialized) = self.run.materialized() else {
            return Err(DataFusionError::Internal(format!(
                "the shared sub-plan #{} was read before it was computed",
                self.tag
            )));
        };
        let partitions = self.properties.partitioning.partition_count();
        let scan = {
            let mut scan = self.scan.lock().expect("shared scan poisoned");
            match scan.as_ref() {
                Some(s) => Arc::clone(s),
                None => Arc::clone(
                    scan.insert(materialized.scan_exec_as(&self.schema(), Some(partitions))?),
                ),
            }
        };
        scan.execute(partition, context)
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        if args.partition().is_some() {
            return Ok(Arc::new(Statistics::new_unknown(&self.schema())));
        }
        Ok(Arc::new(match self.run.materialized() {
            Some(m) => Statistics::new_unknown(&self.schema())
                .with_num_rows(Precision::Exact(m.rows() as usize)),
            // What the planner estimated for the sub-plan, for join order.
            None => match self.run.estimate() {
                Some(estimate) => estimate.as_ref().clone(),
                None => Statistics::new_unknown(&self.schema()),
            },
        }))
    }
}
