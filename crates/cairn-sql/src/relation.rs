//! `CHECKPOINT(<query>)` as a relation inside any query: planned as a lazy
//! reliable `CheckpointNode` over the query, so the first run writes it and
//! every later run (or process) reuses it.

use cairn_core::CheckpointKind;
use cairn_core::plan::CheckpointNode;
use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, ObjectNamePart, TableFactor,
};

use crate::dialect::CHECKPOINT_RELATION;

/// Plans `CHECKPOINT(query) [AS alias]` in `FROM`.
#[derive(Debug)]
pub struct CheckpointRelationPlanner;

fn is_checkpoint(factor: &TableFactor) -> bool {
    let TableFactor::Table {
        name,
        args: Some(_),
        ..
    } = factor
    else {
        return false;
    };
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(id)]
        if id.quote_style.is_none() && id.value.eq_ignore_ascii_case(CHECKPOINT_RELATION))
}

impl RelationPlanner for CheckpointRelationPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        if !is_checkpoint(&relation) {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        }
        let TableFactor::Table {
            args: Some(args),
            alias,
            ..
        } = relation
        else {
            unreachable!("checked by is_checkpoint");
        };
        let query = match args.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Subquery(q)))] => q.clone(),
            _ => {
                return plan_err!(
                    "CHECKPOINT takes one query, as in SELECT * FROM CHECKPOINT(SELECT ...) AS t"
                );
            }
        };
        let input = context.plan(TableFactor::Derived {
            lateral: false,
            subquery: query,
            alias: None,
            sample: None,
        })?;
        // Written to the session's checkpoint dir when the query runs.
        let plan = CheckpointNode::try_new(input, CheckpointKind::Reliable, None, None)
            .map_err(datafusion::error::DataFusionError::from)?
            .into_plan();
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}
