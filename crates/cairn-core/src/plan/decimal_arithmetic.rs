//! Decimal `+`, `-` and `*` evaluated without a checked i128 operation per
//! row (see [`DecimalArithmeticExpr`]): `l_extendedprice * (1 - l_discount)`
//! is most of what TPC-H computes per row.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateInputMode};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;

use crate::config::CairnOptions;
use crate::exec::DecimalArithmeticExpr;

/// Evaluates the decimal arithmetic of projections, filters and the
/// arguments of aggregates with [`DecimalArithmeticExpr`]
/// (`cairn.decimal_fast_path`, default on). Answers, errors and plans as
/// shown do not change.
#[derive(Debug, Default)]
pub struct FastDecimalArithmetic;

impl PhysicalOptimizerRule for FastDecimalArithmetic {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let on = CairnOptions::in_options(config).is_some_and(|options| options.decimal_fast_path);
        if !on {
            return Ok(plan);
        }
        plan.transform_up(
            |node| Ok(rewrite(&node)?.map_or(Transformed::no(node), Transformed::yes)),
        )
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "cairn_fast_decimal_arithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` with its decimal arithmetic wrapped; `None` if it has none.
fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        let schema = projection.input().schema();
        let Some(exprs) = rewrite_each(projection.expr(), |e| {
            Ok(wrapped(&e.expr, &schema)?.map(|expr| ProjectionExpr {
                expr,
                alias: e.alias.clone(),
            }))
        })?
        else {
            return Ok(None);
        };
        let input = Arc::clone(projection.input());
        return Ok(Some(Arc::new(ProjectionExec::try_new(exprs, input)?)));
    }
    if let Some(filter) = node.downcast_ref::<FilterExec>() {
        let Some(predicate) = wrapped(filter.predicate(), &filter.input().schema())? else {
            return Ok(None);
        };
        let rebuilt = FilterExecBuilder::from(filter)
            .with_predicate(predicate)
            .build()?;
        return Ok(Some(Arc::new(rebuilt)));
    }
    if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
        // Later stages merge states; only the first evaluates arguments.
        if aggregate.mode().input_mode() != AggregateInputMode::Raw {
            return Ok(None);
        }
        let schema = aggregate.input_schema();
        let Some(aggregates) =
            rewrite_each(aggregate.aggr_expr(), |a| wrapped_arguments(a, &schema))?
        else {
            return Ok(None);
        };
        return Ok(Some(Arc::new(aggregate.with_new_aggr_exprs(aggregates))));
    }
    Ok(None)
}

/// `expr` with each decimal `+`, `-`, `*` in it wrapped; `None` if none.
fn wrapped(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    let rewritten = Arc::clone(expr).transform_up(|e| {
        Ok(match DecimalArithmeticExpr::wrap(&e, schema)? {
            Some(fast) => Transformed::yes(fast),
            None => Transformed::no(e),
        })
    })?;
    Ok(rewritten.transformed.then_some(rewritten.data))
}

fn wrapped_arguments(
    aggregate: &Arc<AggregateFunctionExpr>,
    schema: &Schema,
) -> Result<Option<Arc<AggregateFunctionExpr>>> {
    let expressions = aggregate.all_expressions();
    let Some(args) = rewrite_each(&expressions.args, |arg| wrapped(arg, schema))? else {
        return Ok(None);
    };
    Ok(aggregate
        .with_new_expressions(args, expressions.order_by_exprs)
        .map(Arc::new))
}

/// `items` with `rewrite` applied to each (`None`: kept as it is); `None`
/// if it rewrote none.
fn rewrite_each<T: Clone>(
    items: &[T],
    rewrite: impl Fn(&T) -> Result<Option<T>>,
) -> Result<Option<Vec<T>>> {
    let mut changed = false;
    let rewritten = items
        .iter()
        .map(|item| {
            let new = rewrite(item)?;
            changed |= new.is_some();
            Ok(new.unwrap_or_else(|| item.clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(changed.then_some(rewritten))
}
