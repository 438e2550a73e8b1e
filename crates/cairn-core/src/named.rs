//! Named checkpoints: checkpoint a DataFrame under a name, list, refresh,
//! explain, drop and vacuum. `cairn-sql` maps its statements onto these.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use datafusion::catalog::SchemaProvider;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Extension, LogicalPlan};

use crate::catalog::LazyCheckpointTable;
use crate::context::CairnContext;
use crate::dataframe::{materialize_now, prepare};
use crate::error::{Error, Result};
use crate::fingerprint::sources_changed;
use crate::local::LocalCheckpointTable;
use crate::node::{CheckpointKind, CheckpointNode, Materialized};
use crate::scan::CheckpointTable;
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

/// A row of `SHOW CHECKPOINTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub name: String,
    /// `None` until a lazy checkpoint is written.
    pub id: Option<String>,
    pub kind: CheckpointKind,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub created: Option<DateTime<Utc>>,
    /// Whether its sources changed since it was written; `None` if that
    /// cannot be told (in-memory sources, local checkpoints).
    pub stale: Option<bool>,
    pub location: String,
}

impl CheckpointInfo {
    fn reliable(name: &str, t: &CheckpointTable) -> Self {
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
        }
    }

    fn pending(name: &str, t: &LazyCheckpointTable) -> Self {
        let spec = t.spec();
        let mut info = match spec.materialized() {
            Some(Materialized::Reliable(r)) => Self::reliable(name, &r),
            Some(Materialized::Local(l)) => Self::local(name, &l),
            None => Self {
                name: name.to_string(),
                id: None,
                kind: spec.kind(),
                rows: None,
                bytes: None,
                created: None,
                stale: None,
                location: match spec.kind() {
                    CheckpointKind::Reliable => {
                        format!("{} (written by the first query)", spec.store().url())
                    }
                    CheckpointKind::Local => {
                        "memory of this session (written by the first query)".into()
                    }
                },
            },
        };
        info.name = name.to_string();
        info
    }
}

impl fmt::Display for Materialize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Materialize::Eager => "eager",
            Materialize::Lazy => "lazy",
        })
    }
}

impl CairnContext {
    /// Checkpoints `df` under `name`: a table of the session that, for
    /// reliable checkpoints, a later process on the same dir finds too.
    /// Without `replace`, an existing table of that name is an error. A
    /// failure registers nothing and commits nothing.
    pub async fn checkpoint_table(
        &self,
        name: &str,
        df: DataFrame,
        kind: CheckpointKind,
        when: Materialize,
        replace: bool,
    ) -> Result<CheckpointInfo> {
        validate_name(name)?;
        let schema = self.checkpoint_schema();
        if !replace && schema.table_exist(name) {
            return Err(Error::Name(format!(
                "table '{name}' already exists; use CHECKPOINT OR REPLACE TABLE {name} AS ... \
                 to replace it"
            )));
        }
        let store = self.config().store();
        // A lazy reliable checkpoint binds its name when it is written.
        let bind_on_write = when == Materialize::Lazy && kind == CheckpointKind::Reliable;
        let (state, plan, spec) = prepare(df, kind, bind_on_write.then(|| name.to_string()))?;
        let info = match when {
            Materialize::Eager => {
                let m = materialize_now(&state, &plan, &spec).await?;
                match &m {
                    Materialized::Reliable(t) => {
                        let old = store.lookup_name(name).await?;
                        store.bind_name(name, t.id()).await?;
                        if let Some(old) = old.filter(|o| o.id != t.id()) {
                            // The old version is unnamed now: retention applies.
                            schema.forget(store.url(), &old.id);
                        }
                        schema.session_tables().deregister_table(name)?;
                        CheckpointInfo::reliable(name, t)
                    }
                    Materialized::Local(t) => {
                        store.unbind_name(name).await?;
                        schema
                            .session_tables()
                            .register_table(name.to_string(), Arc::clone(t) as _)?;
                        CheckpointInfo::local(name, t)
                    }
                }
            }
            Materialize::Lazy => {
                if kind == CheckpointKind::Local {
                    store.unbind_name(name).await?;
                }
                let node = LogicalPlan::Extension(Extension {
                    node: Arc::new(CheckpointNode::new(plan, Arc::clone(&spec))),
                });
                let table = Arc::new(LazyCheckpointTable::new(node, spec));
                schema
                    .session_tables()
                    .register_table(name.to_string(), Arc::clone(&table) as _)?;
                CheckpointInfo::pending(name, &table)
            }
        };
        Ok(info)
    }

