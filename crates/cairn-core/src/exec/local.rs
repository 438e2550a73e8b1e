//! Local checkpoints: the result kept in process memory as Arrow batches,
//! counted against the memory pool, spilling to the local temporary dir
//! when it does not fit. Fast, not durable.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::runtime::JoinSet;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::utils::memory::get_record_batch_memory_size;
use datafusion::common::{Statistics, internal_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, SpillFile, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::SpillManager;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt, stream};

use super::task::{CheckpointTask, WriteMetrics, renamed, storable_schema};
use crate::error::{Error, Result};

/// A piece of one partition of a local checkpoint, in order.
enum Chunk {
    Memory(RecordBatch),
    Spilled(Arc<dyn SpillFile>),
}

/// The materialized result of a local checkpoint.
pub struct LocalCheckpoint {
    id: String,
    reusable: bool,
    schema: SchemaRef,
    partitions: Vec<Vec<Chunk>>,
    rows: u64,
    spilled_partitions: usize,
    /// The plan it replaced, as text.
    lineage: String,
    /// Holds the memory of the in-memory batches until the checkpoint is dropped.
    _reservations: Vec<MemoryReservation>,
}

impl fmt::Debug for LocalCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCheckpoint")
            .field("id", &self.id)
            .field("rows", &self.rows)
            .field("partitions", &self.partitions.len())
            .field("spilled_partitions", &self.spilled_partitions)
            .finish()
    }
}

impl LocalCheckpoint {
    /// Runs `input` once and keeps its result, partition by partition.
    #[tracing::instrument(level = "info", skip_all, fields(id = %task.fingerprint.id))]
    pub(crate) async fn collect(
        task: &CheckpointTask,
        input: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        written: &WriteMetrics,
    ) -> Result<Self> {
        let schema = storable_schema(&input.schema());
        let n = input.output_partitioning().partition_count();
        let metrics = ExecutionPlanMetricsSet::new();
        let mut tasks = JoinSet::new();
        for p in 0..n {
            let stream = input.execute(p, Arc::clone(&ctx))?;
            let reservation = MemoryConsumer::new(format!("LocalCheckpoint[{p}]"))
                .with_can_spill(true)
                .register(ctx.memory_pool());
            let spill = SpillManager::new(
                ctx.runtime_env(),
                SpillMetrics::new(&metrics, p),
                Arc::clone(&schema),
            );
            let (written, schema) = (written.clone(), Arc::clone(&schema));
            tasks.spawn(async move {
                collect_partition(stream, &schema, reservation, spill, &written)
                    .await
                    .map(|r| (p, r))
            });
        }
        let mut partitions: Vec<Vec<Chunk>> = (0..n).map(|_| Vec::new()).collect();
        let mut reservations = Vec::with_capacity(n);
        let (mut rows, mut spilled_partitions) = (0, 0);
        while let Some(joined) = tasks.join_next().await {
            let (p, (chunks, reservation, partition_rows)) = joined
                .map_err(|e| Error::Internal(format!("a local checkpoint task failed: {e}")))??;
            spilled_partitions += chunks.iter().any(|c| matches!(c, Chunk::Spilled(_))) as usize;
            partitions[p] = chunks;
            reservations.push(reservation);
            rows += partition_rows;
        }
        if spilled_partitions > 0 {
            tracing::info!(spilled_partitions, "local checkpoint spilled to disk");
        }
        Ok(Self {
            id: task.fingerprint.id.clone(),
            reusable: task.fingerprint.info.reusable,
            schema,
            partitions,
            rows,
            spilled_partitions,
            lineage: task.lineage.text.clone(),
            _reservations: reservations,
        })
    }

    /// Rows it holds.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The plan it replaced, as text.
    pub fn lineage(&self) -> &str {
        &self.lineage
    }

    /// How many partitions did not fit in memory.
    pub fn spilled_partitions(&self) -> usize {
        self.spilled_partitions
    }
}

