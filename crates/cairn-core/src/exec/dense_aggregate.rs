//! [`DenseAggregateExec`]: an aggregation stage grouped by one integer
//! column whose values span a small range (node ids, small codes), with
//! group ids read from an array indexed by the value instead of a hash
//! table.
//!
//! DataFusion hashes every row's key and probes a table for its group
//! (`GroupValuesPrimitive`): 25 ns a row in the iterative suite's
//! `GROUP BY src` over 200,000 edges, most of an iteration's compute. When
//! the keys seen so far span at most [`MIN_SLOTS`] values, or
//! [`SLOTS_PER_ROW`] per row read, a slot per value holds its group id:
//! one load and one compare a row. Keys that stop fitting hand the rest of
//! the input to DataFusion's own aggregation: a first stage emits its
//! groups so far (the final stage merges partial results, which is also
//! what a first stage emits when memory runs short); a final stage hands
//! its groups over as states, ahead of the rest of its input, and does so
//! too when memory runs short, as DataFusion's can spill. Answers are
//! DataFusion's: the same accumulators, fed the same rows.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray, RecordBatch,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::datatypes::{
    ArrowNumericType, DataType, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, UInt8Type,
    UInt16Type, UInt32Type,
};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Statistics, internal_err};
use datafusion::error::Result;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{
    AggregateExec, AggregateInputMode, AggregateMode, AggregateOutputMode, aggregate_expressions,
    evaluate_many,
};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// Slots the keys may always span, whatever the rows read (256 KiB).
pub const MIN_SLOTS: usize = 1 << 16;

/// Past [`MIN_SLOTS`], slots allowed per row read: the array then costs at
/// most what a hash table's entries do (16 bytes a group).
pub const SLOTS_PER_ROW: usize = 4;

/// Slots the keys may never span past (32 MiB).
pub const MAX_SLOTS: usize = 1 << 23;

/// An aggregation stage grouped by one integer column, with group ids from
/// an array indexed by value (see the module). It shows, plans and
/// serializes as the `AggregateExec` it replaces.
#[derive(Debug)]
pub struct DenseAggregateExec {
    aggregate: Arc<AggregateExec>,
    metrics: ExecutionPlanMetricsSet,
}

