//! `CairnView`: the table a `CREATE VIEW` makes in a Cairn session.
//!
//! DataFusion copies a view's plan into every query that names it, while
//! it plans the SQL, and walks the copy as a tree (it looks for sorts to
//! drop, and type-coerces a view when it is created). A chain of views that
//! each read the one before twice (`CREATE VIEW l2 AS ... FROM l1 JOIN l1`)
//! then costs 2^K to create and to query. A `CairnView` is not copied
//! while SQL is planned: it stays a scan of the view, and Cairn's analyzer
//! rule puts the view's plan in its place, once per view, so every reader
//! of a view shares one plan (see [`super::dag`]). Everything else is
//! DataFusion's `ViewTable`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Result, TableReference};
use datafusion::datasource::view::ViewTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, LogicalPlan, SubqueryAlias, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// A view whose plan is put in place by Cairn's analyzer rule.
#[derive(Debug)]
pub struct CairnView {
    /// The view's plan, shared by every query that reads the view.
    plan: Arc<LogicalPlan>,
    /// DataFusion's view over the same plan: schema, definition, and the
    /// scan used where the analyzer rule did not run.
    inner: ViewTable,
}

impl CairnView {
    /// A view of `plan`, created by `definition` (its SQL).
    pub fn new(plan: LogicalPlan, definition: Option<String>) -> Self {
        Self {
            inner: ViewTable::new(plan.clone(), definition),
            plan: Arc::new(plan),
        }
    }

    /// The view's plan.
    pub fn plan(&self) -> &Arc<LogicalPlan> {
        &self.plan
    }

    /// The SQL that created it.
    pub fn definition(&self) -> Option<&String> {
        self.inner.definition()
    }

    /// What a query reads in place of a scan of this view named `name`:
    /// the view's plan under the view's name, as DataFusion inlines views.
    pub(crate) fn inlined(&self, name: &TableReference) -> Result<LogicalPlan> {
        Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            Arc::clone(&self.plan),
            name.clone(),
        )?))
    }
}

#[async_trait]
impl TableProvider for CairnView {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}
