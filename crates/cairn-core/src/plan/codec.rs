//! `CairnLogicalCodec`: DataFusion's logical plan codec for what Cairn adds
//! to a plan (the checkpoint node, committed and lazy checkpoints as tables)
//! and for `generate_series`/`range`, which DataFusion's own codec cannot
//! encode. A checkpoint's lineage is kept with it, so the plans of a chain
//! of checkpoints can be decoded and run again; the same codec carries plans
//! to other processes. Everything else goes to the codec it wraps.
//!
//! Sources that live in this process's memory (a `MemTable`, a local
//! checkpoint) have no identity outside it: encoding them is an error that
//! names the table and says to checkpoint it first.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, SchemaRef};
use datafusion::catalog::memory::MemTable;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::functions_table::generate_series::{
    Empty, GenSeriesArgs, GenerateSeriesTable, GenericSeriesState, TimestampValue,
};
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::logical_plan::{DefaultLogicalExtensionCodec, LogicalExtensionCodec};
use serde::{Deserialize, Serialize};

use super::lazy::LazyCheckpointTable;
use super::node::CheckpointNode;
use super::series::SeriesTable;
use super::view::CairnView;
use super::write_job::CheckpointWrite;
use crate::exec::wire::{self, Kind};
use crate::exec::{CheckpointKind, CheckpointTable, LocalCheckpointTable, checked, store_for};
use crate::store::manifest::Manifest;

/// Cairn's logical plan codec, wrapping another (DataFusion's by default).
///
/// Decoding a committed checkpoint takes, by id, the one in `resolved` if
/// the decoder was given it (the checkpoint as its dir holds it now, perhaps
/// rebuilt), else the files the plan carries.
#[derive(Debug)]
pub struct CairnLogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
    resolved: HashMap<String, Arc<CheckpointTable>>,
}

impl Default for CairnLogicalCodec {
    fn default() -> Self {
        Self::new(Arc::new(DefaultLogicalExtensionCodec {}))
    }
}

impl CairnLogicalCodec {
    /// Cairn's parts, and `inner` for everything else (Ballista's codec, say).
    pub fn new(inner: Arc<dyn LogicalExtensionCodec>) -> Self {
        Self {
            inner,
            resolved: HashMap::new(),
        }
    }

    /// Decodes the committed checkpoint of each id as the table given for
    /// it (the same checkpoint rebuilt, or, refreshed, its successor).
    pub fn with_resolved(
        mut self,
        tables: impl IntoIterator<Item = (String, Arc<CheckpointTable>)>,
    ) -> Self {
        self.resolved.extend(tables);
        self
    }

    /// `plan` as bytes.
    pub fn encode(&self, plan: &LogicalPlan) -> Result<Vec<u8>> {
        logical_plan_to_bytes_with_extension_codec(plan, self)
            .map(|bytes| bytes.to_vec())
            .map_err(without_source_locations)
    }

    /// The plan `bytes` hold.
    pub fn decode(&self, bytes: &[u8], ctx: &TaskContext) -> Result<LogicalPlan> {
        logical_plan_from_bytes_with_extension_codec(bytes, ctx, self)
            .map_err(without_source_locations)
    }
}

/// `e` without the source file locations that DataFusion's `context!` macro
/// writes into its contexts ("Error serializing custom table at
/// <path of the machine that built it>/mod.rs:1534"): a user's error names
/// what failed, never where the engine was built.
fn without_source_locations(e: DataFusionError) -> DataFusionError {
    match e {
        DataFusionError::Context(description, inner) => DataFusionError::Context(
            strip_location(&description).to_string(),
            Box::new(without_source_locations(*inner)),
        ),
        other => other,
    }
}

/// `description` up to a trailing " at <file>.rs:<line>", if it has one.
fn strip_location(description: &str) -> &str {
    let Some((head, location)) = description.rsplit_once(" at ") else {
        return description;
    };
    let is_location = location
        .rsplit_once(".rs:")
        .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
    if is_location { head } else { description }
}

