//! `CairnContext`: a DataFusion `SessionContext` that knows where
//! checkpoints go and how to plan them.

use std::ops::Deref;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::config::SessionConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{CreateView, DdlStatement, LogicalPlan, Statement};
use datafusion::optimizer::Analyzer;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::prelude::SessionContext;

use datafusion::error::DataFusionError;

use ballista_core::extension::SessionStateExt;

use crate::catalog::{
    ChainLink, CheckpointInfo, CheckpointSchema, Materialize, TableKind, did_you_mean,
};
use crate::cluster;
use crate::config::{
    AutoCheckpoint, CairnOptions, ReuseOptions, S3Options, WriteOptions, default_checkpoint_dir,
};
use crate::error::{Error, Result};
use crate::exec::{
    CheckpointKind, CheckpointTable, Materialized, PlanObserver, PlanObservers,
    keeping_repartition_in_memory,
};
use crate::plan::{
    AutoCheckpoints, CairnQueryPlanner, CairnView, DenseGroupBy, FastDecimalArithmetic,
    FilterConditions, JoinFiltersOnRows, OptimizedPlans, RemoteWrites, analyzer_rules,
    optimizer_rules, scan_plan,
};
use crate::store::lifecycle::VacuumReport;
use crate::store::manifest::Lineage;
use crate::store::s3::CairnObjectStores;
use crate::store::{CheckpointStore, SessionStores};

/// Builds a [`CairnContext`].
#[derive(Debug, Default)]
pub struct CairnContextBuilder {
    checkpoint_dir: Option<String>,
    checkpoint_store: Option<Arc<CheckpointStore>>,
    memory_limit: Option<usize>,
    target_partitions: Option<usize>,
    config: Option<SessionConfig>,
    url_tables: bool,
    s3: S3Options,
    write: WriteOptions,
    reuse: ReuseOptions,
    cluster: Option<String>,
}

impl CairnContextBuilder {
    /// Runs every query and checkpoint on the Ballista cluster whose
    /// scheduler `url` names (`df://host:port`; see `cairn-scheduler`).
    /// Checkpoints are then written by the executors, so their dir must be
    /// storage every process of the cluster shares (`s3://`, or a local
    /// path when the whole cluster runs on this machine). Nothing connects
    /// until the first query runs.
    pub fn cluster(mut self, url: impl Into<String>) -> Self {
        self.cluster = Some(url.into());
        self
    }

