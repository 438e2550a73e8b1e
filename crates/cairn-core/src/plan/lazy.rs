//! A lazy checkpoint registered under a name.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

use super::node::CheckpointNode;

/// A lazy checkpoint registered under a name: a view of the checkpoint
/// node, inlined into every query that reads it, so the first one writes it.
#[derive(Debug)]
pub struct LazyCheckpointTable {
    plan: LogicalPlan,
    node: CheckpointNode,
    /// The checkpoint its name pointed at in the dir before: replaced once
    /// this one is written.
    replaces: Option<String>,
}

impl LazyCheckpointTable {
    /// A table of `node`, replacing the checkpoint `replaces` once written.
    pub fn new(node: CheckpointNode, replaces: Option<String>) -> Self {
        Self {
            plan: node.clone().into_plan(),
            node,
            replaces,
        }
    }

    /// The id its name pointed at before, which it replaces once written.
    pub fn replaces(&self) -> Option<&str> {
        self.replaces.as_deref()
    }

    /// The checkpoint node every query reading the table inlines.
    pub fn node(&self) -> &CheckpointNode {
        &self.node
    }
}

#[async_trait]
impl TableProvider for LazyCheckpointTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.plan.schema().inner())
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    /// Queries inline the plan; this serves callers that scan directly.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = state.create_physical_plan(&self.plan).await?;
        let Some(projection) = projection else {
            return Ok(plan);
        };
        let schema = plan.schema();
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .map(|&i| {
                let name = schema.field(i).name().clone();
                (Arc::new(Column::new(&name, i)) as _, name)
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }
}
