//! `CheckpointNode`: the logical operator that cuts a plan's lineage.
//!
//! It is an opaque boundary: no filter, projection or limit is pushed
//! through it. What it materializes is shared by every copy of the node
//! (the optimizer clones nodes freely), so a lazy checkpoint is written by
//! the first action that runs it and read by every later one.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use datafusion::catalog::Session;
use datafusion::common::DFSchemaRef;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::ExecutionPlan;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

use crate::context::CairnConfig;
use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprint, fingerprint};
use crate::lineage::lineage_of;
use crate::local::{LocalCheckpoint, LocalCheckpointTable};
use crate::recover::{OnCorrupt, damaged_checkpoint};
use crate::scan::CheckpointTable;
use crate::store::CheckpointStore;
use crate::store::manifest::Manifest;
use crate::write::{WriteOptions, write_checkpoint};

/// Where a checkpoint is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckpointKind {
    /// Parquet in the checkpoint dir: survives crashes, reusable by later runs.
    Reliable,
    /// Arrow batches in process memory (spilling to local disk): not durable.
    Local,
}

impl fmt::Display for CheckpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckpointKind::Reliable => "reliable",
            CheckpointKind::Local => "local",
        })
    }
}

/// A checkpoint that has been written (or found already written).
#[derive(Debug, Clone)]
pub enum Materialized {
    Reliable(Arc<CheckpointTable>),
    Local(Arc<LocalCheckpointTable>),
}

impl Materialized {
    pub fn id(&self) -> &str {
        match self {
            Materialized::Reliable(t) => t.id(),
            Materialized::Local(t) => t.id(),
        }
    }

    pub fn rows(&self) -> u64 {
        match self {
            Materialized::Reliable(t) => t.manifest().rows,
            Materialized::Local(t) => t.checkpoint().rows(),
        }
    }

    pub fn table(&self) -> Arc<dyn TableProvider> {
        match self {
            Materialized::Reliable(t) => Arc::clone(t) as _,
            Materialized::Local(t) => Arc::clone(t) as _,
        }
    }

    /// A scan of the whole checkpoint in `partitions` partitions.
    pub(crate) fn scan_exec(
        &self,
        runtime: &RuntimeEnv,
        partitions: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        match self {
            Materialized::Reliable(t) => t.scan_exec(runtime, None, None, None, partitions),
            Materialized::Local(t) => t.scan_exec(None, partitions),
        }
    }
}

type Write = BoxFuture<'static, Result<Materialized, Arc<DataFusionError>>>;
type SharedWrite = Shared<Write>;

/// What every copy of one checkpoint node shares.
pub struct CheckpointSpec {
    kind: CheckpointKind,
    store: Arc<CheckpointStore>,
    options: WriteOptions,
    /// The input as the user gave it: fingerprinted before optimization,
    /// whose generated names differ from run to run.
    original: LogicalPlan,
    /// Bound to the checkpoint in its dir once it is committed.
    name: Option<String>,
    done: Mutex<Option<Materialized>>,
    /// The run in progress. Weak, so that when every action waiting for it
    /// is cancelled the run is dropped and its writers stop.
    running: Mutex<Option<WeakShared<Write>>>,
}

impl fmt::Debug for CheckpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSpec")
            .field("kind", &self.kind)
            .field("dir", &self.store.url())
            .field("done", &self.materialized().map(|m| m.id().to_string()))
            .finish()
    }
}

impl CheckpointSpec {
    pub fn new(
        kind: CheckpointKind,
        store: Arc<CheckpointStore>,
        options: WriteOptions,
        original: LogicalPlan,
    ) -> Arc<Self> {
        Self::named(kind, store, options, original, None)
    }

