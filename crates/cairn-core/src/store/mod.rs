//! The checkpoint store: checkpoint directories on any `object_store`, their
//! commit protocol and their integrity checks. It knows nothing of SQL.
//!
//! ```text
//! <checkpoint dir>/
//!   <id>/<attempt>-part-00000.parquet ...  data; names unique per write attempt
//!   <id>/_manifest.json                    written last, create-only: the commit
//! ```

pub mod integrity;
mod ipc_schema;
pub mod lifecycle;
pub mod manifest;
pub mod names;
pub mod s3;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::async_writer::AsyncFileWriter;
use datafusion::parquet::errors::ParquetError;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;
use url::Url;

use self::integrity::{BlockChecksums, Checksummer, DEFAULT_BLOCK_SIZE, VerifiedFile};
use self::manifest::{MANIFEST_FILE, Manifest};
use self::s3::S3Options;
use crate::error::{Error, Result};

/// Where checkpoints live, and how to write and read them there.
pub struct CheckpointStore {
    /// The dir as users name it: `file:///...`, `memory://...`, `s3://...`.
    url: String,
    /// The store, rooted at the checkpoint dir: paths are `<id>/<file>`.
    store: Arc<dyn ObjectStore>,
    /// Set for local disks, whose writes need an explicit fsync.
    local_root: Option<PathBuf>,
    /// Under which URL scans of this store find it in the runtime env.
    object_store_url: ObjectStoreUrl,
    /// Set once a remote dir took a create-only write.
    writable: tokio::sync::OnceCell<()>,
}

/// Shows the dir only: a remote store holds credentials.
impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How a commit ended.
#[derive(Debug)]
pub enum Commit {
    /// Our manifest is the checkpoint.
    Won,
    /// Another writer committed the same id first; its manifest stands.
    Lost,
}

/// Checkpoint bytes this process has written, for progress displays.
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Checkpoint bytes this process has written so far (all dirs).
pub fn checkpoint_bytes_written() -> u64 {
    BYTES_WRITTEN.load(Ordering::Relaxed)
}

/// Process-wide in-memory stores, so that `memory://x` names one store for
/// as long as the process lives.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

impl CheckpointStore {
    /// Opens (creating it where needed) the checkpoint dir `dir`: a URL
    /// (`file:///abs/path`, `memory://`, `memory://name`, `s3://bucket/prefix`
    /// with S3 settings from the environment) or a plain path.
    pub fn open(dir: &str) -> Result<Arc<Self>> {
        Self::open_with(dir, &S3Options::default())
    }

