//! Cairn's changes to DataFusion 55's optimizer rules, each for a wrong
//! answer found in testing.
//!
//! **Filters stay above checkpoints.** `push_down_filter` moves a conjunct
//! that references no column (`NULL`, `1 = 2`, left there by the simplifier)
//! below any extension node, whatever the node says it allows. Below a
//! checkpoint that changes what the checkpoint holds, while its id still
//! names the unfiltered input, and a reused checkpoint would skip the filter
//! altogether. The same move below an aggregate without GROUP BY turns
//! `WHERE 7 > 7` over `SELECT count(*) ...` into one row of count 0 instead
//! of no row. [`KeepFiltersAboveCheckpoints`] runs the rule everywhere
//! except on filters directly above a checkpoint or a global aggregate.
//!
//! **`<constant> NOT IN (subquery)`.** DataFusion 55 plans it as an anti
//! join on a filter (no equi-join key), which is not null-aware: a NULL in
//! the subquery should make the predicate NULL (no row passes), yet every
//! row passes. [`NullAwareConstantNotIn`] rewrites such a predicate of a
//! filter (under AND and OR only, where NULL and false are alike) into `NOT EXISTS (SELECT .. FROM
//! subquery WHERE col = c OR col IS NULL OR c IS NULL)`, which says the same.
//!
//! **Stacked projections.** DataFusion 55's `optimize_projections` merges a projection into the one
//! below it with a "fast path": when both have the same expression list it
//! keeps only one of them. That is wrong whenever the expressions compute
//! something: ten stacked `x + 1 AS x` answer `x + 1`. The upstream fix
//! (apache/datafusion PR 24686, "preserve nested projection expressions")
//! is in no 55.x release. Until one carries it, this rule composes such
//! pairs itself (substituting the lower expressions into the upper ones),
//! so the faulty path never sees two equal lists. Remove it once the
//! DataFusion dependency has the fix; the regression tests stay.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr::{BinaryExpr, Exists, InSubquery};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Projection, Subquery,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::push_down_filter::PushDownFilter;
use datafusion::optimizer::{Optimizer, OptimizerConfig, OptimizerRule};

use super::node::CheckpointNode;
use super::reuse::{AutoCheckpoints, NarrowSharedReads, ReuseSubplans};
use super::reuse_plans::{OptimizedPlans, ReuseOptimizedPlans};
use datafusion::optimizer::{Analyzer, AnalyzerRule};

/// Composes a projection with the projection below it when the two share a
/// computed expression, the only shape `optimize_projections` mishandles.
#[derive(Debug, Default)]
pub struct ComposeStackedProjections;

impl OptimizerRule for ComposeStackedProjections {
    fn name(&self) -> &str {
        "cairn_compose_stacked_projections"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Projection(mut outer) = plan else {
            return Ok(Transformed::no(plan));
        };
        let mut changed = false;
        // Composing can bring the next projection down into reach: repeat.
        while let LogicalPlan::Projection(inner) = outer.input.as_ref() {
            if !shares_computed_expr(&outer, inner) {
                break;
            }
            match compose(&outer, inner)? {
                Some(p) => {
                    outer = p;
                    changed = true;
                }
                None => break,
            }
        }
        let plan = LogicalPlan::Projection(outer);
        Ok(if changed {
            Transformed::yes(plan)
        } else {
            Transformed::no(plan)
        })
    }
}

/// DataFusion's analyzer rules, after Cairn's [`ReuseSubplans`], which must
/// see the plan before anything walks it as a tree, and
/// [`ReuseOptimizedPlans`], which plans a query it has not seen with the
/// rules after it and `optimizer_rules` (the session's), keeping plans in
/// `plans`.
pub fn analyzer_rules(
    auto: Arc<AutoCheckpoints>,
    plans: Arc<OptimizedPlans>,
    optimizer_rules: &[Arc<dyn OptimizerRule + Send + Sync>],
) -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let datafusion = Analyzer::new().rules;
    let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![
        Arc::new(ReuseSubplans::new(auto)),
        Arc::new(ReuseOptimizedPlans::new(
            datafusion.clone(),
            optimizer_rules.to_vec(),
            plans,
        )),
    ];
    rules.extend(datafusion);
    rules
}

/// DataFusion's default rules with ours placed first and again right before
/// `optimize_projections`, since rules in between may stack projections anew.
pub fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let ours: Arc<dyn OptimizerRule + Send + Sync> = Arc::new(ComposeStackedProjections);
    let mut rules = vec![Arc::clone(&ours)];
    for rule in Optimizer::new().rules {
        match rule.name() {
            "optimize_projections" => {
                rules.push(Arc::clone(&ours));
                rules.push(rule);
            }
            "push_down_filter" => rules.push(Arc::new(KeepFiltersAboveCheckpoints::default())),
            "decorrelate_predicate_subquery" => {
                rules.push(Arc::new(NullAwareConstantNotIn));
                rules.push(rule);
            }
            _ => rules.push(rule),
        }
    }
    // Last, once the reads of shared sub-plans are pruned: the next pass
    // prunes inside the sub-plans.
    rules.push(Arc::new(NarrowSharedReads));
    rules
}

/// DataFusion's `push_down_filter`, except that a filter (or a stack of
/// filters) directly above a checkpoint or a global aggregate stays where
/// it is.
#[derive(Debug, Default)]
pub struct KeepFiltersAboveCheckpoints {
    inner: PushDownFilter,
}

impl OptimizerRule for KeepFiltersAboveCheckpoints {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.inner.apply_order()
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if let LogicalPlan::Filter(filter) = &plan
            && over_barrier(&filter.input)
        {
            return Ok(Transformed::no(plan));
        }
        self.inner.rewrite(plan, config)
    }
}