impl DenseAggregateExec {
    /// `aggregate` run with dense group ids, if its shape allows: a stage
    /// of two (`Partial`, `Final`, `FinalPartitioned`), one integer key of
    /// at most 32 bits or a 64-bit signed one, no grouping sets, no limit,
    /// no input order it streams on, and accumulators that take group ids,
    /// none ordered or distinct.
    pub fn try_new(aggregate: &Arc<AggregateExec>) -> Option<Self> {
        let group_by = aggregate.group_expr();
        let [(key, _)] = group_by.expr() else {
            return None;
        };
        let input_schema = aggregate.input().schema();
        let key_type = key.data_type(&input_schema).ok()?;
        // A final stage of Single mode reads rows, not states: it could
        // not hand its groups over.
        let staged = matches!(
            aggregate.mode(),
            AggregateMode::Partial | AggregateMode::Final | AggregateMode::FinalPartitioned
        );
        let supported = staged
            && group_by.is_single()
            && dense_keys(&key_type).is_some()
            && aggregate.limit_options().is_none()
            && aggregate.dynamic_expressions_produced().is_empty()
            && aggregate
                .required_input_ordering()
                .iter()
                .all(Option::is_none)
            && matches!(
                aggregate.input_order_mode(),
                datafusion::physical_plan::InputOrderMode::Linear
            )
            && aggregate.aggr_expr().iter().all(|a| {
                a.groups_accumulator_supported() && a.order_bys().is_empty() && !a.is_distinct()
            });
        supported.then(|| Self {
            aggregate: Arc::clone(aggregate),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// `plan` run with dense group ids if it is an `AggregateExec` (itself,
    /// not a wrapper delegating to one) of a shape that allows it; else
    /// `plan` as it is.
    pub fn wrap(plan: Arc<dyn ExecutionPlan>) -> Transformed<Arc<dyn ExecutionPlan>> {
        let dense = (plan.as_ref() as &dyn Any)
            .downcast_ref::<AggregateExec>()
            .and_then(|a| Self::try_new(&Arc::new(a.clone())));
        match dense {
            Some(dense) => Transformed::yes(Arc::new(dense)),
            None => Transformed::no(plan),
        }
    }

    /// The aggregation it runs.
    pub fn aggregate(&self) -> &Arc<AggregateExec> {
        &self.aggregate
    }
}

impl DisplayAs for DenseAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.aggregate.fmt_as(t, f)
    }
}

impl ExecutionPlan for DenseAggregateExec {
    fn name(&self) -> &str {
        "DenseAggregateExec"
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.aggregate.as_ref())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let replanned = Arc::clone(&self.aggregate).replace_children(children, recompute())?;
        Ok(Self::wrap(replanned).data)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let aggregate = &self.aggregate;
        let input = aggregate.input().execute(partition, Arc::clone(&context))?;
        let (key, _) = &aggregate.group_expr().expr()[0];
        let key_type = key.data_type(&aggregate.input().schema())?;
        let Some(groups) = dense_keys(&key_type) else {
            return internal_err!("DenseAggregateExec planned over a {key_type} key");
        };
        // It gives memory back when short of it: by emitting early or by
        // handing its groups over to an aggregation that spills.
        let reservation = MemoryConsumer::new(format!("DenseAggregateExec[{partition}]"))
            .with_can_spill(true)
            .register(context.memory_pool());
        let stream = DenseStream {
            schema: aggregate.schema(),
            batch_size: context.session_config().batch_size(),
            aggregate: Arc::clone(aggregate),
            key: Arc::clone(key),
            arguments: aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 1)?,
            filters: aggregate.filter_expr().to_vec(),
            merging: aggregate.mode().input_mode() == AggregateInputMode::Partial,
            finishing: aggregate.mode().output_mode() == AggregateOutputMode::Final,
            accumulators: aggregate
                .aggr_expr()
                .iter()
                .map(|a| a.create_groups_accumulator())
                .collect::<Result<_>>()?,
            groups,
            group_ids: Vec::new(),
            rows_read: 0,
            reservation,
            pending: VecDeque::new(),
            phase: Phase::Dense(input),
            context,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            handed_over: MetricBuilder::new(&self.metrics).counter("rows_handed_over", partition),
        };
        let schema = aggregate.schema();
        let batches = futures::stream::unfold(stream, |mut s| async move {
            let next = s.next().await;
            next.map(|batch| (batch, s))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.aggregate.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.aggregate.statistics_from_inputs(input_stats, args)
    }
}

/// Where a partition's aggregation is.
enum Phase {
    /// Reading the input, group ids dense.
    Dense(SendableRecordBatchStream),
    /// The keys stopped fitting: DataFusion's aggregation runs the rest.
    HandedOver(SendableRecordBatchStream),
    Done,
}

struct DenseStream {
    schema: SchemaRef,
    batch_size: usize,
    aggregate: Arc<AggregateExec>,
    key: Arc<dyn PhysicalExpr>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Input rows are states to merge (a final stage).
    merging: bool,
    /// Output rows are values, not states (a final stage).
    finishing: bool,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: Box<dyn DenseGroups>,
    group_ids: Vec<usize>,
    rows_read: usize,
    reservation: MemoryReservation,
    /// Output made and not yet returned.
    pending: VecDeque<RecordBatch>,
    phase: Phase,
    context: Arc<TaskContext>,
    baseline: BaselineMetrics,
    handed_over: Count,
}

impl DenseStream {
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                self.baseline.record_output(batch.num_rows());
                return Some(Ok(batch));
            }
            let input = match &mut self.phase {
                Phase::Done => return None,
                Phase::HandedOver(rest) => {
                    let next = rest.next().await;
                    match &next {
                        Some(Ok(batch)) => self.baseline.record_output(batch.num_rows()),
                        Some(Err(_)) | None => self.phase = Phase::Done,
                    }
                    return next;
                }
                Phase::Dense(input) => input.next().await,
            };
            let step = {
                let elapsed = self.baseline.elapsed_compute().clone();
                let _timer = elapsed.timer();
                match input {
                    Some(Ok(batch)) => self.aggregate_batch(batch),
                    Some(Err(e)) => Err(e),
                    None => {
                        self.phase = Phase::Done;
                        self.emit()
                    }
                }
            };
            if let Err(e) = step {
                self.phase = Phase::Done;
                self.pending.clear();
                return Some(Err(e));
            }
        }
    }

    /// Adds `batch` to the groups, or hands it and the rest of the input
    /// over when its keys do not fit.
    fn aggregate_batch(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        let keys = self.key.evaluate(&batch)?.into_array(rows)?;
        if !self
            .groups
            .intern(&keys, self.rows_read + rows, &mut self.group_ids)
        {
            return self.hand_over(Some(batch));
        }
        self.rows_read += rows;
        let total = self.groups.len();
        let arguments = evaluate_many(&self.arguments, &batch)?;
        for ((accumulator, values), filter) in self
            .accumulators
            .iter_mut()
            .zip(&arguments)
            .zip(&self.filters)
        {
            if self.merging {
                accumulator.merge_batch(values, &self.group_ids, total)?;
                continue;
            }
            let filter = match filter {
                Some(f) => Some(f.evaluate(&batch)?.into_array(rows)?),
                None => None,
            };
            let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
            accumulator.update_batch(values, &self.group_ids, filter, total)?;
        }
        if self.reservation.try_resize(self.used()).is_err() {
            // Short of memory: a first stage emits what it has, as
            // DataFusion's does; a final stage leaves the rest to
            // DataFusion's, which can spill.
            if self.finishing {
                return self.hand_over(None);
            }
            self.emit()?;
            self.reservation.try_resize(self.used())?;
        }
        Ok(())
    }

    fn used(&self) -> usize {
        self.groups.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// The groups so far as a batch of `schema` (keys, then each
    /// accumulator's state, or its value with `values`); they start afresh.
    fn take_groups(&mut self, schema: &SchemaRef, values: bool) -> Result<Option<RecordBatch>> {
        if self.groups.len() == 0 {
            return Ok(None);
        }
        let mut columns = vec![self.groups.emit()];
        for accumulator in &mut self.accumulators {
            if values {
                columns.push(accumulator.evaluate(EmitTo::All)?);
            } else {
                columns.extend(accumulator.state(EmitTo::All)?);
            }
        }
        let batch = RecordBatch::try_new(Arc::clone(schema), columns)?;
        self.reservation.resize(self.used());
        Ok(Some(batch))
    }

    /// Queues the groups so far as output.
    fn emit(&mut self) -> Result<()> {
        let schema = Arc::clone(&self.schema);
        let Some(batch) = self.take_groups(&schema, self.finishing)? else {
            return Ok(());
        };
        self.pending.extend(slices(&batch, self.batch_size));
        Ok(())
    }

    /// Gives `batch` and the rest of the input to DataFusion's own
    /// aggregation. A first stage emits its groups first; a final stage
    /// hands them over too, as states to merge, ahead of the rest.
    fn hand_over(&mut self, batch: Option<RecordBatch>) -> Result<()> {
        let input_schema = self.aggregate.input().schema();
        let mut first = Vec::new();
        if self.finishing {
            // In batches, so that DataFusion's can spill between them.
            if let Some(states) = self.take_groups(&input_schema, false)? {
                first.extend(slices(&states, self.batch_size));
            }
        } else {
            self.emit()?;
        }
        self.reservation.resize(0);
        let Phase::Dense(input) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return internal_err!("handed over twice");
        };
        first.extend(batch);
        let handed_over = self.handed_over.clone();
        let rest = futures::stream::iter(first.into_iter().map(Ok))
            .chain(input)
            .inspect(move |b| {
                if let Ok(b) = b {
                    handed_over.add(b.num_rows());
                }
            });
        let rest = RecordBatchStreamAdapter::new(Arc::clone(&input_schema), rest);
        let source = Arc::new(StreamingTableExec::try_new(
            input_schema,
            vec![Arc::new(OnceStream::new(Box::pin(rest)))],
            None,
            [],
            false,
            None,
        )?);
        let own = Arc::clone(&self.aggregate).replace_children(vec![source], recompute())?;
        self.phase = Phase::HandedOver(own.execute(0, Arc::clone(&self.context))?);
        Ok(())
    }
}

