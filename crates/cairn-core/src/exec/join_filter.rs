//! [`JoinFilterExec`]: the filters a hash join derives from its build side,
//! tested on the rows of a scan below it, for as long as they pay.
//!
//! A join's filter keeps the rows whose key the build side has: all of
//! them when the build side is a whole table (TPC-H Q09's orders, 1.5M
//! keys), 0.1% when it is a few parts (Q17). Testing a row costs a hash
//! and a lookup, and more than a join's probe when the join is
//! partitioned (the filter picks the partition's key set by a `CASE` on
//! the hash: 74 ns a row for Q08's lineitem at SF 10, where its join
//! probes in 14). So the test pays only where it drops nearly every row:
//! each partition tests the first rows, and once the filter is known
//! (updated by its join) and has kept more than one in [`KEEP_AT_MOST`] of
//! at least [`SAMPLE_ROWS`], it passes the rest on untested. Passing rows
//! on is always correct: the join applies its condition itself.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, internal_err};
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::snapshot_generation;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// Rows a partition tests before it may stop testing.
pub const SAMPLE_ROWS: usize = 32_768;

/// A filter that keeps more than one row in this many stops being tested.
pub const KEEP_AT_MOST: usize = 10;

/// Keeps the rows of its input that pass `predicate`, a conjunction of
/// join filters, until the filter proves unselective (see the module).
#[derive(Debug)]
pub struct JoinFilterExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    /// The predicate's generation before any of its joins updated it.
    unknown_generation: u64,
    metrics: ExecutionPlanMetricsSet,
}

impl JoinFilterExec {
    /// A filter of `input` by `predicate`, whose columns are `input`'s.
    pub fn new(predicate: Arc<dyn PhysicalExpr>, input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            unknown_generation: snapshot_generation(&predicate),
            input,
            predicate,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The join filters tested.
    pub fn predicate(&self) -> &Arc<dyn PhysicalExpr> {
        &self.predicate
    }

    /// What is filtered.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for JoinFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "JoinFilterExec: {}", self.predicate)
    }
}

impl ExecutionPlan for JoinFilterExec {
    fn name(&self) -> &str {
        "JoinFilterExec"
    }

    /// The input's: the same columns, partitions and order, fewer rows.
    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("JoinFilterExec has one child");
        }
        Ok(Arc::new(Self::new(
            Arc::clone(&self.predicate),
            children.remove(0),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(JoinFilterStream {
            input: self.input.execute(partition, context)?,
            predicate: Arc::clone(&self.predicate),
            unknown_generation: self.unknown_generation,
            tested: 0,
            kept: 0,
            testing: true,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            rows_tested: MetricBuilder::new(&self.metrics).counter("rows_tested", partition),
            stopped_testing: MetricBuilder::new(&self.metrics)
                .counter("partitions_stopped_testing", partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(Arc::new(input_stats[0].as_ref().clone().to_inexact()))
    }
}

struct JoinFilterStream {
    input: SendableRecordBatchStream,
    predicate: Arc<dyn PhysicalExpr>,
    unknown_generation: u64,
    tested: usize,
    kept: usize,
    testing: bool,
    baseline: BaselineMetrics,
    rows_tested: Count,
    stopped_testing: Count,
}

impl JoinFilterStream {
    fn test(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let _timer = self.baseline.elapsed_compute().timer();
        let mask = self
            .predicate
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        let kept = filter_record_batch(batch, mask.as_boolean())?;
        self.tested += batch.num_rows();
        self.kept += kept.num_rows();
        self.rows_tested.add(batch.num_rows());
        let known = snapshot_generation(&self.predicate) != self.unknown_generation;
        if known && self.tested >= SAMPLE_ROWS && self.kept * KEEP_AT_MOST > self.tested {
            self.testing = false;
            self.stopped_testing.add(1);
        }
        Ok(kept)
    }
}

impl Stream for JoinFilterStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let batch = match self.input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => batch,
                other => return self.baseline.record_poll(other),
            };
            let out = if self.testing {
                match self.test(&batch) {
                    Ok(kept) => kept,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            } else {
                batch
            };
            if out.num_rows() > 0 {
                return self.baseline.record_poll(Poll::Ready(Some(Ok(out))));
            }
        }
    }
}

impl RecordBatchStream for JoinFilterStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
