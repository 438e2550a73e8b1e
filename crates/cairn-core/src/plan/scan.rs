//! The logical scan that takes the place of a written checkpoint.

use datafusion::common::{Column, DFSchemaRef};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::error::Result;
use crate::exec::Materialized;

/// A scan of the checkpoint. Given the schema of the input it replaces,
/// it keeps that input's qualifiers, so code written against it still resolves.
pub fn scan_plan(m: &Materialized, input: Option<&DFSchemaRef>) -> Result<LogicalPlan> {
    let name = format!("checkpoint_{}", &m.id()[..m.id().len().min(12)]);
    let scan = LogicalPlanBuilder::scan(name, provider_as_source(m.table()), None)?;
    let Some(original) = input.filter(|s| s.iter().any(|(q, _)| q.is_some())) else {
        return Ok(scan.build()?);
    };
    let scanned = scan.schema().clone();
    let exprs: Vec<Expr> = original
        .iter()
        .zip(scanned.iter())
        .map(|((q, f), (sq, sf))| {
            Expr::Column(Column::new(sq.cloned(), sf.name())).alias_qualified(q.cloned(), f.name())
        })
        .collect();
    Ok(scan.project(exprs)?.build()?)
}
