//! How long checkpoints live: what this process still reads, when a
//! checkpoint was last used, and removing what nothing needs any more.
//!
//! Named checkpoints live until they are dropped. Unnamed ones live for a
//! retention period after their last use, so a killed job can still resume
//! from them. Directories without a manifest (a writer that died, or one
//! still writing) are removed only after a grace period. Nothing that a
//! table or DataFrame of this process reads is ever removed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::CheckpointStore;
use super::manifest::MANIFEST_FILE;
use super::names::NAMES_DIR;
use super::records::LINEAGE_DIR;
use crate::config::Lifetimes;
use crate::error::{Error, Result};

/// Marks a checkpoint as used: its modification time is the last use.
const USED_FILE: &str = "_last_used";

/// Readers of each checkpoint in this process, by (dir, id).
static LIVE: LazyLock<Mutex<HashMap<(String, String), usize>>> = LazyLock::new(Default::default);

/// A use is recorded at most this often per checkpoint and store: last
/// use only needs to be as precise as retention periods are long.
const RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// Held by everything that reads a checkpoint; while one exists the
/// checkpoint is never removed by this process.
#[derive(Debug)]
pub struct LiveRef {
    key: (String, String),
}

impl Drop for LiveRef {
    fn drop(&mut self) {
        let mut live = LIVE.lock().expect("live registry poisoned");
        if let Some(n) = live.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.key);
            }
        }
    }
}

/// What `VACUUM CHECKPOINTS` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// Ids of the unnamed checkpoints removed.
    pub checkpoints: Vec<String>,
    /// Ids of the directories without a manifest removed.
    pub orphans: Vec<String>,
    /// Files in a committed checkpoint's directory that its manifest does
    /// not list (`<id>/<name>`: a task of a cluster that died while it wrote,
    /// the loser of a race that could not clean up), removed.
    pub strays: Vec<String>,
    /// Bytes freed.
    pub bytes: u64,
}

/// The removal of an unused checkpoint, running in the background (see
/// [`CheckpointStore::delete_if_unused_later`]). Every clone sees the same
/// removal.
#[derive(Clone)]
pub struct Removal {
    id: String,
    dir: String,
    done: Shared<BoxFuture<'static, std::result::Result<bool, Arc<Error>>>>,
}

impl std::fmt::Debug for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Removal")
            .field("id", &self.id)
            .field("finished", &self.done.peek().is_some())
            .finish()
    }
}

impl Removal {
    /// How it ended (true: removed; false: something used it again), or
    /// `None` while it runs.
    pub fn outcome(&self) -> Option<Result<bool>> {
        self.done.peek().map(|o| self.owned(o.clone()))
    }

    /// Waits for it to end.
    pub async fn wait(&self) -> Result<bool> {
        self.owned(self.done.clone().await)
    }

    fn owned(&self, outcome: std::result::Result<bool, Arc<Error>>) -> Result<bool> {
        outcome.map_err(|source| Error::RemoveFailed {
            id: self.id.clone(),
            dir: self.dir.clone(),
            source,
        })
    }
}

/// The removals one owner (a loop, a session's catalog) started: their
/// failures are its errors, reported once.
#[derive(Debug, Default)]
pub struct Removals(Mutex<Vec<Removal>>);

impl Removals {
    /// Starts removing each of `candidates` that nothing in this process
    /// reads; returns the others, to be tried again later.
    pub fn start_unread(
        &self,
        candidates: Vec<(Arc<CheckpointStore>, String)>,
    ) -> Vec<(Arc<CheckpointStore>, String)> {
        let mut still_read = Vec::new();
        for (store, id) in candidates {
            if store.readers(&id) > 0 {
                still_read.push((store, id));
            } else {
                let removal = store.delete_if_unused_later(&id);
                self.0.lock().expect("removals poisoned").push(removal);
            }
        }
        still_read
    }

