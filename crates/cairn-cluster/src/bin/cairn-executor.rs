//! `cairn-executor`: see `cairn_cluster::executor`.

use cairn_cluster::executor::{ExecutorArgs, run};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ExecutorArgs::parse();
    cairn_cluster::init_logging(&args.log_level);
    run(args).await
}
