//! From a checkpoint node to what runs: find its committed checkpoint or
//! decide how to write it (shared by the extension planner and eager
//! checkpoints).

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;

use super::fingerprint::fingerprint;
use super::lineage::lineage_of;
use super::node::CheckpointNode;
use super::remote::RemoteWrites;
use crate::config::{CairnOptions, OnCorrupt};
use crate::error::{Error, Result, damaged_checkpoint};
use crate::exec::{
    CheckpointExec, CheckpointKind, CheckpointRun, CheckpointTable, CheckpointTask, Materialized,
    PlanObservers,
};
use crate::store::manifest::{Fingerprint, Lineage};
use crate::store::{CheckpointStore, SessionStores};

/// What a checkpoint node needs when a plan of it is made.
pub(crate) enum Planned {
    /// It is written already (by this node, or committed earlier).
    Found(Materialized),
    /// It is to be written so.
    Write(Arc<CheckpointTask>),
}

/// Finds the checkpoint of `node` (written by an earlier action, or
/// committed with the same id in its dir), or says how to write it.
/// Reads the store, never writes it.
pub(crate) async fn plan_checkpoint(
    node: &CheckpointNode,
    session: &dyn Session,
) -> Result<Planned> {
    if let Some(m) = node.run().materialized() {
        return Ok(Planned::Found(m));
    }
    let config = session.config();
    let (Some(options), Some(stores)) = (CairnOptions::of(config), SessionStores::of(config))
    else {
        return Err(not_cairn());
    };
    let store = match node.dir() {
        Some(url) => stores.open(url)?,
        None => stores.current(),
    };
    let fingerprint = if node.auto().is_some() && node.kind() == CheckpointKind::Local {
        // Placed by Cairn for this session only, and found by its node:
        // no id to derive (and no sources to list).
        Fingerprint::unique(Vec::new())
    } else {
        fingerprint(node.original(), session).await?
    };
    let mut replace_damaged = false;
    if node.kind() == CheckpointKind::Reliable && fingerprint.info.reusable {
        match store.read_manifest(&fingerprint.id).await {
            Ok(Some(manifest)) => {
                tracing::info!(id = %fingerprint.id, "reusing a committed checkpoint");
                let m = Materialized::Reliable(Arc::new(CheckpointTable::new(store, manifest)));
                node.run().found(m.clone());
                return Ok(Planned::Found(m));
            }
            Ok(None) => {}
            Err(e)
                if damaged_checkpoint(&e).is_some()
                    && options.on_corrupt == OnCorrupt::Recompute =>
            {
                // Removed and written again when the plan runs.
                replace_damaged = true;
            }
            Err(e) => return Err(e),
        }
    }
    let lineage = match node.kind() {
        CheckpointKind::Reliable => lineage_of(node.original()),
        CheckpointKind::Local => Lineage {
            text: node.original().display_indent().to_string(),
            proto: None,
            proto_unavailable: Some("local checkpoints keep their lineage as text".into()),
            inputs: Vec::new(),
        },
    };
    Ok(Planned::Write(Arc::new(CheckpointTask {
        kind: node.kind(),
        store,
        fingerprint,
        lineage,
        name: node.name().map(str::to_string),
        options: options.write,
        replace_damaged,
    })))
}

/// Finds the checkpoint of `node` or writes it now.
pub async fn checkpoint_now(state: &SessionState, node: &CheckpointNode) -> Result<Materialized> {
    let task = match plan_checkpoint(node, state).await? {
        Planned::Found(m) => return Ok(m),
        Planned::Write(task) => task,
    };
    if let Some(remote) = state.config().get_extension::<RemoteWrites>() {
        let m = remote.0.write(state, node.input(), &task).await?;
        node.run().found(m.clone());
        return Ok(m);
    }
    let input = state.create_physical_plan(node.input()).await?;
    let exec = Arc::new(CheckpointExec::new(input, task, Arc::clone(node.run())));
    if let Some(observers) = state.config().get_extension::<PlanObservers>() {
        observers.running(&(Arc::clone(&exec) as Arc<dyn ExecutionPlan>));
    }
    Ok(exec.materialize(state.task_ctx()).await?)
}

/// Writes `plan` now as the checkpoint `fingerprint` names, into `store`,
/// keeping `lineage`: how a damaged or removed link of a chain is rebuilt
/// under the id the links above it read.
pub async fn rebuild_now(
    state: &SessionState,
    plan: &LogicalPlan,
    store: Arc<CheckpointStore>,
    fingerprint: Fingerprint,
    lineage: Lineage,
) -> Result<Materialized> {
    let options = CairnOptions::of(state.config()).ok_or_else(not_cairn)?;
    let task = Arc::new(CheckpointTask {
        kind: CheckpointKind::Reliable,
        store,
        fingerprint,
        lineage,
        name: None,
        options: options.write,
        replace_damaged: false,
    });
    if let Some(remote) = state.config().get_extension::<RemoteWrites>() {
        let written = remote.0.write(state, plan, &task).await?;
        if let Materialized::Reliable(t) = &written {
            t.store().note_rebuilt(t.manifest());
        }
        return Ok(written);
    }
    let input = state.create_physical_plan(plan).await?;
    let exec = Arc::new(CheckpointExec::new(input, task, CheckpointRun::new()));
    if let Some(observers) = state.config().get_extension::<PlanObservers>() {
        observers.running(&(Arc::clone(&exec) as Arc<dyn ExecutionPlan>));
    }
    let written = exec.materialize(state.task_ctx()).await?;
    if let Materialized::Reliable(t) = &written {
        t.store().note_rebuilt(t.manifest());
    }
    Ok(written)
}

/// The error for a plan or DataFrame made outside a Cairn session.
pub(crate) fn not_cairn() -> Error {
    Error::Config(
        "this plan does not come from a CairnContext, so it has no checkpoint dir; create it \
         with CairnContext::sql or CairnContext::table"
            .into(),
    )
}
