//! `SeriesTable`: `generate_series` / `range` as Cairn's codec decodes them
//! in another process.
//!
//! DataFusion 55's physical plan codec writes a `LazyMemoryExec` (the scan
//! of a series) with its projected schema but not its projection, so the
//! process that decodes it generates the `value` column for a schema of no
//! column, and `SELECT count(*) FROM range(0, 10)` fails on a cluster
//! ("number of columns(1) must match number of fields(0)"). Scanned for no
//! column, this table scans `value` and projects it away in a
//! `ProjectionExec`, which DataFusion encodes whole. A test in this module
//! fails once DataFusion keeps the projection; then this table can go.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::functions_table::generate_series::GenerateSeriesTable;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

/// A series that scans at least one column (see the module's docs).
#[derive(Debug)]
pub struct SeriesTable {
    inner: GenerateSeriesTable,
}

impl SeriesTable {
    /// Wraps a series.
    pub fn new(inner: GenerateSeriesTable) -> Self {
        Self { inner }
    }

    /// The series.
    pub fn inner(&self) -> &GenerateSeriesTable {
        &self.inner
    }
}

#[async_trait]
impl TableProvider for SeriesTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if projection.is_some_and(|p| p.is_empty()) {
            let all = self.inner.scan(state, None, filters, limit).await?;
            let none: Vec<(Arc<dyn datafusion::physical_plan::PhysicalExpr>, String)> = Vec::new();
            return Ok(Arc::new(ProjectionExec::try_new(none, all)?));
        }
        self.inner.scan(state, projection, filters, limit).await
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::{physical_plan_from_bytes, physical_plan_to_bytes};

    /// DataFusion 55 loses a series scan's projection on the way through
    /// its codec. When this test fails, it keeps it: remove `SeriesTable`.
    #[tokio::test]
    async fn datafusion_drops_the_projection_of_a_series_scan() {
        let ctx = SessionContext::new();
        let df = ctx.sql("SELECT count(*) FROM range(0, 10)").await.unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let bytes = physical_plan_to_bytes(plan).unwrap();
        let decoded = physical_plan_from_bytes(&bytes, &ctx.task_ctx()).unwrap();
        let err = collect(decoded, ctx.task_ctx()).await.unwrap_err();
        assert!(
            err.to_string().contains("must match number of fields"),
            "{err}"
        );
    }
}
