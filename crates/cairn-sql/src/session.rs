//! `Session`: runs scripts of statements, Cairn's and DataFusion's, for
//! every front end (the shell, the tests, the bench).

use std::sync::Arc;

use cairn_core::datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use cairn_core::datafusion::arrow::datatypes::{Schema, SchemaRef};
use cairn_core::{
    CairnContext, CairnOptions, CheckpointInfo, CheckpointKind, Error, Materialize, Result,
};
use datafusion::dataframe::DataFrame;
use datafusion::physical_plan::collect;
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect, dialect_from_str};

use crate::dialect::CairnDialect;
use crate::listing::{Listing, checkpoint_listing};
use crate::parser::{ParsedStatement, Statement, parse_script};
use crate::relation::CheckpointRelationPlanner;

/// The result of one statement: its rows, collected.
#[derive(Debug, Clone)]
pub struct StatementOutput {
    /// The statement's text (a secret it set shown as `********`).
    pub statement: String,
    /// The schema of its rows.
    pub schema: SchemaRef,
    /// Its rows.
    pub batches: Vec<RecordBatch>,
}

impl StatementOutput {
    /// How many rows it returned.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What a statement gave: the rows of one of Cairn's own statements, which
/// has taken effect, or a query to collect or stream.
#[derive(Debug)]
pub enum Executed {
    /// The statement's rows (a summary, a listing; no columns for `SET`).
    Rows(RecordBatch),
    /// A query (or DataFusion's statement), planned but not yet run.
    Query(DataFrame),
}

/// How many links of a chain `EXPLAIN LINEAGE` shows.
const LINEAGE_DEPTH: usize = 20;

/// A session: a [`CairnContext`] that also runs Cairn's statements.
#[derive(Debug, Clone)]
pub struct Session {
    ctx: CairnContext,
}

impl Session {
    /// A session on `ctx`, with the inline `CHECKPOINT(...)` relation.
    pub fn new(ctx: CairnContext) -> Result<Self> {
        ctx.register_relation_planner(Arc::new(CheckpointRelationPlanner))?;
        Ok(Self { ctx })
    }

    /// The context statements run in.
    pub fn context(&self) -> &CairnContext {
        &self.ctx
    }

    /// The dialect set in `datafusion.sql_parser.dialect`, with Cairn's extension.
    fn dialect(&self) -> Result<CairnDialect> {
        // Read in place: a copy of the session state costs more than parsing.
        let name = self
            .ctx
            .state_ref()
            .read()
            .config_options()
            .sql_parser
            .dialect
            .to_string();
        let inner: Box<dyn Dialect> = match dialect_from_str(&name) {
            Some(d) => d,
            None if name.eq_ignore_ascii_case("generic") => Box::new(GenericDialect {}),
            None => {
                return Err(Error::Config(format!(
                    "unknown SQL dialect '{name}' in datafusion.sql_parser.dialect; set it to \
                     one DataFusion knows, e.g. 'generic' or 'postgresql'"
                )));
            }
        };
        Ok(CairnDialect::new(inner))
    }

    /// Splits and parses a script without running it.
    pub fn parse(&self, sql: &str) -> Result<Vec<ParsedStatement>> {
        Ok(parse_script(sql, &self.dialect()?)?)
    }

    /// Runs every statement of `sql` in order and collects its rows. Stops
    /// at the first failure; statements before it keep their effects.
    pub async fn sql(&self, sql: &str) -> Result<Vec<StatementOutput>> {
        let mut out = Vec::new();
        for statement in self.parse(sql)? {
            out.push(self.run(&statement).await?);
        }
        Ok(out)
    }

    /// Runs one statement and collects its rows.
    /// A statement that fails on a damaged checkpoint runs again once that
    /// checkpoint is rebuilt, if `cairn.checkpoint_on_corrupt` is `recompute`.
    pub async fn run(&self, statement: &ParsedStatement) -> Result<StatementOutput> {
        let mut repaired = Vec::new();
        loop {
            match self.run_once(statement).await {
                Err(e) if self.repair(&e, &mut repaired).await? => continue,
                result => return result.map_err(cairn_core::from_cluster_task),
            }
        }
    }

    /// After `error`, rebuilds the damaged checkpoint it is about when the
    /// policy says so. True when the statement should run again: a
    /// checkpoint not in `repaired` was rebuilt (and is added to it).
    pub async fn repair(&self, error: &Error, repaired: &mut Vec<String>) -> Result<bool> {
        self.ctx.repair(error, repaired).await
    }

    async fn run_once(&self, statement: &ParsedStatement) -> Result<StatementOutput> {
        let (schema, batches) = match self.execute_statement(statement).await? {
            Executed::Rows(batch) => (batch.schema(), vec![batch]),
            Executed::Query(df) => {
                let task_ctx = Arc::new(df.task_ctx());
                // The physical plan's schema: the logical one is not yet type-coerced.
                let plan = df.create_physical_plan().await?;
                (plan.schema(), collect(plan, task_ctx).await?)
            }
        };
        // The output keeps the statement's text, but not a secret it set.
        let text = match &statement.statement {
            Statement::SetOption { key, .. } if CairnOptions::is_secret(key) => {
                format!("SET cairn.{key} = '********'")
            }
            _ => statement.text.clone(),
        };
        Ok(StatementOutput {
            statement: text,
            schema,
            batches,
        })
    }

