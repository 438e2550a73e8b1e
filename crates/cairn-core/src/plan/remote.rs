//! Checkpoints written by other processes: a session whose queries run on a
//! cluster keeps a [`RemoteWrites`] in its config, and an eager checkpoint
//! (or a rebuild) hands its write to it instead of running it here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::logical_expr::LogicalPlan;

use crate::error::Result;
use crate::exec::{CheckpointTask, Materialized};

/// Writes a checkpoint somewhere else and commits it.
#[async_trait]
pub trait RemoteWriter: Send + Sync {
    /// Writes the checkpoint `task` describes, whose input is `input`, and
    /// returns it committed.
    async fn write(
        &self,
        session: &dyn Session,
        input: &LogicalPlan,
        task: &CheckpointTask,
    ) -> Result<Materialized>;
}

/// The writer of a session's checkpoints, when not this process (a config
/// extension).
#[derive(Clone)]
pub struct RemoteWrites(pub Arc<dyn RemoteWriter>);

impl std::fmt::Debug for RemoteWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteWrites")
    }
}
