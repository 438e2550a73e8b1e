//! The checkpoint operator on DataFusion's `DataFrame`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{Column, DFSchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, LogicalPlanBuilder};

use crate::context::CairnConfig;
use crate::error::{Error, Result};
use crate::node::{CheckpointKind, CheckpointNode, CheckpointSpec, Materialized};

/// Checkpoints for DataFusion DataFrames made by a [`CairnContext`](crate::CairnContext).
#[async_trait]
pub trait CheckpointExt: Sized {
    /// Writes the DataFrame's result to the checkpoint dir now and returns
    /// a DataFrame whose plan is only a scan of it. An equal plan over
    /// unchanged sources that was checkpointed before, by this process or
    /// another, is reused instead of recomputed.
    async fn checkpoint(self) -> Result<DataFrame>;

    /// Like [`checkpoint`](Self::checkpoint), but written by the first
    /// action that runs the returned DataFrame; later actions read it.
    fn checkpoint_lazy(self) -> Result<DataFrame>;

    /// Keeps the result in memory now (spilling to local disk past the
    /// memory limit). Cuts the lineage like a checkpoint; not durable.
    async fn local_checkpoint(self) -> Result<DataFrame>;

    /// [`local_checkpoint`](Self::local_checkpoint), at the first action.
    fn local_checkpoint_lazy(self) -> Result<DataFrame>;
}

#[async_trait]
impl CheckpointExt for DataFrame {
    async fn checkpoint(self) -> Result<DataFrame> {
        eager(self, CheckpointKind::Reliable).await
    }

    fn checkpoint_lazy(self) -> Result<DataFrame> {
        lazy(self, CheckpointKind::Reliable)
    }

    async fn local_checkpoint(self) -> Result<DataFrame> {
        eager(self, CheckpointKind::Local).await
    }

    fn local_checkpoint_lazy(self) -> Result<DataFrame> {
        lazy(self, CheckpointKind::Local)
    }
}

/// The session, plan and checkpoint spec for checkpointing `df`.
pub(crate) fn prepare(
    df: DataFrame,
    kind: CheckpointKind,
    name: Option<String>,
) -> Result<(SessionState, LogicalPlan, Arc<CheckpointSpec>)> {
    let Some(config) = df
        .task_ctx()
        .session_config()
        .get_extension::<CairnConfig>()
    else {
        return Err(Error::Unsupported(
            "this DataFrame does not come from a CairnContext; create it with \
             CairnContext::sql or CairnContext::table"
                .into(),
        ));
    };
    let (state, plan) = df.into_parts();
    crate::node::check_column_names(&plan)?;
    let spec = CheckpointSpec::named(
        kind,
        config.store(),
        config.write_options(),
        plan.clone(),
        name,
    );
    Ok((state, plan, spec))
}

fn lazy(df: DataFrame, kind: CheckpointKind) -> Result<DataFrame> {
    let (state, plan, spec) = prepare(df, kind, None)?;
    let node = CheckpointNode::new(plan, spec);
    Ok(DataFrame::new(
        state,
        LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        }),
    ))
}

async fn eager(df: DataFrame, kind: CheckpointKind) -> Result<DataFrame> {
    let (state, plan, spec) = prepare(df, kind, None)?;
    let materialized = materialize_now(&state, &plan, &spec).await?;
    Ok(DataFrame::new(
        state,
        scan_plan(&materialized, Some(plan.schema()))?,
    ))
}

/// Finds the committed checkpoint of `plan` or writes it now.
pub(crate) async fn materialize_now(
    state: &SessionState,
    plan: &LogicalPlan,
    spec: &Arc<CheckpointSpec>,
) -> Result<Materialized> {
    let (fingerprint, found) = spec.find(state).await?;
    if let Some(m) = found {
        return Ok(m);
    }
    let physical = state.create_physical_plan(plan).await?;
    Ok(spec
        .materialize(fingerprint, physical, state.task_ctx())
        .await
        .map_err(DataFusionError::Shared)?)
}

/// A scan of the checkpoint. Given the schema of the input it replaces,
/// it keeps that input's qualifiers, so code written against it still resolves.
pub(crate) fn scan_plan(m: &Materialized, input: Option<&DFSchemaRef>) -> Result<LogicalPlan> {
    let name = format!("checkpoint_{}", &m.id()[..m.id().len().min(12)]);
    let scan = LogicalPlanBuilder::scan(name, provider_as_source(m.table()), None)?;
    let Some(original) = input.filter(|s| s.iter().any(|(q, _)| q.is_some())) else {
        return Ok(scan.build()?);
    };
    let scanned = scan.schema().clone();
    let exprs: Vec<Expr> = original
        .iter()
        .zip(scanned.iter())
        .map(|((q, f), (sq, sf))| {
            Expr::Column(Column::new(sq.cloned(), sf.name())).alias_qualified(q.cloned(), f.name())
        })
        .collect();
    Ok(scan.project(exprs)?.build()?)
}