    /// Runs one statement. Statements with effects (DDL, checkpoints,
    /// settings) take effect now; a query returns a DataFrame to collect or
    /// stream. A failed statement changes nothing.
    pub async fn execute(&self, statement: &ParsedStatement) -> Result<DataFrame> {
        match self.execute_statement(statement).await? {
            Executed::Rows(batch) => Ok(self.ctx.read_batch(batch)?),
            Executed::Query(df) => Ok(df),
        }
    }

    /// [`execute`](Self::execute), with the rows of Cairn's own statements
    /// as they are: planning a scan of a one-row summary would cost as
    /// much as planning a query, once per statement of a loop.
    pub async fn execute_statement(&self, statement: &ParsedStatement) -> Result<Executed> {
        // A failed background commit fails the next statement before it
        // takes effect (a query's planning checks it too).
        if !matches!(statement.statement, Statement::DataFusion(_)) {
            self.ctx.check_background_commits()?;
        }
        let rows = match &statement.statement {
            Statement::DataFusion(stmt) => {
                let plan = self.ctx.statement_to_plan(stmt.as_ref().clone()).await?;
                return Ok(Executed::Query(self.ctx.execute_logical_plan(plan).await?));
            }
            Statement::CheckpointTable {
                name,
                replace,
                lazy,
                local,
                query,
            } => {
                let input = self.query(query).await?;
                let kind = if *local {
                    CheckpointKind::Local
                } else {
                    CheckpointKind::Reliable
                };
                let when = if *lazy {
                    Materialize::Lazy
                } else {
                    Materialize::Eager
                };
                let info = self
                    .ctx
                    .checkpoint_table(name, input, kind, when, *replace)
                    .await?;
                checkpoint_summary(&[info])
            }
            Statement::ShowCheckpoints => {
                let infos = self.ctx.checkpoints().await?;
                checkpoint_listing(&infos, Listing::Sql)
            }
            Statement::Refresh { name } => {
                let info = self.ctx.refresh_checkpoint(name).await?;
                checkpoint_summary(&[info])
            }
            Statement::ExplainLineage { name, dot } => {
                let (links, left_out) = self.ctx.checkpoint_chain(name, LINEAGE_DEPTH).await?;
                if *dot {
                    batch(vec![(
                        "dot",
                        text(vec![Some(crate::lineage::dot(name, &links, left_out))]),
                    )])
                } else {
                    crate::lineage::rows(&links, left_out)
                }
            }
            Statement::Drop { name, if_exists } => {
                self.ctx.drop_checkpoint(name, *if_exists).await?;
                RecordBatch::new_empty(Arc::new(Schema::empty()))
            }
            Statement::Vacuum => {
                let report = self.ctx.vacuum_checkpoints().await?;
                batch(vec![
                    ("removed_checkpoints", count(report.checkpoints.len())),
                    ("removed_orphans", count(report.orphans.len())),
                    ("removed_stray_files", count(report.strays.len())),
                    ("bytes", count(report.bytes as usize)),
                ])
            }
            Statement::SetOption { key, value } => {
                self.ctx.set_option(key, value).await?;
                RecordBatch::new_empty(Arc::new(Schema::empty()))
            }
            Statement::ShowOption { key } => {
                // Checked first, for an error that lists the settings.
                self.ctx.options().get(key)?;
                return Ok(Executed::Query(
                    self.ctx.sql(&format!("SHOW cairn.{key}")).await?,
                ));
            }
        };
        Ok(Executed::Rows(rows))
    }

    /// Plans a query of a Cairn statement.
    async fn query(&self, query: &datafusion::sql::sqlparser::ast::Query) -> Result<DataFrame> {
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(
            datafusion::sql::sqlparser::ast::Statement::Query(Box::new(query.clone())),
        ));
        let plan = self.ctx.statement_to_plan(statement).await?;
        Ok(DataFrame::new(self.ctx.state(), plan))
    }
}

fn text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn count(n: usize) -> ArrayRef {
    Arc::new(UInt64Array::from(vec![n as u64]))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("columns of equal length")
}

/// What `CHECKPOINT TABLE` and `REFRESH CHECKPOINT` report.
fn checkpoint_summary(infos: &[CheckpointInfo]) -> RecordBatch {
    batch(vec![
        (
            "name",
            text(infos.iter().map(|i| Some(i.name.clone())).collect()),
        ),
        (
            "kind",
            text(infos.iter().map(|i| Some(i.kind.to_string())).collect()),
        ),
        (
            "rows",
            Arc::new(UInt64Array::from(
                infos.iter().map(|i| i.rows).collect::<Vec<_>>(),
            )),
        ),
    ])
}