    /// Every named checkpoint: those bound in the checkpoint dir and the
    /// local and lazy ones of this session, by name.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        let schema = self.checkpoint_schema();
        let session = schema.session_tables();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for name in session.table_names() {
            let Some(table) = session.table(&name).await? else {
                continue;
            };
            let info = if let Some(t) = table.downcast_ref::<LocalCheckpointTable>() {
                CheckpointInfo::local(&name, t)
            } else if let Some(t) = table.downcast_ref::<LazyCheckpointTable>() {
                CheckpointInfo::pending(&name, t)
            } else {
                continue;
            };
            seen.insert(name);
            out.push(info);
        }
        let store = self.config().store();
        for binding in store.bindings().await? {
            if seen.contains(&binding.name) || session.table_exist(&binding.name) {
                continue; // shadowed by a table of this session
            }
            let info = match schema.named(&binding.name).await {
                Ok(Some(t)) => {
                    let mut info = CheckpointInfo::reliable(&binding.name, &t);
                    info.stale = self.is_stale(t.manifest()).await;
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
                },
            };
            out.push(info);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn is_stale(&self, manifest: &Manifest) -> Option<bool> {
        if !manifest.fingerprint.checkable {
            return None;
        }
        sources_changed(&manifest.fingerprint.listings, &self.state()).await
    }

    /// Recomputes the named checkpoint from the lineage kept in its
    /// manifest and rebinds the name (a no-op when its sources did not
    /// change: the same plan over the same files has the same id).
    pub async fn refresh_checkpoint(&self, name: &str) -> Result<CheckpointInfo> {
        let schema = self.checkpoint_schema();
        if let Some(t) = schema.session_tables().table(name).await? {
            if t.downcast_ref::<LocalCheckpointTable>().is_some() {
                return Err(Error::Name(format!(
                    "'{name}' is a local checkpoint, which keeps no lineage to recompute from; \
                     re-create it with LOCAL CHECKPOINT OR REPLACE TABLE {name} AS ..."
                )));
            }
            if let Some(t) = t.downcast_ref::<LazyCheckpointTable>() {
                return Ok(CheckpointInfo::pending(name, t));
            }
        }
        let Some(table) = schema.named(name).await? else {
            return Err(not_a_checkpoint(name));
        };
        let lineage = &table.manifest().lineage;
        let Some(proto) = &lineage.proto else {
            return Err(Error::Name(format!(
                "cannot refresh checkpoint '{name}': its lineage cannot be rebuilt ({}); \
                 re-create it with CHECKPOINT OR REPLACE TABLE {name} AS ...",
                lineage
                    .proto_unavailable
                    .as_deref()
                    .unwrap_or("not recorded")
            )));
        };
        let bytes = BASE64
            .decode(proto)
            .map_err(|e| Error::Name(format!("the lineage of '{name}' is damaged: {e}")))?;
        let plan = datafusion_proto::bytes::logical_plan_from_bytes(&bytes, &self.task_ctx())?;
        let df = DataFrame::new(self.state(), plan);
        self.checkpoint_table(name, df, CheckpointKind::Reliable, Materialize::Eager, true)
            .await
    }

    /// The plan a named checkpoint replaced.
    pub async fn checkpoint_lineage(&self, name: &str) -> Result<Lineage> {
        let schema = self.checkpoint_schema();
        if let Some(t) = schema.session_tables().table(name).await? {
            if let Some(t) = t.downcast_ref::<LocalCheckpointTable>() {
                return Ok(Lineage {
                    text: t.checkpoint().lineage().to_string(),
                    proto: None,
                    proto_unavailable: Some("local checkpoints keep their lineage as text".into()),
                });
            }
            if let Some(t) = t.downcast_ref::<LazyCheckpointTable>() {
                return Ok(crate::lineage::lineage_of(t.spec().original()));
            }
        }
        match schema.named(name).await? {
            Some(t) => Ok(t.manifest().lineage.clone()),
            None => Err(not_a_checkpoint(name)),
        }
    }

    /// Drops the named checkpoint: the name goes at once; the data goes
    /// too unless another name or a live table or DataFrame of this
    /// process still reads it. False if it did not exist and `if_exists`.
    pub async fn drop_checkpoint(&self, name: &str, if_exists: bool) -> Result<bool> {
        let schema = self.checkpoint_schema();
        let session = schema.session_tables();
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
        let store = self.config().store();
        if let Some(binding) = store.lookup_name(name).await? {
            store.unbind_name(name).await?;
            schema.forget(store.url(), &binding.id);
            let still_named = store.bindings().await?.iter().any(|b| b.id == binding.id);
            if !still_named && store.readers(&binding.id) == 0 {
                store.delete_checkpoint(&binding.id).await?;
            }
            dropped = true;
        }
        if !dropped && !if_exists {
            return Err(not_a_checkpoint(name));
        }
        Ok(dropped)
    }

    /// Removes unnamed checkpoints unused for longer than the retention and
    /// abandoned directories older than the grace period; never a named
    /// checkpoint or one this process reads.
    pub async fn vacuum_checkpoints(&self) -> Result<VacuumReport> {
        let store = self.config().store();
        let keep: HashSet<String> = store.bindings().await?.into_iter().map(|b| b.id).collect();
        store
            .vacuum(Utc::now(), self.config().lifetimes(), &keep)
            .await
    }
}

fn not_a_checkpoint(name: &str) -> Error {
    Error::Name(format!(
        "checkpoint '{name}' does not exist; SHOW CHECKPOINTS lists them"
    ))
}