#[derive(Serialize, Deserialize)]
struct NodePayload {
    /// The node's identity, hex.
    id: String,
    kind: String,
    name: Option<String>,
    dir: Option<String>,
    /// The input as the user gave it, encoded with this codec, base64.
    original: String,
}

#[derive(Serialize, Deserialize)]
struct WritePayload {
    dir: String,
    id: String,
    attempt: String,
    compression: String,
}

fn decode_write(buf: &[u8], inputs: &[LogicalPlan]) -> Result<Extension> {
    let payload: WritePayload = wire::decode(buf, Kind::CheckpointWrite)?;
    let [input] = inputs else {
        return Err(DataFusionError::Plan(format!(
            "Cairn's checkpoint write comes with {} inputs, not one",
            inputs.len()
        )));
    };
    let write = CheckpointWrite::new(
        input.clone(),
        payload.dir,
        payload.id,
        payload.attempt,
        payload.compression,
    )?;
    Ok(Extension {
        node: Arc::new(write),
    })
}

#[derive(Serialize, Deserialize)]
struct TablePayload {
    dir: String,
    manifest: Manifest,
}

#[derive(Serialize, Deserialize)]
struct LazyPayload {
    /// The node plan, encoded with this codec, base64.
    node: String,
    replaces: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ViewPayload {
    /// The view's plan, encoded with this codec, base64.
    plan: String,
    definition: Option<String>,
}

/// `generate_series` and `range` arguments.
#[derive(Serialize, Deserialize)]
enum SeriesPayload {
    Null {
        name: String,
    },
    Int64 {
        name: String,
        start: i64,
        end: i64,
        step: i64,
        include_end: bool,
    },
    Timestamp {
        name: String,
        start: i64,
        end: i64,
        step: (i32, i32, i64),
        include_end: bool,
        tz: Option<String>,
        date: bool,
    },
}

fn series_name(name: &str) -> Result<&'static str> {
    match name {
        "generate_series" => Ok("generate_series"),
        "range" => Ok("range"),
        other => Err(DataFusionError::Plan(format!(
            "Cairn's bytes name an unknown series function '{other}'"
        ))),
    }
}

fn kind_name(kind: &str) -> Result<CheckpointKind> {
    match kind {
        "reliable" => Ok(CheckpointKind::Reliable),
        "local" => Ok(CheckpointKind::Local),
        other => Err(DataFusionError::Plan(format!(
            "Cairn's bytes name an unknown checkpoint kind '{other}'"
        ))),
    }
}

fn base64_bytes(text: &str) -> Result<Vec<u8>> {
    BASE64
        .decode(text)
        .map_err(|e| DataFusionError::Plan(format!("Cairn's bytes are damaged: {e}")))
}

/// What `generate_series`/`range` was called with, read back from the
/// generator it makes (its arguments are private).
fn series_payload(table: &GenerateSeriesTable) -> Result<SeriesPayload> {
    let generator = table.as_generator(1)?;
    let generator = generator.read();
    let any = generator.as_any();
    if let Some(empty) = any.downcast_ref::<Empty>() {
        return Ok(SeriesPayload::Null {
            name: empty.name().to_string(),
        });
    }
    if let Some(s) = any.downcast_ref::<GenericSeriesState<i64>>() {
        return Ok(SeriesPayload::Int64 {
            name: s.name().to_string(),
            start: *s.start(),
            end: *s.end(),
            step: *s.step(),
            include_end: s.include_end(),
        });
    }
    if let Some(s) = any.downcast_ref::<GenericSeriesState<TimestampValue>>() {
        let step = s.step();
        let date = matches!(
            table.schema().fields().first().map(|f| f.data_type()),
            Some(DataType::Date32 | DataType::Date64)
        );
        return Ok(SeriesPayload::Timestamp {
            name: s.name().to_string(),
            start: s.start().value(),
            end: s.end().value(),
            step: (step.months, step.days, step.nanoseconds),
            include_end: s.include_end(),
            tz: s.start().tz_str().map(|t| t.to_string()),
            date,
        });
    }
    Err(DataFusionError::Plan(
        "a series of a kind Cairn does not know cannot be encoded".into(),
    ))
}

