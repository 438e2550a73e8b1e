//! What a checkpoint is once written, and the run-once state that makes
//! every plan of one checkpoint node share one write.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

use super::local::{LocalCheckpoint, LocalCheckpointTable};
use super::scan::CheckpointTable;
use super::task::{CheckpointKind, CheckpointTask, WriteMetrics};
use super::write::write_checkpoint;
use crate::error::Result;

/// A checkpoint that has been written (or found already written).
#[derive(Debug, Clone)]
pub enum Materialized {
    /// Committed in a checkpoint dir.
    Reliable(Arc<CheckpointTable>),
    /// Kept in this process's memory.
    Local(Arc<LocalCheckpointTable>),
}

impl Materialized {
    /// The checkpoint's id.
    pub fn id(&self) -> &str {
        match self {
            Materialized::Reliable(t) => t.id(),
            Materialized::Local(t) => t.id(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> CheckpointKind {
        match self {
            Materialized::Reliable(_) => CheckpointKind::Reliable,
            Materialized::Local(_) => CheckpointKind::Local,
        }
    }

    /// Rows it holds.
    pub fn rows(&self) -> u64 {
        match self {
            Materialized::Reliable(t) => t.manifest().rows,
            Materialized::Local(t) => t.checkpoint().rows(),
        }
    }

    /// The checkpoint as a table.
    pub fn table(&self) -> Arc<dyn TableProvider> {
        match self {
            Materialized::Reliable(t) => Arc::clone(t) as _,
            Materialized::Local(t) => Arc::clone(t) as _,
        }
    }

    /// A scan of the whole checkpoint in `partitions` partitions, whose
    /// columns carry the names of `schema` (the input it replaces, whose
    /// names may repeat where the checkpoint's cannot).
    pub(crate) fn scan_exec_as(
        &self,
        schema: &SchemaRef,
        partitions: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let scan = match self {
            Materialized::Reliable(t) => t.scan_exec(None, None, None, partitions)?,
            Materialized::Local(t) => t.scan_exec(None, partitions)?,
        };
        let scanned = scan.schema();
        let same_names = scanned.fields().len() == schema.fields().len()
            && scanned
                .fields()
                .iter()
                .zip(schema.fields())
                .all(|(a, b)| a.name() == b.name());
        if same_names {
            return Ok(scan);
        }
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = scanned
            .fields()
            .iter()
            .zip(schema.fields())
            .enumerate()
            .map(|(i, (stored, wanted))| {
                (
                    Arc::new(Column::new(stored.name(), i)) as _,
                    wanted.name().clone(),
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}

type Write = BoxFuture<'static, Result<Materialized, Arc<DataFusionError>>>;
type SharedWrite = Shared<Write>;

/// The run-once state of one checkpoint node: every copy of the node (the
/// optimizer clones nodes freely) and every plan made from them share it,
/// so that a lazy checkpoint is written by the first action that runs it
/// and read by every later one.
#[derive(Default)]
pub struct CheckpointRun {
    done: Mutex<Option<Materialized>>,
    /// The run in progress. Weak, so that when every action waiting for it
    /// is cancelled the run is dropped and its writers stop.
    running: Mutex<Option<WeakShared<Write>>>,
    /// What planning estimated the input to hold, for the reads of a
    /// shared sub-plan planned before it runs (join order needs sizes).
    estimate: Mutex<Option<Arc<Statistics>>>,
}

impl fmt::Debug for CheckpointRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointRun")
            .field("done", &self.materialized().map(|m| m.id().to_string()))
            .finish()
    }
}

impl CheckpointRun {
    /// A checkpoint not yet written.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The checkpoint, once some action has written or found it.
    pub fn materialized(&self) -> Option<Materialized> {
        self.done.lock().expect("checkpoint state poisoned").clone()
    }

    /// What planning estimated the checkpoint's input to hold.
    pub fn estimate(&self) -> Option<Arc<Statistics>> {
        self.estimate
            .lock()
            .expect("checkpoint state poisoned")
            .clone()
    }

    /// Keeps planning's estimate of the input.
    pub(crate) fn set_estimate(&self, statistics: Arc<Statistics>) {
        *self.estimate.lock().expect("checkpoint state poisoned") = Some(statistics);
    }

    /// Records a committed checkpoint that planning found, so that later
    /// plans read it without looking again.
    pub(crate) fn found(&self, m: Materialized) {
        *self.done.lock().expect("checkpoint state poisoned") = Some(m);
    }

    /// Runs `input` (the physical plan of the checkpoint's input) once into
    /// the checkpoint `task` describes and keeps the result. Concurrent
    /// callers share one run; a failed run can be retried by a later action.
    pub(crate) fn materialize(
        self: &Arc<Self>,
        task: Arc<CheckpointTask>,
        input: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        metrics: WriteMetrics,
    ) -> SharedWrite {
        let mut running = self.running.lock().expect("checkpoint state poisoned");
        if let Some(run) = running.as_ref().and_then(WeakShared::upgrade) {
            return run;
        }
        // Checked under the `running` lock, which a finishing run holds while
        // it records its result: so a run is never started twice.
        if let Some(done) = self.materialized() {
            return futures::future::ready(Ok(done)).boxed().shared();
        }
        let state = Arc::clone(self);
        let run = async move {
            let result = run(&task, input, ctx, metrics).await;
            let mut running = state.running.lock().expect("checkpoint state poisoned");
            *running = None;
            let outcome = match result {
                Ok(m) => {
                    *state.done.lock().expect("checkpoint state poisoned") = Some(m.clone());
                    Ok(m)
                }
                Err(e) => Err(Arc::new(DataFusionError::from(e))),
            };
            drop(running);
            outcome
        }
        .boxed()
        .shared();
        *running = run.downgrade();
        run
    }
}

async fn run(
    task: &CheckpointTask,
    input: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    metrics: WriteMetrics,
) -> Result<Materialized> {
    let materialized = match task.kind {
        CheckpointKind::Reliable => {
            if task.replace_damaged {
                tracing::warn!(id = %task.fingerprint.id, "recomputing a damaged checkpoint");
                task.store.delete_checkpoint(&task.fingerprint.id).await?;
            }
            let (manifest, held) = write_checkpoint(task, input, ctx, &metrics).await?;
            let table = CheckpointTable::new(Arc::clone(&task.store), manifest);
            Materialized::Reliable(Arc::new(match held {
                Some(held) => table.holding(held),
                None => table,
            }))
        }
        CheckpointKind::Local => {
            let local = LocalCheckpoint::collect(task, input, ctx, &metrics).await?;
            Materialized::Local(Arc::new(LocalCheckpointTable::new(local)))
        }
    };
    if let (Some(name), Materialized::Reliable(t)) = (&task.name, &materialized) {
        task.store.bind_when_committed(name, t.id()).await?;
    }
    Ok(materialized)
}
