//! The manifest: the one file whose presence commits a checkpoint.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::integrity::BlockChecksums;
use super::ipc_schema;
use crate::error::{Error, Result};
use crate::fingerprint::SourceListing;

/// Bumped when the layout of a checkpoint changes incompatibly; part of every id.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the manifest inside a checkpoint's directory.
pub const MANIFEST_FILE: &str = "_manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    pub engine_version: String,
    pub created_at: DateTime<Utc>,
    pub schema: SchemaInfo,
    pub rows: u64,
    pub bytes: u64,
    pub compression: String,
    /// Data files, relative to the checkpoint's directory.
    pub files: Vec<DataFile>,
    /// Sort order every file carries, outermost column first.
    pub ordering: Vec<SortColumn>,
    pub fingerprint: FingerprintInfo,
    pub lineage: Lineage,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaInfo {
    /// Arrow IPC encoding of the schema, so every type round-trips exactly.
    pub arrow_ipc: String,
    /// The same for people reading the file.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub rows: u64,
    pub size: u64,
    pub checksums: BlockChecksums,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortColumn {
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lineage {
    pub text: String,
    /// datafusion-proto bytes, base64, where every source could be encoded.
    pub proto: Option<String>,
    /// Why `proto` is absent.
    pub proto_unavailable: Option<String>,
}

impl SchemaInfo {
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

    pub fn decode(&self) -> Result<SchemaRef, String> {
        let bytes = BASE64
            .decode(&self.arrow_ipc)
            .map_err(|e| format!("schema is not base64: {e}"))?;
        Ok(Arc::new(ipc_schema::decode(&bytes)?))
    }
}

impl Manifest {
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

    pub fn schema(&self) -> SchemaRef {
        self.schema
            .decode()
            .expect("the schema was checked when the manifest was parsed")
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