async fn collect_partition(
    mut stream: SendableRecordBatchStream,
    schema: &SchemaRef,
    reservation: MemoryReservation,
    spill: SpillManager,
    written: &WriteMetrics,
) -> Result<(Vec<Chunk>, MemoryReservation, u64)> {
    let mut chunks = Vec::new();
    let mut spilling = None;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = renamed(&batch?, schema)?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        written.add_rows(batch.num_rows());
        // Once a batch does not fit, the rest of the partition goes to disk,
        // so the partition keeps its order.
        if spilling.is_none()
            && reservation
                .try_grow(get_record_batch_memory_size(&batch))
                .is_ok()
        {
            chunks.push(Chunk::Memory(batch));
            continue;
        }
        let file = match &mut spilling {
            Some(f) => f,
            None => spilling.insert(spill.create_in_progress_file("local checkpoint")?),
        };
        file.append_batch(&batch)?;
    }
    if let Some(mut file) = spilling
        && let Some(done) = file.finish()?
    {
        chunks.push(Chunk::Spilled(done));
    }
    Ok((chunks, reservation, rows))
}

/// A local checkpoint, usable as a table.
#[derive(Debug, Clone)]
pub struct LocalCheckpointTable {
    checkpoint: Arc<LocalCheckpoint>,
}

impl LocalCheckpointTable {
    /// The table of `checkpoint`.
    pub fn new(checkpoint: LocalCheckpoint) -> Self {
        Self {
            checkpoint: Arc::new(checkpoint),
        }
    }

    /// The checkpoint's id.
    pub fn id(&self) -> &str {
        &self.checkpoint.id
    }

    /// Whether an equal plan may reuse it.
    pub fn reusable(&self) -> bool {
        self.checkpoint.reusable
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &LocalCheckpoint {
        &self.checkpoint
    }

    pub(crate) fn scan_exec(
        &self,
        projection: Option<&Vec<usize>>,
        partitions: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(LocalCheckpointExec::try_new(
            Arc::clone(&self.checkpoint),
            projection.cloned(),
            partitions
                .unwrap_or(self.checkpoint.partitions.len())
                .max(1),
        )?))
    }
}

#[async_trait]
impl TableProvider for LocalCheckpointTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.checkpoint.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.scan_exec(projection, None)
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(
            Statistics::new_unknown(&self.checkpoint.schema)
                .with_num_rows(Precision::Exact(self.checkpoint.rows as usize)),
        )
    }
}

/// Reads a local checkpoint: memory first, then what was spilled.
#[derive(Debug)]
pub struct LocalCheckpointExec {
    checkpoint: Arc<LocalCheckpoint>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl LocalCheckpointExec {
    fn try_new(
        checkpoint: Arc<LocalCheckpoint>,
        projection: Option<Vec<usize>>,
        partitions: usize,
    ) -> datafusion::error::Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(checkpoint.schema.project(p)?),
            None => Arc::clone(&checkpoint.schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            checkpoint,
            projection,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for LocalCheckpointExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LocalCheckpointExec: id={}, rows={}, spilled_partitions={}",
            self.checkpoint.id, self.checkpoint.rows, self.checkpoint.spilled_partitions
        )
    }
}

impl ExecutionPlan for LocalCheckpointExec {
    fn name(&self) -> &str {
        "LocalCheckpointExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("LocalCheckpointExec has no children");
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let n = self.properties.partitioning.partition_count();
        let full_schema = Arc::clone(&self.checkpoint.schema);
        let spill = SpillManager::new(
            context.runtime_env(),
            SpillMetrics::new(&self.metrics, partition),
            Arc::clone(&full_schema),
        );
        let mut parts = Vec::new();
        for chunks in self.checkpoint.partitions.iter().skip(partition).step_by(n) {
            for chunk in chunks {
                parts.push(match chunk {
                    Chunk::Memory(b) => stream::once(futures::future::ready(Ok(b.clone()))).boxed(),
                    Chunk::Spilled(file) => spill.read_spill_as_stream(Arc::clone(file), None)?,
                });
            }
        }
        let projection = self.projection.clone();
        let batches = stream::iter(parts).flatten().and_then(move |b| {
            futures::future::ready(match &projection {
                Some(p) => b.project(p).map_err(Into::into),
                None => Ok(b),
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> datafusion::error::Result<Arc<Statistics>> {
        let schema = self.schema();
        Ok(Arc::new(match args.partition() {
            None => Statistics::new_unknown(&schema)
                .with_num_rows(Precision::Exact(self.checkpoint.rows as usize)),
            Some(_) => Statistics::new_unknown(&schema),
        }))
    }
}
