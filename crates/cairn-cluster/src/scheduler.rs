//! `cairn-scheduler`: Ballista's scheduler, planning with Cairn.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use cairn_core::cluster::{logical_codec, physical_codec, server_config, server_state};
use clap::Parser;

/// The flags of `cairn-scheduler` (Ballista's scheduler's, where they exist).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cairn-scheduler",
    version,
    about = "The scheduler of a Cairn cluster (Apache DataFusion Ballista 55 with Cairn's planner)",
    after_help = "Start it, then executors that name it (cairn-executor --scheduler-port PORT), \
                  then a client: cairn --cluster df://HOST:PORT. Checkpoints must live in a dir \
                  every process reaches (s3://, or a local path when all run on one machine)."
)]
pub struct SchedulerArgs {
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// The port clients and executors connect to.
    #[arg(short = 'p', long, default_value_t = 50050)]
    pub bind_port: u16,
    /// The host name others reach this scheduler by.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// How tasks reach executors: `pull-staged` (executors poll) or
    /// `push-staged` (the scheduler sends them); executors must use the same.
    #[arg(short = 's', long, default_value = "pull-staged", value_parser = crate::parse_policy)]
    pub scheduler_policy: TaskSchedulingPolicy,
    /// An executor not heard from for this long is lost: its running tasks
    /// run again elsewhere.
    #[arg(long, default_value_t = 180)]
    pub executor_timeout_seconds: u64,
    /// How often lost executors are looked for.
    #[arg(long, default_value_t = 15)]
    pub expire_dead_executor_interval_seconds: u64,
    /// How many times one task may fail before its job fails.
    #[arg(long, default_value_t = 4)]
    pub task_max_failures: usize,
    /// Log level (`RUST_LOG` wins).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl SchedulerArgs {
    /// Ballista's scheduler config with Cairn's overrides.
    pub fn config(&self) -> SchedulerConfig {
        let mut config = SchedulerConfig::default()
            .with_hostname(self.external_host.clone())
            .with_port(self.bind_port)
            .with_scheduler_policy(self.scheduler_policy)
            .with_override_config_producer(Arc::new(server_config))
            .with_override_session_builder(Arc::new(server_state));
        config.bind_host = self.bind_host.clone();
        config.executor_timeout_seconds = self.executor_timeout_seconds;
        config.expire_dead_executor_interval_seconds = self.expire_dead_executor_interval_seconds;
        config.no_executors_grace_period_seconds = self.executor_timeout_seconds;
        config.task_max_failures = self.task_max_failures;
        config.override_logical_codec = Some(logical_codec());
        config.override_physical_codec = Some(physical_codec());
        config
    }
}

/// Runs the scheduler until the process ends.
pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let address: SocketAddr = format!("{}:{}", args.bind_host, args.bind_port)
        .parse()
        .map_err(|e| anyhow::anyhow!("--bind-host/--bind-port do not make an address: {e}"))?;
    let config = args.config();
    let cluster = BallistaCluster::new_from_config(&config).await?;
    tracing::info!(%address, "cairn-scheduler listening");
    start_server(cluster, address, Arc::new(config)).await?;
    Ok(())
}