fn series_table(payload: SeriesPayload, schema: SchemaRef) -> Result<GenerateSeriesTable> {
    let args = match payload {
        SeriesPayload::Null { name } => GenSeriesArgs::ContainsNull {
            name: series_name(&name)?,
        },
        SeriesPayload::Int64 {
            name,
            start,
            end,
            step,
            include_end,
        } => GenSeriesArgs::Int64Args {
            start,
            end,
            step,
            include_end,
            name: series_name(&name)?,
        },
        SeriesPayload::Timestamp {
            name,
            start,
            end,
            step,
            include_end,
            tz,
            date,
        } => {
            let step = IntervalMonthDayNano::new(step.0, step.1, step.2);
            if date {
                GenSeriesArgs::DateArgs {
                    start,
                    end,
                    step,
                    include_end,
                    name: series_name(&name)?,
                }
            } else {
                GenSeriesArgs::TimestampArgs {
                    start,
                    end,
                    step,
                    tz: tz.map(Arc::from),
                    include_end,
                    name: series_name(&name)?,
                }
            }
        }
    };
    Ok(GenerateSeriesTable::new(schema, args))
}

/// The error for a source that cannot leave this process.
fn in_memory(table: &TableReference, what: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "table '{table}' is {what} of this process, which no other process (and no later \
         run) can read; checkpoint it first (CHECKPOINT TABLE {name}_saved AS SELECT * FROM \
         {table}) and use the checkpoint",
        name = table.table()
    ))
}