/// `batch` in slices of at most `size` rows.
fn slices(batch: &RecordBatch, size: usize) -> impl Iterator<Item = RecordBatch> + '_ {
    let size = size.max(1);
    (0..batch.num_rows())
        .step_by(size)
        .map(move |offset| batch.slice(offset, size.min(batch.num_rows() - offset)))
}

fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

/// A stream that has already begun, as a partition DataFusion can run once.
struct OnceStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl OnceStream {
    fn new(stream: SendableRecordBatchStream) -> Self {
        Self {
            schema: stream.schema(),
            stream: Mutex::new(Some(stream)),
        }
    }
}

impl fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("OnceStream")
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        taken.unwrap_or_else(|| {
            let schema = Arc::clone(&self.schema);
            let error = datafusion::error::DataFusionError::Internal(
                "a handed-over aggregation input runs once".into(),
            );
            Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::once(async move { Err(error) }),
            ))
        })
    }
}

/// Group ids for the keys of one integer type.
trait DenseGroups: Send {
    /// Sets `ids` to the group of each of `keys`' rows, `rows_read` rows
    /// read with them; false (and nothing changed) if they do not fit.
    fn intern(&mut self, keys: &ArrayRef, rows_read: usize, ids: &mut Vec<usize>) -> bool;
    /// Groups so far.
    fn len(&self) -> usize;
    /// Bytes held.
    fn size(&self) -> usize;
    /// Each group's key, by group id; the groups start afresh.
    fn emit(&mut self) -> ArrayRef;
}

