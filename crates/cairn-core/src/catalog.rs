//! Named checkpoints as tables: the session's default schema, extended so
//! that a name bound in the checkpoint dir resolves to its checkpoint (in
//! this process or any later one pointed at the same dir).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::context::CairnConfig;
use crate::error::{Error, Result};
use crate::node::CheckpointSpec;
use crate::scan::CheckpointTable;

/// The default schema plus the names bound in the current checkpoint dir.
/// Tables registered in the session come first.
#[derive(Debug)]
pub(crate) struct CheckpointSchema {
    inner: Arc<dyn SchemaProvider>,
    config: Arc<CairnConfig>,
    /// Checkpoints opened by name, by (dir, id): a manifest is read once.
    opened: Mutex<HashMap<(String, String), Arc<CheckpointTable>>>,
}

impl CheckpointSchema {
    pub(crate) fn new(inner: Arc<dyn SchemaProvider>, config: Arc<CairnConfig>) -> Self {
        Self {
            inner,
            config,
            opened: Mutex::default(),
        }
    }

    /// Tables registered in this session (not the names in the dir).
    pub(crate) fn session_tables(&self) -> &Arc<dyn SchemaProvider> {
        &self.inner
    }

    /// The checkpoint `name` is bound to in the current dir.
    pub(crate) async fn named(&self, name: &str) -> Result<Option<Arc<CheckpointTable>>> {
        let store = self.config.store();
        let Some(binding) = store.lookup_name(name).await? else {
            return Ok(None);
        };
        let key = (store.url().to_string(), binding.id.clone());
        if let Some(t) = self.opened.lock().expect("catalog poisoned").get(&key) {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(manifest) = store.read_manifest(&binding.id).await? else {
            return Err(Error::Name(format!(
                "checkpoint '{name}' names {}, which is not committed in {}; \
                 drop it with DROP CHECKPOINT {name}",
                binding.id,
                store.url()
            )));
        };
        let table = Arc::new(CheckpointTable::new(store, manifest));
        self.opened
            .lock()
            .expect("catalog poisoned")
            .insert(key, Arc::clone(&table));
        Ok(Some(table))
    }

    /// Lets go of an opened checkpoint, so that it can be removed.
    pub(crate) fn forget(&self, dir: &str, id: &str) {
        self.opened
            .lock()
            .expect("catalog poisoned")
            .remove(&(dir.to_string(), id.to_string()));
    }
}

#[async_trait]
impl SchemaProvider for CheckpointSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.config.store().bound_names_now());
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.inner.table(name).await? {
            return Ok(Some(t));
        }
        Ok(self.named(name).await?.map(|t| t as Arc<dyn TableProvider>))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            || self
                .config
                .store()
                .bound_names_now()
                .iter()
                .any(|n| n == name)
    }
}

/// A lazy checkpoint registered under a name: a view of the checkpoint
/// node, inlined into every query that reads it, so the first one writes it.
#[derive(Debug)]
pub struct LazyCheckpointTable {
    plan: LogicalPlan,
    spec: Arc<CheckpointSpec>,
}

impl LazyCheckpointTable {
    pub(crate) fn new(plan: LogicalPlan, spec: Arc<CheckpointSpec>) -> Self {
        Self { plan, spec }
    }

    pub fn spec(&self) -> &Arc<CheckpointSpec> {
        &self.spec
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
