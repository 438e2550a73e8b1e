//! What planning hands the operators about one checkpoint: its kind, where
//! and how it is written ([`CheckpointTask`]), and what a write reports.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;

use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};

use crate::config::WriteOptions;
use crate::store::CheckpointStore;
use crate::store::manifest::{Fingerprint, Lineage};

/// Where a checkpoint is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckpointKind {
    /// Parquet in the checkpoint dir: survives crashes, reusable by later runs.
    Reliable,
    /// Arrow batches in process memory (spilling to local disk): not durable.
    Local,
}

impl fmt::Display for CheckpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckpointKind::Reliable => "reliable",
            CheckpointKind::Local => "local",
        })
    }
}

/// What planning decided about one checkpoint: where and how it is
/// written, its id, and the lineage its manifest keeps.
#[derive(Debug)]
pub struct CheckpointTask {
    /// Reliable or local.
    pub kind: CheckpointKind,
    /// The checkpoint dir (reliable checkpoints).
    pub store: Arc<CheckpointStore>,
    /// The id, and what it was derived from.
    pub fingerprint: Fingerprint,
    /// The plan the checkpoint replaces.
    pub lineage: Lineage,
    /// Bound to the checkpoint in its dir once it is committed.
    pub name: Option<String>,
    /// How files are encoded.
    pub options: WriteOptions,
    /// A damaged checkpoint of this id is committed and is to be written
    /// again (`cairn.checkpoint_on_corrupt = 'recompute'`).
    pub replace_damaged: bool,
}

/// What a write reports: rows, files and bytes written.
#[derive(Debug, Clone)]
pub struct WriteMetrics {
    pub(super) rows: Count,
    pub(super) files: Count,
    pub(super) bytes: Count,
}

impl WriteMetrics {
    /// Metrics registered in `metrics` (an operator's metrics set).
    pub fn new(metrics: &ExecutionPlanMetricsSet) -> Self {
        Self {
            rows: MetricBuilder::new(metrics).global_counter("rows_written"),
            files: MetricBuilder::new(metrics).global_counter("files_written"),
            bytes: MetricBuilder::new(metrics).global_counter("bytes_written"),
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows.value()
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> usize {
        self.bytes.value()
    }

    pub(crate) fn add_rows(&self, n: usize) {
        self.rows.add(n);
    }
}

/// `schema` with distinct column names, as Parquet (and a table) needs
/// them: a name seen before gets a suffix (`id`, `id_2`). A join's two
/// `id` columns are told apart by their qualifiers in the plan; the
/// checkpoint keeps them by position, and its readers give the plan's names
/// back.
pub fn storable_schema(schema: &SchemaRef) -> SchemaRef {
    let mut taken: HashSet<String> = HashSet::new();
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    if names.iter().collect::<HashSet<_>>().len() == names.len() {
        return Arc::clone(schema);
    }
    let all: HashSet<&str> = names.iter().map(|n| n.as_str()).collect();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut name = f.name().clone();
            let mut n = 1;
            while taken.contains(&name) || (n > 1 && all.contains(name.as_str())) {
                n += 1;
                name = format!("{}_{n}", f.name());
            }
            taken.insert(name.clone());
            f.as_ref().clone().with_name(name)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` under `schema`: the same columns, other names.
pub(crate) fn renamed(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), batch.columns().to_vec(), &options)
}
