//! The manifest: the one file whose presence commits a checkpoint, and
//! what it records (schema, files and their checksums, the sources the
//! checkpoint was computed from, its lineage).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::CheckpointStore;
use super::integrity::{BlockChecksums, VerifiedFile};
use super::ipc_schema;
use crate::error::{Error, Result};

/// Bumped when the layout of a checkpoint changes incompatibly; part of every id.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the manifest inside a checkpoint's directory.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// What a committed checkpoint is, as its `_manifest.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the engine that wrote it.
    pub format_version: u32,
    /// The checkpoint's id, which is also its directory.
    pub id: String,
    /// The Cairn version that wrote it.
    pub engine_version: String,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// The schema of every file.
    pub schema: SchemaInfo,
    /// Rows in all files.
    pub rows: u64,
    /// Bytes in all files.
    pub bytes: u64,
    /// The Parquet codec of the files.
    pub compression: String,
    /// Data files, relative to the checkpoint's directory.
    pub files: Vec<DataFile>,
    /// Sort order every file carries, outermost column first.
    pub ordering: Vec<SortColumn>,
    /// What its id was derived from.
    pub fingerprint: FingerprintInfo,
    /// The plan it replaced.
    pub lineage: Lineage,
}

/// The schema of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaInfo {
    /// Arrow IPC encoding of the schema, so every type round-trips exactly.
    pub arrow_ipc: String,
    /// The same for people reading the file.
    pub fields: Vec<String>,
}

/// One data file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its name inside the checkpoint's directory.
    pub path: String,
    /// Rows it holds.
    pub rows: u64,
    /// Its size in bytes.
    pub size: u64,
    /// A CRC32C of every block.
    pub checksums: BlockChecksums,
}

/// One column of the order every file of a checkpoint carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortColumn {
    /// The column's name.
    pub column: String,
    /// Largest first.
    pub descending: bool,
    /// NULLs before other values.
    pub nulls_first: bool,
}

/// The files a listing table read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceListing {
    /// The table's URL.
    pub url: String,
    /// The extension of the files it reads.
    pub extension: String,
    /// The files, sorted.
    pub files: Vec<SourceFile>,
}

/// One file a checkpoint was computed from, and its version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceFile {
    /// Where it is, as a URL.
    pub location: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified.
    pub modified: DateTime<Utc>,
    /// Its ETag, where the store has one.
    pub etag: Option<String>,
}

/// A checkpoint's id and what it was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The id: equal plans over unchanged sources get equal ids.
    pub id: String,
    /// What the id was derived from, as the manifest records it.
    pub info: FingerprintInfo,
}

impl Fingerprint {
    /// An id for a result that must never be reused.
    pub fn unique(sources: Vec<String>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            info: FingerprintInfo {
                reusable: false,
                sources,
                listings: Vec::new(),
                checkable: false,
            },
        }
    }
}

/// What a checkpoint id was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintInfo {
    /// False when the plan holds volatile functions or sources of unknown
    /// identity: such a checkpoint is never reused by another query.
    pub reusable: bool,
    /// The identity of every source the plan reads.
    pub sources: Vec<String>,
    /// The files it read, to tell later whether they changed.
    #[serde(default)]
    pub listings: Vec<SourceListing>,
    /// Whether every source can be checked for changes.
    #[serde(default)]
    pub checkable: bool,
}

/// The plan the checkpoint cut away, kept as metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The plan as text, for people.
    pub text: String,
    /// datafusion-proto bytes, base64, where every source could be encoded.
    pub proto: Option<String>,
    /// Why `proto` is absent.
    pub proto_unavailable: Option<String>,
    /// The checkpoints the plan reads: the links of a chain below this one.
    #[serde(default)]
    pub inputs: Vec<LineageInput>,
}

/// A checkpoint a lineage reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageInput {
    /// Its checkpoint dir, as a URL.
    pub dir: String,
    /// Its id.
    pub id: String,
}

impl SchemaInfo {
    /// Records `schema`.
    pub fn new(schema: &Schema) -> Self {
        Self {
            arrow_ipc: BASE64.encode(ipc_schema::encode(schema)),
            fields: schema
                .fields()
                .iter()
                .map(|f| {
                    let null = if f.is_nullable() { "" } else { " not null" };
                    format!("{}: {}{null}", f.name(), f.data_type())
                })
                .collect(),
        }
    }

    /// The schema recorded.
    pub fn decode(&self) -> Result<SchemaRef, String> {
        let bytes = BASE64
            .decode(&self.arrow_ipc)
            .map_err(|e| format!("schema is not base64: {e}"))?;
        Ok(Arc::new(ipc_schema::decode(&bytes)?))
    }
}

impl Manifest {
    /// The manifest without its lineage: what a scan or a reference needs.
    pub fn without_lineage(&self) -> Manifest {
        Manifest {
            lineage: Lineage {
                text: String::new(),
                proto: None,
                proto_unavailable: None,
                inputs: Vec::new(),
            },
            ..self.clone()
        }
    }

