//! How a filter tests its conditions: those that compare fixed-width
//! values first, strings after them, each on the rows the earlier ones
//! kept ([`NarrowingConjunction`]).
//!
//! DataFusion evaluates `a AND b AND c` in the order written, and tests a
//! later conjunct only on the rows the earlier ones kept once those are few
//! (`BinaryExpr`'s pre-selection). TPC-H Q12 writes `l_shipmode IN ('MAIL',
//! 'SHIP')` before its date range: six million string comparisons, twice,
//! where the dates would have left 15% of the rows to compare. Its filter
//! took 120-140 ms of compute, 50-70 ms with the dates first.
//!
//! Only comparisons of columns and constants move, which cannot fail:
//! those with a constant first, then those of two columns, then those of
//! strings. A conjunct of any other kind (a cast, arithmetic, a function)
//! keeps its place and nothing crosses it, so an expression the query
//! guards with an earlier test stays guarded.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal,
};
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

use crate::config::CairnOptions;
use crate::exec::NarrowingConjunction;

/// Puts the conditions of each filter that compare fixed-width values
/// ahead of those that compare strings (`cairn.cheap_filters_first`), and
/// tests each on the rows the earlier ones kept (`cairn.filter_narrowing`);
/// both on by default.
#[derive(Debug, Default)]
pub struct FilterConditions;

impl PhysicalOptimizerRule for FilterConditions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(options) = CairnOptions::in_options(config) else {
            return Ok(plan);
        };
        let (reorder, narrow) = (options.cheap_filters_first, options.filter_narrowing);
        if !reorder && !narrow {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            if filter
                .predicate()
                .downcast_ref::<NarrowingConjunction>()
                .is_some()
            {
                return Ok(Transformed::no(node)); // done already
            }
            let schema = filter.input().schema();
            let mut predicate = Arc::clone(filter.predicate());
            if reorder && let Some(cheap_first) = reordered(&predicate, &schema) {
                predicate = cheap_first;
            }
            if narrow {
                let conditions: Vec<_> =
                    split_conjunction(&predicate).into_iter().cloned().collect();
                if conditions.len() > 1 {
                    predicate = Arc::new(NarrowingConjunction::try_new(conditions)?);
                }
            }
            if Arc::ptr_eq(&predicate, filter.predicate()) {
                return Ok(Transformed::no(node));
            }
            let rebuilt = FilterExecBuilder::from(filter)
                .with_predicate(predicate)
                .build()?;
            Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "cairn_filter_conditions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// How a conjunct may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cost {
    /// Compares fixed-width values with a constant: cheap, cannot fail.
    Constant,
    /// Compares two fixed-width columns: cheap, cannot fail.
    Columns,
    /// Compares strings or binaries: costs more, cannot fail.
    Strings,
    /// Anything else: stays where it is written.
    Fixed,
}

/// `predicate` with its conjuncts reordered; `None` if the order stays.
fn reordered(predicate: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
    let conjuncts = split_conjunction(predicate);
    if conjuncts.len() < 2 {
        return None;
    }
    let costed: Vec<(Cost, &Arc<dyn PhysicalExpr>)> =
        conjuncts.iter().map(|c| (cost(c, schema), *c)).collect();
    let mut order: Vec<&Arc<dyn PhysicalExpr>> = Vec::with_capacity(conjuncts.len());
    // Sort each run that ends at a fixed conjunct (or the end), the fixed
    // one staying last; a stable sort keeps the written order among equals.
    for run in costed.split_inclusive(|(cost, _)| *cost == Cost::Fixed) {
        let mut run = run.to_vec();
        let fixed = run.pop_if(|(cost, _)| *cost == Cost::Fixed);
        run.sort_by_key(|(cost, _)| *cost);
        order.extend(run.into_iter().chain(fixed).map(|(_, c)| c));
    }
    let changed = order
        .iter()
        .zip(&conjuncts)
        .any(|(a, b)| !Arc::ptr_eq(a, b));
    changed.then(|| conjunction(order.into_iter().cloned()))
}