/// The dense group ids for keys of `data_type`, if it is a supported key.
fn dense_keys(data_type: &DataType) -> Option<Box<dyn DenseGroups>> {
    fn of<T: ArrowNumericType>(data_type: &DataType) -> Option<Box<dyn DenseGroups>>
    where
        T::Native: Key,
    {
        Some(Box::new(Dense::<T>::new(data_type.clone())))
    }
    match data_type {
        DataType::Int8 => of::<Int8Type>(data_type),
        DataType::Int16 => of::<Int16Type>(data_type),
        DataType::Int32 => of::<Int32Type>(data_type),
        DataType::Int64 => of::<Int64Type>(data_type),
        DataType::UInt8 => of::<UInt8Type>(data_type),
        DataType::UInt16 => of::<UInt16Type>(data_type),
        DataType::UInt32 => of::<UInt32Type>(data_type),
        _ => None,
    }
}

/// An integer key as an i64, exactly.
trait Key: Copy + Default + Send + PartialOrd + 'static {
    fn wide(self) -> i64;
}

macro_rules! keys {
    ($($t:ty),*) => {
        $(impl Key for $t {
            #[inline]
            fn wide(self) -> i64 {
                i64::from(self)
            }
        })*
    };
}
keys!(i8, i16, i32, i64, u8, u16, u32);

/// Group ids of keys, each at `slots[key - low]` (plus one; 0: no group yet).
struct Dense<T: ArrowNumericType> {
    data_type: DataType,
    low: i64,
    slots: Vec<u32>,
    /// Each group's key, by group id (the null group's is a placeholder).
    keys: Vec<T::Native>,
    null_group: Option<usize>,
}

