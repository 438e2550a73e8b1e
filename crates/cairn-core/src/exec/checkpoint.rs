//! `CheckpointExec`: writes a checkpoint the first time it runs, then reads
//! it back; and the observers that let a front end watch the plans Cairn
//! runs on its own.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock, Weak};

use datafusion::common::internal_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::materialized::{CheckpointRun, Materialized};
use super::task::{CheckpointKind, CheckpointTask, WriteMetrics};

/// Runs its input once, all partitions at once, into a checkpoint, then
/// serves the checkpoint. Nothing is returned before the checkpoint is
/// committed, so a reader that stops early (`LIMIT`) still leaves a whole
/// checkpoint behind, or none if the query is cancelled. Reports rows,
/// files and bytes written as metrics (`EXPLAIN ANALYZE`).
#[derive(Debug)]
pub struct CheckpointExec {
    input: Arc<dyn ExecutionPlan>,
    task: Arc<CheckpointTask>,
    run: Arc<CheckpointRun>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// The scan every partition reads once the checkpoint is written: one
    /// instance, since a Parquet scan hands out its files across partitions.
    scan: Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>,
}

impl CheckpointExec {
    /// Writes `input` into the checkpoint `task` describes, sharing `run`
    /// with every other plan of the same checkpoint.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        task: Arc<CheckpointTask>,
        run: Arc<CheckpointRun>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            task,
            run,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            scan: Arc::default(),
        }
    }

    /// What planning decided about this checkpoint.
    pub fn task(&self) -> &Arc<CheckpointTask> {
        &self.task
    }

    /// Writes the checkpoint now (or waits for the run in progress) without
    /// reading it back.
    pub async fn materialize(&self, context: Arc<TaskContext>) -> Result<Materialized> {
        self.run
            .materialize(
                Arc::clone(&self.task),
                Arc::clone(&self.input),
                context,
                WriteMetrics::new(&self.metrics),
            )
            .await
            .map_err(DataFusionError::Shared)
    }
}

impl DisplayAs for CheckpointExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CheckpointExec: kind={}, id={}",
            self.task.kind, self.task.fingerprint.id
        )?;
        if self.task.kind == CheckpointKind::Reliable {
            write!(f, ", dir={}", self.task.store.url())?;
        }
        Ok(())
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
            Arc::clone(&self.task),
            Arc::clone(&self.run),
        )))
    }

    /// A fresh scan for a re-execution: the old one has handed out its files.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            Arc::clone(&self.input),
            Arc::clone(&self.task),
            Arc::clone(&self.run),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = self.properties.partitioning.partition_count();
        let write = self.run.materialize(
            Arc::clone(&self.task),
            Arc::clone(&self.input),
            Arc::clone(&context),
            WriteMetrics::new(&self.metrics),
        );
        let shared_scan = Arc::clone(&self.scan);
        let schema = self.schema();
        let stream = futures::stream::once(async move {
            let materialized = write.await.map_err(DataFusionError::Shared)?;
            let scan = {
                let mut scan = shared_scan.lock().expect("checkpoint scan poisoned");
                match scan.as_ref() {
                    Some(s) => Arc::clone(s),
                    None => Arc::clone(
                        scan.insert(materialized.scan_exec_as(&schema, Some(partitions))?),
                    ),
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

/// Told about each plan Cairn runs on its own while a statement runs (an
/// eager checkpoint's write), so that a front end can show its progress
/// from the plan's metrics.
pub trait PlanObserver: Send + Sync {
    /// `plan` starts running now.
    fn running(&self, plan: &Arc<dyn ExecutionPlan>);
}

/// The observers of a session, kept in its config so every clone of the
/// session tells the same ones.
#[derive(Default)]
pub struct PlanObservers {
    observers: RwLock<Vec<Weak<dyn PlanObserver>>>,
}

impl fmt::Debug for PlanObservers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.observers.read().expect("observers poisoned").len();
        f.debug_struct("PlanObservers")
            .field("observers", &n)
            .finish()
    }
}

impl PlanObservers {
    /// Tells `observer` about every plan run from now on, for as long as
    /// the caller keeps it.
    pub fn add<O: PlanObserver + 'static>(&self, observer: &Arc<O>) {
        let weak: Weak<dyn PlanObserver> = Arc::downgrade(observer) as _;
        let mut observers = self.observers.write().expect("observers poisoned");
        observers.retain(|o| o.strong_count() > 0);
        observers.push(weak);
    }

    /// Tells every observer that `plan` starts running.
    pub fn running(&self, plan: &Arc<dyn ExecutionPlan>) {
        let observers = self.observers.read().expect("observers poisoned").clone();
        for observer in observers.iter().filter_map(Weak::upgrade) {
            observer.running(plan);
        }
    }
}

/// A [`PlanObserver`] that keeps the plans it is told about, and adds up
/// the checkpoint bytes they wrote (their `bytes_written` metrics).
#[derive(Default)]
pub struct PlanWatch {
    plans: Mutex<Vec<Arc<dyn ExecutionPlan>>>,
}

impl fmt::Debug for PlanWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanWatch")
            .field("plans", &self.plans().len())
            .finish()
    }
}

impl PlanWatch {
    /// The plans seen so far.
    pub fn plans(&self) -> Vec<Arc<dyn ExecutionPlan>> {
        self.plans.lock().expect("plan watch poisoned").clone()
    }

    /// Checkpoint bytes the plans seen have written so far.
    pub fn bytes_written(&self) -> usize {
        fn written(plan: &Arc<dyn ExecutionPlan>) -> usize {
            let own = plan
                .metrics()
                .and_then(|m| m.sum_by_name("bytes_written"))
                .map_or(0, |v| v.as_usize());
            own + plan.children().into_iter().map(written).sum::<usize>()
        }
        self.plans().iter().map(written).sum()
    }
}

impl PlanObserver for PlanWatch {
    fn running(&self, plan: &Arc<dyn ExecutionPlan>) {
        self.plans
            .lock()
            .expect("plan watch poisoned")
            .push(Arc::clone(plan));
    }
}
