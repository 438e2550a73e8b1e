//! Cairn as the client of an Apache DataFusion Ballista cluster.
//!
//! A query goes to the cluster as Ballista sends it (its logical plan), but
//! a checkpoint cannot be written by the tasks of the query that reads it:
//! each task runs one partition in a process of its own, and one commit
//! must follow the last of them. So [`ClusterPlanner`] runs every
//! checkpoint the query still needs first, innermost first, each as a job
//! of its own (a [`CheckpointWrite`]: every task writes its partition's file
//! and reports it), commits each manifest here, as one process does, and
//! then sends the query with each checkpoint replaced by a scan of exactly
//! the files its manifest lists.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::catalog::memory::MemTable;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, collect};

use super::materialize::{Planned, plan_checkpoint};
use super::node::{CheckpointNode, cut_written};
use super::planner::CairnQueryPlanner;
use super::remote::RemoteWriter;
use super::reuse_plans::take_optimized;
use super::write_job::CheckpointWrite;
use crate::error::Error;
use crate::exec::{
    CheckpointKind, CheckpointTable, CheckpointTask, Materialized, check_columns, commit_reported,
    reported_files,
};

/// How long the client waits for the scheduler to accept a connection.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// The query planner of a session whose queries run on a cluster: the
/// checkpoints a query needs are written first, each as a job of its own,
/// then the query is planned by `inner` (Ballista's planner, which sends
/// it to the scheduler).
pub struct ClusterPlanner {
    /// The scheduler, `http://host:port`.
    address: String,
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    local: CairnQueryPlanner,
}

impl fmt::Debug for ClusterPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterPlanner")
    }
}

impl ClusterPlanner {
    /// Sends plans to the scheduler at `address` (`http://host:port`) with
    /// `inner` (Ballista's query planner for it).
    pub fn new(address: &str, inner: Arc<dyn QueryPlanner + Send + Sync>) -> Self {
        Self {
            address: address.to_string(),
            inner,
            local: CairnQueryPlanner::default(),
        }
    }

    /// Fails within seconds, with an error that says what to do, when the
    /// scheduler does not answer (Ballista would report a transport
    /// error's debug text, after 20 s where packets are dropped).
    async fn check_reachable(&self) -> Result<()> {
        let target = self.address.trim_start_matches("http://");
        let connect = tokio::net::TcpStream::connect(target);
        let problem = match tokio::time::timeout(REACH_TIMEOUT, connect).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer in {} s", REACH_TIMEOUT.as_secs()),
        };
        Err(Error::Config(format!(
            "cannot reach the Cairn scheduler at {target} ({problem}); start cairn-scheduler \
             there, or give the address it listens on (--cluster df://host:port)"
        ))
        .into())
    }

    /// Writes the checkpoint `task` describes from `input` on the cluster and
    /// commits it here: every task writes its partition's file, and the
    /// manifest lists exactly the files the tasks that succeeded reported.
    async fn write_checkpoint(
        &self,
        session: &dyn Session,
        input: &LogicalPlan,
        task: &CheckpointTask,
    ) -> crate::error::Result<Materialized> {
        if task.kind == CheckpointKind::Local {
            return Err(local_on_cluster());
        }
        self.check_reachable().await?;
        check_columns(input.schema().inner(), task.options.compression)?;
        let started = Instant::now();
        let store = &task.store;
        let id = &task.fingerprint.id;
        store.check_writable().await?;
        if task.replace_damaged {
            tracing::warn!(%id, "recomputing a damaged checkpoint");
            store.delete_checkpoint(id).await?;
        }
        self.write_pending(input, session).await?;
        let attempt = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let input = cut_written(input.clone())?;
        let schema = Arc::clone(input.schema().inner());
        let job = CheckpointWrite::new(
            input,
            store.url().to_string(),
            id.clone(),
            attempt.clone(),
            crate::config::compression_name(task.options.compression),
        )?
        .into_plan();
        let ran = async {
            let plan = self.inner.create_physical_plan(&job, session).await?;
            collect(plan, session.task_ctx()).await
        }
        .await;
        let reports = match ran {
            Ok(batches) => batches,
            Err(e) => {
                store.remove_attempt(id, &attempt).await;
                return Err(e.into());
            }
        };
        let files = reported_files(&reports)?;
        let manifest = commit_reported(task, &schema, files, &attempt, started).await?;
        let table = CheckpointTable::new(Arc::clone(store), manifest);
        if let Some(name) = &task.name {
            store.bind_name(name, table.id()).await?;
        }
        Ok(Materialized::Reliable(Arc::new(table)))
    }

    /// Writes, innermost first, every checkpoint of `plan` not yet written.
    async fn write_pending(&self, plan: &LogicalPlan, session: &dyn Session) -> Result<()> {
        let mut nodes: Vec<CheckpointNode> = Vec::new();
        plan.apply_with_subqueries(|p| {
            if let LogicalPlan::Extension(e) = p
                && let Some(node) = e.node.as_any().downcast_ref::<CheckpointNode>()
            {
                nodes.push(node.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        // Visited top down, so reversed every node comes after those below it.
        for node in nodes.iter().rev() {
            if node.run().materialized().is_some() {
                continue;
            }
            let m = match plan_checkpoint(node, session).await? {
                Planned::Found(m) => m,
                Planned::Write(task) => {
                    Box::pin(self.write_checkpoint(session, node.input(), &task)).await?
                }
            };
            node.run().found(m);
        }
        Ok(())
    }
}

#[async_trait]
impl RemoteWriter for ClusterPlanner {
    async fn write(
        &self,
        session: &dyn Session,
        input: &LogicalPlan,
        task: &CheckpointTask,
    ) -> crate::error::Result<Materialized> {
        self.write_checkpoint(session, input, task).await
    }
}

#[async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let logical_plan = &*take_optimized(logical_plan);
        if reads_only_memory(logical_plan)? {
            // Rows this process made (a statement's answer, read_batch):
            // read where they are, as Ballista reads information_schema.
            return self.local.create_physical_plan(logical_plan, session).await;
        }
        self.check_reachable().await?;
        if let LogicalPlan::Explain(_) = logical_plan {
            // Shown as planned; nothing runs.
            return self.inner.create_physical_plan(logical_plan, session).await;
        }
        self.write_pending(logical_plan, session).await?;
        let plan = cut_written(logical_plan.clone())?;
        self.inner.create_physical_plan(&plan, session).await
    }
}

/// Whether every table `plan` reads (at least one) is a `MemTable` of this
/// process.
fn reads_only_memory(plan: &LogicalPlan) -> Result<bool> {
    let (mut memory, mut other) = (false, false);
    plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            let in_memory = source_as_provider(&scan.source)
                .is_ok_and(|t| t.downcast_ref::<MemTable>().is_some());
            if in_memory {
                memory = true;
            } else {
                other = true;
            }
        }
        Ok(if other {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(memory && !other)
}

/// The error for a local checkpoint on a cluster.
fn local_on_cluster() -> Error {
    Error::Unsupported(
        "a LOCAL CHECKPOINT keeps its result in one process's memory, and on a cluster the \
         query runs in other processes; use a reliable checkpoint (CHECKPOINT TABLE ..., \
         CHECKPOINT(...), checkpoint()) in a dir every process shares, such as s3://bucket/prefix"
            .into(),
    )
}
