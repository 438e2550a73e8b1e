//! The checkpoint's operators: writing a checkpoint ([`CheckpointExec`],
//! `write`), keeping one in memory (`local`), reading one back (`scan`),
//! and the run-once state every plan of one checkpoint shares
//! ([`CheckpointRun`]).
//!
//! Nothing here names a logical plan: planning (`crate::plan`) hands these
//! operators what it computed (the fingerprint, the lineage, the store).

mod checkpoint;
mod codec;
mod decimal_arithmetic;
mod dense_aggregate;
mod distributed;
mod held;
mod join_filter;
mod local;
mod materialized;
mod memory;
mod narrowing;
mod scan;
mod shared;
mod source;
mod task;
pub mod wire;
mod write;

pub use checkpoint::{CheckpointExec, PlanObserver, PlanObservers, PlanWatch};
pub use codec::CairnPhysicalCodec;
pub(crate) use codec::{checked, store_for};
pub use decimal_arithmetic::DecimalArithmeticExpr;
pub use dense_aggregate::DenseAggregateExec;
pub use distributed::{
    PartitionWriteExec, check_columns, commit_reported, report_schema, reported_files,
};
pub use held::HeldScanExec;
pub use join_filter::JoinFilterExec;
pub use local::{LocalCheckpoint, LocalCheckpointExec, LocalCheckpointTable};
pub use materialized::{CheckpointRun, Materialized};
pub use memory::{KeepRepartitionInMemory, keeping_repartition_in_memory};
pub use narrowing::NarrowingConjunction;
pub use scan::CheckpointTable;
pub use shared::{SharedPlansExec, SharedScanExec};
pub use source::{CheckpointRef, CheckpointSource};
pub use task::{CheckpointKind, CheckpointTask, WriteMetrics, storable_schema};
