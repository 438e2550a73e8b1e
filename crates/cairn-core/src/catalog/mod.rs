//! Named checkpoints: the session's default schema, extended so that a
//! name bound in the checkpoint dir resolves to its checkpoint (in this
//! process or any later one pointed at the same dir), and what can be done
//! with names: checkpoint a DataFrame under one, list, refresh, explain,
//! drop, vacuum, recompute a damaged one.

mod lazy;
mod named;
mod recover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DfResult;

pub use self::lazy::LazyCheckpointTable;
pub use self::named::{CheckpointInfo, Materialize, TableKind};
use crate::error::{Error, Result};
use crate::exec::CheckpointTable;
use crate::store::SessionStores;

/// The default schema plus the names bound in the current checkpoint dir.
/// Tables registered in the session come first.
#[derive(Debug)]
pub(crate) struct CheckpointSchema {
    inner: Arc<dyn SchemaProvider>,
    stores: Arc<SessionStores>,
    /// Checkpoints opened by name, by (dir, id): a manifest is read once.
    opened: Mutex<HashMap<(String, String), Arc<CheckpointTable>>>,
}

impl CheckpointSchema {
    pub(crate) fn new(inner: Arc<dyn SchemaProvider>, stores: Arc<SessionStores>) -> Self {
        Self {
            inner,
            stores,
            opened: Mutex::default(),
        }
    }

    /// Tables registered in this session (not the names in the dir).
    pub(crate) fn session_tables(&self) -> &Arc<dyn SchemaProvider> {
        &self.inner
    }

    /// The checkpoint `name` is bound to in the current dir.
    pub(crate) async fn named(&self, name: &str) -> Result<Option<Arc<CheckpointTable>>> {
        let store = self.stores.current();
        let Some(binding) = store.lookup_name(name).await? else {
            return Ok(None);
        };
        let key = (store.url().to_string(), binding.id.clone());
        if let Some(t) = self.opened.lock().expect("catalog poisoned").get(&key) {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(manifest) = store.read_manifest(&binding.id).await? else {
            return Err(Error::Name(format!(
                "checkpoint '{name}' names {}, which is not committed in {}; \
                 drop it with DROP CHECKPOINT {name}",
                binding.id,
                store.url()
            )));
        };
        let table = Arc::new(CheckpointTable::new(store, manifest));
        self.opened
            .lock()
            .expect("catalog poisoned")
            .insert(key, Arc::clone(&table));
        Ok(Some(table))
    }

    /// Lets go of an opened checkpoint, so that it can be removed.
    pub(crate) fn forget(&self, dir: &str, id: &str) {
        self.opened
            .lock()
            .expect("catalog poisoned")
            .remove(&(dir.to_string(), id.to_string()));
    }
}

#[async_trait]
impl SchemaProvider for CheckpointSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.stores.current().bound_names_now());
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.inner.table(name).await? {
            return Ok(Some(t));
        }
        Ok(self.named(name).await?.map(|t| t as Arc<dyn TableProvider>))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            || self
                .stores
                .current()
                .bound_names_now()
                .iter()
                .any(|n| n == name)
    }
}
