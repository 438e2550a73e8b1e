//! `CairnContext`: a DataFusion `SessionContext` that knows where
//! checkpoints go and how to plan them.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::config::SessionConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;

use crate::catalog::CheckpointSchema;
use crate::error::{Error, Result};
use crate::node::Materialized;
use crate::optimizer::optimizer_rules;
use crate::planner::CairnQueryPlanner;
use crate::recover::OnCorrupt;
use crate::scan::CheckpointTable;
use crate::store::CheckpointStore;
use crate::store::lifecycle::Lifetimes;
use crate::store::s3::{CairnObjectStores, S3Options};
use crate::write::WriteOptions;

/// Cairn's settings for one session, kept in DataFusion's session config
/// so that every DataFrame of the session can find them.
#[derive(Debug)]
pub struct CairnConfig {
    store: RwLock<Arc<CheckpointStore>>,
    write: RwLock<WriteOptions>,
    lifetimes: RwLock<Lifetimes>,
    on_corrupt: RwLock<OnCorrupt>,
    /// Shared with the session's object store registry.
    s3: Arc<RwLock<S3Options>>,
}

impl CairnConfig {
    fn new(store: Arc<CheckpointStore>, s3: S3Options) -> Self {
        Self {
            store: RwLock::new(store),
            write: RwLock::new(WriteOptions::default()),
            lifetimes: RwLock::new(Lifetimes::default()),
            on_corrupt: RwLock::new(OnCorrupt::default()),
            s3: Arc::new(RwLock::new(s3)),
        }
    }

    /// How S3 is reached, for checkpoint dirs and `s3://` data.
    pub fn s3_options(&self) -> S3Options {
        self.s3.read().expect("cairn config poisoned").clone()
    }

    /// Later S3 requests use `options`; an `s3://` checkpoint dir is opened
    /// again with them, so a bad setting is an error that changes nothing.
    pub fn set_s3_options(&self, options: S3Options) -> Result<()> {
        let store = self.store();
        if store.url().starts_with("s3://") {
            self.set_store(CheckpointStore::open_with(store.url(), &options)?);
        }
        *self.s3.write().expect("cairn config poisoned") = options;
        Ok(())
    }

    /// What happens when a committed checkpoint is found damaged.
    pub fn on_corrupt(&self) -> OnCorrupt {
        *self.on_corrupt.read().expect("cairn config poisoned")
    }

    pub fn set_on_corrupt(&self, policy: OnCorrupt) {
        *self.on_corrupt.write().expect("cairn config poisoned") = policy;
    }

    /// How long unnamed checkpoints and abandoned directories are kept.
    pub fn lifetimes(&self) -> Lifetimes {
        *self.lifetimes.read().expect("cairn config poisoned")
    }

    pub fn set_lifetimes(&self, lifetimes: Lifetimes) {
        *self.lifetimes.write().expect("cairn config poisoned") = lifetimes;
    }

    /// Where reliable checkpoints go now.
    pub fn store(&self) -> Arc<CheckpointStore> {
        Arc::clone(&self.store.read().expect("cairn config poisoned"))
    }

    pub fn write_options(&self) -> WriteOptions {
        *self.write.read().expect("cairn config poisoned")
    }

    pub fn set_store(&self, store: Arc<CheckpointStore>) {
        *self.store.write().expect("cairn config poisoned") = store;
    }

    pub fn set_write_options(&self, options: WriteOptions) {
        *self.write.write().expect("cairn config poisoned") = options;
    }
}

/// The persistent dir used when none is given: `$CAIRN_CHECKPOINT_DIR`, else
/// `$XDG_DATA_HOME/cairn/checkpoints`, else `~/.local/share/cairn/checkpoints`.
pub fn default_checkpoint_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_CHECKPOINT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("cairn").join("checkpoints")
}

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
}

impl CairnContextBuilder {
    /// Where reliable checkpoints go: `file:///path`, a plain path or
    /// `memory://name`. Default: [`default_checkpoint_dir`].
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

