//! Planning checkpoints: the logical [`CheckpointNode`], its fingerprint
//! and lineage, Cairn's optimizer rules, the checkpoints Cairn places
//! itself ([`ReuseSubplans`]), optimized plans reused by the next query of
//! the same shape ([`ReuseOptimizedPlans`]), and the extension planner that
//! turns each node into a scan of its committed checkpoint or a
//! [`CheckpointExec`](crate::exec::CheckpointExec) that writes it.
//!
//! Planning reads the store (is this checkpoint committed?) but never
//! writes to it: writing happens when a plan runs.

mod cluster;
mod codec;
mod dag;
mod decimal_arithmetic;
mod dense_aggregate;
mod filters;
mod fingerprint;
mod join_filters;
mod lazy;
mod lineage;
mod materialize;
mod node;
mod optimizer;
mod planner;
mod remote;
mod reuse;
mod reuse_plans;
mod scan;
mod series;
mod view;
mod write_job;

pub use cluster::ClusterPlanner;
pub use codec::CairnLogicalCodec;
pub use dag::tree_size;
pub use decimal_arithmetic::FastDecimalArithmetic;
pub use dense_aggregate::DenseGroupBy;
pub use filters::FilterConditions;
pub use fingerprint::{fingerprint, is_volatile, sources_changed};
pub use join_filters::JoinFiltersOnRows;
pub use lazy::LazyCheckpointTable;
pub use lineage::{decode_lineage, lineage_of};
pub use materialize::{checkpoint_now, rebuild_now};
pub use node::{Auto, AutoReason, CheckpointNode};
pub use optimizer::{
    ComposeStackedProjections, KeepFiltersAboveCheckpoints, NullAwareConstantNotIn, analyzer_rules,
    optimizer_rules,
};
pub use planner::{CairnQueryPlanner, CheckpointPlanner};
pub use remote::{RemoteWriter, RemoteWrites};
pub use reuse::{AutoCheckpoints, NarrowSharedReads, ReuseSubplans, SharedPlans, SharedScan};
pub use reuse_plans::{OptimizedPlan, OptimizedPlans, ReuseOptimizedPlans, take_optimized};
pub use scan::scan_plan;
pub use view::CairnView;
pub use write_job::CheckpointWrite;

pub(crate) use materialize::not_cairn;
pub(crate) use node::check_column_names;
