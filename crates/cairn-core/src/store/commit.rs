//! The commit protocol: data files made durable, then a manifest written
//! create-only, so that of several writers of one id exactly one commits,
//! and a crash at any moment leaves a whole checkpoint or none.

use std::path::Path as FsPath;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::CheckpointStore;
use super::manifest::{MANIFEST_FILE, Manifest};
use crate::error::{Error, Result};

/// How a commit ended.
#[derive(Debug)]
pub enum Commit {
    /// Our manifest is the checkpoint.
    Won,
    /// Another writer committed the same id first: its checkpoint stands,
    /// and ours was removed.
    Adopted(Box<Manifest>),
}

impl Commit {
    /// The checkpoint that stands.
    pub fn into_manifest(self, ours: Manifest) -> Manifest {
        match self {
            Commit::Won => ours,
            Commit::Adopted(theirs) => *theirs,
        }
    }
}

impl CheckpointStore {
    /// Makes a written data file survive a power cut (a no-op where a
    /// completed put is already durable).
    pub(crate) async fn sync_file(&self, id: &str, name: &str) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let path = root.join(id).join(name);
        blocking("an fsync task", move || fsync(&path)).await
    }

    /// Commits `manifest`, written by write attempt `attempt`, with a
    /// create-only write: of several writers of the same id exactly one
    /// wins. A loser's files are removed and the winner's checkpoint is
    /// returned; a retried put that finds this attempt's own manifest (the
    /// first response was lost) is a win.
    #[tracing::instrument(level = "debug", skip_all, fields(id = %manifest.id))]
    pub(crate) async fn commit(&self, manifest: &Manifest, attempt: &str) -> Result<Commit> {
        let created = self.put_manifest(manifest, attempt).await?;
        if created {
            return Ok(Commit::Won);
        }
        let id = &manifest.id;
        let committed = self.read_manifest_now(id).await?;
        if let Some(m) = &committed
            && !m.files.is_empty()
            && m.files.iter().all(|f| f.path.starts_with(attempt))
        {
            return Ok(Commit::Won);
        }
        self.remove_attempt(id, attempt).await;
        tracing::info!(
            id,
            "another writer committed this checkpoint first; using theirs"
        );
        match committed {
            Some(m) => Ok(Commit::Adopted(Box::new(m))),
            None => Err(Error::Corrupt {
                id: id.clone(),
                file: self.location(id, MANIFEST_FILE),
                problem: "another writer committed it, but its manifest cannot be found".into(),
            }),
        }
    }

    /// Writes the manifest only if none exists; false if one did. On local
    /// disks the data files are durable already; their directory entries
    /// are made durable here, at the same time as the manifest's private
    /// copy, before the manifest is linked to its name.
    async fn put_manifest(&self, manifest: &Manifest, attempt: &str) -> Result<bool> {
        let json = manifest.to_json();
        if let Some(root) = self.local_root.clone() {
            let dir = root.join(&manifest.id);
            let tmp = dir.join(format!("{attempt}.manifest.tmp"));
            // An empty result has no data files, hence no directory yet.
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
            // One round of fsyncs, in parallel: the files' directory, the
            // checkpoint dir that holds it, and the manifest's private copy.
            let (id_dir, parent, private) = (dir.clone(), root.clone(), tmp.clone());
            let (a, b, c) = tokio::join!(
                blocking("a commit task", move || fsync(&id_dir)),
                blocking("a commit task", move || fsync(&parent)),
                blocking("a commit task", move || write_private(&private, &json)),
            );
            if let Err(e) = a.and(b).and(c) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            return blocking("a commit task", move || link_manifest(&dir, &tmp)).await;
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let path = Self::file_path(&manifest.id, MANIFEST_FILE);
        match self
            .store
            .put_opts(&path, PutPayload::from(json), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => Err(Error::NoAtomicCommit {
                dir: self.url.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes every file of a write attempt that did not commit, partial
    /// uploads included. Best effort: what stays is an orphan without a
    /// manifest, never read, and removed by `VACUUM CHECKPOINTS`.
    pub(crate) async fn remove_attempt(&self, id: &str, attempt: &str) {
        let prefix = Path::from(id);
        let listed: Vec<String> = match &self.local_root {
            // Listing a local store hides staging files of partial uploads.
            Some(root) => std::fs::read_dir(root.join(id))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            None => {
                use futures::StreamExt;
                self.store
                    .list(Some(&prefix))
                    .filter_map(|m| async move { m.ok() })
                    .filter_map(|m| async move { m.location.filename().map(str::to_string) })
                    .collect()
                    .await
            }
        };
        for name in listed.into_iter().filter(|n| n.starts_with(attempt)) {
            let result = match &self.local_root {
                Some(root) => {
                    std::fs::remove_file(root.join(id).join(&name)).map_err(|e| e.to_string())
                }
                None => self
                    .store
                    .delete(&Self::file_path(id, &name))
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(id, name, error, "could not remove an uncommitted file");
            }
        }
    }
}

/// Runs blocking file work `f` off the async threads; `what` names it if
/// its task fails.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("{what} failed: {e}")))?
}

pub(super) fn fsync(path: &FsPath) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("cannot fsync '{}'", path.display()), e))
}

/// Writes the manifest to a private file and makes it durable.
fn write_private(tmp: &FsPath, json: &[u8]) -> Result<()> {
    std::fs::write(tmp, json)
        .map_err(|e| Error::io(format!("cannot write '{}'", tmp.display()), e))?;
    fsync(tmp)
}

/// Links the durable private manifest `tmp` to its final name, then makes
/// the link durable: the link fails if the name exists, so the commit is
/// create-only and a reader never sees a partial manifest. False if the
/// name existed.
fn link_manifest(dir: &FsPath, tmp: &FsPath) -> Result<bool> {
    let target = dir.join(MANIFEST_FILE);
    let linked = std::fs::hard_link(tmp, &target);
    let _ = std::fs::remove_file(tmp);
    match linked {
        Ok(()) => {
            fsync(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(
            format!("cannot commit '{}'", target.display()),
            e,
        )),
    }
}

/// Replaces `target` with `bytes` atomically and durably: a private file,
/// fsynced, renamed over the target, then the directory fsynced.
pub(super) fn replace_local(
    dir: &FsPath,
    tmp: &FsPath,
    target: &FsPath,
    bytes: &[u8],
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
    std::fs::write(tmp, bytes)
        .map_err(|e| Error::io(format!("cannot write '{}'", tmp.display()), e))?;
    fsync(tmp)?;
    std::fs::rename(tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        Error::io(format!("cannot replace '{}'", target.display()), e)
    })?;
    fsync(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_commit_is_create_only() {
        let dir = tempfile::tempdir().unwrap();
        // What `put_manifest` does on a local disk, once per writer.
        let commit = |tmp: &str, json: &[u8]| {
            let tmp = dir.path().join(tmp);
            write_private(&tmp, json).unwrap();
            link_manifest(dir.path(), &tmp).unwrap()
        };
        let first = commit("a.tmp", b"{}");
        let second = commit("b.tmp", b"{\"x\":1}");
        assert!(first);
        assert!(!second);
        assert_eq!(
            std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap(),
            b"{}"
        );
        // The losers' private files are gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