impl<T: ArrowNumericType> Dense<T>
where
    T::Native: Key,
{
    fn new(data_type: DataType) -> Self {
        Self {
            data_type,
            low: 0,
            slots: Vec::new(),
            keys: Vec::new(),
            null_group: None,
        }
    }

    /// Makes the slots cover `first..=last`; false if that spans more
    /// than `rows_read` rows allow.
    fn cover(&mut self, first: i64, last: i64, rows_read: usize) -> bool {
        let limit = (rows_read.saturating_mul(SLOTS_PER_ROW)).clamp(MIN_SLOTS, MAX_SLOTS) as i128;
        let (low, len) = (i128::from(self.low), self.slots.len() as i128);
        let (first, last) = if len == 0 {
            (i128::from(first), i128::from(last))
        } else {
            (
                low.min(i128::from(first)),
                (low + len - 1).max(i128::from(last)),
            )
        };
        let span = last - first + 1;
        if span > limit {
            return false;
        }
        if len > 0 && first >= low && last < low + len {
            return true;
        }
        // Room to grow on the side that grew, so that keys rising batch
        // by batch do not copy the slots every time.
        let size = span.max((2 * len).min(limit));
        let new_low = if len > 0 && first < low {
            (last - size + 1).max(i128::from(i64::MIN))
        } else {
            first
        };
        let mut slots = vec![0u32; size as usize];
        if len > 0 {
            let at = (low - new_low) as usize;
            slots[at..at + self.slots.len()].copy_from_slice(&self.slots);
        }
        self.slots = slots;
        self.low = new_low as i64;
        true
    }

    #[inline]
    fn id_of(&mut self, key: T::Native) -> usize {
        let slot = &mut self.slots[(key.wide() - self.low) as usize];
        if *slot == 0 {
            self.keys.push(key);
            *slot = self.keys.len() as u32;
        }
        (*slot - 1) as usize
    }

    fn null_id(&mut self) -> usize {
        *self.null_group.get_or_insert_with(|| {
            self.keys.push(T::Native::default());
            self.keys.len() - 1
        })
    }
}

