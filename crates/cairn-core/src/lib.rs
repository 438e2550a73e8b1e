//! Cairn's engine: a DataFusion session with a **checkpoint** operator that
//! materializes a sub-plan to Parquet on any object store and replaces it
//! with a scan of the written files, cutting the plan's lineage.
//!
//! ```no_run
//! use cairn_core::{CairnContext, CheckpointExt};
//!
//! # async fn demo() -> cairn_core::Result<()> {
//! let ctx = CairnContext::builder().checkpoint_dir("/tmp/ckpt").build()?;
//! let df = ctx.sql("SELECT value AS x FROM range(1, 100000)").await?;
//! let df = df.checkpoint().await?; // written now; the plan is a scan
//! df.aggregate(vec![], vec![datafusion::functions_aggregate::expr_fn::sum(
//!     datafusion::prelude::col("x"),
//! )])?
//! .show()
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Data flows one way: SQL or DataFrame → logical plan (holding
//! [`CheckpointNode`]s) → [`CairnQueryPlanner`] (writes or finds each
//! checkpoint and plans a scan of it) → DataFusion execution.

mod catalog;
mod context;
mod dataframe;
mod error;
mod fingerprint;
mod lineage;
mod local;
mod named;
mod node;
mod optimizer;
mod periodic;
mod planner;
mod recover;
mod scan;
pub mod store;
mod write;

pub use catalog::LazyCheckpointTable;
pub use context::{CairnConfig, CairnContext, CairnContextBuilder, default_checkpoint_dir};
pub use dataframe::CheckpointExt;
pub use error::{Error, Result};
pub use fingerprint::{
    Fingerprint, SourceFile, SourceListing, fingerprint, is_volatile, sources_changed,
};
pub use lineage::lineage_of;
pub use local::{LocalCheckpointExec, LocalCheckpointTable};
pub use named::{CheckpointInfo, Materialize};
pub use node::{CheckpointKind, CheckpointNode, CheckpointSpec, Materialized};
pub use optimizer::{
    ComposeStackedProjections, KeepFiltersAboveCheckpoints, NullAwareConstantNotIn, optimizer_rules,
};
pub use periodic::PeriodicCheckpointer;
pub use planner::{CairnQueryPlanner, CheckpointExec, CheckpointPlanner};
pub use recover::{OnCorrupt, damaged_checkpoint};
pub use scan::CheckpointTable;
pub use store::s3::{S3Options, Secret};
pub use write::WriteOptions;

/// The DataFusion and Arrow this engine is built on: use these, so that a
/// program has one version of each.
pub use datafusion;
pub use datafusion::arrow;
pub use object_store;

/// What most programs need.
pub mod prelude {
    pub use crate::{CairnContext, CheckpointExt};
    pub use datafusion::prelude::*;
}
