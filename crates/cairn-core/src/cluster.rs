//! Cairn on an Apache DataFusion Ballista 55 cluster: what the client, the
//! scheduler and the executors each need to run Cairn's plans.
//!
//! - the client ([`CairnContextBuilder::cluster`](crate::CairnContextBuilder::cluster))
//!   plans as one process does, then writes the checkpoints a query needs
//!   as jobs of their own and sends the query ([`ClusterPlanner`]);
//! - the scheduler plans each query with Cairn's planner and rules
//!   ([`server_state`]) from the settings the client sent (the `cairn`
//!   options are registered by [`server_config`]);
//! - every process encodes plans with Cairn's codecs around Ballista's
//!   ([`logical_codec`], [`physical_codec`]), and reaches checkpoint dirs and S3 as the client's
//!   settings say ([`server_runtime`]).
//!
//! Sub-plans a query shares and automatic local checkpoints live in one
//! process's memory, so a cluster session places neither.

use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::optimizer::with_ballista_optimizer_rules;
use ballista_core::planner::BallistaQueryPlanner;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::error::Result as DfResult;
use datafusion::execution::config::SessionConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use datafusion_proto::protobuf::LogicalPlanNode;

use crate::config::{AutoCheckpoint, CairnOptions, ReuseOptions};
use crate::error::{Error, Result};
use crate::exec::{CairnPhysicalCodec, keeping_repartition_in_memory};
use crate::plan::{
    AutoCheckpoints, CairnLogicalCodec, CairnQueryPlanner, ClusterPlanner, OptimizedPlans,
    RemoteWrites, analyzer_rules, optimizer_rules,
};
use crate::store::s3::CairnObjectStores;
use crate::store::{CheckpointStore, SessionStores};

/// The port a scheduler listens on when a URL names none (Ballista's).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// The gRPC address of the scheduler `url` names (`df://host:port`, the
/// port 50050 if none).
pub fn scheduler_address(url: &str) -> Result<String> {
    let invalid = |reason: &str| {
        Error::Config(format!(
            "'{url}' is not a cluster address ({reason}); write it as df://host:port, for \
             example df://127.0.0.1:50050"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if parsed.scheme() != "df" {
        return Err(invalid("the scheme must be df://"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid("it names no host"))?;
    let port = parsed.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
    Ok(format!("http://{host}:{port}"))
}

/// Cairn's logical codec around Ballista's, as every process of a cluster
/// uses it.
pub fn logical_codec() -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(CairnLogicalCodec::new(Arc::new(
        BallistaLogicalExtensionCodec::default(),
    )))
}

/// Cairn's physical codec around Ballista's, as every process of a cluster
/// uses it.
pub fn physical_codec() -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(CairnPhysicalCodec::new(Arc::new(
        BallistaPhysicalExtensionCodec::default(),
    )))
}

/// What a cluster session places itself: no shared sub-plans and no
/// automatic local checkpoints (both live in one process's memory), and no
/// reused optimized plans (Ballista plans each query where it runs).
pub(crate) fn cluster_reuse(mut reuse: ReuseOptions) -> ReuseOptions {
    reuse.subplans = false;
    reuse.plans = false;
    if reuse.auto == AutoCheckpoint::Local {
        reuse.auto = AutoCheckpoint::Off;
    }
    reuse
}

/// The client's config for the scheduler at `address` (see
/// [`scheduler_address`]): Ballista's settings, Cairn's codec, and the
/// planner that writes checkpoints as jobs and sends queries.
pub(crate) fn client_config(config: SessionConfig, address: &str) -> SessionConfig {
    let config = config.upgrade_for_ballista();
    let logical = logical_codec();
    let ballista = BallistaQueryPlanner::<LogicalPlanNode>::with_extension(
        address.to_string(),
        config.ballista_config(),
        Arc::clone(&logical),
    );
    let planner = Arc::new(ClusterPlanner::new(address, Arc::new(ballista)));
    config
        .with_ballista_logical_extension_codec(logical)
        .with_ballista_physical_extension_codec(physical_codec())
        .with_ballista_query_planner(Arc::clone(&planner) as _)
        .with_extension(Arc::new(RemoteWrites(planner)))
}

/// The config a scheduler or executor starts each session from: Ballista's
/// with the `cairn` options, so that the client's `cairn.*` settings
/// arrive (keys of a namespace not registered are dropped).
pub fn server_config() -> SessionConfig {
    SessionConfig::new_with_ballista().with_option_extension(CairnOptions::default())
}

/// The stores a server session reaches: the checkpoint dir and S3 as the
/// client's settings in `config` say (secrets come from this process's
/// environment: a client never sends them).
fn server_stores(config: &SessionConfig) -> (CairnOptions, Arc<SessionStores>) {
    let mut options = CairnOptions::of(config).cloned().unwrap_or_default();
    options.reuse = cluster_reuse(options.reuse);
    let dir = if options.checkpoint_dir.is_empty() {
        crate::config::default_checkpoint_dir()
            .display()
            .to_string()
    } else {
        options.checkpoint_dir.clone()
    };
    let store = CheckpointStore::open_with(&dir, &options.s3).unwrap_or_else(|e| {
        // Plans name the dirs they read and write; this one is the default
        // for a pending checkpoint an EXPLAIN shows.
        tracing::warn!(%dir, error = %e, "the session's checkpoint dir is not reachable here");
        CheckpointStore::on_object_store(
            "memory://cairn-unreachable",
            Arc::new(object_store::memory::InMemory::new()),
        )
    });
    let stores = Arc::new(SessionStores::new(store, options.s3.clone()));
    (options, stores)
}

/// The runtime of a server session: object stores for checkpoint dirs and
/// for the `s3://` data a query names, as the client's settings say.
pub fn server_runtime(config: &SessionConfig) -> DfResult<Arc<RuntimeEnv>> {
    let (_, stores) = server_stores(config);
    keeping_repartition_in_memory(
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(CairnObjectStores::new(stores)))
            .build_arc()?,
    )
}

/// The scheduler's session for one query: Cairn's planner and rules over
/// the client's settings in `config`.
pub fn server_state(config: SessionConfig) -> DfResult<SessionState> {
    let (options, stores) = server_stores(&config);
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(CairnObjectStores::new(Arc::clone(&stores))))
        .build_arc()?;
    let config = config.with_option_extension(options).with_extension(stores);
    let optimizer = with_ballista_optimizer_rules(&optimizer_rules());
    Ok(SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_query_planner(Arc::new(CairnQueryPlanner::default()))
        .with_analyzer_rules(analyzer_rules(
            Arc::new(AutoCheckpoints::default()),
            Arc::new(OptimizedPlans::default()),
            &optimizer,
        ))
        .with_optimizer_rules(optimizer)
        .build())
}
