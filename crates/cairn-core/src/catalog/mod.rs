//! Named checkpoints: the session's default schema, extended so that a
//! name bound in the checkpoint dir resolves to its checkpoint (in this
//! process or any later one pointed at the same dir), and what can be done
//! with names: checkpoint a DataFrame under one, list, refresh, explain,
//! drop, vacuum, recompute a damaged one.

mod chain;
mod named;
mod recover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DfResult;

pub use self::chain::ChainLink;
pub use self::named::{CheckpointInfo, Materialize, TableKind};
use crate::error::{Error, Result};
use crate::exec::{CheckpointTable, Materialized};
pub use crate::plan::LazyCheckpointTable;
use crate::store::lifecycle::Removals;
use crate::store::{CheckpointStore, SessionStores};

/// The default schema plus the names bound in the current checkpoint dir.
/// Tables registered in the session come first.
#[derive(Debug)]
pub(crate) struct CheckpointSchema {
    inner: Arc<dyn SchemaProvider>,
    stores: Arc<SessionStores>,
    /// The checkpoint each name opened in a dir points at, by (dir, name):
    /// a manifest is read once, and a version a name no longer points at
    /// is let go of.
    opened: Mutex<HashMap<(String, String), Arc<CheckpointTable>>>,
    /// Versions that names of this session pointed at before they were
    /// replaced: removed once nothing reads them and no name holds them.
    superseded: Mutex<Vec<(Arc<CheckpointStore>, String)>>,
    /// Their removals, running in the background off the statement's path.
    removing: Removals,
}

impl CheckpointSchema {
    pub(crate) fn new(inner: Arc<dyn SchemaProvider>, stores: Arc<SessionStores>) -> Self {
        Self {
            inner,
            stores,
            opened: Mutex::default(),
            superseded: Mutex::default(),
            removing: Removals::default(),
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
        let key = (store.url().to_string(), name.to_string());
        if let Some(t) = self.opened.lock().expect("catalog poisoned").get(&key)
            && t.id() == binding.id
        {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(manifest) = store.read_manifest(&binding.id).await? else {
            // Its data is gone; with its lineage kept it can be rebuilt.
            if store.lineage_record(&binding.id).await?.is_some() {
                return Err(Error::Corrupt {
                    id: binding.id.clone(),
                    file: store.location(&binding.id, crate::store::manifest::MANIFEST_FILE),
                    problem: format!(
                        "the data of checkpoint '{name}' is gone, its lineage is kept; SET \
                         cairn.checkpoint_on_corrupt = 'recompute' rebuilds it, REFRESH \
                         CHECKPOINT {name} recomputes it from its sources"
                    ),
                });
            }
            return Err(Error::Name(format!(
                "checkpoint '{name}' names {}, which is not committed in {}; \
                 drop it with DROP CHECKPOINT {name}",
                binding.id,
                store.url()
            )));
        };
        let table = Arc::new(CheckpointTable::new(Arc::clone(&store), manifest));
        let before = self
            .opened
            .lock()
            .expect("catalog poisoned")
            .insert(key, Arc::clone(&table));
        if let Some(before) = before {
            // The name was rebound (by a lazy checkpoint's first run).
            self.supersede(&store, before.id());
        }
        Ok(Some(table))
    }

    /// Keeps `table`, just written under `name` in `store`, as what the name
    /// opens while it points at it: later statements read that table, and
    /// the batches it holds (write-through), instead of reading its manifest
    /// and decoding its files again. Iterative SQL reads each step's result
    /// in the next step.
    pub(crate) fn remember(
        &self,
        store: &CheckpointStore,
        name: &str,
        table: &Arc<CheckpointTable>,
    ) {
        self.opened.lock().expect("catalog poisoned").insert(
            (store.url().to_string(), name.to_string()),
            Arc::clone(table),
        );
    }

    /// Lets go of an opened checkpoint, so that it can be removed.
    pub(crate) fn forget(&self, dir: &str, id: &str) {
        self.opened
            .lock()
            .expect("catalog poisoned")
            .retain(|(d, _), t| !(d == dir && t.id() == id));
    }

    /// `id` is a version a name of this session no longer points at: it
    /// goes once nothing reads it (see [`sweep`](Self::sweep)).
    pub(crate) fn supersede(&self, store: &Arc<CheckpointStore>, id: &str) {
        self.forget(store.url(), id);
        self.superseded
            .lock()
            .expect("catalog poisoned")
            .push((Arc::clone(store), id.to_string()));
    }

    /// Starts removing, in the background, the superseded versions that
    /// nothing reads and no name holds; the others are tried again next
    /// time. A removal that failed since the last sweep is its error.
    pub(crate) fn sweep(&self) -> Result<()> {
        let ended = self.removing.ended();
        let pending = std::mem::take(&mut *self.superseded.lock().expect("catalog poisoned"));
        let still_read = self.removing.start_unread(pending);
        self.superseded
            .lock()
            .expect("catalog poisoned")
            .extend(still_read);
        ended
    }

    /// Waits for the removals this session started; the first that failed
    /// is the error.
    pub(crate) async fn removals_done(&self) -> Result<()> {
        self.removing.all_done().await
    }

    /// The names of this session's tables and views and of the dir's
    /// checkpoints nearest to `name` (a misspelling of one of them), best
    /// first.
    pub(crate) async fn nearest_names(&self, name: &str) -> Vec<String> {
        let mut names = self.inner.table_names();
        if let Ok(bindings) = self.stores.current().bindings().await {
            names.extend(bindings.into_iter().map(|b| b.name));
        }
        nearest(name, names)
    }

    /// A lazy checkpoint of this session, once written, is read like any
    /// other: its plan (the lineage) is let go of, and the table takes the
    /// place of the lazy one.
    async fn settle(
        &self,
        name: &str,
        table: Arc<dyn TableProvider>,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(lazy) = table.downcast_ref::<LazyCheckpointTable>() else {
            return Ok(table);
        };
        let current = self.stores.current();
        match lazy.node().run().materialized() {
            Some(Materialized::Local(t)) => {
                self.inner.deregister_table(name)?;
                self.inner
                    .register_table(name.to_string(), Arc::clone(&t) as _)?;
                Ok(t)
            }
            // Bound to its name in the dir when it was written.
            Some(Materialized::Reliable(t))
                if lazy.node().dir() == Some(current.url()) && lazy.node().name() == Some(name) =>
            {
                if let Some(old) = lazy.replaces().filter(|old| *old != t.id()) {
                    self.supersede(&current, old);
                }
                self.inner.deregister_table(name)?;
                self.remember(&current, name, &t);
                Ok(self.named(name).await?.map_or(t as _, |t| t as _))
            }
            _ => Ok(table),
        }
    }
}

/// Of `names`, those within a few edits of `name` (ignoring case), nearest
/// first, at most three.
pub(crate) fn nearest(name: &str, names: Vec<String>) -> Vec<String> {
    use datafusion::common::utils::datafusion_strsim::levenshtein;
    let wanted = name.to_lowercase();
    let most = (wanted.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .map(|n| (levenshtein(&wanted, &n.to_lowercase()), n))
        .filter(|(d, _)| *d <= most)
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// ` Did you mean 'a'?`, or nothing.
pub(crate) fn did_you_mean(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("; did you mean '{one}'?"),
        many => {
            let quoted: Vec<String> = many.iter().map(|n| format!("'{n}'")).collect();
            format!("; did you mean one of {}?", quoted.join(", "))
        }
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
            return Ok(Some(self.settle(name, t).await?));
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