/// Rewrites `<constant> NOT IN (subquery)` in filters into an equivalent
/// `NOT EXISTS`, which DataFusion 55 answers correctly.
#[derive(Debug, Default)]
pub struct NullAwareConstantNotIn;

impl OptimizerRule for NullAwareConstantNotIn {
    fn name(&self) -> &str {
        "cairn_null_aware_constant_not_in"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = plan else {
            return Ok(Transformed::no(plan));
        };
        let predicate = rewrite_positive(filter.predicate.clone())?;
        if !predicate.transformed {
            return Ok(Transformed::no(LogicalPlan::Filter(filter)));
        }
        let filter = Filter::try_new(predicate.data, filter.input)?;
        Ok(Transformed::yes(LogicalPlan::Filter(filter)))
    }
}

/// Rewrites the constant `NOT IN`s reached from the top of a filter through
/// AND and OR only: there a NULL and a false filter alike, so a rewrite
/// that answers false where SQL answers NULL keeps the filter's meaning.
fn rewrite_positive(e: Expr) -> Result<Transformed<Expr>> {
    if let Some((value, subquery)) = constant_not_in(&e) {
        return Ok(Transformed::yes(not_exists_equal_or_null(value, subquery)?));
    }
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::And | Operator::Or) =>
        {
            let (l, r) = (rewrite_positive(*left)?, rewrite_positive(*right)?);
            let transformed = l.transformed || r.transformed;
            let e = Expr::BinaryExpr(BinaryExpr::new(Box::new(l.data), op, Box::new(r.data)));
            Ok(Transformed::new_transformed(e, transformed))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// The constant and the subquery of `c NOT IN (subquery)` or `NOT (c IN
/// (subquery))`, where `c` reads no column.
fn constant_not_in(e: &Expr) -> Option<(&Expr, &Subquery)> {
    let (value, subquery) = match e {
        Expr::InSubquery(InSubquery {
            expr,
            subquery,
            negated: true,
        }) => (expr.as_ref(), subquery),
        Expr::Not(inner) => match inner.as_ref() {
            Expr::InSubquery(InSubquery {
                expr,
                subquery,
                negated: false,
            }) => (expr.as_ref(), subquery),
            _ => return None,
        },
        _ => return None,
    };
    value.column_refs().is_empty().then_some((value, subquery))
}

/// `NOT EXISTS (SELECT * FROM subquery WHERE col = value OR col IS NULL OR
/// value IS NULL)`: true exactly when `value NOT IN (subquery)` is true.
fn not_exists_equal_or_null(value: &Expr, subquery: &Subquery) -> Result<Expr> {
    let plan = subquery.subquery.as_ref();
    let column = Expr::Column(Column::from(plan.schema().qualified_field(0)));
    let matches = column
        .clone()
        .eq(value.clone())
        .or(column.is_null())
        .or(value.clone().is_null());
    let filtered = LogicalPlanBuilder::from(plan.clone())
        .filter(matches)?
        .build()?;
    Ok(Expr::Exists(Exists::new(
        Subquery {
            subquery: Arc::new(filtered),
            outer_ref_columns: subquery.outer_ref_columns.clone(),
            spans: subquery.spans.clone(),
        },
        true,
    )))
}

/// Whether `plan`, under nothing but filters, is something no filter may
/// pass: a checkpoint, or an aggregate without GROUP BY (it answers one
/// row even for no input, so `WHERE false` above it must stay above it;
/// DataFusion pushed such column-free predicates below it).
fn over_barrier(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Filter(f) => over_barrier(&f.input),
        LogicalPlan::Extension(e) => e.node.as_any().is::<CheckpointNode>(),
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        _ => false,
    }
}

/// A plain column passes its input through unchanged, so two equal lists of
/// plain columns are safe to collapse; anything else is not.
fn is_pass_through(e: &Expr) -> bool {
    matches!(e, Expr::Column(_))
}

fn shares_computed_expr(outer: &Projection, inner: &Projection) -> bool {
    outer
        .expr
        .iter()
        .any(|e| !is_pass_through(e) && inner.expr.contains(e))
}

/// `outer` rewritten to read `inner`'s input directly, with the same output
/// schema; `None` where that cannot be done without changing the meaning.
fn compose(outer: &Projection, inner: &Projection) -> Result<Option<Projection>> {
    let mut volatile_inlined = false;
    let mut exprs = Vec::with_capacity(outer.expr.len());
    for e in &outer.expr {
        let saved = NamePreserver::new_for_projection().save(e);
        let body = match e {
            Expr::Alias(a) => a.expr.as_ref().clone(),
            other => other.clone(),
        };
        let composed = body
            .transform_up(|sub| {
                let Expr::Column(c) = &sub else {
                    return Ok(Transformed::no(sub));
                };
                let below = &inner.expr[inner.schema.index_of_column(c)?];
                volatile_inlined |= below.is_volatile();
                Ok(Transformed::yes(below.clone().unalias()))
            })?
            .data;
        exprs.push(saved.restore(composed));
    }
    if volatile_inlined {
        // Inlining `random()` into several places would draw it several times.
        return Ok(None);
    }
    let composed = Projection::try_new(exprs, Arc::clone(&inner.input))?;
    let same_schema = composed.schema.fields().len() == outer.schema.fields().len()
        && composed
            .schema
            .iter()
            .zip(outer.schema.iter())
            .all(|((q1, f1), (q2, f2))| {
                q1 == q2 && f1.name() == f2.name() && f1.data_type() == f2.data_type()
            });
    Ok(same_schema.then_some(composed))
}
