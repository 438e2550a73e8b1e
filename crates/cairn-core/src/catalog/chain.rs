//! Chains of checkpoints: every iteration of a loop reads the checkpoint
//! before. A link that is damaged or gone is rebuilt from its lineage (kept
//! in its manifest, or in the record a removed checkpoint leaves), its own
//! inputs first, down to the deepest intact link or the sources; and a
//! chain can be recomputed from its sources as they are now.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::execution::SessionState;

use super::CheckpointSchema;
use crate::error::{Error, Result, damaged_checkpoint};
use crate::exec::{CheckpointKind, CheckpointTable, Materialized};
use crate::plan::{CheckpointNode, checkpoint_now, decode_lineage, fingerprint, rebuild_now};
use crate::store::CheckpointStore;
use crate::store::manifest::{Fingerprint, FingerprintInfo};
use crate::store::records::LineageRecord;

/// How a link of a chain is brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rebuild {
    /// A link that is damaged or gone is rebuilt to hold what it held: its
    /// sources must be as they were when it was written.
    Repair,
    /// Every link is recomputed from its sources as they are now (a link
    /// whose sources did not change is found, not recomputed).
    Refresh,
}

/// Why a link could not be rebuilt.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// Its lineage cannot rebuild it (not kept, not encodable, gone).
    Unusable(String),
    /// Anything else: a changed source, a failed write.
    Failed(Error),
}

impl From<Error> for LinkError {
    fn from(e: Error) -> Self {
        LinkError::Failed(e)
    }
}

impl From<datafusion::error::DataFusionError> for LinkError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        LinkError::Failed(e.into())
    }
}

/// Links of a chain deeper than this are refused: a cycle, or a chain that
/// should be refreshed from its sources.
const MAX_DEPTH: usize = 10_000;

/// One link, as `EXPLAIN LINEAGE` shows it.
#[derive(Debug, Clone)]
pub struct ChainLink {
    /// The names bound to it in the dir.
    pub names: Vec<String>,
    /// Its id.
    pub id: String,
    /// Rows it holds (held, if its data is gone).
    pub rows: Option<u64>,
    /// When it was committed.
    pub created: Option<DateTime<Utc>>,
    /// `present`, `damaged` or `gone` (its lineage kept).
    pub data: String,
    /// Whether its lineage can recompute it, and why not.
    pub recompute: String,
    /// The plan that computed it.
    pub plan: String,
    /// The ids of the links it reads.
    pub reads: Vec<String>,
    /// The other sources it reads (files, tables), as named in its plan.
    pub sources: Vec<String>,
}

