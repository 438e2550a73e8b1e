//! `cairn-executor`: Ballista's executor, running Cairn's operators.

use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use cairn_core::cluster::{
    logical_codec, physical_codec, server_config, server_runtime, server_state,
};
use clap::Parser;

/// The flags of `cairn-executor` (Ballista's executor's, where they exist).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cairn-executor",
    version,
    about = "An executor of a Cairn cluster (Apache DataFusion Ballista 55 running Cairn's operators)"
)]
pub struct ExecutorArgs {
    /// The scheduler's host.
    #[arg(long, default_value = "localhost")]
    pub scheduler_host: String,
    /// The scheduler's port.
    #[arg(long, default_value_t = 50050)]
    pub scheduler_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// The port results are fetched from (Arrow Flight).
    #[arg(short = 'p', long, default_value_t = 50051)]
    pub bind_port: u16,
    /// The port the scheduler pushes tasks to (push-staged only).
    #[arg(long, default_value_t = 50052)]
    pub bind_grpc_port: u16,
    /// The host name others reach this executor by (default: the address
    /// the scheduler sees).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Tasks run at once (default: the number of cores).
    #[arg(short = 'c', long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Where shuffle files go (default: a temporary dir).
    #[arg(long)]
    pub work_dir: Option<String>,
    /// How tasks arrive: as the scheduler's `--scheduler-policy`.
    #[arg(short = 's', long, default_value = "pull-staged", value_parser = crate::parse_policy)]
    pub task_scheduling_policy: TaskSchedulingPolicy,
    /// How often this executor tells the scheduler it is alive (push-staged;
    /// pull-staged executors say so with every poll).
    #[arg(long, default_value_t = 60)]
    pub executor_heartbeat_interval_seconds: u64,
    /// How long to keep trying to reach the scheduler at start (0: once).
    #[arg(long, default_value_t = 0)]
    pub scheduler_connect_timeout_seconds: u16,
    /// Log level (`RUST_LOG` wins).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl ExecutorArgs {
    /// Ballista's executor config with Cairn's overrides.
    pub fn config(&self) -> anyhow::Result<ExecutorProcessConfig> {
        // Every function a Cairn session plans with, nested ones included.
        let functions = BallistaFunctionRegistry::from(&server_state(server_config())?);
        Ok(ExecutorProcessConfig {
            bind_host: self.bind_host.clone(),
            external_host: self.external_host.clone(),
            port: self.bind_port,
            grpc_port: self.bind_grpc_port,
            scheduler_host: self.scheduler_host.clone(),
            scheduler_port: self.scheduler_port,
            scheduler_connect_timeout_seconds: self.scheduler_connect_timeout_seconds,
            vcores: self.concurrent_tasks,
            task_scheduling_policy: self.task_scheduling_policy,
            work_dir: self.work_dir.clone(),
            executor_heartbeat_interval_seconds: self.executor_heartbeat_interval_seconds,
            override_function_registry: Some(Arc::new(functions)),
            override_runtime_producer: Some(Arc::new(server_runtime)),
            override_config_producer: Some(Arc::new(server_config)),
            override_logical_codec: Some(logical_codec()),
            override_physical_codec: Some(physical_codec()),
            ..ExecutorProcessConfig::default()
        })
    }
}

/// Runs the executor until the process ends (or SIGTERM / Ctrl-C).
pub async fn run(args: ExecutorArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    tracing::info!(
        scheduler = %format!("{}:{}", args.scheduler_host, args.scheduler_port),
        port = args.bind_port,
        "cairn-executor starting"
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}
