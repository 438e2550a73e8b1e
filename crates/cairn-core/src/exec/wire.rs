//! Cairn's bytes inside DataFusion's plans: a tag, a version, what they
//! hold, then JSON.
use datafusion::error::{DataFusionError, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first bytes of everything Cairn encodes.
pub const TAG: &[u8; 5] = b"CAIRN";
/// Bumped when an encoding changes incompatibly.
pub const VERSION: u8 = 1;

/// What a payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A `CheckpointNode` (logical).
    CheckpointNode = 1,
    /// A committed checkpoint as a table.
    CheckpointTable = 2,
    /// A lazy checkpoint as a table.
    LazyCheckpointTable = 3,
    /// `generate_series` / `range`.
    GenerateSeries = 4,
    /// A view (`CREATE VIEW` in a Cairn session).
    View = 5,
    /// A `CheckpointWrite` (a cluster job writing a checkpoint's files).
    CheckpointWrite = 6,
    /// A `CheckpointExec`.
    CheckpointExec = 16,
    /// A verified scan of a checkpoint's files.
    CheckpointScan = 17,
    /// A scan of a checkpoint this process holds in memory (sent as the
    /// scan of its files).
    HeldScan = 18,
    /// A `PartitionWriteExec`.
    PartitionWrite = 19,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::CheckpointNode,
            2 => Kind::CheckpointTable,
            3 => Kind::LazyCheckpointTable,
            4 => Kind::GenerateSeries,
            5 => Kind::View,
            6 => Kind::CheckpointWrite,
            16 => Kind::CheckpointExec,
            17 => Kind::CheckpointScan,
            18 => Kind::HeldScan,
            19 => Kind::PartitionWrite,
            _ => return None,
        })
    }
}

/// Appends `payload` as Cairn's bytes of `kind` to `buf`.
pub fn encode(kind: Kind, payload: &impl Serialize, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(TAG);
    buf.push(VERSION);
    buf.push(kind as u8);
    serde_json::to_writer(buf, payload)
        .map_err(|e| DataFusionError::Internal(format!("cannot encode Cairn's {kind:?}: {e}")))
}

/// Whether `buf` is Cairn's (starts with its tag).
pub fn is_ours(buf: &[u8]) -> bool {
    buf.starts_with(TAG)
}

/// The kind and the rest of Cairn's bytes `buf`.
pub fn kind(buf: &[u8]) -> Result<(Kind, &[u8])> {
    let rest = buf.strip_prefix(TAG.as_slice()).ok_or_else(|| {
        DataFusionError::Plan("these bytes are not Cairn's (no CAIRN tag)".into())
    })?;
    match rest {
        [VERSION, kind, payload @ ..] => {
            Kind::from_byte(*kind).map(|k| (k, payload)).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "Cairn's bytes hold an unknown part (kind {kind}); they were written \
                     by another version of Cairn"
                ))
            })
        }
        [version, ..] => Err(DataFusionError::Plan(format!(
            "Cairn's bytes are of version {version}, this Cairn reads version {VERSION}"
        ))),
        [] => Err(DataFusionError::Plan("Cairn's bytes are cut short".into())),
    }
}

/// The payload of Cairn's bytes, which must hold `expected`.
pub fn decode<T: DeserializeOwned>(buf: &[u8], expected: Kind) -> Result<T> {
    let (kind, payload) = kind(buf)?;
    if kind != expected {
        return Err(DataFusionError::Plan(format!(
            "Cairn's bytes hold a {kind:?}, not a {expected:?}"
        )));
    }
    serde_json::from_slice(payload)
        .map_err(|e| DataFusionError::Plan(format!("Cairn's {kind:?} bytes do not decode: {e}")))
}
