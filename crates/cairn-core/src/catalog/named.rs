//! Named checkpoints: checkpoint a DataFrame under a name, list, refresh,
//! explain, drop and vacuum. `cairn-sql` maps its statements onto these
//! (through [`CairnContext`](crate::CairnContext)).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::catalog::SchemaProvider;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableProvider;
use datafusion::execution::SessionState;

use super::chain::{LinkError, Rebuild};
use super::{CheckpointSchema, LazyCheckpointTable};
use crate::config::CairnOptions;
use crate::error::{Error, Result};
use crate::exec::{CheckpointKind, CheckpointTable, LocalCheckpointTable, Materialized};
use crate::plan::{
    CheckpointNode, check_column_names, checkpoint_now, lineage_of, sources_changed,
};
use crate::store::lifecycle::VacuumReport;
use crate::store::manifest::{Lineage, Manifest};
use crate::store::names::validate_name;

/// When a named checkpoint is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Materialize {
    /// Now.
    Eager,
    /// By the first query that reads it.
    Lazy,
}

impl fmt::Display for Materialize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Materialize::Eager => "eager",
            Materialize::Lazy => "lazy",
        })
    }
}

/// A row of `SHOW CHECKPOINTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// Its name.
    pub name: String,
    /// `None` until a lazy checkpoint is written.
    pub id: Option<String>,
    /// Reliable or local.
    pub kind: CheckpointKind,
    /// Rows, once written.
    pub rows: Option<u64>,
    /// Bytes of its files (reliable checkpoints).
    pub bytes: Option<u64>,
    /// When it was committed (reliable checkpoints).
    pub created: Option<DateTime<Utc>>,
    /// Whether its sources changed since it was written; `None` if that
    /// cannot be told (in-memory sources, local checkpoints).
    pub stale: Option<bool>,
    /// Where it is kept.
    pub location: String,
    /// Placed by Cairn where a lineage grew long (`cairn.auto_checkpoint`).
    pub auto: bool,
}

impl CheckpointInfo {
    pub(crate) fn reliable(name: &str, t: &CheckpointTable) -> Self {
        let m = t.manifest();
        Self {
            name: name.to_string(),
            id: Some(m.id.clone()),
            kind: CheckpointKind::Reliable,
            rows: Some(m.rows),
            bytes: Some(m.bytes),
            created: Some(m.created_at),
            stale: None,
            location: t.location(),
            auto: false,
        }
    }

    fn local(name: &str, t: &LocalCheckpointTable) -> Self {
        Self {
            name: name.to_string(),
            id: Some(t.id().to_string()),
            kind: CheckpointKind::Local,
            rows: Some(t.checkpoint().rows()),
            bytes: None,
            created: None,
            stale: None,
            location: "memory of this session".into(),
            auto: false,
        }
    }

    fn pending(name: &str, t: &LazyCheckpointTable, current_dir: &str) -> Self {
        let node = t.node();
        match node.run().materialized() {
            Some(Materialized::Reliable(r)) => Self::reliable(name, &r),
            Some(Materialized::Local(l)) => Self::local(name, &l),
            None => Self {
                name: name.to_string(),
                id: None,
                kind: node.kind(),
                rows: None,
                bytes: None,
                created: None,
                stale: None,
                location: match node.kind() {
                    CheckpointKind::Reliable => format!(
                        "{} (written by the first query)",
                        node.dir().unwrap_or(current_dir)
                    ),
                    CheckpointKind::Local => {
                        "memory of this session (written by the first query)".into()
                    }
                },
                auto: false,
            },
        }
    }
}

/// What a table of the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A committed reliable checkpoint.
    Checkpoint,
    /// A local checkpoint.
    LocalCheckpoint,
    /// A lazy checkpoint, written by the first query that reads it.
    LazyCheckpoint,
    /// A view.
    View,
    /// Any other table.
    Table,
}

