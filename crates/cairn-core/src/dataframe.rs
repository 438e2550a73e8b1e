//! The checkpoint operator on DataFusion's `DataFrame`.

use async_trait::async_trait;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionState;

use crate::error::Result;
use crate::exec::{CheckpointKind, Materialized};
use crate::plan::{CheckpointNode, checkpoint_now, not_cairn, scan_plan};
use crate::store::SessionStores;

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
        Ok(checkpoint_dataframe(self, CheckpointKind::Reliable)
            .await?
            .0)
    }

    fn checkpoint_lazy(self) -> Result<DataFrame> {
        lazy(self, CheckpointKind::Reliable)
    }

    async fn local_checkpoint(self) -> Result<DataFrame> {
        Ok(checkpoint_dataframe(self, CheckpointKind::Local).await?.0)
    }

    fn local_checkpoint_lazy(self) -> Result<DataFrame> {
        lazy(self, CheckpointKind::Local)
    }
}

/// A checkpoint node over `df`'s plan, written to its session's current
/// checkpoint dir (reliable checkpoints).
fn node_of(df: DataFrame, kind: CheckpointKind) -> Result<(SessionState, CheckpointNode)> {
    let (state, plan) = df.into_parts();
    let stores = SessionStores::of(state.config()).ok_or_else(not_cairn)?;
    let dir = (kind == CheckpointKind::Reliable).then(|| stores.current().url().to_string());
    let node = CheckpointNode::try_new(plan, kind, None, dir)?;
    Ok((state, node))
}

fn lazy(df: DataFrame, kind: CheckpointKind) -> Result<DataFrame> {
    let (state, node) = node_of(df, kind)?;
    Ok(DataFrame::new(state, node.into_plan()))
}

/// Checkpoints `df` now (or finds its committed checkpoint): a DataFrame
/// that scans it, and the checkpoint.
pub(crate) async fn checkpoint_dataframe(
    df: DataFrame,
    kind: CheckpointKind,
) -> Result<(DataFrame, Materialized)> {
    let (state, node) = node_of(df, kind)?;
    let materialized = checkpoint_now(&state, &node).await?;
    let scan = scan_plan(&materialized, Some(node.input().schema()))?;
    Ok((DataFrame::new(state, scan), materialized))
}