impl LogicalExtensionCodec for CairnLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        if !wire::is_ours(buf) {
            return self.inner.try_decode(buf, inputs, ctx);
        }
        if wire::kind(buf)?.0 == Kind::CheckpointWrite {
            return decode_write(buf, inputs);
        }
        let payload: NodePayload = wire::decode(buf, Kind::CheckpointNode)?;
        let [input] = inputs else {
            return Err(DataFusionError::Plan(format!(
                "Cairn's checkpoint node comes with {} inputs, not one",
                inputs.len()
            )));
        };
        let id = u128::from_str_radix(&payload.id, 16).map_err(|e| {
            DataFusionError::Plan(format!("Cairn's checkpoint node has a bad id: {e}"))
        })?;
        let original = self.decode(&base64_bytes(&payload.original)?, ctx)?;
        let node = CheckpointNode::decoded(
            input.clone(),
            original,
            id,
            kind_name(&payload.kind)?,
            payload.name,
            payload.dir,
        )?;
        Ok(Extension {
            node: Arc::new(node),
        })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(write) = node.node.as_any().downcast_ref::<CheckpointWrite>() {
            let payload = WritePayload {
                dir: write.dir().to_string(),
                id: write.id().to_string(),
                attempt: write.attempt().to_string(),
                compression: write.compression().to_string(),
            };
            return wire::encode(Kind::CheckpointWrite, &payload, buf);
        }
        let Some(node) = node.node.as_any().downcast_ref::<CheckpointNode>() else {
            return self.inner.try_encode(node, buf);
        };
        let payload = NodePayload {
            id: format!("{:032x}", node.id()),
            kind: node.kind().to_string(),
            name: node.name().map(str::to_string),
            dir: node.dir().map(str::to_string),
            original: BASE64.encode(self.encode(node.original())?),
        };
        wire::encode(Kind::CheckpointNode, &payload, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if !wire::is_ours(buf) {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        }
        match wire::kind(buf)?.0 {
            Kind::CheckpointTable => {
                let payload: TablePayload = wire::decode(buf, Kind::CheckpointTable)?;
                if let Some(table) = self.resolved.get(&payload.manifest.id) {
                    return Ok(Arc::clone(table) as _);
                }
                let manifest = checked(&payload.manifest)?;
                let store = store_for(&payload.dir, ctx)?;
                Ok(Arc::new(CheckpointTable::carried(store, manifest)))
            }
            Kind::LazyCheckpointTable => {
                let payload: LazyPayload = wire::decode(buf, Kind::LazyCheckpointTable)?;
                let plan = self.decode(&base64_bytes(&payload.node)?, ctx)?;
                let LogicalPlan::Extension(e) = plan else {
                    return Err(DataFusionError::Plan(
                        "Cairn's lazy checkpoint bytes hold no checkpoint node".into(),
                    ));
                };
                let Some(node) = e.node.as_any().downcast_ref::<CheckpointNode>() else {
                    return Err(DataFusionError::Plan(
                        "Cairn's lazy checkpoint bytes hold another node".into(),
                    ));
                };
                Ok(Arc::new(LazyCheckpointTable::new(
                    node.clone(),
                    payload.replaces,
                )))
            }
            Kind::GenerateSeries => {
                let payload: SeriesPayload = wire::decode(buf, Kind::GenerateSeries)?;
                Ok(Arc::new(SeriesTable::new(series_table(payload, schema)?)))
            }
            Kind::View => {
                let payload: ViewPayload = wire::decode(buf, Kind::View)?;
                let plan = self.decode(&base64_bytes(&payload.plan)?, ctx)?;
                Ok(Arc::new(CairnView::new(plan, payload.definition)))
            }
            other => Err(DataFusionError::Plan(format!(
                "Cairn's {other:?} bytes are not a table"
            ))),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(t) = node.downcast_ref::<CheckpointTable>() {
            let payload = TablePayload {
                dir: t.store().url().to_string(),
                manifest: t.manifest().without_lineage(),
            };
            return wire::encode(Kind::CheckpointTable, &payload, buf);
        }
        if let Some(t) = node.downcast_ref::<LazyCheckpointTable>() {
            let payload = LazyPayload {
                node: BASE64.encode(self.encode(&t.node().clone().into_plan())?),
                replaces: t.replaces().map(str::to_string),
            };
            return wire::encode(Kind::LazyCheckpointTable, &payload, buf);
        }
        if let Some(t) = node.downcast_ref::<GenerateSeriesTable>() {
            return wire::encode(Kind::GenerateSeries, &series_payload(t)?, buf);
        }
        if let Some(t) = node.downcast_ref::<SeriesTable>() {
            return wire::encode(Kind::GenerateSeries, &series_payload(t.inner())?, buf);
        }
        if let Some(v) = node.downcast_ref::<CairnView>() {
            let payload = ViewPayload {
                plan: BASE64.encode(self.encode(v.plan())?),
                definition: v.definition().cloned(),
            };
            return wire::encode(Kind::View, &payload, buf);
        }
        if node.downcast_ref::<MemTable>().is_some() {
            return Err(in_memory(table_ref, "a table in the memory"));
        }
        if node.downcast_ref::<LocalCheckpointTable>().is_some() {
            return Err(in_memory(
                table_ref,
                "a local checkpoint, kept in the memory",
            ));
        }
        self.inner
            .try_encode_table_provider(table_ref, node, buf)
            .map_err(|e| {
                DataFusionError::Plan(format!(
                    "table '{table_ref}' has no identity outside this process that Cairn can \
                     encode ({}); checkpoint it first and use the checkpoint",
                    e.find_root()
                ))
            })
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_locations_are_cut_from_contexts_only() {
        let wrapped = DataFusionError::Plan("table 'n' lives in memory".into()).context(
            "Error serializing custom table at /home/build/.cargo/registry/src/x/mod.rs:1534",
        );
        let shown = without_source_locations(wrapped).to_string();
        assert_eq!(
            shown,
            "Error serializing custom table\ncaused by\nError during planning: table 'n' lives in memory"
        );
        // A description that merely contains " at " is left whole.
        assert_eq!(strip_location("look at it"), "look at it");
        assert_eq!(strip_location("failed at x.rs:"), "failed at x.rs:");
    }
}
