//! The filters hash joins derive at run time, applied to rows.
//!
//! A hash join in DataFusion 55 turns its build side into a filter (the
//! keys' bounds and set) and pushes it into the probe side's scan. Unless
//! `datafusion.execution.parquet.pushdown_filters` is on, the Parquet scan
//! uses it only to skip row groups, and keys scattered through a file skip
//! none: every probe row travels on to the join through whatever lies
//! between. TPC-H Q17 aggregates all six million rows of lineitem by part
//! to keep the 0.1% a join wants; Q07 joins 1.8 million lineitems with
//! orders and customers before a nation join keeps 8% of them. Turning
//! pushdown on for every scan costs more than it saves where the query's
//! own filters keep most rows (Q06 and Q12 run twice as long), so
//! [`JoinFiltersOnRows`] puts a [`JoinFilterExec`] of the join-derived
//! filters above the scans (and the query's own filters of them) that
//! received them.
//!
//! Every filter is tested where it crosses work on its way down: an
//! aggregate, a join with a partitioned build side, a sort. Testing a row
//! against a hash table costs about what a probe costs (a hash and a
//! lookup), so where a scan reaches its join through repartitions,
//! projections or joins on a small collected build side only, the filter
//! is tested only while it is a list of keys (a small build side), which
//! costs a third of the probe (TPC-H Q17's part join: 6M rows probed
//! against 204 keys); hash-table filters there gained nothing and lost the
//! test's time (Q03, Q05 and Q08 ran 10-25% longer). And each
//! `JoinFilterExec` stops testing a partition's rows once the filter keeps
//! more than a tenth of them (Q09's is built on all of orders and keeps
//! every row; Q08's keeps 30% of lineitem at SF 10 and cost 4.4 s there).
//!
//! The filter starts as `true` and is replaced once the build side is
//! complete, which is before the join reads its probe side: rows are never
//! dropped by a filter that is not yet known.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::buffer::BufferExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;

use crate::config::CairnOptions;
use crate::exec::JoinFilterExec;

/// Filters a Parquet scan's rows by the join filters pushed into it
/// (`cairn.join_filters_on_rows`, default on). Runs after DataFusion's
/// own rules, once dynamic filters have reached the scans.
#[derive(Debug, Default)]
pub struct JoinFiltersOnRows;

impl PhysicalOptimizerRule for JoinFiltersOnRows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let on =
            CairnOptions::in_options(config).is_some_and(|options| options.join_filters_on_rows);
        if !on || config.execution.parquet.pushdown_filters {
            return Ok(plan);
        }
        Ok(place(&plan, &Crossed::default())?.unwrap_or(plan))
    }

    fn name(&self) -> &str {
        "cairn_join_filters_on_rows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The join filters on the way down to a node, by `expression_id`.
#[derive(Debug, Default, Clone)]
struct Crossed {
    /// Filters that crossed work since their join: worth applying.
    work: HashSet<u64>,
    /// Filters whose join is reached through pass-through nodes only.
    none: HashSet<u64>,
}

/// `node` with a filter placed above each scan that receives a filter
/// which crossed work; `None` if nothing changed below it.
fn place(
    node: &Arc<dyn ExecutionPlan>,
    crossed: &Crossed,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if node.downcast_ref::<JoinFilterExec>().is_some() {
        // Placed already: a plan optimized twice keeps one filter per scan.
        return Ok(None);
    }
    if let Some((scan, filters)) = scan_unit(node) {
        let (mut predicate, lists_only) = match join_filters_of(scan, &crossed.work) {
            Some(predicate) => (predicate, false),
            None => match join_filters_of(scan, &crossed.none) {
                Some(predicate) => (predicate, true),
                None => return Ok(None),
            },
        };
        // Above the query's own filters of the scan, which are cheaper and
        // leave fewer rows to test (Q20 keeps 15% of lineitem by date).
        for filter in filters.iter().rev() {
            let Some(projection) = filter.projection() else {
                continue;
            };
            let through = ProjectionExprs::from_indices(projection, &filter.input().schema());
            let Ok(projected) = through.project_expr(&predicate) else {
                return Ok(None);
            };
            predicate = projected;
        }
        let filter = JoinFilterExec::new(predicate, Arc::clone(node));
        let filter = if lists_only {
            filter.lists_only()
        } else {
            filter
        };
        return Ok(Some(Arc::new(filter)));
    }
    let mut below = crossed.clone();
    if !passes_through(node) {
        below.work.extend(below.none.drain());
    }
    // A hash join's filter, new on the way down from it.
    below.none.extend(
        node.dynamic_expressions_produced()
            .iter()
            .filter_map(|e| e.expression_id()),
    );
    let children = node.children();
    let mut changed = false;
    let mut new_children = Vec::with_capacity(children.len());
    for child in children {
        match place(child, &below)? {
            Some(new) => {
                changed = true;
                new_children.push(new);
            }
            None => new_children.push(Arc::clone(child)),
        }
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(replace_children_if_necessary(
        Arc::clone(node),
        new_children,
    )?))
}

/// A scan with the filters stacked directly on it, top first.
fn scan_unit(node: &Arc<dyn ExecutionPlan>) -> Option<(&DataSourceExec, Vec<&FilterExec>)> {
    let mut filters = vec![];
    let mut at = node;
    loop {
        if let Some(scan) = at.downcast_ref::<DataSourceExec>() {
            return Some((scan, filters));
        }
        let filter = at.downcast_ref::<FilterExec>()?;
        filters.push(filter);
        at = filter.input();
    }
}

/// Nodes that hand rows on without work worth a filter's time: a join
/// whose build side is collected once is small, and its probe is as cheap
/// as the filter's test (Q08's lineitem, 6% kept, ran longer filtered).
fn passes_through(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<RepartitionExec>().is_some()
        || node.downcast_ref::<ProjectionExec>().is_some()
        || node.downcast_ref::<FilterExec>().is_some()
        || node.downcast_ref::<CoalescePartitionsExec>().is_some()
        || node.downcast_ref::<CooperativeExec>().is_some()
        || node.downcast_ref::<BufferExec>().is_some()
        || node
            .downcast_ref::<HashJoinExec>()
            .is_some_and(|join| *join.partition_mode() == PartitionMode::CollectLeft)
}

fn is_join_filter(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()
}

/// The join filters among `wanted` of a Parquet scan that does not apply
/// them to rows itself, over the scan's output columns; `None` if none.
fn join_filters_of(scan: &DataSourceExec, wanted: &HashSet<u64>) -> Option<Arc<dyn PhysicalExpr>> {
    let (_, parquet) = scan.downcast_to_file_source::<ParquetSource>()?;
    if parquet.table_parquet_options().global.pushdown_filters {
        return None;
    }
    let projection = parquet.projection();
    // The scan's predicate names the table's columns; the filter above it
    // sees the projected ones. A filter on a column the scan does not
    // output cannot be applied there and is left out.
    let predicate = parquet.filter()?;
    let filters: Vec<_> = split_conjunction(&predicate)
        .into_iter()
        .filter(|e| is_join_filter(e) && e.expression_id().is_some_and(|id| wanted.contains(&id)))
        .filter_map(|e| match projection {
            Some(projection) => projection.project_expr(e).ok(),
            None => Some(Arc::clone(e)),
        })
        .collect();
    (!filters.is_empty()).then(|| conjunction(filters))
}
