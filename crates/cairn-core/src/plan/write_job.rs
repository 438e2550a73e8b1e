//! `CheckpointWrite`: the logical plan of a job that writes a reliable
//! checkpoint on a cluster, each task one partition's file (see
//! [`PartitionWriteExec`](crate::exec::PartitionWriteExec)).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::exec::report_schema;

/// A job that writes its input as one attempt of a reliable checkpoint:
/// each partition into a file of its own, answering with one row per file
/// (see [`PartitionWriteExec`](crate::exec::PartitionWriteExec)).
#[derive(Debug, Clone)]
pub struct CheckpointWrite {
    input: LogicalPlan,
    dir: String,
    id: String,
    attempt: String,
    compression: String,
    schema: DFSchemaRef,
}

impl CheckpointWrite {
    /// Writes `input` into checkpoint `id` of the dir `dir`, as attempt
    /// `attempt`, with the Parquet codec `compression`.
    pub fn new(
        input: LogicalPlan,
        dir: String,
        id: String,
        attempt: String,
        compression: String,
    ) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(report_schema())?);
        Ok(Self {
            input,
            dir,
            id,
            attempt,
            compression,
            schema,
        })
    }

    /// As a plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    /// The checkpoint dir written to.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The checkpoint's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The write attempt, the prefix of every file's name.
    pub fn attempt(&self) -> &str {
        &self.attempt
    }

    /// The Parquet codec of the files.
    pub fn compression(&self) -> &str {
        &self.compression
    }

    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.dir, &self.id, &self.attempt, &self.compression)
    }
}

impl PartialEq for CheckpointWrite {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && self.input == other.input
    }
}

impl Eq for CheckpointWrite {}

impl Hash for CheckpointWrite {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for CheckpointWrite {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.key().cmp(&other.key()) {
            Ordering::Equal => self.input.partial_cmp(&other.input),
            unequal => Some(unequal),
        }
    }
}

impl UserDefinedLogicalNodeCore for CheckpointWrite {
    fn name(&self) -> &str {
        "CheckpointWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CheckpointWrite: checkpoint {} in {}, a file per partition",
            self.id, self.dir
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let (Some(input), true) = (inputs.pop(), inputs.is_empty()) else {
            return Err(DataFusionError::Internal(
                "CheckpointWrite needs one input".into(),
            ));
        };
        Ok(Self {
            input,
            ..self.clone()
        })
    }

    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // Every column of the input is written, whatever is read of the report.
        Some(vec![(0..self.input.schema().fields().len()).collect()])
    }
}