/// The identities of a fingerprint's sources, without the names the plan
/// gave them, sorted: equal when the sources are the same.
fn identities(info: &FingerprintInfo) -> Vec<String> {
    let mut ids: Vec<String> = info
        .sources
        .iter()
        .map(|s| {
            s.split_once(": ")
                .map_or(s.as_str(), |(_, i)| i)
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

impl CheckpointSchema {
    /// The checkpoint `id` of the dir `dir`, intact or brought back as
    /// `mode` says. `known_damaged`: its files were found damaged although
    /// its manifest reads.
    ///
    /// A loop of a thousand iterations makes a chain a thousand links deep:
    /// the walk down it keeps its own stack, so no chain overflows the
    /// thread's.
    pub(crate) async fn link(
        &self,
        state: &SessionState,
        dir: &str,
        id: &str,
        mode: Rebuild,
        known_damaged: bool,
    ) -> std::result::Result<Arc<CheckpointTable>, LinkError> {
        /// A link on the way down: its record once read, the links below
        /// it found damaged and repaired while rebuilding it.
        struct Pending {
            dir: String,
            id: String,
            known_damaged: bool,
            found: Option<(Arc<CheckpointStore>, LineageRecord)>,
            repaired: HashSet<String>,
        }
        let pending = |dir: &str, id: &str, known_damaged| Pending {
            dir: dir.to_string(),
            id: id.to_string(),
            known_damaged,
            found: None,
            repaired: HashSet::new(),
        };
        let mut done: HashMap<String, Arc<CheckpointTable>> = HashMap::new();
        let mut stack = vec![pending(dir, id, known_damaged)];
        while let Some(top) = stack.last_mut() {
            let Some((store, record)) = &top.found else {
                let store = self.stores.open(&top.dir)?;
                if mode == Rebuild::Repair && !top.known_damaged {
                    match store.read_manifest(&top.id).await {
                        Ok(Some(m)) => {
                            let top = stack.pop().expect("the link just looked at");
                            done.insert(top.id, Arc::new(CheckpointTable::new(store, m)));
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) if damaged_checkpoint(&e).is_some() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let record = match store.lineage_of(&top.id).await {
                    Ok(Some(record)) => record,
                    Ok(None) => {
                        return Err(LinkError::Unusable(format!(
                            "checkpoint {} is gone from {} and no lineage of it is kept",
                            top.id,
                            store.url()
                        )));
                    }
                    Err(e) => return Err(LinkError::Unusable(e.to_string())),
                };
                top.found = Some((store, record));
                continue;
            };
            // The links below first.
            let below = record
                .lineage
                .inputs
                .iter()
                .find(|i| !done.contains_key(&i.id))
                .cloned();
            if let Some(input) = below {
                if stack.iter().any(|p| p.id == input.id) {
                    return Err(LinkError::Unusable(format!(
                        "checkpoint {} reads itself through its chain",
                        input.id
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(LinkError::Unusable(format!(
                        "its chain is more than {MAX_DEPTH} links deep"
                    )));
                }
                stack.push(pending(&input.dir, &input.id, false));
                continue;
            }
            let resolved = record
                .lineage
                .inputs
                .iter()
                .map(|i| (i.id.clone(), Arc::clone(&done[&i.id])))
                .collect();
            match self.rebuild(state, store, record, mode, resolved).await {
                Ok(table) => {
                    let top = stack.pop().expect("the link just rebuilt");
                    done.insert(top.id, table);
                }
                // Written again, a link below may be found damaged in turn:
                // it is repaired, then this one is tried again.
                Err(LinkError::Failed(e)) => match damaged_checkpoint(&e) {
                    Some(below) if below != top.id && top.repaired.insert(below.clone()) => {
                        let below_dir = record
                            .lineage
                            .inputs
                            .iter()
                            .find(|i| i.id == below)
                            .map_or(store.url().to_string(), |i| i.dir.clone());
                        tracing::warn!(
                            id = top.id,
                            below,
                            "a link below is damaged: repairing it first"
                        );
                        done.remove(&below);
                        stack.push(pending(&below_dir, &below, true));
                    }
                    _ => return Err(LinkError::Failed(e)),
                },
                Err(e) => return Err(e),
            }
        }
        done.remove(id)
            .ok_or_else(|| LinkError::Failed(Error::Internal(format!("link {id} not rebuilt"))))
    }

    /// Writes the link `record` describes again, over the links below it
    /// as `resolved` (by id).
    async fn rebuild(
        &self,
        state: &SessionState,
        store: &Arc<CheckpointStore>,
        record: &LineageRecord,
        mode: Rebuild,
        resolved: Vec<(String, Arc<CheckpointTable>)>,
    ) -> std::result::Result<Arc<CheckpointTable>, LinkError> {
        let id = &record.id;
        let plan = decode_lineage(&record.lineage, &state.task_ctx(), resolved)
            .map_err(LinkError::Unusable)?;
        let written = match mode {
            Rebuild::Repair => {
                let now = fingerprint(&plan, state).await?;
                if record.fingerprint.reusable {
                    let (then, now) = (identities(&record.fingerprint), identities(&now.info));
                    if then != now {
                        let changed = then
                            .iter()
                            .find(|s| !now.contains(s))
                            .or_else(|| now.iter().find(|s| !then.contains(s)))
                            .cloned()
                            .unwrap_or_default();
                        return Err(LinkError::Failed(Error::Lineage(format!(
                            "checkpoint {id} cannot be rebuilt as it was: a source changed since \
                             it was written ({}); REFRESH CHECKPOINT recomputes the chain from \
                             the sources as they are now",
                            shorten(&changed)
                        ))));
                    }
                }
                tracing::warn!(id, dir = store.url(), "rebuilding a damaged checkpoint");
                self.forget(store.url(), id);
                store.delete_checkpoint(id).await?;
                let fingerprint = Fingerprint {
                    id: id.clone(),
                    info: record.fingerprint.clone(),
                };
                rebuild_now(
                    state,
                    &plan,
                    Arc::clone(store),
                    fingerprint,
                    record.lineage.clone(),
                )
                .await?
            }
            Rebuild::Refresh => {
                let node = CheckpointNode::try_new(
                    plan,
                    CheckpointKind::Reliable,
                    None,
                    Some(store.url().to_string()),
                )?;
                checkpoint_now(state, &node).await?
            }
        };
        match written {
            Materialized::Reliable(t) => Ok(t),
            Materialized::Local(_) => Err(LinkError::Failed(Error::Internal(
                "a reliable link was rebuilt as a local checkpoint".into(),
            ))),
        }
    }

    /// The chain below the checkpoint `id`, top first, at most `depth`
    /// links; and how many links were left out.
    pub(crate) async fn chain(&self, id: &str, depth: usize) -> Result<(Vec<ChainLink>, usize)> {
        let store = self.stores.current();
        let bindings = store.bindings().await?;
        let mut links = Vec::new();
        let mut pending = vec![(store.url().to_string(), id.to_string())];
        let mut seen = HashSet::new();
        let mut left_out = 0;
        while let Some((dir, id)) = pending.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if links.len() >= depth {
                left_out += 1;
                continue;
            }
            let store = self.stores.open(&dir)?;
            let data = match store.read_manifest(&id).await {
                Ok(Some(_)) => "present",
                Ok(None) => "gone",
                Err(_) => "damaged",
            };
            let record = store.lineage_of(&id).await.ok().flatten();
            let names = bindings
                .iter()
                .filter(|b| b.id == id && dir == self.stores.current().url())
                .map(|b| b.name.clone())
                .collect();
            let Some(record) = record else {
                links.push(ChainLink {
                    names,
                    id,
                    rows: None,
                    created: None,
                    data: data.into(),
                    recompute: "not available: no lineage of it is kept".into(),
                    plan: String::new(),
                    reads: Vec::new(),
                    sources: Vec::new(),
                });
                continue;
            };
            let reads: Vec<String> = record.lineage.inputs.iter().map(|i| i.id.clone()).collect();
            for input in record.lineage.inputs.iter().rev() {
                pending.push((input.dir.clone(), input.id.clone()));
            }
            let recompute = match (&record.lineage.proto, &record.lineage.proto_unavailable) {
                (Some(_), _) => "available".to_string(),
                (None, Some(why)) => format!("not available: {why}"),
                (None, None) => "not available".to_string(),
            };
            let mut sources: Vec<String> = record
                .fingerprint
                .listings
                .iter()
                .map(|l| l.url.clone())
                .collect();
            for source in &record.fingerprint.sources {
                let (name, identity) = source.split_once(": ").unwrap_or(("", source));
                if identity.starts_with("checkpoint ") || identity.starts_with("files [") {
                    continue;
                }
                sources.push(if name.is_empty() { identity } else { name }.to_string());
            }
            links.push(ChainLink {
                names,
                id,
                rows: Some(record.rows),
                created: Some(record.created_at),
                data: data.into(),
                recompute,
                plan: record.lineage.text,
                reads,
                sources,
            });
        }
        Ok((links, left_out))
    }
}

/// A source's identity, short enough for a message.
fn shorten(text: &str) -> String {
    const MOST: usize = 200;
    if text.chars().count() <= MOST {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MOST).collect::<String>())
    }
}
