//! The checkpoint store: checkpoint directories on any `object_store`, their
//! commit protocol and their integrity checks. It knows nothing of plans or
//! SQL: it stores files, manifests and names.
//!
//! ```text
//! <checkpoint dir>/
//!   <id>/<attempt>-part-00000.parquet ...  data; names unique per write attempt
//!   <id>/_manifest.json                    written last, create-only: the commit
//!   _names/<encoded name>.json             name -> id
//! ```
//!
//! Each file of this folder does one job: `open` turns a dir URL into a
//! store, `files` writes data files, `commit` makes them durable and
//! commits the manifest, `manifest` reads it back, `integrity` checks what
//! is read, `pending` runs commits in the background, `names` binds
//! names, `lifecycle` decides what may be removed,
//! `sessions` keeps the stores a session uses, `records` keeps the lineage
//! of removed checkpoints, and `s3` reaches S3.

mod commit;
mod files;
pub mod integrity;
mod ipc_schema;
pub mod lifecycle;
pub mod manifest;
pub mod names;
mod open;
mod pending;
pub mod records;
pub mod s3;
mod sessions;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::ObjectStore;
use object_store::path::Path;

pub use self::commit::Commit;
pub use self::sessions::SessionStores;

/// Where checkpoints live, and how to write and read them there.
pub struct CheckpointStore {
    /// The dir as users name it: `file:///...`, `memory://...`, `s3://...`.
    url: String,
    /// The store, rooted at the checkpoint dir: paths are `<id>/<file>`.
    store: Arc<dyn ObjectStore>,
    /// Set for local disks, whose writes need an explicit fsync.
    local_root: Option<PathBuf>,
    /// Under which URL scans of this store find it (see [`CheckpointStore::find`]).
    object_store_url: ObjectStoreUrl,
    /// Set once a remote dir took a create-only write.
    writable: tokio::sync::OnceCell<()>,
    /// When this store last recorded a use of each checkpoint, by id.
    recorded: Mutex<HashMap<String, std::time::Instant>>,
    /// Checkpoints rebuilt in this process, by id: tables opened before
    /// know the damaged files, and read these instead.
    rebuilt: Mutex<HashMap<String, Arc<manifest::Manifest>>>,
    /// Removals running in the background, by id: a manifest read of one
    /// of these ids waits for it (see [`lifecycle::Removal`]).
    removing: Mutex<HashMap<String, lifecycle::Removal>>,
    /// Commits running in the background, by id (see [`pending`]).
    committing: Mutex<HashMap<String, pending::Pending>>,
    /// Background commits that failed, not yet reported to a statement.
    failed_commits: Mutex<Vec<crate::error::Error>>,
}

/// Shows the dir only: a remote store holds credentials.
impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The scheme under which scans name checkpoint stores.
pub const OBJECT_STORE_SCHEME: &str = "cairn-checkpoint";

/// Every store opened in this process, by the URL scans name it with, so
/// that an object store registry can hand it to a scan when it runs. Stores
/// of one URL reach the same objects the same way: any of them will do.
static OPENED: LazyLock<Mutex<HashMap<String, Vec<Weak<CheckpointStore>>>>> =
    LazyLock::new(Default::default);

/// Tells caller-built stores apart: two of them may share a URL and still
/// reach different objects.
static CALLER_BUILT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl CheckpointStore {
    /// A checkpoint dir on an object store built by the caller (S3 with
    /// custom settings, a store wrapped for tests). `url` names it in
    /// messages; paths in `store` are `<id>/<file>`. The store must support
    /// create-only puts (`PutMode::Create`), which the commit relies on.
    pub fn on_object_store(url: impl Into<String>, store: Arc<dyn ObjectStore>) -> Arc<Self> {
        let url = url.into();
        let n = CALLER_BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let identity = format!("caller-built {url} #{n}");
        Self::new(url, store, None, &identity)
    }

    /// `identity` tells stores of one URL apart when they reach it
    /// differently (other S3 credentials): each gets its own scan URL.
    fn new(
        url: String,
        store: Arc<dyn ObjectStore>,
        local_root: Option<PathBuf>,
        identity: &str,
    ) -> Arc<Self> {
        let host = &blake3::hash(identity.as_bytes()).to_hex()[..16];
        let object_store_url = ObjectStoreUrl::parse(format!("{OBJECT_STORE_SCHEME}://{host}"))
            .expect("a hex host always parses");
        let store = Arc::new(Self {
            url,
            store,
            local_root,
            object_store_url,
            writable: tokio::sync::OnceCell::new(),
            recorded: Mutex::default(),
            rebuilt: Mutex::default(),
            removing: Mutex::default(),
            committing: Mutex::default(),
            failed_commits: Mutex::default(),
        });
        let mut opened = OPENED.lock().expect("store registry poisoned");
        for stores in opened.values_mut() {
            stores.retain(|s| s.strong_count() > 0);
        }
        opened.retain(|_, stores| !stores.is_empty());
        opened
            .entry(store.object_store_url.as_str().to_string())
            .or_default()
            .push(Arc::downgrade(&store));
        store
    }

    /// The open store that scans name `url` (a `cairn-checkpoint://` URL).
    pub fn find(url: &url::Url) -> Option<Arc<Self>> {
        let key = ObjectStoreUrl::parse(&url[..url::Position::BeforePath]).ok()?;
        OPENED
            .lock()
            .expect("store registry poisoned")
            .get(key.as_str())?
            .iter()
            .find_map(Weak::upgrade)
    }

    /// Notes that checkpoint `manifest.id` was written again (rebuilt after
    /// damage): scans of it opened before read the new files.
    pub fn note_rebuilt(&self, manifest: &manifest::Manifest) {
        self.rebuilt
            .lock()
            .expect("store registry poisoned")
            .insert(manifest.id.clone(), Arc::new(manifest.clone()));
    }

    /// The manifest of `id` if it was rebuilt in this process.
    pub fn rebuilt(&self, id: &str) -> Option<Arc<manifest::Manifest>> {
        self.rebuilt
            .lock()
            .expect("store registry poisoned")
            .get(id)
            .cloned()
    }

    /// The checkpoint dir as a URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The local directory, for checkpoint dirs on a local disk.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// The object store, rooted at the checkpoint dir.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL under which scans of this store find it.
    pub fn object_store_url(&self) -> &ObjectStoreUrl {
        &self.object_store_url
    }

    /// The path of a file of checkpoint `id` inside the store.
    pub fn file_path(id: &str, name: &str) -> Path {
        Path::from(format!("{id}/{name}"))
    }

    /// Where a file of checkpoint `id` is, as users can find it.
    pub fn location(&self, id: &str, name: &str) -> String {
        format!("{}/{id}/{name}", self.url.trim_end_matches('/'))
    }
}