    /// Where reliable checkpoints go: `file:///path`, a plain path,
    /// `memory://name` or `s3://bucket/prefix`. Default:
    /// [`default_checkpoint_dir`].
    pub fn checkpoint_dir(mut self, dir: impl Into<String>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Checkpoints go to an object store built by the caller; see
    /// [`CheckpointStore::on_object_store`]. Takes the place of
    /// [`checkpoint_dir`](Self::checkpoint_dir).
    pub fn checkpoint_store(mut self, store: Arc<CheckpointStore>) -> Self {
        self.checkpoint_store = Some(store);
        self
    }

    /// Where Cairn cuts a lineage grown long across actions with a
    /// checkpoint of its own (`cairn.auto_checkpoint`; default: local).
    pub fn auto_checkpoint(mut self, mode: AutoCheckpoint) -> Self {
        self.reuse.auto = mode;
        self
    }

    /// Whether a sub-plan one query reads more than once is computed once
    /// (`cairn.reuse_subplans`; default: on).
    pub fn reuse_subplans(mut self, on: bool) -> Self {
        self.reuse.subplans = on;
        self
    }

    /// Whether a query over checkpoints only reuses the optimized plan of an
    /// earlier one of the same shape (`cairn.reuse_plans`; default: on).
    pub fn reuse_plans(mut self, on: bool) -> Self {
        self.reuse.plans = on;
        self
    }

    /// How checkpoint files are encoded (`cairn.checkpoint_compression`).
    pub fn write_options(mut self, options: WriteOptions) -> Self {
        self.write = options;
        self
    }

    /// Memory the session may use, in bytes; past it operators and local
    /// checkpoints spill to disk.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// How many partitions plans run with (default: the number of cores).
    pub fn target_partitions(mut self, n: usize) -> Self {
        self.target_partitions = Some(n);
        self
    }

    /// Lets queries read files by path: `SELECT * FROM 'data.parquet'`
    /// (as datafusion-cli does). Off by default for programs.
    pub fn url_tables(mut self, on: bool) -> Self {
        self.url_tables = on;
        self
    }

    /// How to reach S3 (`s3://` checkpoint dirs and data); what is unset
    /// comes from the `AWS_*` environment variables.
    pub fn s3_options(mut self, options: S3Options) -> Self {
        self.s3 = options;
        self
    }

    /// DataFusion settings to start from.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The context, with its checkpoint dir opened (and created where
    /// needed); a dir that cannot be used is an error.
    pub fn build(self) -> Result<CairnContext> {
        let store = match (self.checkpoint_store, self.checkpoint_dir) {
            (Some(store), _) => store,
            (None, Some(dir)) => CheckpointStore::open_with(&dir, &self.s3)?,
            (None, None) => CheckpointStore::open_with(
                &default_checkpoint_dir().display().to_string(),
                &self.s3,
            )?,
        };
        tracing::info!(dir = store.url(), "checkpoint dir");
        let scheduler = self
            .cluster
            .as_deref()
            .map(cluster::scheduler_address)
            .transpose()?;
        let reuse = match scheduler {
            Some(_) => cluster::cluster_reuse(self.reuse),
            None => self.reuse,
        };
        let options = CairnOptions {
            checkpoint_dir: store.url().to_string(),
            s3: self.s3.clone(),
            write: self.write,
            reuse,
            ..CairnOptions::default()
        };
        let stores = Arc::new(SessionStores::new(store, self.s3));
        let observers = Arc::new(PlanObservers::default());
        let auto = Arc::new(AutoCheckpoints::default());
        let plans = Arc::new(OptimizedPlans::default());
        let optimizer = optimizer_rules();
        let mut config = self
            .config
            .unwrap_or_else(default_session_config)
            .with_information_schema(true)
            .with_option_extension(options)
            .with_extension(Arc::clone(&stores))
            .with_extension(Arc::clone(&observers))
            .with_extension(Arc::clone(&auto));
        if let Some(n) = self.target_partitions {
            if n == 0 {
                return Err(Error::Config("target_partitions must be at least 1".into()));
            }
            config = config.with_target_partitions(n);
        }
        if let Some(address) = &scheduler {
            config = cluster::client_config(config, address);
        }
        let mut runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(CairnObjectStores::new(Arc::clone(&stores))));
        if let Some(bytes) = self.memory_limit {
            runtime = runtime.with_memory_limit(bytes, 1.0);
        }
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(keeping_repartition_in_memory(runtime.build_arc()?)?)
            .with_query_planner(Arc::new(CairnQueryPlanner::default()))
            .with_analyzer_rules(analyzer_rules(
                Arc::clone(&auto),
                Arc::clone(&plans),
                &optimizer,
            ))
            .with_optimizer_rules(optimizer)
            .with_physical_optimizer_rule(Arc::new(JoinFiltersOnRows))
            .with_physical_optimizer_rule(Arc::new(FilterConditions))
            .with_physical_optimizer_rule(Arc::new(FastDecimalArithmetic))
            .with_physical_optimizer_rule(Arc::new(DenseGroupBy))
            .build();
        let state = match &scheduler {
            Some(address) => state.upgrade_for_ballista(address.clone())?,
            None => state,
        };
        let mut ctx = SessionContext::new_with_state(state);
        let schema = install_checkpoint_schema(&ctx, &stores)?;
        if self.url_tables {
            ctx = ctx.enable_url_table();
        }
        Ok(CairnContext {
            ctx,
            stores,
            schema,
            observers,
            auto,
            plans,
        })
    }
}

/// A session of Cairn's engine: DataFusion's `SessionContext` (reachable
/// through `Deref`) plus a checkpoint dir and the checkpoint planner.
///
/// ```no_run
/// # async fn demo() -> cairn_core::Result<()> {
/// use cairn_core::{CairnContext, CheckpointExt};
/// let ctx = CairnContext::builder().checkpoint_dir("memory://demo").build()?;
/// let df = ctx.sql("SELECT 1 AS x").await?.checkpoint().await?;
/// df.show().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CairnContext {
    ctx: SessionContext,
    stores: Arc<SessionStores>,
    schema: Arc<CheckpointSchema>,
    observers: Arc<PlanObservers>,
    auto: Arc<AutoCheckpoints>,
    plans: Arc<OptimizedPlans>,
}