    /// [`open`](Self::open), with S3 settings for `s3://` dirs. Remote dirs
    /// are checked before the first checkpoint is written, see
    /// [`check_writable`](Self::check_writable).
    pub fn open_with(dir: &str, s3: &S3Options) -> Result<Arc<Self>> {
        let invalid = |reason: String| Error::InvalidCheckpointDir {
            dir: dir.to_string(),
            reason,
        };
        let dir = dir.trim();
        if dir.is_empty() {
            return Err(invalid("it is empty; give a path or a URL".into()));
        }
        if let Some((scheme, _)) = dir.split_once("://") {
            let url = Url::parse(dir).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
            return match scheme {
                "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|()| invalid("not an absolute local path".into()))?;
                    Self::open_local(&path)
                }
                "memory" => Ok(Self::open_memory(&url)),
                "s3" => {
                    let (bucket, prefix) = s3::bucket_and_prefix(&url)?;
                    let bucket_store = s3.store(&bucket)?;
                    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                        bucket_store
                    } else {
                        Arc::new(PrefixStore::new(bucket_store, prefix.as_str()))
                    };
                    let shown = format!("s3://{bucket}/{prefix}");
                    Ok(Self::new(
                        shown.trim_end_matches('/').to_string() + "/",
                        store,
                        None,
                    ))
                }
                "gs" | "az" | "abfss" | "http" | "https" => Err(invalid(format!(
                    "{scheme}:// checkpoint dirs are not supported yet; use a local path, \
                     memory:// or s3://"
                ))),
                other => Err(invalid(format!(
                    "unknown scheme '{other}://'; use a local path, file://, memory:// or s3://"
                ))),
            };
        }
        let path = expand_home(dir);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(format!("cannot resolve a relative path: {e}")))?
                .join(path)
        };
        Self::open_local(&path)
    }

    fn open_local(path: &FsPath) -> Result<Arc<Self>> {
        let shown = path.display().to_string();
        let not_writable = |e: std::io::Error| Error::CheckpointDirNotWritable {
            dir: shown.clone(),
            source: Box::new(e),
        };
        std::fs::create_dir_all(path).map_err(not_writable)?;
        let root = path.canonicalize().map_err(not_writable)?;
        if !root.is_dir() {
            return Err(Error::InvalidCheckpointDir {
                dir: shown,
                reason: "it is not a directory".into(),
            });
        }
        // Fail now, not after a long computation, if nothing can be written here.
        let probe = root.join(format!(".cairn-probe-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&probe, b"").map_err(not_writable)?;
        let _ = std::fs::remove_file(&probe);
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| {
            Error::CheckpointDirNotWritable {
                dir: shown.clone(),
                source: Box::new(e),
            }
        })?;
        let url = Url::from_directory_path(&root)
            .map(String::from)
            .unwrap_or_else(|()| shown);
        Ok(Self::new(url, Arc::new(store), Some(root)))
    }

    fn open_memory(url: &Url) -> Arc<Self> {
        let name = url.host_str().unwrap_or_default().to_string();
        let store = MEMORY_STORES
            .lock()
            .expect("memory store registry poisoned")
            .entry(name.clone())
            .or_insert_with(|| Arc::new(InMemory::new()))
            .clone();
        Self::new(format!("memory://{name}"), store, None)
    }

    /// A checkpoint dir on an object store built by the caller (S3 with
    /// custom settings, a store wrapped for tests). `url` names it in
    /// messages; paths in `store` are `<id>/<file>`. The store must support
    /// create-only puts (`PutMode::Create`), which the commit relies on.
    pub fn on_object_store(url: impl Into<String>, store: Arc<dyn ObjectStore>) -> Arc<Self> {
        Self::new(url.into(), store, None)
    }

    fn new(url: String, store: Arc<dyn ObjectStore>, local_root: Option<PathBuf>) -> Arc<Self> {
        let host = &blake3::hash(url.as_bytes()).to_hex()[..16];
        let object_store_url = ObjectStoreUrl::parse(format!("cairn-checkpoint://{host}"))
            .expect("a hex host always parses");
        Arc::new(Self {
            url,
            store,
            local_root,
            object_store_url,
            writable: tokio::sync::OnceCell::new(),
        })
    }

    /// Checks, once, that a remote dir takes writes and create-only puts,
    /// so that a missing bucket, refused credentials or an unreachable
    /// endpoint are found before anything is computed. Local dirs were
    /// checked when opened; memory needs no check.
    pub async fn check_writable(&self) -> Result<()> {
        if self.local_root.is_some() || self.url.starts_with("memory://") {
            return Ok(());
        }
        self.writable
            .get_or_try_init(|| self.probe())
            .await
            .map(|_| ())
    }

    async fn probe(&self) -> Result<()> {
        let path = Path::from(format!(".cairn-probe-{}", uuid::Uuid::new_v4().simple()));
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = || PutPayload::from_static(b"cairn probe");
        let outcome = match self.store.put_opts(&path, payload(), create()).await {
            Err(e) => Err(self.unusable(&e)),
            Ok(_) => match self.store.put_opts(&path, payload(), create()).await {
                Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
                    Err(Error::NoAtomicCommit {
                        dir: self.url.clone(),
                    })
                }
                Err(e) => Err(self.unusable(&e)),
            },
        };
        let _ = self.store.delete(&path).await;
        outcome
    }

    /// Says what a storage error means for using this dir, and what to do.
    fn unusable(&self, e: &object_store::Error) -> Error {
        let hint = match e {
            object_store::Error::NotFound { .. } => {
                "the bucket does not exist: create it or correct the URL"
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                "the credentials were refused: check cairn.s3.access_key_id and \
                 cairn.s3.secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            }
            _ => "check cairn.s3.endpoint (or AWS_ENDPOINT) and that the server is up",
        };
        Error::CheckpointDirUnusable {
            dir: self.url.clone(),
            problem: one_line(&e.to_string()),
            hint: hint.into(),
        }
    }

    /// The checkpoint dir as a URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The local directory, for checkpoint dirs on a local disk.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    pub(crate) fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn object_store_url(&self) -> &ObjectStoreUrl {
        &self.object_store_url
    }

    pub(crate) fn file_path(id: &str, name: &str) -> Path {
        Path::from(format!("{id}/{name}"))
    }

    /// Where a file of checkpoint `id` is, as users can find it.
    pub fn location(&self, id: &str, name: &str) -> String {
        format!("{}/{id}/{name}", self.url.trim_end_matches('/'))
    }

    /// Reads the manifest of `id`: `None` when it is not committed. The
    /// files it lists are checked to exist with their recorded sizes.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn read_manifest(&self, id: &str) -> Result<Option<Manifest>> {
        let Some(manifest) = self.read_manifest_only(id).await? else {
            return Ok(None);
        };
        // Collected first: a lazy iterator of futures is not `Send` for every lifetime.
        let checks: Vec<_> = manifest
            .files
            .iter()
            .map(|f| {
                let (store, path) = (Arc::clone(&self.store), Self::file_path(id, &f.path));
                let (expected, file) = (f.size, self.location(id, &f.path));
                let id = id.to_string();
                async move {
                    let corrupt = |problem: String| Error::Corrupt { id, file, problem };
                    match store.head(&path).await {
                        Ok(meta) if meta.size == expected => Ok(()),
                        Ok(meta) => Err(corrupt(format!(
                            "size is {} bytes, manifest says {expected}",
                            meta.size
                        ))),
                        Err(object_store::Error::NotFound { .. }) => {
                            Err(corrupt("the file is missing".into()))
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            })
            .collect();
        futures::stream::iter(checks)
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(Some(manifest))
    }

    /// Reads and parses the manifest of `id` without looking at its files:
    /// what recovering a damaged checkpoint still has to go on.
    pub async fn read_manifest_only(&self, id: &str) -> Result<Option<Manifest>> {
        let path = Self::file_path(id, MANIFEST_FILE);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Manifest::parse(id, &self.location(id, MANIFEST_FILE), &bytes).map(Some)
    }

    /// The files of a committed checkpoint with what a verifying reader needs.
    pub(crate) fn verified_files(&self, manifest: &Manifest) -> HashMap<Path, VerifiedFile> {
        manifest
            .files
            .iter()
            .map(|f| {
                let file = VerifiedFile {
                    checkpoint_id: manifest.id.clone(),
                    size: f.size,
                    checksums: f.checksums.clone(),
                };
                (Self::file_path(&manifest.id, &f.path), file)
            })
            .collect()
    }

    /// A writer for one data file of checkpoint `id`, checksumming as it goes.
    pub(crate) fn create_file(&self, id: &str, name: &str) -> ChecksummingWriter {
        let path = Self::file_path(id, name);
        ChecksummingWriter {
            inner: BufWriter::with_capacity(Arc::clone(&self.store), path, 16 * 1024 * 1024),
            sums: Checksummer::new(DEFAULT_BLOCK_SIZE),
            completing: false,
        }
    }

    /// Makes a written data file survive a power cut (a no-op where a
    /// completed put is already durable).
    pub(crate) async fn sync_file(&self, id: &str, name: &str) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let path = root.join(id).join(name);
        tokio::task::spawn_blocking(move || fsync(&path))
            .await
            .map_err(|e| Error::io("fsync task failed", std::io::Error::other(e)))?
    }

    /// Makes the entries of a checkpoint's files survive a power cut: its
    /// directory, and the checkpoint dir that holds that directory.
    pub(crate) async fn sync_dirs(&self, id: &str) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let dir = root.join(id);
        tokio::task::spawn_blocking(move || {
            if dir.exists() {
                fsync(&dir)?;
            }
            fsync(&root)
        })
        .await
        .map_err(|e| Error::io("fsync task failed", std::io::Error::other(e)))?
    }

    /// Commits `manifest` with a create-only write: of several writers of the
    /// same id exactly one wins.
    #[tracing::instrument(level = "debug", skip_all, fields(id = %manifest.id))]
    pub(crate) async fn commit(&self, manifest: &Manifest, attempt: &str) -> Result<Commit> {
        let json = manifest.to_json();
        if let Some(root) = self.local_root.clone() {
            let dir = root.join(&manifest.id);
            let tmp = dir.join(format!("{attempt}.manifest.tmp"));
            return tokio::task::spawn_blocking(move || commit_local(&dir, &tmp, &json))
                .await
                .map_err(|e| Error::io("commit task failed", std::io::Error::other(e)))?;
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
            Ok(_) => Ok(Commit::Won),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Commit::Lost),
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
        let listed: Vec<_> = match &self.local_root {
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

/// An object store error on one line: S3's XML error body becomes its code
/// and message.
fn one_line(error: &str) -> String {
    let tag = |name: &str| {
        let (_, rest) = error.split_once(&format!("<{name}>"))?;
        Some(rest.split_once(&format!("</{name}>"))?.0)
    };
    let text = match (error.split_once("<?xml"), tag("Code"), tag("Message")) {
        (Some((before, _)), Some(code), Some(message)) => format!("{before}{code}: {message}"),
        _ => error.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn expand_home(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(dir),
    }
}

fn fsync(path: &FsPath) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("cannot fsync '{}'", path.display()), e))
}