    pub fn build(self) -> Result<CairnContext> {
        let store = match (self.checkpoint_store, self.checkpoint_dir) {
            (Some(store), _) => store,
            (None, Some(dir)) => CheckpointStore::open_with(&dir, &self.s3)?,
            (None, None) => CheckpointStore::open(&default_checkpoint_dir().display().to_string())?,
        };
        tracing::info!(dir = store.url(), "checkpoint dir");
        let cairn = Arc::new(CairnConfig::new(store, self.s3));
        let mut config = self
            .config
            .unwrap_or_default()
            .with_information_schema(true)
            .with_extension(Arc::clone(&cairn));
        if let Some(n) = self.target_partitions {
            if n == 0 {
                return Err(Error::Unsupported(
                    "target_partitions must be at least 1".into(),
                ));
            }
            config = config.with_target_partitions(n);
        }
        let mut runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(CairnObjectStores::new(Arc::clone(&cairn.s3))));
        if let Some(bytes) = self.memory_limit {
            runtime = runtime.with_memory_limit(bytes, 1.0);
        }
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime.build_arc()?)
            .with_query_planner(Arc::new(CairnQueryPlanner::default()))
            .with_optimizer_rules(optimizer_rules())
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        let schema = install_checkpoint_schema(&ctx, &cairn)?;
        if self.url_tables {
            ctx = ctx.enable_url_table();
        }
        Ok(CairnContext { ctx, cairn, schema })
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
    cairn: Arc<CairnConfig>,
    schema: Arc<CheckpointSchema>,
}

/// Puts the checkpoint-aware schema in place of the default one.
fn install_checkpoint_schema(
    ctx: &SessionContext,
    cairn: &Arc<CairnConfig>,
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
        Error::Unsupported(format!("the default catalog '{catalog_name}' is missing"))
    })?;
    let inner = catalog.schema(&schema_name).ok_or_else(|| {
        Error::Unsupported(format!("the default schema '{schema_name}' is missing"))
    })?;
    let schema = Arc::new(CheckpointSchema::new(inner, Arc::clone(cairn)));
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

impl CairnContext {
    /// A context with every default: the persistent default checkpoint dir.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    pub fn builder() -> CairnContextBuilder {
        CairnContextBuilder::default()
    }

    /// Plans DataFusion SQL into a DataFrame (DDL and DML run at once, as
    /// in DataFusion).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        Ok(self.ctx.sql(sql).await?)
    }

    /// The DataFusion session underneath.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Cairn's settings of this session.
    pub fn config(&self) -> &Arc<CairnConfig> {
        &self.cairn
    }

    pub(crate) fn checkpoint_schema(&self) -> &Arc<CheckpointSchema> {
        &self.schema
    }

    /// The checkpoint dir, as a URL.
    pub fn checkpoint_dir(&self) -> String {
        self.cairn.store().url().to_string()
    }

    /// Points later checkpoints at `dir`. A dir that cannot be used is an
    /// error and leaves the current one in place.
    pub fn set_checkpoint_dir(&self, dir: &str) -> Result<()> {
        let store = CheckpointStore::open_with(dir, &self.cairn.s3_options())?;
        self.cairn.set_store(store);
        Ok(())
    }

    /// [`set_checkpoint_dir`](Self::set_checkpoint_dir), after checking that
    /// a remote dir takes writes (see [`CheckpointStore::check_writable`]).
    pub async fn use_checkpoint_dir(&self, dir: &str) -> Result<()> {
        let store = CheckpointStore::open_with(dir, &self.cairn.s3_options())?;
        store.check_writable().await?;
        self.cairn.set_store(store);
        Ok(())
    }
}

impl CairnContext {
    /// The committed checkpoint `id` in the current checkpoint dir, as a
    /// DataFrame; `None` if no checkpoint with that id is committed there.
    pub async fn open_checkpoint(&self, id: &str) -> Result<Option<DataFrame>> {
        let store = self.cairn.store();
        let Some(manifest) = store.read_manifest(id).await? else {
            return Ok(None);
        };
        let table = Materialized::Reliable(Arc::new(CheckpointTable::new(store, manifest)));
        let plan = crate::dataframe::scan_plan(&table, None)?;
        Ok(Some(DataFrame::new(self.ctx.state(), plan)))
    }
}

impl Deref for CairnContext {
    type Target = SessionContext;

    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}
