//! Commits that run in the background (`cairn.checkpoint_commit = 'async'`):
//! the checkpoint's files are written, the statement returns, and the
//! fsyncs, the manifest and the name binding follow while the next
//! statement runs. The commit protocol is the same, so a crash leaves whole
//! checkpoints or none; what was not committed is lost, as if the statement
//! had not run.
//!
//! Everything in this process that could observe a checkpoint before its
//! commit ends waits for it: a manifest read of its id, a name lookup or
//! listing (a binding may follow), a removal of its id. A failed commit is
//! kept until the session asks for it (the next statement that plans a
//! query, see [`CheckpointStore::commit_failure`]).

use std::sync::Arc;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryFutureExt};

use super::CheckpointStore;
use crate::error::{Error, Result};

/// A commit step running in the background; every clone waits for it.
pub(crate) type Pending = Shared<BoxFuture<'static, std::result::Result<(), Arc<Error>>>>;

impl CheckpointStore {
    /// Runs `step` of checkpoint `id`'s commit in the background, after the
    /// steps already running for `id` (skipped if one of them failed). A
    /// failure is kept for [`commit_failure`](Self::commit_failure).
    pub(crate) fn commit_later(self: &Arc<Self>, id: &str, step: BoxFuture<'static, Result<()>>) {
        let mut committing = self.committing.lock().expect("commit registry poisoned");
        committing.retain(|_, p| p.peek().is_none());
        let before = committing.get(id).cloned();
        let (store, owned) = (Arc::clone(self), id.to_string());
        let pending: Pending = async move {
            if let Some(before) = before {
                // Its failure is kept already; what follows it is moot.
                before.await?;
            }
            step.map_err(|e| {
                let failed = Arc::new(e);
                store
                    .failed_commits
                    .lock()
                    .expect("commit registry poisoned")
                    .push(Error::CommitFailed {
                        id: owned,
                        dir: store.url().to_string(),
                        source: Arc::clone(&failed),
                    });
                failed
            })
            .await
        }
        .boxed()
        .shared();
        // Spawned so that it runs whether anyone waits for it or not.
        tokio::spawn(pending.clone());
        committing.insert(id.to_string(), pending);
    }

    /// Whether a background commit of `id` runs.
    pub(crate) fn committing(&self, id: &str) -> bool {
        self.committing
            .lock()
            .expect("commit registry poisoned")
            .get(id)
            .is_some_and(|p| p.peek().is_none())
    }

    /// Waits for the background commit of `id`, if one runs.
    pub(crate) async fn commit_done(&self, id: &str) {
        let pending = self
            .committing
            .lock()
            .expect("commit registry poisoned")
            .get(id)
            .cloned();
        if let Some(pending) = pending {
            // A failure is reported by `commit_failure`.
            let _ = pending.await;
        }
    }

    /// Waits for every background commit of this store.
    pub(crate) async fn commits_done(&self) {
        let pending: Vec<Pending> = self
            .committing
            .lock()
            .expect("commit registry poisoned")
            .values()
            .cloned()
            .collect();
        for p in pending {
            let _ = p.await;
        }
    }

    /// The first background commit that failed and was not yet reported;
    /// reported once.
    pub(crate) fn commit_failure(&self) -> Option<Error> {
        let mut failed = self
            .failed_commits
            .lock()
            .expect("commit registry poisoned");
        (!failed.is_empty()).then(|| failed.remove(0))
    }
}
