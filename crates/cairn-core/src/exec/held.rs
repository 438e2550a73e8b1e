//! Write through, read from memory: a reliable checkpoint keeps the batches
//! it wrote (counted in the memory pool), and this process reads those
//! instead of decoding its own files again; the files stay the durable
//! copy, which every other process, and this one once the batches do not
//! fit, reads.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, displayable,
};

/// Bytes of kept batches in this process, over every session: the cap
/// (`cairn.checkpoint_write_through`) bounds the process's memory, which
/// is what the batches take.
static KEPT_BYTES: AtomicU64 = AtomicU64::new(0);

/// The batches a writer kept of the checkpoint it wrote, one list per data
/// file, in the files' order.
pub struct Held {
    id: String,
    partitions: Vec<Vec<RecordBatch>>,
    /// Their bytes, counted in the memory pool (and in [`KEPT_BYTES`])
    /// until the checkpoint's table is dropped.
    reservation: MemoryReservation,
}

impl Drop for Held {
    fn drop(&mut self) {
        KEPT_BYTES.fetch_sub(self.reservation.size() as u64, Ordering::Relaxed);
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("partitions", &self.partitions.len())
            .field("bytes", &self.reservation.size())
            .finish()
    }
}

/// What the writers of one checkpoint keep: the first batch past the cap
/// lets everything go (readers read the files).
pub(crate) struct Keeper {
    /// The bytes kept so far; `None` once the keeper let go (or nothing
    /// is to be kept).
    reservation: Mutex<Option<MemoryReservation>>,
    cap: u64,
}

impl Keeper {
    /// Keeps up to `cap` bytes over the process; nothing under a memory
    /// limit (a kept batch cannot be given back when an operator needs
    /// the memory, so it would make queries fail that pass today).
    pub(crate) fn new(pool: &Arc<dyn MemoryPool>, cap: u64) -> Arc<Self> {
        let bounded = !matches!(pool.memory_limit(), MemoryLimit::Infinite);
        let reservation = (cap > 0 && !bounded)
            .then(|| MemoryConsumer::new("checkpoint write-through").register(pool));
        Arc::new(Self {
            reservation: Mutex::new(reservation),
            cap,
        })
    }

    /// Whether `batch` may be kept (its memory is then counted).
    pub(crate) fn admit(&self, batch: &RecordBatch) -> bool {
        let mut slot = self.reservation.lock().expect("keeper poisoned");
        let Some(reservation) = slot.as_ref() else {
            return false;
        };
        let size = batch.get_array_memory_size();
        let before = KEPT_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        if before + size as u64 > self.cap {
            KEPT_BYTES.fetch_sub(size as u64, Ordering::Relaxed);
            let_go(&mut slot);
            return false;
        }
        reservation.grow(size);
        true
    }

    /// The kept batches of checkpoint `id`, if every one was admitted.
    pub(crate) fn held(
        self: Arc<Self>,
        id: &str,
        partitions: Vec<Vec<RecordBatch>>,
    ) -> Option<Held> {
        let keeper = Arc::into_inner(self)?;
        // From here the held batches own the count (see `Drop for Held`).
        let reservation = keeper.reservation.lock().expect("keeper poisoned").take()?;
        Some(Held {
            id: id.to_string(),
            partitions,
            reservation,
        })
    }
}

impl Drop for Keeper {
    /// Batches kept for a checkpoint that did not commit, or was not ours.
    fn drop(&mut self) {
        let_go(&mut self.reservation.lock().expect("keeper poisoned"));
    }
}

/// Lets go of what a keeper kept: its count, and its memory (the
/// reservation frees it when dropped).
fn let_go(slot: &mut Option<MemoryReservation>) {
    if let Some(reservation) = slot.take() {
        KEPT_BYTES.fetch_sub(reservation.size() as u64, Ordering::Relaxed);
    }
}

/// A scan of a checkpoint this process wrote, from the batches it kept.
/// Encoded, it is the scan of the checkpoint's files (another process has
/// no batches of ours).
#[derive(Debug)]
pub struct HeldScanExec {
    /// The same scan of the checkpoint's files.
    files: Arc<dyn ExecutionPlan>,
    id: String,
    rows: u64,
    inner: Arc<DataSourceExec>,
}

impl HeldScanExec {
    /// Reads `held` in place of `files` (the scan of the checkpoint's files,
    /// whose schema is `schema`), grouped as that scan groups its files:
    /// file `i` in partition `i % partitions`, one per file by default.
    /// `None` when a kept batch does not fit `schema` (then read the files).
    pub(crate) fn try_new(
        files: Arc<dyn ExecutionPlan>,
        held: &Arc<Held>,
        schema: SchemaRef,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
        partitions: Option<usize>,
        ordering: Option<LexOrdering>,
    ) -> Result<Option<Self>> {
        let n = partitions.unwrap_or(held.partitions.len()).max(1);
        let mut groups = vec![Vec::new(); n];
        let mut files_in_group = vec![0usize; n];
        for (i, file) in held.partitions.iter().enumerate() {
            for batch in file {
                let Ok(batch) = batch.clone().with_schema(Arc::clone(&schema)) else {
                    return Ok(None);
                };
                groups[i % n].push(batch);
            }
            files_in_group[i % n] += 1;
        }
        let mut source =
            MemorySourceConfig::try_new(&groups, schema, projection.cloned())?.with_limit(limit);
        // Files read one after another keep no order between them.
        if let Some(ordering) = ordering
            && files_in_group.iter().all(|&f| f <= 1)
        {
            source = source.try_with_sort_information(vec![ordering])?;
        }
        let all: usize = held
            .partitions
            .iter()
            .flatten()
            .map(RecordBatch::num_rows)
            .sum();
        Ok(Some(Self {
            files,
            id: held.id.clone(),
            rows: limit.map_or(all, |l| all.min(l)) as u64,
            inner: DataSourceExec::from_data_source(source),
        }))
    }

    /// The same scan of the checkpoint's files: what another process reads.
    pub fn files(&self) -> &Arc<dyn ExecutionPlan> {
        &self.files
    }
}

impl DisplayAs for HeldScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        // The files too: they are what the plan reads elsewhere.
        write!(
            f,
            "HeldScanExec: id={}, rows={}, from the batches this process wrote; files: {}",
            self.id,
            self.rows,
            displayable(self.files.as_ref())
                .one_line()
                .to_string()
                .trim_end()
        )
    }
}

impl ExecutionPlan for HeldScanExec {
    fn name(&self) -> &str {
        "HeldScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("HeldScanExec has no children");
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let schema = self.schema();
        Ok(Arc::new(match args.partition() {
            None => {
                Statistics::new_unknown(&schema).with_num_rows(Precision::Exact(self.rows as usize))
            }
            Some(_) => Statistics::new_unknown(&schema),
        }))
    }
}