    /// A checkpoint that, once committed, is bound to `name` in its dir.
    pub fn named(
        kind: CheckpointKind,
        store: Arc<CheckpointStore>,
        options: WriteOptions,
        original: LogicalPlan,
        name: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            kind,
            store,
            options,
            original,
            name,
            done: Mutex::new(None),
            running: Mutex::new(None),
        })
    }

    /// The input as the user gave it.
    pub fn original(&self) -> &LogicalPlan {
        &self.original
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    pub fn store(&self) -> &Arc<CheckpointStore> {
        &self.store
    }

    /// The checkpoint, once some action has written it.
    pub fn materialized(&self) -> Option<Materialized> {
        self.done.lock().expect("checkpoint state poisoned").clone()
    }

    /// The id of the input and, for reliable checkpoints, the committed
    /// checkpoint with that id if there is one (written by this process or
    /// an earlier one).
    pub async fn find(&self, session: &dyn Session) -> Result<(Fingerprint, Option<Materialized>)> {
        if let Some(m) = self.materialized() {
            let fp = Fingerprint {
                id: m.id().to_string(),
                reusable: true,
                ..Default::default()
            };
            return Ok((fp, Some(m)));
        }
        let fp = fingerprint(&self.original, session).await?;
        if self.kind == CheckpointKind::Reliable
            && fp.reusable
            && let Some(manifest) = self.committed(&fp.id, session).await?
        {
            tracing::info!(id = %fp.id, "reusing a committed checkpoint");
            if let Err(e) = self.store.touch(&fp.id).await {
                tracing::warn!(id = %fp.id, error = %e, "could not record the use of a checkpoint");
            }
            let m = Materialized::Reliable(Arc::new(CheckpointTable::new(
                Arc::clone(&self.store),
                manifest,
            )));
            *self.done.lock().expect("checkpoint state poisoned") = Some(m.clone());
            return Ok((fp, Some(m)));
        }
        Ok((fp, None))
    }

    /// The manifest of the committed checkpoint `id`, if there is one. A
    /// damaged one is an error, or under `OnCorrupt::Recompute` removed, so
    /// that it is written again from this node's input.
    async fn committed(&self, id: &str, session: &dyn Session) -> Result<Option<Manifest>> {
        match self.store.read_manifest(id).await {
            Err(e) if damaged_checkpoint(&e).is_some() && recompute_damaged(session) => {
                tracing::warn!(id, error = %e, "recomputing a damaged checkpoint");
                self.store.delete_checkpoint(id).await?;
                Ok(None)
            }
            other => other,
        }
    }

    /// Runs `input` (the physical plan of this node's input) once and keeps
    /// its result. Concurrent callers share one run; a failed run can be
    /// retried by a later action.
    pub fn materialize(
        self: &Arc<Self>,
        fingerprint: Fingerprint,
        input: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
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
        let spec = Arc::clone(self);
        let run = async move {
            let result = spec.run(fingerprint, input, ctx).await;
            let mut running = spec.running.lock().expect("checkpoint state poisoned");
            *running = None;
            let outcome = match result {
                Ok(m) => {
                    *spec.done.lock().expect("checkpoint state poisoned") = Some(m.clone());
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

    async fn run(
        &self,
        fingerprint: Fingerprint,
        input: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
    ) -> Result<Materialized> {
        let materialized = match self.kind {
            CheckpointKind::Reliable => {
                let lineage = lineage_of(&self.original);
                let manifest =
                    write_checkpoint(&self.store, &fingerprint, lineage, input, ctx, self.options)
                        .await?;
                Materialized::Reliable(Arc::new(CheckpointTable::new(
                    Arc::clone(&self.store),
                    manifest,
                )))
            }
            CheckpointKind::Local => {
                let lineage = self.original.display_indent().to_string();
                let local = LocalCheckpoint::collect(&fingerprint, lineage, input, ctx).await?;
                Materialized::Local(Arc::new(LocalCheckpointTable::new(local)))
            }
        };
        if let (Some(name), Materialized::Reliable(t)) = (&self.name, &materialized) {
            self.store.bind_name(name, t.id()).await?;
        }
        Ok(materialized)
    }
}

/// The logical checkpoint operator.
#[derive(Debug, Clone)]
pub struct CheckpointNode {
    input: LogicalPlan,
    spec: Arc<CheckpointSpec>,
}

impl CheckpointNode {
    pub fn new(input: LogicalPlan, spec: Arc<CheckpointSpec>) -> Self {
        Self { input, spec }
    }

    /// A node over `input`, which must have distinct column names (Parquet
    /// matches columns by name).
    pub fn try_new(input: LogicalPlan, spec: Arc<CheckpointSpec>) -> Result<Self> {
        check_column_names(&input)?;
        Ok(Self::new(input, spec))
    }

    pub fn spec(&self) -> &Arc<CheckpointSpec> {
        &self.spec
    }

    pub fn input(&self) -> &LogicalPlan {
        &self.input
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.spec) as usize
    }
}

impl PartialEq for CheckpointNode {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity() && self.input == other.input
    }
}

impl Eq for CheckpointNode {}

impl Hash for CheckpointNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for CheckpointNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.identity().partial_cmp(&other.identity())
    }
}

impl UserDefinedLogicalNodeCore for CheckpointNode {
    fn name(&self) -> &str {
        "Checkpoint"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    // Stable text: it is part of the fingerprint of plans above this node.
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Checkpoint: kind={}, lazy", self.spec.kind)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("Checkpoint needs one input".into()))?;
        Ok(Self {
            input,
            spec: Arc::clone(&self.spec),
        })
    }
}

/// Parquet columns are matched by name, so a checkpoint needs distinct ones.
pub(crate) fn check_column_names(plan: &LogicalPlan) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for field in plan.schema().fields() {
        if !seen.insert(field.name()) {
            return Err(Error::Unsupported(format!(
                "column name '{0}' appears more than once; give each column of a checkpoint \
                 a distinct name (e.g. SELECT a.{0}, b.{0} AS b_{0} ...)",
                field.name()
            )));
        }
    }
    Ok(())
}

/// Whether the session's policy is to recompute damaged checkpoints.
fn recompute_damaged(session: &dyn Session) -> bool {
    session
        .config()
        .get_extension::<CairnConfig>()
        .is_some_and(|c| c.on_corrupt() == OnCorrupt::Recompute)
}
