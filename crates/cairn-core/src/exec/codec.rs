//! `CairnPhysicalCodec`: DataFusion's physical plan codec for what Cairn
//! adds to a plan (`CheckpointExec`, the verified checkpoint scan), so that a
//! plan can leave the process (to a cluster's executors) and come back whole.
//! Everything else goes to the codec it wraps (DataFusion's, or Ballista's).
//!
//! Cairn's bytes start with a tag and a version ([`wire`]); bytes that are
//! not Cairn's go to the wrapped codec, and bytes that are Cairn's but do
//! not decode are an error, never a panic.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::parquet::basic::Compression;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::from_proto::parse_protobuf_file_scan_config;
use datafusion_proto::physical_plan::{
    DefaultPhysicalExtensionCodec, PhysicalExtensionCodec, PhysicalPlanDecodeContext,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::ParquetScanExecNode;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::checkpoint::CheckpointExec;
use super::distributed::PartitionWriteExec;
use super::held::HeldScanExec;
use super::local::LocalCheckpointExec;
use super::materialized::CheckpointRun;
use super::scan::CheckpointTable;
use super::source::{CheckpointRef, CheckpointSource, ScanPayload};
use super::task::{CheckpointKind, CheckpointTask};
use super::wire;
use crate::config::{CairnOptions, CommitMode, WriteOptions, compression_name};
use crate::store::manifest::{Fingerprint, FingerprintInfo, Lineage, Manifest};
use crate::store::{CheckpointStore, SessionStores};

/// The store of the checkpoint dir `dir`, as the session decoding a plan
/// reaches it (its S3 settings), or as the environment says.
pub(crate) fn store_for(dir: &str, ctx: &TaskContext) -> Result<Arc<CheckpointStore>> {
    // A plan names a dir its checkpoints were written to: decoding one
    // never creates a dir (hostile bytes could name any).
    let local = match dir.strip_prefix("file://") {
        Some(_) => url::Url::parse(dir)
            .ok()
            .and_then(|u| u.to_file_path().ok()),
        None if !dir.contains("://") => Some(std::path::PathBuf::from(dir)),
        None => None,
    };
    if let Some(path) = local.filter(|p| !p.is_dir()) {
        return Err(DataFusionError::Plan(format!(
            "the plan reads checkpoints in '{}', which is not a directory here; \
             every process must reach the checkpoint dir at the same path",
            path.display()
        )));
    }
    let config = ctx.session_config();
    let store = match (SessionStores::of(config), CairnOptions::of(config)) {
        (Some(stores), _) => stores.open(dir),
        // A cluster's task: the client's settings (secrets stay at home).
        (None, Some(options)) => CheckpointStore::open_with(dir, &options.s3),
        (None, None) => CheckpointStore::open(dir),
    };
    store.map_err(DataFusionError::from)
}

/// Parses a manifest carried in a plan, with the checks of one read.
pub(crate) fn checked(manifest: &Manifest) -> Result<Manifest> {
    let json = manifest.to_json();
    let id = manifest.id.clone();
    Manifest::parse(&id, &format!("{id} (carried in a plan)"), &json).map_err(DataFusionError::from)
}

/// Cairn's physical plan codec, wrapping another (DataFusion's by default).
#[derive(Debug)]
pub struct CairnPhysicalCodec {
    inner: Arc<dyn PhysicalExtensionCodec>,
}

impl Default for CairnPhysicalCodec {
    fn default() -> Self {
        Self::new(Arc::new(DefaultPhysicalExtensionCodec {}))
    }
}

impl CairnPhysicalCodec {
    /// Cairn's parts, and `inner` for everything else (Ballista's codec, say).
    pub fn new(inner: Arc<dyn PhysicalExtensionCodec>) -> Self {
        Self { inner }
    }
}

/// A scan of a checkpoint this process holds in memory, as the scan of its
/// files (encoded with this codec).
#[derive(Serialize, Deserialize)]
struct HeldPayload {
    files: String,
}

#[derive(Serialize, Deserialize)]
struct TaskPayload {
    kind: String,
    dir: String,
    id: String,
    fingerprint: FingerprintInfo,
    lineage: Lineage,
    name: Option<String>,
    compression: String,
    replace_damaged: bool,
}

fn kind_of(text: &str) -> Result<CheckpointKind> {
    match text {
        "reliable" => Ok(CheckpointKind::Reliable),
        "local" => Ok(CheckpointKind::Local),
        other => Err(DataFusionError::Plan(format!(
            "Cairn's bytes name an unknown checkpoint kind '{other}'"
        ))),
    }
}

fn encode_task(exec: &CheckpointExec, buf: &mut Vec<u8>) -> Result<()> {
    let task = exec.task();
    if task.kind == CheckpointKind::Local {
        return Err(in_memory("a local checkpoint is written"));
    }
    let payload = TaskPayload {
        kind: task.kind.to_string(),
        dir: task.store.url().to_string(),
        id: task.fingerprint.id.clone(),
        fingerprint: task.fingerprint.info.clone(),
        lineage: task.lineage.clone(),
        name: task.name.clone(),
        compression: compression_name(task.options.compression),
        replace_damaged: task.replace_damaged,
    };
    wire::encode(wire::Kind::CheckpointExec, &payload, buf)
}

fn decode_task(
    buf: &[u8],
    inputs: &[Arc<dyn ExecutionPlan>],
    ctx: &TaskContext,
) -> Result<Arc<dyn ExecutionPlan>> {
    let payload: TaskPayload = wire::decode(buf, wire::Kind::CheckpointExec)?;
    let [input] = inputs else {
        return Err(DataFusionError::Plan(format!(
            "Cairn's CheckpointExec bytes come with {} inputs, not one",
            inputs.len()
        )));
    };
    let compression = parse_compression(&payload.compression)?;
    let task = CheckpointTask {
        kind: kind_of(&payload.kind)?,
        store: store_for(&payload.dir, ctx)?,
        fingerprint: Fingerprint {
            id: payload.id,
            info: payload.fingerprint,
        },
        lineage: payload.lineage,
        name: payload.name,
        options: WriteOptions {
            compression,
            // Another process reads what this one wrote from its files,
            // once this process committed them: it may end right after.
            write_through: 0,
            commit: CommitMode::Sync,
        },
        replace_damaged: payload.replace_damaged,
    };
    Ok(Arc::new(CheckpointExec::new(
        Arc::clone(input),
        Arc::new(task),
        CheckpointRun::new(),
    )))
}

/// A checkpoint scan as an extension node: DataFusion's encoding of its
/// Parquet scan, and which checkpoint it reads.
/// The Parquet codec Cairn's bytes name.
fn parse_compression(name: &str) -> Result<Compression> {
    name.parse().map_err(|e| {
        DataFusionError::Plan(format!("Cairn's bytes name an unknown codec '{name}': {e}"))
    })
}

/// A [`PartitionWriteExec`] as bytes.
#[derive(Serialize, Deserialize)]
struct PartitionWritePayload {
    dir: String,
    id: String,
    attempt: String,
    compression: String,
}

fn decode_partition_write(
    buf: &[u8],
    inputs: &[Arc<dyn ExecutionPlan>],
    ctx: &TaskContext,
) -> Result<Arc<dyn ExecutionPlan>> {
    let payload: PartitionWritePayload = wire::decode(buf, wire::Kind::PartitionWrite)?;
    let [input] = inputs else {
        return Err(DataFusionError::Plan(format!(
            "Cairn's PartitionWriteExec bytes come with {} inputs, not one",
            inputs.len()
        )));
    };
    let compression = parse_compression(&payload.compression)?;
    Ok(Arc::new(PartitionWriteExec::new(
        Arc::clone(input),
        store_for(&payload.dir, ctx)?,
        payload.id,
        payload.attempt,
        compression,
    )))
}

fn decode_scan(
    buf: &[u8],
    ctx: &TaskContext,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> Result<Arc<dyn ExecutionPlan>> {
    let payload: ScanPayload = wire::decode(buf, wire::Kind::CheckpointScan)?;
    let bytes = BASE64
        .decode(&payload.parquet)
        .map_err(|e| DataFusionError::Plan(format!("Cairn's scan bytes are damaged: {e}")))?;
    let scan = ParquetScanExecNode::decode(bytes.as_slice())
        .map_err(|e| DataFusionError::Plan(format!("Cairn's scan bytes do not decode: {e}")))?;
    let base = scan
        .base_conf
        .as_ref()
        .ok_or_else(|| DataFusionError::Plan("Cairn's scan bytes hold no file scan".into()))?;
    let manifest = checked(&payload.manifest)?;
    let store = store_for(&payload.dir, ctx)?;
    let table = CheckpointTable::new(Arc::clone(&store), manifest);
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, codec);
    let table_schema = FileScanConfig::parse_table_schema_from_proto(base)?;
    // As DataFusion's Parquet decoding does: the predicate is in terms of
    // the projected schema.
    let file_schema = table_schema.file_schema();
    let predicate_schema = if base.projection.is_empty() {
        Arc::clone(file_schema)
    } else {
        let fields: Vec<_> = base
            .projection
            .iter()
            .map(|&i| {
                file_schema
                    .fields()
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| {
                        DataFusionError::Plan(
                            "Cairn's scan projects a column it does not have".into(),
                        )
                    })
            })
            .collect::<Result<_>>()?;
        Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
    };
    let mut parquet: ParquetSource = table.parquet_source();
    if let Some(options) = &scan.parquet_options {
        parquet = parquet.with_table_parquet_options(options.try_into()?);
    }
    if let Some(predicate) = &scan.predicate {
        let predicate =
            converter.proto_to_physical_expr(predicate, &predicate_schema, &decode_ctx)?;
        parquet = parquet.with_predicate(predicate);
    }
    let source = Arc::new(CheckpointSource::new(
        parquet,
        CheckpointRef {
            dir: store.url().to_string(),
            manifest: Arc::new(table.manifest().clone()),
        },
    ));
    let mut config = parse_protobuf_file_scan_config(base, &decode_ctx, converter, source)?;
    config.object_store_url = store.object_store_url().clone();
    Ok(DataSourceExec::from_data_source(config))
}

