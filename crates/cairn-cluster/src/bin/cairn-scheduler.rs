//! `cairn-scheduler`: see `cairn_cluster::scheduler`.

use cairn_cluster::scheduler::{SchedulerArgs, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = SchedulerArgs::parse();
    cairn_cluster::init_logging(&args.log_level);
    run(args).await
}