impl<T: ArrowNumericType> DenseGroups for Dense<T>
where
    T::Native: Key,
{
    fn intern(&mut self, keys: &ArrayRef, rows_read: usize, ids: &mut Vec<usize>) -> bool {
        let keys: &PrimitiveArray<T> = keys.as_primitive();
        if let (Some(first), Some(last)) = (min(keys), max(keys))
            && !self.cover(first.wide(), last.wide(), rows_read)
        {
            return false;
        }
        ids.clear();
        ids.reserve(keys.len());
        let values = keys.values();
        match keys.nulls().filter(|n| n.null_count() > 0) {
            None => ids.extend(values.iter().map(|&k| self.id_of(k))),
            Some(nulls) => {
                for (i, &k) in values.iter().enumerate() {
                    let id = if nulls.is_valid(i) {
                        self.id_of(k)
                    } else {
                        self.null_id()
                    };
                    ids.push(id);
                }
            }
        }
        true
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<u32>() + self.keys.capacity() * size_of::<T::Native>()
    }

    fn emit(&mut self) -> ArrayRef {
        let keys = std::mem::take(&mut self.keys);
        let nulls = self
            .null_group
            .take()
            .map(|g| NullBuffer::from_iter((0..keys.len()).map(|i| i != g)));
        self.slots = Vec::new();
        Arc::new(
            PrimitiveArray::<T>::new(ScalarBuffer::from(keys), nulls)
                .with_data_type(self.data_type.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, Int64Array};
    use datafusion::common::tree_node::TreeNode;
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    fn int32(values: &[Option<i32>]) -> ArrayRef {
        Arc::new(Int32Array::from(values.to_vec()))
    }

    #[test]
    fn group_ids_follow_first_appearance_and_nulls_have_their_own() {
        let mut groups = Dense::<Int32Type>::new(DataType::Int32);
        let mut ids = Vec::new();
        let keys = int32(&[Some(5), Some(3), Some(5), None, Some(3), Some(7), None]);
        assert!(groups.intern(&keys, 7, &mut ids));
        assert_eq!(ids, [0, 1, 0, 2, 1, 3, 2]);
        let emitted = groups.emit();
        assert_eq!(
            emitted.as_primitive::<Int32Type>(),
            &Int32Array::from(vec![Some(5), Some(3), None, Some(7)])
        );
        assert_eq!(groups.len(), 0);
    }

    #[test]
    fn keys_reaching_lower_or_higher_keep_the_groups_so_far() {
        let mut groups = Dense::<Int32Type>::new(DataType::Int32);
        let mut ids = Vec::new();
        assert!(groups.intern(&int32(&[Some(1000), Some(1001)]), 2, &mut ids));
        assert!(groups.intern(&int32(&[Some(-5000), Some(1000)]), 4, &mut ids));
        assert_eq!(ids, [2, 0]);
        assert!(groups.intern(
            &int32(&[Some(60_000), Some(1001), Some(-5000)]),
            7,
            &mut ids
        ));
        assert_eq!(ids, [3, 1, 2]);
    }

    #[test]
    fn keys_too_far_apart_do_not_fit_and_change_nothing() {
        let mut groups = Dense::<Int32Type>::new(DataType::Int32);
        let mut ids = vec![9];
        assert!(groups.intern(&int32(&[Some(0), Some(10)]), 2, &mut ids));
        let far = int32(&[Some(0), Some(MIN_SLOTS as i32)]);
        assert!(!groups.intern(&far, 4, &mut ids));
        assert_eq!((groups.len(), ids.as_slice()), (2, [0, 1].as_slice()));
        // Past MIN_SLOTS the span may grow with the rows read.
        assert!(groups.intern(&far, MIN_SLOTS, &mut ids));
        assert_eq!(ids, [0, 2]);
    }

    /// Groups, rows, sum of values and sum of keys of `SELECT k, count(*),
    /// sum(v) ... GROUP BY k`, whatever the order of its rows.
    fn totals(batches: &[RecordBatch]) -> (usize, i64, i64, i64) {
        let mut totals = (0, 0, 0, 0);
        for b in batches {
            let column = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().unwrap();
            totals.0 += b.num_rows();
            totals.1 += column(1).iter().flatten().sum::<i64>();
            totals.2 += column(2).iter().flatten().sum::<i64>();
            totals.3 += column(0).iter().flatten().sum::<i64>();
        }
        totals
    }

    /// Both stages of `plan` as dense aggregations; how many there are.
    fn densified(
        plan: Arc<dyn ExecutionPlan>,
    ) -> (Arc<dyn ExecutionPlan>, Vec<Arc<DenseAggregateExec>>) {
        let mut dense = Vec::new();
        let plan = plan
            .transform_up(|node| {
                let Some(a) = (node.as_ref() as &dyn Any).downcast_ref::<AggregateExec>() else {
                    return Ok(Transformed::no(node));
                };
                let exec = Arc::new(DenseAggregateExec::try_new(&Arc::new(a.clone())).unwrap());
                dense.push(Arc::clone(&exec));
                Ok(Transformed::yes(exec as Arc<dyn ExecutionPlan>))
            })
            .unwrap()
            .data;
        (plan, dense)
    }

    fn handed_over(exec: &DenseAggregateExec) -> usize {
        exec.metrics()
            .and_then(|m| m.sum_by_name("rows_handed_over"))
            .map_or(0, |v| v.as_usize())
    }

    #[tokio::test]
    async fn short_of_memory_both_stages_hand_over_and_answer_as_datafusion() {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(1024);
        let ctx = SessionContext::new_with_config(config.clone());
        // A plan runs once: each run gets its own.
        let plan = || async {
            ctx.sql(
                "SELECT k, count(*) AS c, sum(v) AS s FROM \
                 (SELECT value % 60000 AS k, value AS v FROM range(0, 240000)) GROUP BY k",
            )
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
        };
        let expected = totals(&collect(plan().await, ctx.task_ctx()).await.unwrap());
        assert_eq!(expected, (60000, 240000, 28_799_880_000, 1_799_970_000));

        // Roomy: nothing handed over.
        let (dense, stages) = densified(plan().await);
        assert_eq!(stages.len(), 2);
        let got = totals(&collect(dense, ctx.task_ctx()).await.unwrap());
        assert_eq!(got, expected);
        assert!(stages.iter().all(|s| handed_over(s) == 0));

        // A pool too small for all groups, where DataFusion's own plan
        // spills: the first stage emits early, the final one hands its
        // groups to DataFusion's.
        // (Passed here at every limit from 0.5 to 4 MB.)
        let limit = 1 << 20;
        let small = || {
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
                .build_arc()
                .unwrap();
            Arc::new(
                TaskContext::default()
                    .with_session_config(config.clone())
                    .with_runtime(runtime),
            )
        };
        let own = totals(&collect(plan().await, small()).await.unwrap());
        assert_eq!(own, expected);
        let (dense, stages) = densified(plan().await);
        let got = totals(&collect(dense, small()).await.unwrap());
        assert_eq!(got, expected);
        assert!(handed_over(&stages[1]) > 0, "the final stage handed over");
    }
}
