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
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ScalarValue, Statistics, internal_err};
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, InListExpr, Literal};
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr_common::physical_expr::{
    snapshot_generation, snapshot_physical_expr,
};
use datafusion::physical_plan::joins::{HashExpr, HashTableLookupExpr};
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
    /// Tests only a filter that is a list of keys, which costs a third of
    /// a join's probe; one that looks keys up in a hash table costs what
    /// the probe costs and is passed on untested.
    lists_only: bool,
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
            lists_only: false,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The same filter, tested only while it is a list of keys.
    pub fn lists_only(mut self) -> Self {
        self.lists_only = true;
        self
    }

    /// Whether only a list of keys is tested.
    pub fn is_lists_only(&self) -> bool {
        self.lists_only
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
        let lists = if self.lists_only {
            "key lists only, "
        } else {
            ""
        };
        write!(f, "JoinFilterExec: {lists}{}", self.predicate)
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
        let mut new = Self::new(Arc::clone(&self.predicate), children.remove(0));
        new.lists_only = self.lists_only;
        Ok(Arc::new(new))
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
            lists_only: self.lists_only,
            compiled: None,
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
    lists_only: bool,
    compiled: Option<Compiled>,
    tested: usize,
    kept: usize,
    testing: bool,
    baseline: BaselineMetrics,
    rows_tested: Count,
    stopped_testing: Count,
}

/// The predicate as of a generation, in the form tested.
struct Compiled {
    generation: u64,
    predicate: Arc<dyn PhysicalExpr>,
    /// Only key lists: what a lists-only filter tests.
    key_list: bool,
}

impl JoinFilterStream {
    fn test(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let _timer = self.baseline.elapsed_compute().timer();
        let generation = snapshot_generation(&self.predicate);
        let known = generation != self.unknown_generation;
        let (predicate, key_list) = match &self.compiled {
            Some(compiled) if compiled.generation == generation => {
                (Arc::clone(&compiled.predicate), compiled.key_list)
            }
            _ => {
                let snapshot = snapshot_physical_expr(Arc::clone(&self.predicate))?;
                let predicate = without_partition_routing(snapshot, &batch.schema())?;
                let key_list = is_key_list(&predicate)?;
                self.compiled = Some(Compiled {
                    generation,
                    predicate: Arc::clone(&predicate),
                    key_list,
                });
                (predicate, key_list)
            }
        };
        if self.lists_only && !key_list {
            if known {
                self.testing = false;
                self.stopped_testing.add(1);
            }
            return Ok(batch.clone());
        }
        let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
        let kept = filter_record_batch(batch, mask.as_boolean())?;
        self.tested += batch.num_rows();
        self.kept += kept.num_rows();
        self.rows_tested.add(batch.num_rows());
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

/// Whether `filter` tests keys against lists only: no hash table lookup,
/// no routing to partitions left.
fn is_key_list(filter: &Arc<dyn PhysicalExpr>) -> Result<bool> {
    let mut lists = false;
    let hashes = filter.exists(|e| {
        lists |= e.downcast_ref::<InListExpr>().is_some();
        Ok(e.downcast_ref::<HashTableLookupExpr>().is_some()
            || e.downcast_ref::<HashExpr>().is_some())
    })?;
    Ok(lists && !hashes)
}

/// `filter` with each routing of rows to their partition's key set
/// (`CASE hash(key) % n WHEN i THEN bounds AND key IN (...) ... ELSE
/// false END`) replaced by one `key IN (...)` of every partition's keys.
/// The union keeps the rows the routing keeps: a key reaches the partition
/// its hash picks, on the build side as on this one. Bounds next to a list
/// are left out, the list decides (they cost as much as the list, Q17's
/// part join). Routings to a hash table (large build sides) stay.
fn without_partition_routing(
    filter: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    filter
        .transform_up(|e| {
            Ok(match union_of_partitions(&e, schema)? {
                Some(union) => Transformed::yes(union),
                None => Transformed::no(e),
            })
        })
        .map(|t| t.data)
}

/// A key list ANDed with bounds on the same key: the list alone, which
/// implies the bounds (a join's filter takes both from one build side).
fn list_without_bounds(expr: &Arc<dyn PhysicalExpr>) -> Option<Arc<dyn PhysicalExpr>> {
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    if *binary.op() != Operator::And {
        return None;
    }
    let conjuncts = split_conjunction(expr);
    let lists: Vec<&Arc<dyn PhysicalExpr>> = conjuncts
        .iter()
        .copied()
        .filter(|e| e.downcast_ref::<InListExpr>().is_some_and(|l| !l.negated()))
        .collect();
    let [list_expr] = lists[..] else {
        return None;
    };
    let key = list_expr.downcast_ref::<InListExpr>()?.expr();
    let is_bound = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<BinaryExpr>().is_some_and(|b| {
            matches!(
                b.op(),
                Operator::GtEq | Operator::LtEq | Operator::Gt | Operator::Lt
            ) && b.left() == key
                && b.right().downcast_ref::<Literal>().is_some()
        })
    };
    let all_bounds = conjuncts
        .iter()
        .all(|e| Arc::ptr_eq(e, list_expr) || is_bound(e));
    all_bounds.then(|| Arc::clone(list_expr))
}

fn union_of_partitions(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    if let Some(list) = list_without_bounds(expr) {
        return Ok(Some(list));
    }
    let Some(case) = expr.downcast_ref::<CaseExpr>() else {
        return Ok(None);
    };
    let routes_by_hash = case.expr().is_some_and(|base| {
        base.downcast_ref::<BinaryExpr>()
            .is_some_and(|b| *b.op() == Operator::Modulo)
    });
    let is_false = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .is_some_and(|l| *l.value() == ScalarValue::Boolean(Some(false)))
    };
    if !routes_by_hash || !case.else_expr().is_some_and(is_false) {
        return Ok(None);
    }
    let mut key = None;
    let mut values = vec![];
    for (_, then) in case.when_then_expr() {
        if is_false(then) {
            continue; // a partition whose build side is empty
        }
        let lists: Vec<&InListExpr> = split_conjunction(then)
            .into_iter()
            .filter_map(|e| e.downcast_ref::<InListExpr>())
            .filter(|list| !list.negated())
            .collect();
        let [list] = lists.as_slice() else {
            return Ok(None);
        };
        match &key {
            None => key = Some(Arc::clone(list.expr())),
            Some(key) if key == list.expr() => {}
            Some(_) => return Ok(None),
        }
        values.extend(list.list().iter().cloned());
    }
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(Some(Arc::new(InListExpr::try_new(
        key, values, false, schema,
    )?)))
}

