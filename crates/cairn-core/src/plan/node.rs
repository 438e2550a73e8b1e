//! `CheckpointNode`: the logical operator that cuts a plan's lineage.
//!
//! It is an opaque boundary: no filter, projection or limit is pushed
//! through it. It carries what planning needs (kind, name, dir, the input
//! as the user gave it) and a stable id; the run-once state every copy of
//! it shares is the execution side's [`CheckpointRun`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::Transformed;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};

use super::scan::scan_plan;
use crate::error::{Error, Result};
use crate::exec::{CheckpointKind, CheckpointRun};

/// Why Cairn placed a checkpoint itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AutoReason {
    /// One query reads this sub-plan `reads` times: it is computed once.
    Shared {
        /// How many times the query reads it.
        reads: u64,
    },
    /// The lineage grew past a bound: later actions read this result
    /// instead of computing it again.
    LineageCut,
}

/// A checkpoint Cairn placed itself: why, and a short tag that EXPLAIN
/// shows on it and on its reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Auto {
    /// Why it was placed.
    pub reason: AutoReason,
    /// A short tag, the same on the checkpoint and on its reads.
    pub tag: String,
}

/// The logical checkpoint operator.
#[derive(Debug, Clone)]
pub struct CheckpointNode {
    input: LogicalPlan,
    /// The same for every copy of this node: its identity.
    id: u128,
    kind: CheckpointKind,
    /// Bound to the checkpoint in its dir once it is committed.
    name: Option<String>,
    /// The checkpoint dir, as a URL; `None`: the session's current one.
    dir: Option<String>,
    /// The input as the user gave it: fingerprinted before optimization,
    /// whose generated names differ from run to run.
    original: Arc<LogicalPlan>,
    run: Arc<CheckpointRun>,
    /// Placed by Cairn, not by the user.
    auto: Option<Auto>,
}

impl CheckpointNode {
    /// A checkpoint of `input`. Columns whose names repeat (a join's two
    /// `id`s) are stored under distinct names and read back under theirs.
    pub fn try_new(
        input: LogicalPlan,
        kind: CheckpointKind,
        name: Option<String>,
        dir: Option<String>,
    ) -> Result<Self> {
        let input = cut_written(input)?;
        Ok(Self {
            original: Arc::new(input.clone()),
            input,
            id: uuid::Uuid::new_v4().as_u128(),
            kind,
            name,
            dir,
            run: CheckpointRun::new(),
            auto: None,
        })
    }

    /// A checkpoint Cairn places itself: of `input`, identified by
    /// `original` (the same sub-plan without the shared parts of the query
    /// around it, where a reliable checkpoint needs its fingerprint).
    pub(crate) fn placed(
        input: LogicalPlan,
        original: LogicalPlan,
        kind: CheckpointKind,
        auto: Auto,
    ) -> Result<Self> {
        Ok(Self {
            original: Arc::new(original),
            input: cut_written(input)?,
            id: uuid::Uuid::new_v4().as_u128(),
            kind,
            name: None,
            dir: None,
            run: CheckpointRun::new(),
            auto: Some(auto),
        })
    }

    /// A node decoded from bytes: its identity and parts as encoded, and a
    /// fresh run state (what ran in another process did not run here).
    pub(crate) fn decoded(
        input: LogicalPlan,
        original: LogicalPlan,
        id: u128,
        kind: CheckpointKind,
        name: Option<String>,
        dir: Option<String>,
    ) -> Result<Self> {
        Ok(Self {
            input,
            id,
            kind,
            name,
            dir,
            original: Arc::new(original),
            run: CheckpointRun::new(),
            auto: None,
        })
    }

    /// The node as a plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    /// The node's identity, shared by its copies.
    pub fn id(&self) -> u128 {
        self.id
    }

    /// Reliable or local.
    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    /// The name it is bound to once committed, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The checkpoint dir it is written to; `None`: the session's current one.
    pub fn dir(&self) -> Option<&str> {
        self.dir.as_deref()
    }

    /// The input, as the optimizer has it now.
    pub fn input(&self) -> &LogicalPlan {
        &self.input
    }

    /// The input as the user gave it.
    pub fn original(&self) -> &LogicalPlan {
        &self.original
    }

    /// The run-once state every plan of this node shares.
    pub fn run(&self) -> &Arc<CheckpointRun> {
        &self.run
    }

    /// Why Cairn placed it, if Cairn did.
    pub fn auto(&self) -> Option<&Auto> {
        self.auto.as_ref()
    }
}

impl PartialEq for CheckpointNode {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.input == other.input
    }
}

impl Eq for CheckpointNode {}

impl Hash for CheckpointNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for CheckpointNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.id.cmp(&other.id) {
            Ordering::Equal => self.input.partial_cmp(&other.input),
            unequal => Some(unequal),
        }
    }
}

impl UserDefinedLogicalNodeCore for CheckpointNode {
    fn name(&self) -> &str {
        "Checkpoint"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    // Stable text: it is part of the fingerprint of plans above this node.
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.auto {
            None => write!(f, "Checkpoint: kind={}, lazy", self.kind),
            Some(Auto {
                reason: AutoReason::Shared { reads },
                tag,
            }) => write!(
                f,
                "Checkpoint: kind={}, auto: computed once for {reads} reads, #{tag}",
                self.kind
            ),
            Some(Auto {
                reason: AutoReason::LineageCut,
                tag,
            }) => write!(
                f,
                "Checkpoint: kind={}, auto: long lineage cut, #{tag}",
                self.kind
            ),
        }
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        let (Some(input), true) = (inputs.pop(), inputs.is_empty()) else {
            return Err(DataFusionError::Internal(
                "Checkpoint needs one input".into(),
            ));
        };
        Ok(Self {
            input,
            id: self.id,
            kind: self.kind,
            name: self.name.clone(),
            dir: self.dir.clone(),
            original: Arc::clone(&self.original),
            run: Arc::clone(&self.run),
            auto: self.auto.clone(),
        })
    }
}

/// A table's columns need distinct names, as do a named checkpoint's.
pub(crate) fn check_column_names(plan: &LogicalPlan) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for field in plan.schema().fields() {
        if !seen.insert(field.name()) {
            return Err(Error::Unsupported(format!(
                "column name '{0}' appears more than once; give each column of a checkpoint \
                 a distinct name (e.g. SELECT a.{0}, b.{0} AS b_{0} ...)",
                field.name()
            )));
        }
    }
    Ok(())
}

/// `plan` with every checkpoint node that is written already replaced by a
/// scan of its checkpoint: a new checkpoint over it keeps no lineage it
/// does not need (and no reader of versions a loop has left behind).
pub(crate) fn cut_written(plan: LogicalPlan) -> Result<LogicalPlan> {
    let cut = plan.transform_up_with_subqueries(|p| {
        let LogicalPlan::Extension(e) = &p else {
            return Ok(Transformed::no(p));
        };
        let Some(node) = e.node.as_any().downcast_ref::<CheckpointNode>() else {
            return Ok(Transformed::no(p));
        };
        let Some(m) = node.run().materialized() else {
            return Ok(Transformed::no(p));
        };
        let scan = scan_plan(&m, Some(node.input().schema()))?;
        Ok(Transformed::yes(scan))
    })?;
    Ok(cut.data)
}