fn in_memory(what: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "{what} into this process's memory, which another process cannot reach; use a \
         reliable checkpoint (CHECKPOINT TABLE, checkpoint()) on storage every process \
         shares"
    ))
}

impl PhysicalExtensionCodec for CairnPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !wire::is_ours(buf) {
            return self.inner.try_decode(buf, inputs, ctx, proto_converter);
        }
        match wire::kind(buf)?.0 {
            wire::Kind::CheckpointExec => decode_task(buf, inputs, ctx),
            wire::Kind::PartitionWrite => decode_partition_write(buf, inputs, ctx),
            wire::Kind::CheckpointScan => decode_scan(buf, ctx, self, proto_converter),
            wire::Kind::HeldScan => {
                let payload: HeldPayload = wire::decode(buf, wire::Kind::HeldScan)?;
                let bytes = BASE64.decode(&payload.files).map_err(|e| {
                    DataFusionError::Plan(format!("Cairn's scan bytes are damaged: {e}"))
                })?;
                physical_plan_from_bytes_with_extension_codec(&bytes, ctx, self)
            }
            other => Err(DataFusionError::Plan(format!(
                "Cairn's {other:?} bytes are part of a logical plan, not a physical one"
            ))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(exec) = node.downcast_ref::<CheckpointExec>() {
            return encode_task(exec, buf);
        }
        if let Some(write) = node.downcast_ref::<PartitionWriteExec>() {
            let payload = PartitionWritePayload {
                dir: write.store().url().to_string(),
                id: write.id().to_string(),
                attempt: write.attempt().to_string(),
                compression: compression_name(write.compression()),
            };
            return wire::encode(wire::Kind::PartitionWrite, &payload, buf);
        }
        if let Some(held) = node.downcast_ref::<HeldScanExec>() {
            // Another process has no batches of ours: it reads the files.
            let files =
                physical_plan_to_bytes_with_extension_codec(Arc::clone(held.files()), self)?;
            let payload = HeldPayload {
                files: BASE64.encode(&files),
            };
            return wire::encode(wire::Kind::HeldScan, &payload, buf);
        }
        if node.downcast_ref::<LocalCheckpointExec>().is_some() {
            return Err(in_memory("a local checkpoint is kept"));
        }
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}