/// Puts the checkpoint-aware schema in place of the default one.
fn install_checkpoint_schema(
    ctx: &SessionContext,
    stores: &Arc<SessionStores>,
) -> Result<Arc<CheckpointSchema>> {
    let (catalog_name, schema_name) = {
        let state = ctx.state();
        let options = &state.config_options().catalog;
        (
            options.default_catalog.clone(),
            options.default_schema.clone(),
        )
    };
    let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
        Error::Config(format!(
            "the default catalog '{catalog_name}' is missing; set \
             datafusion.catalog.default_catalog to a catalog that exists"
        ))
    })?;
    let inner = catalog.schema(&schema_name).ok_or_else(|| {
        Error::Config(format!(
            "the default schema '{schema_name}' is missing; set \
             datafusion.catalog.default_schema to a schema that exists"
        ))
    })?;
    let schema = Arc::new(CheckpointSchema::new(inner, Arc::clone(stores)));
    catalog.register_schema(&schema_name, Arc::clone(&schema) as _)?;
    Ok(schema)
}

impl std::fmt::Debug for CairnContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CairnContext")
            .field("session_id", &self.ctx.session_id())
            .field("checkpoint_dir", &self.checkpoint_dir())
            .finish()
    }
}

/// DataFusion's settings where Cairn chooses otherwise; a config handed to
/// the builder is taken as it is.
fn default_session_config() -> SessionConfig {
    let mut config = SessionConfig::new();
    // A join with up to this many build keys per partition hands its probe
    // side a list of them rather than its hash table (DataFusion: 150), and
    // Cairn tests a list on the probe rows at a third of a probe's cost
    // (`JoinFilterExec`): TPC-H Q17 joins lineitem with 204 parts.
    config
        .options_mut()
        .optimizer
        .hash_join_inlist_pushdown_max_distinct_values = 1024;
    config
}

impl CairnContext {
    /// A context with every default: the persistent default checkpoint dir.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// Builds a context with settings of its own.
    pub fn builder() -> CairnContextBuilder {
        CairnContextBuilder::default()
    }