    /// Forgets the removals that ended; the first that failed is the error.
    pub fn ended(&self) -> Result<()> {
        let mut failure = None;
        self.0
            .lock()
            .expect("removals poisoned")
            .retain(|r| match r.outcome() {
                None => true,
                Some(Ok(_)) => false,
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                    false
                }
            });
        failure.map_or(Ok(()), Err)
    }

    /// Waits for every removal; the first that failed is the error.
    pub async fn all_done(&self) -> Result<()> {
        let running = std::mem::take(&mut *self.0.lock().expect("removals poisoned"));
        let mut failure = None;
        for removal in running {
            if let Err(e) = removal.wait().await {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

impl CheckpointStore {
    /// Removes checkpoint `id` in the background if it is unused when the
    /// removal runs, so that the loop or statement that superseded it goes
    /// on at once. Until it ends, a manifest read of `id` in this process
    /// waits for it (a checkpoint is never found and then removed under
    /// its reader). A crash part way leaves what a crash during
    /// [`delete_checkpoint`](Self::delete_checkpoint) leaves: no manifest,
    /// so nothing half-removed is ever read, and `VACUUM` takes the rest.
    pub fn delete_if_unused_later(self: &Arc<Self>, id: &str) -> Removal {
        let (store, owned) = (Arc::clone(self), id.to_string());
        let done = async move { store.delete_if_unused(&owned).await.map_err(Arc::new) }
            .boxed()
            .shared();
        // Spawned so that it runs whether anyone waits for it or not.
        tokio::spawn(done.clone());
        let removal = Removal {
            id: id.to_string(),
            dir: self.url().to_string(),
            done,
        };
        let mut removing = self.removing.lock().expect("removal registry poisoned");
        removing.retain(|_, r| r.outcome().is_none());
        removing.insert(id.to_string(), removal.clone());
        removal
    }

    /// Waits for a removal of `id` this process runs in the background.
    pub(crate) async fn removal_done(&self, id: &str) {
        let running = self
            .removing
            .lock()
            .expect("removal registry poisoned")
            .get(id)
            .cloned();
        if let Some(removal) = running {
            // Its failure is reported to whoever started it.
            let _ = removal.wait().await;
        }
    }

    /// Registers a reader of checkpoint `id`.
    pub fn hold(&self, id: &str) -> LiveRef {
        let key = (self.url().to_string(), id.to_string());
        *LIVE
            .lock()
            .expect("live registry poisoned")
            .entry(key.clone())
            .or_default() += 1;
        LiveRef { key }
    }

    /// How many readers of `id` this process has.
    pub fn readers(&self, id: &str) -> usize {
        let key = (self.url().to_string(), id.to_string());
        LIVE.lock()
            .expect("live registry poisoned")
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// Records that checkpoint `id` is being read now (at most once a
    /// minute per checkpoint and store: retention periods are long).
    pub async fn record_use(&self, id: &str) -> Result<()> {
        {
            let recorded = self.recorded.lock().expect("use registry poisoned");
            if recorded
                .get(id)
                .is_some_and(|at| at.elapsed() < RECORD_INTERVAL)
            {
                return Ok(());
            }
        }
        let path = Self::file_path(id, USED_FILE);
        self.object_store()
            .put(&path, PutPayload::default())
            .await?;
        self.recorded_use(id);
        Ok(())
    }

    /// Notes that checkpoint `id` was used now without writing it down: a
    /// checkpoint just committed has its manifest's time as its last use.
    pub(crate) fn recorded_use(&self, id: &str) {
        self.recorded
            .lock()
            .expect("use registry poisoned")
            .insert(id.to_string(), Instant::now());
    }

    /// Whether checkpoint `id` is unused: no name in `named` binds it and
    /// nothing in this process reads it.
    pub fn is_unused(&self, id: &str, named: &HashSet<String>) -> bool {
        !named.contains(id) && self.readers(id) == 0
    }

    /// Removes checkpoint `id` if it is unused (see
    /// [`is_unused`](Self::is_unused)); true if it was removed.
    pub async fn delete_if_unused(&self, id: &str) -> Result<bool> {
        let named: HashSet<String> = self.bindings().await?.into_iter().map(|b| b.id).collect();
        if !self.is_unused(id, &named) {
            return Ok(false);
        }
        self.delete_checkpoint(id).await?;
        Ok(true)
    }

    /// Ids of every checkpoint directory, committed or not.
    pub async fn checkpoint_dirs(&self) -> Result<Vec<String>> {
        let listed = self.object_store().list_with_delimiter(None).await?;
        let mut ids: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|name| name != NAMES_DIR && name != LINEAGE_DIR && !name.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes checkpoint `id`: the manifest first, so that it is never
    /// seen half-removed, then its files.
    /// Its lineage stays behind (see `records`), so that checkpoints
    /// computed from it can still be rebuilt.
    pub async fn delete_checkpoint(&self, id: &str) -> Result<u64> {
        self.commit_done(id).await;
        self.recorded
            .lock()
            .expect("use registry poisoned")
            .remove(id);
        if let Ok(Some(m)) = self.read_manifest_only(id).await
            && m.lineage.proto.is_some()
            && let Err(e) = self.keep_lineage(&m).await
        {
            tracing::warn!(id, error = %e, "could not keep the lineage of a removed checkpoint");
        }
        let manifest = Self::file_path(id, MANIFEST_FILE);
        match self.object_store().delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.delete_dir(id).await
    }

    async fn delete_dir(&self, id: &str) -> Result<u64> {
        let files: Vec<_> = self
            .object_store()
            .list(Some(&Path::from(id)))
            .try_collect()
            .await?;
        let mut bytes = 0;
        for f in files {
            bytes += f.size;
            match self.object_store().delete(&f.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(root) = self.local_root() {
            // Leftovers of killed writers (partial uploads) are not listed.
            let _ = std::fs::remove_dir_all(root.join(id));
        }
        Ok(bytes)
    }

    /// Removes unnamed checkpoints unused for longer than the retention and
    /// directories without a manifest older than the grace period, keeping
    /// every id in `named` and every id this process reads.
    pub async fn vacuum(
        &self,
        now: DateTime<Utc>,
        lifetimes: Lifetimes,
        named: &HashSet<String>,
    ) -> Result<VacuumReport> {
        let mut report = VacuumReport::default();
        for id in self.checkpoint_dirs().await? {
            let files: Vec<_> = self
                .object_store()
                .list(Some(&Path::from(id.as_str())))
                .try_collect()
                .await?;
            self.remove_strays(&id, &files, now, lifetimes, &mut report)
                .await?;
            if !self.is_unused(&id, named) {
                continue;
            }
            let newest = match self.local_root() {
                // Listing a local store hides partial uploads; ask the file system.
                Some(root) => newest_local(&root.join(&id)),
                None => files.iter().map(|f| f.last_modified).max(),
            };
            let committed = files
                .iter()
                .any(|f| f.location.filename() == Some(MANIFEST_FILE));
            let age = |t: Option<DateTime<Utc>>| {
                t.map(|t| (now - t).to_std().unwrap_or_default())
                    .unwrap_or(Duration::MAX)
            };
            if committed {
                let last_use = files
                    .iter()
                    .filter(|f| matches!(f.location.filename(), Some(MANIFEST_FILE | USED_FILE)))
                    .map(|f| f.last_modified)
                    .max();
                if age(last_use) > lifetimes.retention {
                    report.bytes += self.delete_checkpoint(&id).await?;
                    report.checkpoints.push(id);
                }
            } else if age(newest) > lifetimes.orphan_grace {
                report.bytes += self.delete_dir(&id).await?;
                report.orphans.push(id);
            }
        }
        // Lineage records no committed checkpoint reaches any more.
        let mut committed = HashMap::new();
        for id in self.checkpoint_dirs().await? {
            if let Ok(Some(m)) = self.read_manifest_only(&id).await {
                let reads = m.lineage.inputs.into_iter().map(|i| i.id).collect();
                committed.insert(id, reads);
            }
        }
        let records = self.remove_unreached_records(&committed).await?;
        if records > 0 {
            tracing::info!(records, "removed lineage records nothing reads");
        }
        Ok(report)
    }
}

impl CheckpointStore {
    /// Removes the files of committed checkpoint `id` (listed as `files`)
    /// that its manifest does not list and that are older than the grace
    /// period: nothing reads them.
    async fn remove_strays(
        &self,
        id: &str,
        files: &[object_store::ObjectMeta],
        now: DateTime<Utc>,
        lifetimes: Lifetimes,
        report: &mut VacuumReport,
    ) -> Result<()> {
        let Ok(Some(manifest)) = self.read_manifest_only(id).await else {
            return Ok(());
        };
        let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let kept = |name: &str| listed.contains(name) || name == MANIFEST_FILE || name == USED_FILE;
        let old =
            |t: DateTime<Utc>| (now - t).to_std().unwrap_or_default() > lifetimes.orphan_grace;
        if let Some(root) = self.local_root() {
            // Listing a local store hides the staging files of partial writes.
            let Ok(entries) = std::fs::read_dir(root.join(id)) else {
                return Ok(());
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().to_string();
                let Ok(meta) = entry.metadata() else { continue };
                let modified = meta.modified().map(DateTime::<Utc>::from).ok();
                if kept(&name) || !meta.is_file() || !modified.is_some_and(old) {
                    continue;
                }
                if std::fs::remove_file(entry.path()).is_ok() {
                    report.bytes += meta.len();
                    report.strays.push(format!("{id}/{name}"));
                }
            }
            return Ok(());
        }
        for f in files {
            let Some(name) = f.location.filename() else {
                continue;
            };
            if kept(name) || !old(f.last_modified) {
                continue;
            }
            match self.object_store().delete(&f.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    report.bytes += f.size;
                    report.strays.push(format!("{id}/{name}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The newest modification time in a local directory, itself included.
fn newest_local(dir: &std::path::Path) -> Option<DateTime<Utc>> {
    let mut times: Vec<std::time::SystemTime> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .collect();
    times.extend(std::fs::metadata(dir).ok().and_then(|m| m.modified().ok()));
    times.into_iter().max().map(DateTime::<Utc>::from)
}
