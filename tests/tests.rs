//! Cairn's integration tests, in one binary (see `[[test]]` in Cargo.toml).
//!
//! - `common`: contexts, counting functions and result comparison
//! - `roundtrip`: a checkpoint returns exactly the rows of its input
//! - `plans`: EXPLAIN shows the cut, exact statistics, the recorded order
//! - `codecs`: Cairn's plan parts through its codecs; bad bytes are errors
//! - `chains`: links of a chain rebuilt from their lineage, down to the sources
//! - `reuse`: computed once; lazily once; reused zero times; volatile never
//! - `auto`: checkpoints Cairn places itself: shared sub-plans, naive loops
//! - `reused_plans`: a loop's next step reuses its optimized plan, over the new checkpoints
//! - `atomicity`: SIGKILL at random moments never leaves a partial checkpoint
//! - `differential`: random queries agree with DuckDB and with themselves under CHECKPOINT
//! - `dirs`: bad checkpoint dirs and inputs give clear errors and lose nothing
//! - `projections`: DataFusion 55's stacked-projection bug stays fixed
//! - `join_filters`: a hash join's build-side filter drops probe rows at the scan
//! - `local`: local checkpoints, in memory and spilling under a memory limit
//! - `memory_limits`: queries under a memory limit finish (DataFusion 55's repartition deadlock)
//! - `full_disk`: storage that fills up mid-write commits nothing and loses nothing
//! - `integrity`: flipped bytes and truncated files are caught on read
//! - `regressions`: wrong answers the differential test found, pinned
//! - `resume`: a killed iterative job resumes from its last checkpoint
//! - `races`: concurrent writers of one checkpoint: one commit wins, both answer
//! - `lifecycle`: named, unnamed and orphaned checkpoints live as long as they should
//! - `s3`: the same on a real S3-compatible server, and secrets that never show
//! - `settings`: `cairn.*` through DataFusion's config; planning writes nothing

mod common;

mod atomicity;
mod auto;
mod chains;
mod codecs;
mod differential;
mod dirs;
mod full_disk;
mod integrity;
mod join_filters;
mod lifecycle;
mod local;
mod memory_limits;
mod plans;
mod projections;
mod races;
mod regressions;
mod resume;
mod reuse;
mod reused_plans;
mod roundtrip;
mod s3;
mod settings;