    /// Plans DataFusion SQL into a DataFrame (DDL, DML and `SET` run at
    /// once, as in DataFusion).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let plan = match self.ctx.state().create_logical_plan(sql).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.with_name_hint(e).await),
        };
        self.execute_logical_plan(plan).await
    }

    /// Plans a parsed statement (DataFusion's `statement_to_plan`); a table
    /// that is not found is named with the nearest names there are.
    pub async fn statement_to_plan(
        &self,
        statement: datafusion::sql::parser::Statement,
    ) -> Result<LogicalPlan> {
        match self.ctx.state().statement_to_plan(statement).await {
            Ok(plan) => Ok(plan),
            Err(e) => Err(self.with_name_hint(e).await),
        }
    }

    /// DataFusion says "table 'datafusion.public.degres' not found"; this
    /// adds "did you mean 'degrees'?", as DataFusion does for columns.
    async fn with_name_hint(&self, e: DataFusionError) -> Error {
        let missing = match e.find_root() {
            DataFusionError::Plan(message) => message
                .strip_prefix("table '")
                .and_then(|rest| rest.strip_suffix("' not found"))
                .map(|name| name.rsplit('.').next().unwrap_or(name).to_string()),
            _ => None,
        };
        let Some(missing) = missing else {
            return e.into();
        };
        let hint = did_you_mean(&self.schema.nearest_names(&missing).await);
        if hint.is_empty() {
            return e.into();
        }
        let hinted =
            |inner: &DataFusionError| DataFusionError::Plan(format!("{}{hint}", inner.message()));
        match e {
            DataFusionError::Diagnostic(diagnostic, inner) => {
                DataFusionError::Diagnostic(diagnostic, Box::new(hinted(&inner))).into()
            }
            other => hinted(&other).into(),
        }
    }

    /// DataFusion's `execute_logical_plan`, with `SET` and `RESET` of
    /// `cairn.*` going through [`set_option`](Self::set_option), so that a
    /// checkpoint dir is checked before it is used, and a memory pool that
    /// `SET datafusion.runtime.*` makes anew wrapped as the first one was.
    pub async fn execute_logical_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        let cairn_key = |variable: &str| variable.strip_prefix("cairn.").map(str::to_string);
        let sets_a_variable = matches!(
            plan,
            LogicalPlan::Statement(Statement::SetVariable(_) | Statement::ResetVariable(_))
        );
        match &plan {
            LogicalPlan::Statement(Statement::SetVariable(set)) => {
                if let Some(key) = cairn_key(&set.variable) {
                    self.set_option(&key, &set.value).await?;
                    return Ok(DataFrame::new(self.state(), plan_nothing()));
                }
            }
            LogicalPlan::Statement(Statement::ResetVariable(reset)) => {
                if let Some(key) = cairn_key(&reset.variable) {
                    self.set_option(&key, &CairnOptions::default().get(&key)?)
                        .await?;
                    return Ok(DataFrame::new(self.state(), plan_nothing()));
                }
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(view)) if !view.temporary => {
                return self.create_view(view);
            }
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(table)) if self.on_cluster() => {
                return Err(Error::Unsupported(format!(
                    "CREATE TABLE {} keeps its rows in this process's memory, which the \
                     executors of a cluster cannot read; write them where every process \
                     reads them: CHECKPOINT TABLE {} AS <query> (its dir must be shared \
                     storage, such as s3://bucket/prefix)",
                    table.name, table.name
                )));
            }
            _ => {}
        }
        let done = self.ctx.execute_logical_plan(plan).await?;
        if sets_a_variable {
            self.keep_repartition_in_memory()?;
        }
        Ok(done)
    }

    /// Wraps the session's memory pool in [`KeepRepartitionInMemory`] if a
    /// runtime setting replaced it.
    fn keep_repartition_in_memory(&self) -> Result<()> {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let runtime = keeping_repartition_in_memory(Arc::clone(state.runtime_env()))?;
        if !Arc::ptr_eq(&runtime, state.runtime_env()) {
            *state = SessionStateBuilder::from(state.clone())
                .with_runtime_env(runtime)
                .build();
        }
        Ok(())
    }

    /// `CREATE VIEW`, as DataFusion does it, but as a [`CairnView`]: a view
    /// that queries read as a scan until Cairn's analyzer rule puts its
    /// plan in place, once for all its readers (see `plan::view`).
    fn create_view(&self, view: &CreateView) -> Result<DataFrame> {
        let exists = self.ctx.table_exist(view.name.clone())?;
        if exists && !view.or_replace {
            return Err(DataFusionError::Execution(format!(
                "Table '{}' already exists",
                view.name
            ))
            .into());
        }
        let mut seen = std::collections::HashSet::new();
        for field in view.input.schema().fields() {
            if !seen.insert(field.name().as_str()) {
                return Err(DataFusionError::SchemaError(
                    Box::new(datafusion::common::SchemaError::DuplicateUnqualifiedField {
                        name: field.name().to_string(),
                    }),
                    Box::new(None),
                )
                .into());
            }
        }
        // As DataFusion coerces a view's types when it creates it.
        let input = Analyzer::with_rules(vec![Arc::new(TypeCoercion::new())]).execute_and_check(
            view.input.as_ref().clone(),
            &ConfigOptions::default(),
            |_, _| {},
        )?;
        let table = CairnView::new(input, view.definition.clone());
        if exists {
            self.ctx.deregister_table(view.name.clone())?;
        }
        self.ctx
            .register_table(view.name.clone(), Arc::new(table))?;
        Ok(DataFrame::new(self.state(), plan_nothing()))
    }

    /// How many times Cairn has cut a long lineage with a checkpoint of its
    /// own in this session (`cairn.auto_checkpoint`).
    pub fn auto_checkpoints_placed(&self) -> u64 {
        self.auto.placed()
    }

    /// How many queries of this session ran the optimized plan of an
    /// earlier query of the same shape (`cairn.reuse_plans`).
    pub fn optimized_plans_reused(&self) -> u64 {
        self.plans.reused()
    }

    /// The DataFusion session underneath.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Cairn's settings of this session, as they are now.
    pub fn options(&self) -> CairnOptions {
        let state = self.ctx.state_ref();
        let state = state.read();
        CairnOptions::of(state.config())
            .cloned()
            .expect("a Cairn session has Cairn's options")
    }

    /// Sets `cairn.<key>` (as `SET cairn.<key> = value` does); a bad value
    /// is an error that changes nothing.
    pub async fn set_option(&self, key: &str, value: &str) -> Result<()> {
        let mut options = self.options();
        options.set_value(key, value)?;
        self.set_options(options).await
    }

    /// Makes `options` this session's settings. A checkpoint dir that
    /// cannot be used (or a remote one that takes no writes) is an error
    /// that changes nothing.
    pub async fn set_options(&self, mut options: CairnOptions) -> Result<()> {
        let before = self.options();
        if self.on_cluster() && cluster::cluster_reuse(options.reuse) != options.reuse {
            return Err(Error::Unsupported(
                "on a cluster a query runs in several processes, so Cairn shares no sub-plan \
                 in one process's memory: cairn.reuse_subplans and cairn.reuse_plans stay \
                 off and cairn.auto_checkpoint is 'off' or 'reliable'"
                    .into(),
            ));
        }
        let dir_changed = options.checkpoint_dir() != before.checkpoint_dir();
        let s3_dir = options.checkpoint_dir().starts_with("s3://");
        let store = if dir_changed || (s3_dir && options.s3 != before.s3) {
            let store = CheckpointStore::open_with(&options.checkpoint_dir(), &options.s3)?;
            if dir_changed {
                store.check_writable().await?;
            }
            store
        } else {
            self.stores.current()
        };
        options.checkpoint_dir = store.url().to_string();
        let s3 = options.s3.clone();
        {
            let state = self.ctx.state_ref();
            let mut state = state.write();
            state.config_mut().options_mut().extensions.insert(options);
        }
        self.stores.replace(store, s3);
        Ok(())
    }

    /// Whether queries run on a cluster (see [`CairnContextBuilder::cluster`]).
    pub fn on_cluster(&self) -> bool {
        self.ctx
            .state_ref()
            .read()
            .config()
            .get_extension::<RemoteWrites>()
            .is_some()
    }

    /// The checkpoint dir, as a URL.
    pub fn checkpoint_dir(&self) -> String {
        self.stores.current().url().to_string()
    }

    /// The store reliable checkpoints go to now.
    pub fn checkpoint_store(&self) -> Arc<CheckpointStore> {
        self.stores.current()
    }

    /// Points later checkpoints at `dir`, after checking that it takes
    /// writes (see [`CheckpointStore::check_writable`]). A dir that cannot be
    /// used is an error and leaves the current one in place.
    pub async fn use_checkpoint_dir(&self, dir: &str) -> Result<()> {
        self.set_option("checkpoint_dir", dir).await
    }

    /// Tells `observer` about each plan this session runs on its own (the
    /// writes of eager checkpoints), for as long as the caller keeps it.
    pub fn observe<O: PlanObserver + 'static>(&self, observer: &Arc<O>) {
        self.observers.add(observer);
    }

    /// The committed checkpoint `id` in the current checkpoint dir, as a
    /// DataFrame; `None` if no checkpoint with that id is committed there.
    pub async fn open_checkpoint(&self, id: &str) -> Result<Option<DataFrame>> {
        let store = self.stores.current();
        let Some(manifest) = store.read_manifest(id).await? else {
            return Ok(None);
        };
        let table = Materialized::Reliable(Arc::new(CheckpointTable::new(store, manifest)));
        let plan = scan_plan(&table, None)?;
        Ok(Some(DataFrame::new(self.ctx.state(), plan)))
    }

    /// What the table `name` of this session is; `None` if there is none.
    pub async fn table_kind(&self, name: &str) -> Result<Option<TableKind>> {
        Ok(self
            .ctx
            .table_provider(name)
            .await
            .ok()
            .map(|t| TableKind::of(t.as_ref())))
    }

    /// Checkpoints `df` under `name`: a table of the session that, for
    /// reliable checkpoints, a later process on the same dir finds too.
    /// Without `replace`, an existing table of that name is an error. A
    /// failure registers nothing and commits nothing.
    pub async fn checkpoint_table(
        &self,
        name: &str,
        df: DataFrame,
        kind: CheckpointKind,
        when: Materialize,
        replace: bool,
    ) -> Result<CheckpointInfo> {
        self.schema
            .checkpoint_table(name, df, kind, when, replace)
            .await
    }

    /// Waits for the work this session runs in the background: commits
    /// (`cairn.checkpoint_commit = 'async'`) and removals of the versions
    /// `CHECKPOINT OR REPLACE` and `REFRESH CHECKPOINT` superseded. The first
    /// that failed is the error (a failure also fails the next statement).
    /// Call it before the process ends: a commit still running then is lost,
    /// as in a crash (the `cairn` shell calls it when it exits).
    pub async fn wait_for_background(&self) -> Result<()> {
        self.stores.commits_done().await;
        self.check_background_commits()?;
        self.schema.removals_done().await
    }

    /// The first commit run in the background that failed and was not yet
    /// reported, as an error (reported once): a statement that does not
    /// plan a query (the planner checks) checks this before it runs.
    pub fn check_background_commits(&self) -> Result<()> {
        match self.stores.commit_failure() {
            Some(failed) => Err(failed),
            None => Ok(()),
        }
    }

    /// Every named checkpoint: those bound in the checkpoint dir and the
    /// local and lazy ones of this session, by name; then the reliable
    /// checkpoints Cairn placed itself in this session (`auto`, no name).
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        let mut infos = self.schema.checkpoints(&self.state()).await?;
        // Reliable checkpoints Cairn placed itself in this session.
        for t in self.auto.reliable() {
            infos.push(CheckpointInfo {
                auto: true,
                ..CheckpointInfo::reliable("", &t)
            });
        }
        Ok(infos)
    }

    /// Recomputes the named checkpoint from the lineage kept in its
    /// manifest and rebinds the name (a no-op when its sources did not
    /// change: the same plan over the same files has the same id).
    pub async fn refresh_checkpoint(&self, name: &str) -> Result<CheckpointInfo> {
        self.schema.refresh_checkpoint(&self.state(), name).await
    }

    /// The chain of checkpoints below the named one, top first, at most
    /// `depth` links (each link's plan, rows, and whether its data is
    /// still there), and how many links were left out.
    pub async fn checkpoint_chain(
        &self,
        name: &str,
        depth: usize,
    ) -> Result<(Vec<ChainLink>, usize)> {
        self.schema.checkpoint_chain(name, depth).await
    }

    /// The plan a named checkpoint replaced.
    pub async fn checkpoint_lineage(&self, name: &str) -> Result<Lineage> {
        self.schema.checkpoint_lineage(name).await
    }

    /// Drops the named checkpoint: the name goes at once; the data goes
    /// too unless another name or a live table or DataFrame of this
    /// process still reads it. False if it did not exist and `if_exists`.
    pub async fn drop_checkpoint(&self, name: &str, if_exists: bool) -> Result<bool> {
        self.schema.drop_checkpoint(name, if_exists).await
    }

    /// Removes unnamed checkpoints unused for longer than the retention and
    /// abandoned directories older than the grace period; never a named
    /// checkpoint or one this process reads.
    pub async fn vacuum_checkpoints(&self) -> Result<VacuumReport> {
        self.schema.vacuum_checkpoints(&self.state()).await
    }

    /// After `error`, rebuilds the damaged checkpoint it is about when the
    /// policy (`cairn.checkpoint_on_corrupt`) is `recompute`. True when what
    /// failed should run again: a checkpoint not in `repaired` was rebuilt
    /// (and is added to it).
    pub async fn repair(&self, error: &Error, repaired: &mut Vec<String>) -> Result<bool> {
        if self.options().on_corrupt != crate::config::OnCorrupt::Recompute {
            return Ok(false);
        }
        let Some(id) = crate::error::damaged_checkpoint(error) else {
            return Ok(false);
        };
        if repaired.contains(&id) {
            return Ok(false);
        }
        self.recompute_damaged_checkpoint(&id).await?;
        repaired.push(id);
        Ok(true)
    }

    /// Collects `df`; with `cairn.checkpoint_on_corrupt = 'recompute'`, a
    /// damaged checkpoint it reads (and the links of its chain below) is
    /// rebuilt and the collect runs again.
    pub async fn collect(
        &self,
        df: &DataFrame,
    ) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
        let mut repaired = Vec::new();
        loop {
            let error = match df.clone().collect().await {
                Ok(batches) => return Ok(batches),
                Err(e) => Error::from(e),
            };
            if !self.repair(&error, &mut repaired).await? {
                return Err(crate::error::from_cluster_task(error));
            }
        }
    }

    /// Rebuilds the damaged checkpoint `id` from the lineage in its
    /// manifest and points every name bound to it at the rebuilt one.
    /// Returns the rebuilt checkpoint's id (the same id when its sources did
    /// not change), or `None` when an unnamed checkpoint without a usable
    /// lineage was removed, so that the query holding its plan writes it
    /// again. A named one without a usable lineage is an error.
    pub async fn recompute_damaged_checkpoint(&self, id: &str) -> Result<Option<String>> {
        self.schema
            .recompute_damaged_checkpoint(&self.state(), id)
            .await
    }
}

/// The plan of a statement that returns nothing.
fn plan_nothing() -> LogicalPlan {
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}

impl Deref for CairnContext {
    type Target = SessionContext;

    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}