/// Writes the manifest to a private file, makes it durable, then links it to
/// its final name: the link fails if the name exists, so the commit is
/// create-only and a reader never sees a partial manifest.
fn commit_local(dir: &FsPath, tmp: &FsPath, json: &[u8]) -> Result<Commit> {
    let target = dir.join(MANIFEST_FILE);
    // An empty result has no data files, hence no directory yet.
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
    std::fs::write(tmp, json)
        .map_err(|e| Error::io(format!("cannot write '{}'", tmp.display()), e))?;
    fsync(tmp)?;
    let linked = std::fs::hard_link(tmp, &target);
    let _ = std::fs::remove_file(tmp);
    match linked {
        Ok(()) => {
            fsync(dir)?;
            Ok(Commit::Won)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Commit::Lost),
        Err(e) => Err(Error::io(
            format!("cannot commit '{}'", target.display()),
            e,
        )),
    }
}

/// Replaces `target` with `bytes` atomically and durably: a private file,
/// fsynced, renamed over the target, then the directory fsynced.
fn replace_local(dir: &FsPath, tmp: &FsPath, target: &FsPath, bytes: &[u8]) -> Result<()> {
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

/// Parquet's sink for a data file: forwards bytes to the store and keeps the
/// block checksums of everything written.
pub(crate) struct ChecksummingWriter {
    inner: BufWriter,
    sums: Checksummer,
    /// Set once completing began: the writer cannot be aborted after that
    /// (a failed completion has already dropped its upload).
    completing: bool,
}

impl ChecksummingWriter {
    pub(crate) fn len(&self) -> u64 {
        self.sums.len()
    }

    pub(crate) fn checksums(self) -> BlockChecksums {
        self.sums.finish()
    }

    /// Discards a partial upload, if one is still open.
    pub(crate) async fn abort(&mut self) {
        if !self.completing {
            let _ = self.inner.abort().await;
        }
    }
}

impl AsyncFileWriter for ChecksummingWriter {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, Result<(), ParquetError>> {
        self.sums.update(&bs);
        BYTES_WRITTEN.fetch_add(bs.len() as u64, Ordering::Relaxed);
        Box::pin(async move {
            self.inner
                .put(bs)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, Result<(), ParquetError>> {
        self.completing = true;
        Box::pin(async move {
            self.inner
                .shutdown()
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_fit_on_one_line() {
        let error = "Error performing PUT http://h/b/k in 5ms - Server returned non-2xx status \
                     code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code>\
                     <Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            one_line(error),
            "Error performing PUT http://h/b/k in 5ms - Server returned non-2xx status code: \
             404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
    }

    #[test]
    fn plain_paths_urls_and_memory_open() {
        let dir = tempfile::tempdir().unwrap();
        let plain = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        assert!(plain.url().starts_with("file:///"));
        let url = Url::from_directory_path(dir.path()).unwrap();
        let by_url = CheckpointStore::open(url.as_str()).unwrap();
        assert_eq!(plain.url(), by_url.url());
        assert_eq!(plain.object_store_url(), by_url.object_store_url());
        let mem = CheckpointStore::open("memory://unit").unwrap();
        assert_eq!(mem.url(), "memory://unit");
        assert!(mem.local_root().is_none());
    }

    #[test]
    fn bad_dirs_are_named_in_the_error() {
        let e = CheckpointStore::open("ftp://host/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'ftp://host/x'") && e.contains("unknown scheme"),
            "{e}"
        );
        let e = CheckpointStore::open("   ").unwrap_err().to_string();
        assert!(e.contains("it is empty"), "{e}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = CheckpointStore::open(file.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&file.path().display().to_string()), "{e}");
    }

    #[test]
    fn local_commit_is_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let first = commit_local(dir.path(), &dir.path().join("a.tmp"), b"{}").unwrap();
        let second = commit_local(dir.path(), &dir.path().join("b.tmp"), b"{\"x\":1}").unwrap();
        assert!(matches!(first, Commit::Won));
        assert!(matches!(second, Commit::Lost));
        assert_eq!(
            std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap(),
            b"{}"
        );
        // The losers' private files are gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