impl RecordBatchStream for JoinFilterStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::{col, lit};

    fn keys() -> RecordBatch {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, false)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from_iter_values(0..12))],
        )
        .unwrap()
    }

    fn and(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, Operator::And, r))
    }

    /// `CASE k % 2 WHEN 0 THEN <even> WHEN 1 THEN <odd> ELSE false END`,
    /// shaped as a partitioned join's filter.
    fn routing(even: Arc<dyn PhysicalExpr>, odd: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        let schema = keys().schema();
        let k = col("k", &schema).unwrap();
        let base = Arc::new(BinaryExpr::new(k, Operator::Modulo, lit(2_i64)));
        Arc::new(
            CaseExpr::try_new(
                Some(base),
                vec![(lit(0_i64), even), (lit(1_i64), odd)],
                Some(lit(false)),
            )
            .unwrap(),
        )
    }

    fn in_list(values: &[i64]) -> Arc<dyn PhysicalExpr> {
        let schema = keys().schema();
        let list = values.iter().map(|v| lit(*v)).collect();
        Arc::new(InListExpr::try_new(col("k", &schema).unwrap(), list, false, &schema).unwrap())
    }

    fn mask(expr: &Arc<dyn PhysicalExpr>) -> Vec<Option<bool>> {
        let batch = keys();
        let value = expr
            .evaluate(&batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap();
        value.as_boolean().iter().collect()
    }

    #[test]
    fn one_list_of_every_partitions_keys_keeps_what_the_routing_keeps() {
        let schema = keys().schema();
        let k = col("k", &schema).unwrap();
        let bounds = and(
            Arc::new(BinaryExpr::new(Arc::clone(&k), Operator::GtEq, lit(2_i64))),
            Arc::new(BinaryExpr::new(k, Operator::LtEq, lit(8_i64))),
        );
        let filter = routing(
            and(Arc::clone(&bounds), in_list(&[2, 4, 8])),
            in_list(&[1, 3, 11]),
        );
        let union = without_partition_routing(Arc::clone(&filter), &schema).unwrap();
        assert!(union.downcast_ref::<InListExpr>().is_some(), "{union}");
        // Bounds next to a list, without a routing: the list alone.
        let listed = and(Arc::clone(&bounds), in_list(&[2, 4, 8]));
        let alone = without_partition_routing(Arc::clone(&listed), &schema).unwrap();
        assert!(alone.downcast_ref::<InListExpr>().is_some(), "{alone}");
        assert_eq!(mask(&alone), mask(&listed));
        assert_eq!(mask(&union), mask(&filter));
        assert_eq!(mask(&union).iter().filter(|m| **m == Some(true)).count(), 6);
    }

    #[test]
    fn a_routing_to_anything_but_lists_stays() {
        let schema = keys().schema();
        let k = col("k", &schema).unwrap();
        let above = Arc::new(BinaryExpr::new(k, Operator::Gt, lit(5_i64)));
        let filter = routing(in_list(&[2]), above);
        let same = without_partition_routing(Arc::clone(&filter), &schema).unwrap();
        assert_eq!(same.to_string(), filter.to_string());
    }
}
