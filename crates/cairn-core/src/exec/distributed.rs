//! A reliable checkpoint written by a cluster's tasks: [`PartitionWriteExec`]
//! writes each partition of its input into a file of its own, as the task
//! that runs it, and answers with one row that reports the file; the client
//! that collects the rows checks the files and commits the manifest
//! ([`commit_reported`]), exactly as one process commits its own.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::parquet::basic::Compression;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use object_store::ObjectStoreExt;

use super::held::Keeper;
use super::task::{CheckpointTask, WriteMetrics, storable_schema};
use super::write::{
    check_storable, commit_written, manifest_of, storage_failure, write_partition,
    writer_properties,
};
use crate::error::{Error, Result as CairnResult};
use crate::store::CheckpointStore;
use crate::store::manifest::{DataFile, Manifest};

/// The one column of a task's report: the file it wrote, as the manifest
/// records it (JSON), or null for a partition without rows.
pub const REPORT_COLUMN: &str = "data_file";

/// The schema of the rows [`PartitionWriteExec`] answers with.
pub fn report_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        REPORT_COLUMN,
        DataType::Utf8,
        true,
    )]))
}

/// Writes partition `p` of its input into `<attempt>-<task>-part-<p>.parquet`
/// in the checkpoint's directory and answers with one row that reports it.
/// The task part of the name is new on every run, so a task run again after
/// its executor died never meets the files of the run that died.
#[derive(Debug)]
pub struct PartitionWriteExec {
    input: Arc<dyn ExecutionPlan>,
    store: Arc<CheckpointStore>,
    id: String,
    attempt: String,
    compression: Compression,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl PartitionWriteExec {
    /// Writes `input` as write attempt `attempt` of checkpoint `id`.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        store: Arc<CheckpointStore>,
        id: String,
        attempt: String,
        compression: Compression,
    ) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(report_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            store,
            id,
            attempt,
            compression,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The checkpoint dir written to.
    pub fn store(&self) -> &Arc<CheckpointStore> {
        &self.store
    }

    /// The checkpoint's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The write attempt (the prefix of every file name).
    pub fn attempt(&self) -> &str {
        &self.attempt
    }

    /// The codec of the files.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

impl DisplayAs for PartitionWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "PartitionWriteExec: checkpoint {} in {}, a file per partition",
            self.id,
            self.store.url()
        )
    }
}

impl ExecutionPlan for PartitionWriteExec {
    fn name(&self) -> &str {
        "PartitionWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = children.as_slice() else {
            return datafusion::common::internal_err!("PartitionWriteExec has one input");
        };
        Ok(Arc::new(Self::new(
            Arc::clone(input),
            Arc::clone(&self.store),
            self.id.clone(),
            self.attempt.clone(),
            self.compression,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, Arc::clone(&context))?;
        // The client checked the columns before the job (`check_columns`).
        let schema = storable_schema(&self.input.schema());
        let props = writer_properties(&schema, self.compression);
        let task = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let name = format!("{}-{task}-part-{partition:05}.parquet", self.attempt);
        let (store, id) = (Arc::clone(&self.store), self.id.clone());
        let metrics = WriteMetrics::new(&self.metrics);
        let report = async move {
            // Nothing is kept: the process that reads it is another one.
            let keeper = Keeper::new(context.memory_pool(), 0);
            let file = write_partition(
                &store, &id, &name, stream, &schema, props, &metrics, &keeper, true,
            )
            .await
            .map_err(|e| retryable_if_storage(&store, &id, e))?;
            let json = match file {
                Some((file, _)) => Some(serde_json::to_string(&file).map_err(|e| {
                    DataFusionError::Internal(format!("cannot report a written file: {e}"))
                })?),
                None => None,
            };
            let column = StringArray::from(vec![json]);
            Ok(RecordBatch::try_new(
                report_schema(),
                vec![Arc::new(column)],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            report_schema(),
            futures::stream::once(report),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// A failure of the storage (not of the input query; see
/// `storage_failure`) as an I/O error, which Ballista retries (it retries a
/// task only for those): a transient S3 error costs one task run, not the job.
fn retryable_if_storage(store: &CheckpointStore, id: &str, e: Error) -> DataFusionError {
    match storage_failure(store, id, e) {
        failure @ Error::WriteFailed { .. } => {
            DataFusionError::IoError(std::io::Error::other(failure.to_string()))
        }
        other => other.into(),
    }
}

/// Refuses, before a job runs, a column of `schema` that Parquet cannot
/// store, as one process refuses it before it writes.
pub fn check_columns(schema: &SchemaRef, compression: Compression) -> CairnResult<()> {
    let schema = storable_schema(schema);
    check_storable(&schema, &writer_properties(&schema, compression))
}

/// The files the rows of [`PartitionWriteExec`]s report.
pub fn reported_files(batches: &[RecordBatch]) -> CairnResult<Vec<DataFile>> {
    let mut files = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(REPORT_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| {
                Error::Internal(format!(
                    "a write task answered without a {REPORT_COLUMN} column"
                ))
            })?;
        for i in 0..column.len() {
            if column.is_null(i) {
                continue;
            }
            let file: DataFile = serde_json::from_str(column.value(i)).map_err(|e| {
                Error::Internal(format!("a write task's report does not parse: {e}"))
            })?;
            files.push(file);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Commits the checkpoint `task` describes from the files its tasks
/// reported (write attempt `attempt`), after checking that each one is in
/// the checkpoint dir, as this process sees it, with the size reported.
pub async fn commit_reported(
    task: &CheckpointTask,
    schema: &SchemaRef,
    files: Vec<DataFile>,
    attempt: &str,
    started: Instant,
) -> CairnResult<Manifest> {
    let store = &task.store;
    let id = &task.fingerprint.id;
    for file in &files {
        let path = CheckpointStore::file_path(id, &file.path);
        let seen = store.object_store().head(&path).await;
        let problem = match seen {
            Ok(meta) if meta.size == file.size => continue,
            Ok(meta) => format!(
                "it has {} bytes, its writer reported {}",
                meta.size, file.size
            ),
            Err(object_store::Error::NotFound { .. }) => "it is not there".to_string(),
            Err(e) => e.to_string(),
        };
        store.remove_attempt(id, attempt).await;
        return Err(Error::Config(format!(
            "checkpoint {id}: an executor wrote '{}' into {}, but this process cannot read \
             it back ({problem}); on a cluster the checkpoint dir must be storage that every \
             process shares, such as s3://bucket/prefix",
            file.path,
            store.url()
        )));
    }
    let schema = storable_schema(schema);
    let manifest = manifest_of(task, &schema, files, Vec::new());
    let (_, manifest) = commit_written(&task.store, manifest, attempt, started).await?;
    Ok(manifest)
}