    /// The manifest as its file holds it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// Parses and checks a manifest read from `file` for checkpoint `id`.
    pub fn parse(id: &str, file: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |problem: String| Error::BadManifest {
            id: id.to_string(),
            file: file.to_string(),
            problem,
        };
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a valid manifest: {e}")))?;
        if m.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is not supported (this engine reads {FORMAT_VERSION})",
                m.format_version
            )));
        }
        if m.id != id {
            return Err(bad(format!("it names checkpoint {}", m.id)));
        }
        let file_rows = m
            .files
            .iter()
            .try_fold(0u64, |sum, f| sum.checked_add(f.rows));
        if file_rows != Some(m.rows) {
            let held = file_rows.map_or(format!("more than {}", u64::MAX), |n| n.to_string());
            return Err(bad(format!(
                "its files hold {held} rows but it says {}",
                m.rows
            )));
        }
        for f in &m.files {
            if f.path.contains('/') || f.path.starts_with('.') || f.path.is_empty() {
                return Err(bad(format!("file name '{}' is not allowed", f.path)));
            }
            let blocks = f.size.div_ceil(f.checksums.block_size.max(1));
            if f.checksums.block_size == 0 || blocks != f.checksums.crc32c.len() as u64 {
                return Err(bad(format!(
                    "file '{}' of {} bytes has {} checksums of {}-byte blocks",
                    f.path,
                    f.size,
                    f.checksums.crc32c.len(),
                    f.checksums.block_size
                )));
            }
        }
        m.schema.decode().map_err(bad)?;
        Ok(m)
    }

    /// The schema of the checkpoint.
    pub fn schema(&self) -> SchemaRef {
        self.schema
            .decode()
            .expect("the schema was checked when the manifest was parsed")
    }
}

impl CheckpointStore {
    /// Reads the manifest of `id`: `None` when it is not committed. The
    /// files it lists are checked to exist with their recorded sizes.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn read_manifest(&self, id: &str) -> Result<Option<Manifest>> {
        self.removal_done(id).await;
        self.commit_done(id).await;
        self.read_manifest_now(id).await
    }

    /// [`read_manifest`](Self::read_manifest) without waiting for this
    /// process's background work on `id` (the commit itself reads so).
    pub(crate) async fn read_manifest_now(&self, id: &str) -> Result<Option<Manifest>> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

    fn manifest() -> Manifest {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+02:00".into())),
                true,
            ),
        ]);
        Manifest {
            format_version: FORMAT_VERSION,
            id: "abc".into(),
            engine_version: "test".into(),
            created_at: Utc::now(),
            schema: SchemaInfo::new(&schema),
            rows: 3,
            bytes: 10,
            compression: "lz4_raw".into(),
            files: vec![DataFile {
                path: "x-part-00000.parquet".into(),
                rows: 3,
                size: 10,
                checksums: BlockChecksums::of(&[0; 10], 4),
            }],
            ordering: vec![],
            fingerprint: FingerprintInfo {
                reusable: true,
                sources: vec![],
                listings: vec![],
                checkable: true,
            },
            lineage: Lineage {
                text: "plan".into(),
                proto: None,
                proto_unavailable: Some("test".into()),
                inputs: Vec::new(),
            },
        }
    }

    #[test]
    fn round_trips_with_exact_schema() {
        let m = manifest();
        let back = Manifest::parse("abc", "f", &m.to_json()).unwrap();
        assert_eq!(back.schema(), m.schema());
        assert_eq!(back.files, m.files);
    }

    #[test]
    fn rejects_what_does_not_add_up() {
        let err = |m: &Manifest| {
            Manifest::parse("abc", "abc/_manifest.json", &m.to_json())
                .unwrap_err()
                .to_string()
        };
        let mut m = manifest();
        m.rows = 4;
        assert!(err(&m).contains("its files hold 3 rows but it says 4"));
        let mut m = manifest();
        m.files.push(m.files[0].clone());
        m.files[1].rows = u64::MAX;
        assert!(err(&m).contains("its files hold more than 18446744073709551615 rows"));
        let mut m = manifest();
        m.files[0].checksums.crc32c.pop();
        assert!(err(&m).contains("has 2 checksums of 4-byte blocks"));
        let mut m = manifest();
        m.files[0].path = "../escape.parquet".into();
        assert!(err(&m).contains("is not allowed"));
        let m = manifest();
        let e = Manifest::parse("other", "f", &m.to_json()).unwrap_err();
        assert!(e.to_string().contains("it names checkpoint abc"));
        let e = Manifest::parse("abc", "abc/_manifest.json", b"{not json").unwrap_err();
        assert!(e.to_string().starts_with(
            "checkpoint abc has an unreadable manifest 'abc/_manifest.json': not a valid manifest"
        ));
    }
}
