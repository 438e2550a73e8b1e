//! Checkpoints for loops: every C-th iteration is checkpointed and only the
//! last N of those are kept, as Spark's `PeriodicCheckpointer` does, so that
//! an iterative job neither grows its plan nor fills the disk.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::dataframe::DataFrame;

use crate::dataframe::checkpoint_dataframe;
use crate::error::{Error, Result};
use crate::exec::{CheckpointKind, Materialized};
use crate::store::CheckpointStore;
use crate::store::lifecycle::Removals;

/// Checkpoints every `every`-th DataFrame given to [`update`](Self::update)
/// and removes older checkpoints it wrote, keeping the last `keep`.
///
/// A job killed mid-loop and run again with the same checkpoint dir
/// reuses the kept checkpoints: only the iterations after the newest one
/// are computed again.
///
/// ```no_run
/// # async fn demo(ctx: cairn_core::CairnContext) -> cairn_core::Result<()> {
/// use cairn_core::PeriodicCheckpointer;
/// let mut periodic = PeriodicCheckpointer::new(1, 2)?;
/// let mut df = ctx.sql("SELECT value AS x FROM range(0, 1000)").await?;
/// for _ in 0..10 {
///     df = periodic.update(df.select_exprs(&["x + 1 AS x"])?).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PeriodicCheckpointer {
    every: usize,
    keep: usize,
    updates: usize,
    /// Checkpoints written or reused, oldest first.
    kept: VecDeque<(Arc<CheckpointStore>, String)>,
    /// Past `keep` but still read by something in this process: removed
    /// by a later update once nothing reads them.
    expired: Vec<(Arc<CheckpointStore>, String)>,
    /// Removals running in the background, off the loop's path (about a
    /// millisecond an iteration on a local disk, a request per file on S3).
    removing: Removals,
}

impl PeriodicCheckpointer {
    /// Checkpoints every `every`-th update and keeps the last `keep`.
    pub fn new(every: usize, keep: usize) -> Result<Self> {
        if every == 0 || keep == 0 {
            return Err(Error::Config(format!(
                "a periodic checkpointer needs every >= 1 and keep >= 1 (got every = {every}, \
                 keep = {keep})"
            )));
        }
        Ok(Self {
            every,
            keep,
            updates: 0,
            kept: VecDeque::new(),
            expired: Vec::new(),
            removing: Removals::default(),
        })
    }

    /// How many DataFrames were given to [`update`](Self::update).
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// The ids of the checkpoints kept now, oldest first.
    pub fn kept(&self) -> Vec<String> {
        self.kept.iter().map(|(_, id)| id.clone()).collect()
    }

    /// The next iteration's DataFrame: `df` itself, or on every `every`-th
    /// call a scan of its reliable checkpoint (found or written now).
    /// Checkpoints past `keep` are removed in the background; a removal
    /// that failed fails the next update (or [`finish`](Self::finish)).
    pub async fn update(&mut self, df: DataFrame) -> Result<DataFrame> {
        self.removing.ended()?;
        self.updates += 1;
        if !self.updates.is_multiple_of(self.every) {
            return Ok(df);
        }
        let (scan, materialized) = checkpoint_dataframe(df, CheckpointKind::Reliable).await?;
        if let Materialized::Reliable(table) = &materialized {
            let entry = (Arc::clone(table.store()), table.id().to_string());
            let known = self
                .kept
                .iter()
                .any(|(s, i)| s.url() == entry.0.url() && *i == entry.1);
            if !known {
                self.kept.push_back(entry);
            }
        }
        // The input's plan reads the previous checkpoint: let go of it
        // first, so that a checkpoint past `keep` can go now.
        drop(materialized);
        while self.kept.len() > self.keep {
            let old = self.kept.pop_front().expect("longer than keep >= 1");
            self.expired.push(old);
        }
        self.remove_expired();
        Ok(scan)
    }

    /// Waits for the removals still running and reports the first that
    /// failed: after it, the dir holds the kept checkpoints and those
    /// something in this process still reads.
    pub async fn finish(&mut self) -> Result<()> {
        self.removing.all_done().await
    }

    /// Starts removing expired checkpoints that nothing reads; a removal
    /// re-checks that no name holds the checkpoint and nothing reads it.
    fn remove_expired(&mut self) {
        self.expired = self
            .removing
            .start_unread(std::mem::take(&mut self.expired));
    }
}
