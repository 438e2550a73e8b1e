//! Cairn's engine: a DataFusion session with a **checkpoint** operator that
//! materializes a sub-plan to Parquet on any object store and replaces it
//! with a scan of the written files, cutting the plan's lineage.
//!
//! ```no_run
//! use cairn_core::prelude::*;
//!
//! # async fn demo() -> cairn_core::Result<()> {
//! let ctx = CairnContext::builder().checkpoint_dir("/tmp/ckpt").build()?;
//! let df = ctx.sql("SELECT value AS x FROM range(1, 100000)").await?;
//! let df = df.checkpoint().await?; // written now; the plan is a scan
//! df.aggregate(vec![], vec![datafusion::functions_aggregate::expr_fn::sum(col("x"))])?
//!     .show()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Data flows one way, and the modules follow it:
//!
//! - settings ([`CairnOptions`]) and [`Error`] at the bottom;
//! - [`store`]: checkpoint dirs on any object store, their commit protocol,
//!   manifests, names and integrity checks (knows no plan);
//! - [`exec`]: the operators that write, keep and read checkpoints (names no
//!   logical plan);
//! - [`plan`]: the logical [`CheckpointNode`](plan::CheckpointNode), its
//!   fingerprint and lineage, optimizer rules and the extension planner;
//! - the catalog of named checkpoints, then on top [`CairnContext`], the
//!   [`CheckpointExt`] DataFrame extension and [`PeriodicCheckpointer`].

#![warn(missing_docs)]

mod catalog;
pub mod cluster;
mod config;
mod context;
mod dataframe;
mod error;
pub mod exec;
#[cfg(test)]
mod layers;
mod periodic;
pub mod plan;
pub mod store;

pub use catalog::{ChainLink, CheckpointInfo, LazyCheckpointTable, Materialize, TableKind};
pub use config::{
    AutoCheckpoint, CairnOptions, CommitMode, Lifetimes, OnCorrupt, ReuseOptions, S3Options,
    Secret, WriteOptions, compression_name, default_checkpoint_dir, parse_size,
};
pub use context::{CairnContext, CairnContextBuilder};
pub use dataframe::CheckpointExt;
pub use error::{Error, Result, damaged_checkpoint, from_cluster_task};
pub use exec::{CairnPhysicalCodec, CheckpointKind, PlanObserver, PlanWatch};
pub use periodic::PeriodicCheckpointer;
pub use plan::CairnLogicalCodec;

/// The DataFusion and Arrow this engine is built on: use these, so that a
/// program has one version of each.
pub use datafusion;
pub use datafusion::arrow;
/// The plan encoding Cairn's codecs plug into (to wrap them, or be wrapped).
pub use datafusion_proto;
pub use object_store;

/// What most programs need.
pub mod prelude {
    pub use crate::{CairnContext, CheckpointExt};
    pub use datafusion::prelude::*;
}