impl TableKind {
    /// What `table` is.
    pub fn of(table: &dyn TableProvider) -> Self {
        if table.downcast_ref::<CheckpointTable>().is_some() {
            TableKind::Checkpoint
        } else if table.downcast_ref::<LocalCheckpointTable>().is_some() {
            TableKind::LocalCheckpoint
        } else if table.downcast_ref::<LazyCheckpointTable>().is_some() {
            TableKind::LazyCheckpoint
        } else if table.table_type() == datafusion::datasource::TableType::View {
            TableKind::View
        } else {
            TableKind::Table
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Checkpoint => "checkpoint",
            TableKind::LocalCheckpoint => "local checkpoint",
            TableKind::LazyCheckpoint => "lazy checkpoint",
            TableKind::View => "view",
            TableKind::Table => "table",
        })
    }
}

/// The statement that makes a checkpoint of this kind under a name that
/// is taken, for advice in errors.
fn replace_statement(kind: CheckpointKind, when: Materialize, name: &str) -> String {
    let local = if kind == CheckpointKind::Local {
        "LOCAL "
    } else {
        ""
    };
    let lazy = if when == Materialize::Lazy {
        "LAZY "
    } else {
        ""
    };
    format!("{local}CHECKPOINT OR REPLACE {lazy}TABLE {name} AS ...")
}

impl CheckpointSchema {
    /// See [`CairnContext::checkpoint_table`](crate::CairnContext::checkpoint_table).
    pub(crate) async fn checkpoint_table(
        &self,
        name: &str,
        df: DataFrame,
        kind: CheckpointKind,
        when: Materialize,
        replace: bool,
    ) -> Result<CheckpointInfo> {
        validate_name(name)?;
        check_column_names(df.logical_plan())?;
        if !replace && self.table_exist(name) {
            return Err(Error::Name(format!(
                "table '{name}' already exists; use {} to replace it",
                replace_statement(kind, when, name)
            )));
        }
        let store = self.stores.current();
        // A lazy reliable checkpoint binds its name when it is written.
        let bind_on_write = when == Materialize::Lazy && kind == CheckpointKind::Reliable;
        let dir = (kind == CheckpointKind::Reliable).then(|| store.url().to_string());
        let (state, plan) = df.into_parts();
        let node =
            CheckpointNode::try_new(plan, kind, bind_on_write.then(|| name.to_string()), dir)?;
        let session = self.session_tables();
        // What the name pointed at in the dir: replaced, it is let go of.
        let old = store.lookup_name(name).await?;
        let info = match when {
            Materialize::Eager => {
                let written = checkpoint_now(&state, &node).await?;
                // The input read the old version (iterative SQL): no more.
                drop((node, state));
                match written {
                    Materialized::Reliable(t) => {
                        store.bind_when_committed(name, t.id()).await?;
                        self.remember(&store, name, &t);
                        session.deregister_table(name)?;
                        CheckpointInfo::reliable(name, &t)
                    }
                    Materialized::Local(t) => {
                        store.unbind_name(name).await?;
                        session.deregister_table(name)?;
                        session.register_table(name.to_string(), Arc::clone(&t) as _)?;
                        CheckpointInfo::local(name, &t)
                    }
                }
            }
            Materialize::Lazy => {
                if kind == CheckpointKind::Local {
                    store.unbind_name(name).await?;
                }
                let replaces = old.as_ref().map(|o| o.id.clone());
                let table = Arc::new(LazyCheckpointTable::new(node, replaces));
                session.deregister_table(name)?;
                session.register_table(name.to_string(), Arc::clone(&table) as _)?;
                CheckpointInfo::pending(name, &table, store.url())
            }
        };
        if let Some(old) = old.filter(|o| info.id.as_deref() != Some(o.id.as_str())) {
            // A lazy reliable one keeps the old binding until it is written.
            if !(when == Materialize::Lazy && kind == CheckpointKind::Reliable) {
                self.supersede(&store, &old.id);
            }
        }
        self.sweep()?;
        Ok(info)
    }

