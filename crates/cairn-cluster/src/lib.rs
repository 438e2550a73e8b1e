//! Cairn on Apache DataFusion Ballista 55: the scheduler and the executor,
//! each Ballista's own with Cairn's overrides (its planner and rules, the
//! `cairn` settings, its codecs, the object stores of checkpoint dirs and
//! S3). The binaries `cairn-scheduler` and `cairn-executor` are thin
//! wrappers of [`scheduler::run`] and [`executor::run`]; the client side is
//! `CairnContextBuilder::cluster` in cairn-core.

#![warn(missing_docs)]

pub mod executor;
pub mod scheduler;

use ballista_core::config::TaskSchedulingPolicy;
use tracing_subscriber::EnvFilter;

/// `--scheduler-policy` / `--task-scheduling-policy`, as Ballista spells them.
fn parse_policy(text: &str) -> Result<TaskSchedulingPolicy, String> {
    match text {
        "pull-staged" => Ok(TaskSchedulingPolicy::PullStaged),
        "push-staged" => Ok(TaskSchedulingPolicy::PushStaged),
        other => Err(format!(
            "'{other}' is not a policy: use pull-staged or push-staged"
        )),
    }
}

/// Logs to stderr at `level` (`RUST_LOG` wins), Ballista's `log` records included.
pub fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
