//! The checkpoint's operators: writing a checkpoint ([`CheckpointExec`],
//! `write`), keeping one in memory (`local`), reading one back (`scan`),
//! and the run-once state every plan of one checkpoint shares
//! ([`CheckpointRun`]).
//!
//! Nothing here names a logical plan: planning (`crate::plan`) hands these
//! operators what it computed (the fingerprint, the lineage, the store).

mod checkpoint;
mod local;
mod materialized;
mod scan;
mod write;

pub use checkpoint::{CheckpointExec, CheckpointTask, PlanObserver, PlanObservers, PlanWatch};
pub use local::{LocalCheckpoint, LocalCheckpointExec, LocalCheckpointTable};
pub use materialized::{CheckpointKind, CheckpointRun, Materialized};
pub use scan::CheckpointTable;
pub use write::WriteMetrics;
