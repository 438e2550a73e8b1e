//! Lineage records: what a removed checkpoint leaves behind, so that the
//! checkpoints computed from it can still be rebuilt (every loop makes a
//! chain, and a loop removes the links it no longer reads).
//!
//! ```text
//! <checkpoint dir>/_lineage/<id>.json   {"id", "fingerprint", "lineage", "rows", ...}
//! ```
//!
//! A record holds the lineage of one link only (its plan and the ids it
//! reads), never the chain below it, so records grow linearly with a chain.
//! `VACUUM CHECKPOINTS` removes the records no committed checkpoint reaches.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::CheckpointStore;
use super::manifest::{FingerprintInfo, Lineage, Manifest, SchemaInfo};
use crate::error::{Error, Result};

/// The folder of lineage records inside the checkpoint dir.
pub const LINEAGE_DIR: &str = "_lineage";

/// What is kept of a removed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineageRecord {
    /// The checkpoint's id.
    pub id: String,
    /// Its schema.
    pub schema: SchemaInfo,
    /// Rows it held.
    pub rows: u64,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// What its id was derived from.
    pub fingerprint: FingerprintInfo,
    /// The plan that computed it.
    pub lineage: Lineage,
}

impl LineageRecord {
    /// What `manifest` leaves behind.
    pub fn of(manifest: &Manifest) -> Self {
        Self {
            id: manifest.id.clone(),
            schema: manifest.schema.clone(),
            rows: manifest.rows,
            created_at: manifest.created_at,
            fingerprint: manifest.fingerprint.clone(),
            lineage: manifest.lineage.clone(),
        }
    }
}

fn record_path(id: &str) -> Path {
    Path::from(format!("{LINEAGE_DIR}/{id}.json"))
}

impl CheckpointStore {
    /// Keeps the lineage of `manifest`, whose data is about to go.
    pub(crate) async fn keep_lineage(&self, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(&LineageRecord::of(manifest))
            .expect("a lineage record always serializes");
        self.object_store()
            .put(&record_path(&manifest.id), PutPayload::from(json))
            .await?;
        Ok(())
    }

    /// The lineage record of `id`, if its data was removed.
    pub async fn lineage_record(&self, id: &str) -> Result<Option<LineageRecord>> {
        let bytes = match self.object_store().get(&record_path(id)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let record: LineageRecord =
            serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
                id: id.to_string(),
                file: self.location(LINEAGE_DIR, &format!("{id}.json")),
                problem: format!("not a valid lineage record: {e}"),
            })?;
        Ok(Some(record))
    }

    /// The lineage of `id`: from its manifest while it is committed (even
    /// when its files are damaged), else from its record.
    pub async fn lineage_of(&self, id: &str) -> Result<Option<LineageRecord>> {
        match self.read_manifest_only(id).await {
            Ok(Some(m)) => Ok(Some(LineageRecord::of(&m))),
            Ok(None) => self.lineage_record(id).await,
            Err(e) => match self.lineage_record(id).await? {
                Some(record) => Ok(Some(record)),
                None => Err(e),
            },
        }
    }

    /// Removes the records that no committed checkpoint (`committed`, by
    /// id, with the ids each reads) reaches through the records; returns
    /// how many went.
    pub(crate) async fn remove_unreached_records(
        &self,
        committed: &HashMap<String, Vec<String>>,
    ) -> Result<usize> {
        let listed: Vec<_> = self
            .object_store()
            .list(Some(&Path::from(LINEAGE_DIR)))
            .try_collect()
            .await?;
        let mut records: HashMap<String, Vec<String>> = HashMap::new();
        for meta in &listed {
            let Some(id) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
            else {
                continue;
            };
            let reads = match self.lineage_record(id).await {
                Ok(Some(r)) => r.lineage.inputs.into_iter().map(|i| i.id).collect(),
                _ => Vec::new(),
            };
            records.insert(id.to_string(), reads);
        }
        let mut reached: HashSet<String> = HashSet::new();
        let mut pending: Vec<String> = committed.values().flatten().cloned().collect();
        while let Some(id) = pending.pop() {
            if reached.insert(id.clone())
                && let Some(reads) = records.get(&id)
            {
                pending.extend(reads.iter().cloned());
            }
        }
        let mut removed = 0;
        for id in records.keys() {
            if !reached.contains(id) && !committed.contains_key(id) {
                match self.object_store().delete(&record_path(id)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }
}
