//! Planning checkpoints: the logical [`CheckpointNode`], its fingerprint
//! and lineage, Cairn's optimizer rules, and the extension planner that
//! turns each node into a scan of its committed checkpoint or a
//! [`CheckpointExec`](crate::exec::CheckpointExec) that writes it.
//!
//! Planning reads the store (is this checkpoint committed?) but never
//! writes to it: writing happens when a plan runs.

mod codec;
mod fingerprint;
mod lazy;
mod lineage;
mod materialize;
mod node;
mod optimizer;
mod planner;
mod scan;

pub use codec::CairnLogicalCodec;
pub use fingerprint::{fingerprint, is_volatile, sources_changed};
pub use lazy::LazyCheckpointTable;
pub use lineage::{decode_lineage, lineage_of};
pub use materialize::{checkpoint_now, rebuild_now};
pub use node::CheckpointNode;
pub use optimizer::{
    ComposeStackedProjections, KeepFiltersAboveCheckpoints, NullAwareConstantNotIn, optimizer_rules,
};
pub use planner::{CairnQueryPlanner, CheckpointPlanner};
pub use scan::scan_plan;

pub(crate) use materialize::not_cairn;
pub(crate) use node::check_column_names;