    /// Every named checkpoint: those bound in the checkpoint dir and the
    /// local and lazy ones of this session, by name.
    pub(crate) async fn checkpoints(&self, state: &SessionState) -> Result<Vec<CheckpointInfo>> {
        let session = self.session_tables();
        let store = self.stores.current();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for name in session.table_names() {
            let Some(table) = session.table(&name).await? else {
                continue;
            };
            let info = if let Some(t) = table.downcast_ref::<LocalCheckpointTable>() {
                CheckpointInfo::local(&name, t)
            } else if let Some(t) = table.downcast_ref::<LazyCheckpointTable>() {
                CheckpointInfo::pending(&name, t, store.url())
            } else {
                continue;
            };
            seen.insert(name);
            out.push(info);
        }
        for binding in store.bindings().await? {
            if seen.contains(&binding.name) || session.table_exist(&binding.name) {
                continue; // shadowed by a table of this session
            }
            let info = match self.named(&binding.name).await {
                Ok(Some(t)) => {
                    let mut info = CheckpointInfo::reliable(&binding.name, &t);
                    info.stale = is_stale(t.manifest(), state).await;
                    info
                }
                Ok(None) => continue,
                Err(_) => CheckpointInfo {
                    name: binding.name.clone(),
                    id: Some(binding.id.clone()),
                    kind: CheckpointKind::Reliable,
                    rows: None,
                    bytes: None,
                    created: None,
                    stale: None,
                    location: format!("{} (missing or damaged)", store.location(&binding.id, "")),
                    auto: false,
                },
            };
            out.push(info);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// See [`CairnContext::refresh_checkpoint`](crate::CairnContext::refresh_checkpoint).
    pub(crate) async fn refresh_checkpoint(
        &self,
        state: &SessionState,
        name: &str,
    ) -> Result<CheckpointInfo> {
        if let Some(t) = self.session_tables().table(name).await? {
            if t.downcast_ref::<LocalCheckpointTable>().is_some() {
                return Err(Error::Lineage(format!(
                    "'{name}' is a local checkpoint, which keeps no lineage to recompute from; \
                     re-create it with LOCAL CHECKPOINT OR REPLACE TABLE {name} AS ..."
                )));
            }
            if let Some(t) = t.downcast_ref::<LazyCheckpointTable>() {
                return Ok(CheckpointInfo::pending(
                    name,
                    t,
                    self.stores.current().url(),
                ));
            }
        }
        // Recomputed from the sources as they are now, down the chain (its
        // own data may be gone: the lineage it left is enough).
        let store = self.stores.current();
        let Some(binding) = store.lookup_name(name).await? else {
            return Err(self.not_a_checkpoint(name).await);
        };
        let old = binding.id;
        self.forget(store.url(), &old);
        let fresh = match self
            .link(state, store.url(), &old, Rebuild::Refresh, false)
            .await
        {
            Ok(fresh) => fresh,
            Err(LinkError::Unusable(why)) => {
                return Err(Error::Lineage(format!(
                    "cannot refresh checkpoint '{name}': its lineage cannot be rebuilt ({why}); \
                     re-create it with CHECKPOINT OR REPLACE TABLE {name} AS ..."
                )));
            }
            Err(LinkError::Failed(e)) => return Err(e),
        };
        store.bind_name(name, fresh.id()).await?;
        self.remember(&store, name, &fresh);
        if fresh.id() != old {
            self.supersede(&store, &old);
        }
        let info = CheckpointInfo::reliable(name, &fresh);
        drop(fresh);
        self.sweep()?;
        Ok(info)
    }

    /// The chain below the named checkpoint, top first (see
    /// [`CairnContext::checkpoint_chain`](crate::CairnContext::checkpoint_chain)).
    pub(crate) async fn checkpoint_chain(
        &self,
        name: &str,
        depth: usize,
    ) -> Result<(Vec<super::ChainLink>, usize)> {
        let in_session = self.session_tables().table(name).await?.is_some_and(|t| {
            t.downcast_ref::<LocalCheckpointTable>().is_some()
                || t.downcast_ref::<LazyCheckpointTable>().is_some()
        });
        if !in_session && let Some(table) = self.named(name).await? {
            let id = table.id().to_string();
            drop(table);
            return self.chain(&id, depth).await;
        }
        // A local or lazy checkpoint of this session: one link, its plan.
        let lineage = self.checkpoint_lineage(name).await?;
        let recompute = match (&lineage.proto, &lineage.proto_unavailable) {
            (Some(_), _) => "available".to_string(),
            (None, Some(why)) => format!("not available: {why}"),
            (None, None) => "not available".to_string(),
        };
        let link = super::ChainLink {
            names: vec![name.to_string()],
            id: String::new(),
            rows: None,
            created: None,
            data: "in this session".into(),
            recompute,
            plan: lineage.text,
            reads: lineage.inputs.iter().map(|i| i.id.clone()).collect(),
            sources: Vec::new(),
        };
        let mut links = vec![link];
        let mut left_out = 0;
        for input in &lineage.inputs {
            let (below, more) = self
                .chain(&input.id, depth.saturating_sub(links.len()))
                .await?;
            links.extend(below);
            left_out += more;
        }
        Ok((links, left_out))
    }

    /// The plan a named checkpoint replaced.
    pub(crate) async fn checkpoint_lineage(&self, name: &str) -> Result<Lineage> {
        if let Some(t) = self.session_tables().table(name).await? {
            if let Some(t) = t.downcast_ref::<LocalCheckpointTable>() {
                return Ok(Lineage {
                    text: t.checkpoint().lineage().to_string(),
                    proto: None,
                    proto_unavailable: Some("local checkpoints keep their lineage as text".into()),
                    inputs: Vec::new(),
                });
            }
            if let Some(t) = t.downcast_ref::<LazyCheckpointTable>() {
                return Ok(lineage_of(t.node().original()));
            }
        }
        match self.named(name).await? {
            Some(t) => Ok(t.manifest().lineage.clone()),
            None => Err(self.not_a_checkpoint(name).await),
        }
    }

    /// See [`CairnContext::drop_checkpoint`](crate::CairnContext::drop_checkpoint).
    pub(crate) async fn drop_checkpoint(&self, name: &str, if_exists: bool) -> Result<bool> {
        let session = self.session_tables();
        let mut dropped = false;
        if let Some(t) = session.table(name).await? {
            if t.downcast_ref::<LocalCheckpointTable>().is_none()
                && t.downcast_ref::<LazyCheckpointTable>().is_none()
            {
                return Err(Error::Name(format!(
                    "'{name}' is a table, not a checkpoint; use DROP TABLE {name}"
                )));
            }
            session.deregister_table(name)?;
            dropped = true;
        }
        let store = self.stores.current();
        if let Some(binding) = store.lookup_name(name).await? {
            store.unbind_name(name).await?;
            self.forget(store.url(), &binding.id);
            store.delete_if_unused(&binding.id).await?;
            dropped = true;
        }
        if !dropped && !if_exists {
            return Err(self.not_a_checkpoint(name).await);
        }
        Ok(dropped)
    }

    /// See [`CairnContext::vacuum_checkpoints`](crate::CairnContext::vacuum_checkpoints).
    pub(crate) async fn vacuum_checkpoints(&self, state: &SessionState) -> Result<VacuumReport> {
        let store = self.stores.current();
        let lifetimes = CairnOptions::of(state.config())
            .map(|o| o.lifetimes)
            .unwrap_or_default();
        let named: HashSet<String> = store.bindings().await?.into_iter().map(|b| b.id).collect();
        store.vacuum(Utc::now(), lifetimes, &named).await
    }
}

async fn is_stale(manifest: &Manifest, state: &SessionState) -> Option<bool> {
    if !manifest.fingerprint.checkable {
        return None;
    }
    sources_changed(&manifest.fingerprint.listings, state).await
}

impl CheckpointSchema {
    /// The error for a checkpoint name that names none, with the nearest
    /// names there are.
    pub(super) async fn not_a_checkpoint(&self, name: &str) -> Error {
        let hint = super::did_you_mean(&self.nearest_names(name).await);
        Error::Name(format!(
            "checkpoint '{name}' does not exist{hint}; SHOW CHECKPOINTS lists them"
        ))
    }
}
