//! The stores a session uses: the live store behind `cairn.checkpoint_dir`
//! and the S3 settings behind `cairn.s3.*`, which parts of DataFusion that
//! never see a session's config (its catalog, its object store registry)
//! read here; and every other dir a plan names, opened once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::execution::config::SessionConfig;

use super::CheckpointStore;
use crate::config::S3Options;
use crate::error::Result;

/// The live side of a session's store settings, kept in its config (as an
/// extension) so that every clone of the session shares it. Only the
/// context that owns the session changes it, together with the settings.
#[derive(Debug)]
pub struct SessionStores {
    current: RwLock<Arc<CheckpointStore>>,
    s3: RwLock<S3Options>,
    /// Other dirs, by URL and the S3 settings they were opened with.
    opened: Mutex<HashMap<(String, S3Options), Arc<CheckpointStore>>>,
}

impl SessionStores {
    /// Stores of a session writing to `current`, reaching S3 with `s3`.
    pub fn new(current: Arc<CheckpointStore>, s3: S3Options) -> Self {
        Self {
            current: RwLock::new(current),
            s3: RwLock::new(s3),
            opened: Mutex::default(),
        }
    }

    /// The stores of the session whose config this is.
    pub fn of(config: &SessionConfig) -> Option<Arc<SessionStores>> {
        config.get_extension::<SessionStores>()
    }

    /// Where reliable checkpoints go now.
    pub fn current(&self) -> Arc<CheckpointStore> {
        Arc::clone(&self.current.read().expect("session stores poisoned"))
    }

    /// How S3 is reached now.
    pub fn s3(&self) -> S3Options {
        self.s3.read().expect("session stores poisoned").clone()
    }

    /// Every store of the session: the current one first.
    pub(crate) fn all(&self) -> Vec<Arc<CheckpointStore>> {
        let mut all = vec![self.current()];
        all.extend(
            self.opened
                .lock()
                .expect("session stores poisoned")
                .values()
                .cloned(),
        );
        all
    }

    /// A background commit of this session that failed, not yet reported.
    pub(crate) fn commit_failure(&self) -> Option<crate::error::Error> {
        self.all().iter().find_map(|s| s.commit_failure())
    }

    /// Waits for every background commit of the session's stores.
    pub(crate) async fn commits_done(&self) {
        for store in self.all() {
            store.commits_done().await;
        }
    }

    /// Makes `store` the current dir and `s3` the S3 settings.
    pub(crate) fn replace(&self, store: Arc<CheckpointStore>, s3: S3Options) {
        // The dir left keeps its background commits in view.
        let before = self.current();
        self.opened
            .lock()
            .expect("session stores poisoned")
            .entry((before.url().to_string(), self.s3()))
            .or_insert(before);
        *self.current.write().expect("session stores poisoned") = store;
        *self.s3.write().expect("session stores poisoned") = s3;
    }

    /// The store of the dir `url`: the current one, or one opened once with
    /// the session's S3 settings.
    pub fn open(&self, url: &str) -> Result<Arc<CheckpointStore>> {
        let current = self.current();
        if current.url() == url {
            return Ok(current);
        }
        let key = (url.to_string(), self.s3());
        let mut opened = self.opened.lock().expect("session stores poisoned");
        if let Some(store) = opened.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store = CheckpointStore::open_with(url, &key.1)?;
        opened.insert(key, Arc::clone(&store));
        Ok(store)
    }
}