fn cost(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Cost {
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        return match binary.op() {
            Operator::And | Operator::Or => {
                cost(binary.left(), schema).max(cost(binary.right(), schema))
            }
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom => compared(&[binary.left(), binary.right()], schema),
            _ => Cost::Fixed,
        };
    }
    if let Some(e) = expr.downcast_ref::<IsNullExpr>() {
        return compared(&[e.arg()], schema);
    }
    if let Some(e) = expr.downcast_ref::<IsNotNullExpr>() {
        return compared(&[e.arg()], schema);
    }
    if let Some(like) = expr.downcast_ref::<LikeExpr>() {
        return match compared(&[like.expr(), like.pattern()], schema) {
            Cost::Strings => Cost::Strings,
            _ => Cost::Fixed,
        };
    }
    if let Some(list) = expr.downcast_ref::<InListExpr>() {
        let mut operands = vec![list.expr()];
        operands.extend(list.list());
        return compared(&operands, schema);
    }
    Cost::Fixed
}

/// The cost of comparing `operands`: columns and constants only.
fn compared(operands: &[&Arc<dyn PhysicalExpr>], schema: &Schema) -> Cost {
    let mut columns = 0;
    let mut strings = false;
    for operand in operands {
        let data_type = if let Some(column) = operand.downcast_ref::<Column>() {
            columns += 1;
            match schema.fields().get(column.index()) {
                Some(field) => field.data_type().clone(),
                None => return Cost::Fixed,
            }
        } else if let Some(literal) = operand.downcast_ref::<Literal>() {
            literal.value().data_type()
        } else {
            return Cost::Fixed;
        };
        match data_type {
            DataType::Utf8
            | DataType::Utf8View
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::BinaryView
            | DataType::LargeBinary => strings = true,
            t if t.is_primitive() || t == DataType::Boolean || t == DataType::Null => {}
            _ => return Cost::Fixed,
        }
    }
    match (strings, columns) {
        (true, _) => Cost::Strings,
        (false, 0 | 1) => Cost::Constant,
        (false, _) => Cost::Columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{CastExpr, col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("mode", DataType::Utf8View, false),
            Field::new("ship", DataType::Date32, false),
            Field::new("receipt", DataType::Date32, false),
            Field::new("n", DataType::Int64, false),
        ])
    }

    fn cmp(
        l: Arc<dyn PhysicalExpr>,
        op: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    fn shown(expr: Option<Arc<dyn PhysicalExpr>>) -> Option<String> {
        expr.map(|e| e.to_string())
    }

    #[test]
    fn strings_go_last_and_constants_first() {
        let s = schema();
        let c = |name| col(name, &s).unwrap();
        let mode = cmp(
            cmp(c("mode"), Operator::Eq, lit("MAIL")),
            Operator::Or,
            cmp(c("mode"), Operator::Eq, lit("SHIP")),
        );
        let predicate = conjunction([
            mode,
            cmp(c("ship"), Operator::Lt, c("receipt")),
            cmp(c("n"), Operator::GtEq, lit(5_i64)),
        ]);
        assert_eq!(
            shown(reordered(&predicate, &s)).as_deref(),
            Some("n@3 >= 5 AND ship@1 < receipt@2 AND (mode@0 = MAIL OR mode@0 = SHIP)")
        );
    }

    #[test]
    fn nothing_crosses_what_may_fail_and_a_good_order_stays() {
        let s = schema();
        let c = |name| col(name, &s).unwrap();
        let cast: Arc<dyn PhysicalExpr> = Arc::new(CastExpr::new(c("n"), DataType::Int32, None));
        // `n > 0` guards the cast: neither moves across the other.
        let guarded = conjunction([
            cmp(c("mode"), Operator::Eq, lit("MAIL")),
            cmp(cast, Operator::Lt, lit(7_i32)),
            cmp(c("n"), Operator::Gt, lit(0_i64)),
        ]);
        assert_eq!(shown(reordered(&guarded, &s)), None);
        let good = conjunction([
            cmp(c("n"), Operator::Gt, lit(0_i64)),
            cmp(c("mode"), Operator::Eq, lit("MAIL")),
        ]);
        assert_eq!(shown(reordered(&good, &s)), None);
    }
}
