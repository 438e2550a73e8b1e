//! `Session`: runs scripts of statements, Cairn's and DataFusion's, for
//! every front end (the shell, the tests, the bench).

use std::sync::Arc;
use std::time::Duration;

use cairn_core::datafusion::arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use cairn_core::datafusion::arrow::datatypes::{Schema, SchemaRef};
use cairn_core::store::lifecycle::Lifetimes;
use cairn_core::{
    CairnContext, CheckpointInfo, CheckpointKind, Error, Materialize, OnCorrupt, Result, Secret,
    WriteOptions, damaged_checkpoint,
};
use datafusion::dataframe::DataFrame;
use datafusion::parquet::basic::Compression;
use datafusion::physical_plan::collect;
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect, dialect_from_str};

use crate::dialect::CairnDialect;
use crate::parser::{ParsedStatement, Statement, parse_script};
use crate::relation::CheckpointRelationPlanner;

/// The settings `SET cairn.<key>` knows.
pub const OPTIONS: &[(&str, &str)] = &[
    (
        "checkpoint_dir",
        "where reliable checkpoints go: a path, file://, memory:// or s3://bucket/prefix",
    ),
    (
        "checkpoint_compression",
        "Parquet codec of checkpoint files: lz4_raw, uncompressed, snappy, zstd(N)",
    ),
    (
        "checkpoint_retention",
        "how long unnamed checkpoints live after their last use, e.g. '7 days'",
    ),
    (
        "checkpoint_orphan_grace",
        "how long VACUUM leaves directories without a manifest, e.g. '1 hour'",
    ),
    (
        "checkpoint_on_corrupt",
        "a damaged checkpoint is an 'error', or is rebuilt from its lineage ('recompute')",
    ),
    (
        "s3.endpoint",
        "an S3-compatible server, e.g. 'http://127.0.0.1:9000' (default: AWS_ENDPOINT or AWS)",
    ),
    (
        "s3.region",
        "the S3 region (default: AWS_REGION or us-east-1)",
    ),
    (
        "s3.access_key_id",
        "the S3 access key id (default: AWS_ACCESS_KEY_ID)",
    ),
    (
        "s3.secret_access_key",
        "the S3 secret key (default: AWS_SECRET_ACCESS_KEY); never shown",
    ),
    (
        "s3.session_token",
        "a temporary S3 session token (default: AWS_SESSION_TOKEN); never shown",
    ),
    (
        "s3.allow_http",
        "'true' to allow an http:// endpoint (default: true when the endpoint is http://)",
    ),
];

/// Whether `cairn.<key>` holds a credential, whose value is never shown.
pub fn is_secret_option(key: &str) -> bool {
    matches!(key, "s3.secret_access_key" | "s3.session_token")
}

/// The result of one statement: its rows, collected.
#[derive(Debug, Clone)]
pub struct StatementOutput {
    pub statement: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl StatementOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A session: a [`CairnContext`] that also runs Cairn's statements.
#[derive(Debug, Clone)]
pub struct Session {
    ctx: CairnContext,
}

impl Session {
    /// A session on `ctx`, with the inline `CHECKPOINT(...)` relation.
    pub fn new(ctx: CairnContext) -> Result<Self> {
        ctx.register_relation_planner(Arc::new(CheckpointRelationPlanner::new(Arc::clone(
            ctx.config(),
        ))))?;
        Ok(Self { ctx })
    }

    pub fn context(&self) -> &CairnContext {
        &self.ctx
    }

    /// The dialect set in `datafusion.sql_parser.dialect`, with Cairn's extension.
    fn dialect(&self) -> Result<CairnDialect> {
        let name = self
            .ctx
            .state()
            .config_options()
            .sql_parser
            .dialect
            .to_string();
        let inner: Box<dyn Dialect> = match dialect_from_str(&name) {
            Some(d) => d,
            None if name.eq_ignore_ascii_case("generic") => Box::new(GenericDialect {}),
            None => {
                return Err(Error::Unsupported(format!(
                    "unknown SQL dialect '{name}' in datafusion.sql_parser.dialect"
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
                result => return result,
            }
        }
    }

    /// After `error`, rebuilds the damaged checkpoint it is about when the
    /// policy says so. True when the statement should run again: a
    /// checkpoint not in `repaired` was rebuilt (and is added to it).
    pub async fn repair(&self, error: &Error, repaired: &mut Vec<String>) -> Result<bool> {
        if self.ctx.config().on_corrupt() != OnCorrupt::Recompute {
            return Ok(false);
        }
        let Some(id) = damaged_checkpoint(error) else {
            return Ok(false);
        };
        if repaired.contains(&id) {
            return Ok(false);
        }
        self.ctx.recompute_damaged_checkpoint(&id).await?;
        repaired.push(id);
        Ok(true)
    }

    async fn run_once(&self, statement: &ParsedStatement) -> Result<StatementOutput> {
        let df = self.execute(statement).await?;
        let task_ctx = Arc::new(df.task_ctx());
        // The physical plan's schema: the logical one is not yet type-coerced.
        let plan = df.create_physical_plan().await?;
        let schema = plan.schema();
        let batches = collect(plan, task_ctx).await?;
        // The output keeps the statement's text, but not a secret it set.
        let text = match &statement.statement {
            Statement::SetOption { key, .. } if is_secret_option(key) => {
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
        match &statement.statement {
            Statement::DataFusion(stmt) => {
                let state = self.ctx.state();
                let plan = state.statement_to_plan(stmt.as_ref().clone()).await?;
                Ok(self.ctx.execute_logical_plan(plan).await?)
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
                self.rows(checkpoint_summary(&[info]))
            }
            Statement::ShowCheckpoints => {
                let infos = self.ctx.checkpoints().await?;
                self.rows(checkpoint_listing(&infos))
            }
            Statement::Refresh { name } => {
                let info = self.ctx.refresh_checkpoint(name).await?;
                self.rows(checkpoint_summary(&[info]))
            }
            Statement::ExplainLineage { name } => {
                let lineage = self.ctx.checkpoint_lineage(name).await?;
                let recompute = match (&lineage.proto, &lineage.proto_unavailable) {
                    (Some(_), _) => "available".to_string(),
                    (None, Some(why)) => format!("not available: {why}"),
                    (None, None) => "not available".to_string(),
                };
                self.rows(batch(vec![
                    ("recompute", text(vec![Some(recompute)])),
                    ("lineage", text(vec![Some(lineage.text)])),
                ]))
            }
            Statement::Drop { name, if_exists } => {
                self.ctx.drop_checkpoint(name, *if_exists).await?;
                self.rows(RecordBatch::new_empty(Arc::new(Schema::empty())))
            }
            Statement::Vacuum => {
                let report = self.ctx.vacuum_checkpoints().await?;
                self.rows(batch(vec![
                    ("removed_checkpoints", count(report.checkpoints.len())),
                    ("removed_orphans", count(report.orphans.len())),
                    ("bytes", count(report.bytes as usize)),
                ]))
            }
            Statement::SetOption { key, value } => {
                self.set_option(key, value).await?;
                self.rows(RecordBatch::new_empty(Arc::new(Schema::empty())))
            }
            Statement::ShowOption { key } => {
                let value = self.option(key)?;
                self.rows(batch(vec![
                    ("name", text(vec![Some(format!("cairn.{key}"))])),
                    ("value", text(vec![Some(value)])),
                ]))
            }
        }
    }

    /// Plans a query of a Cairn statement.
    async fn query(&self, query: &datafusion::sql::sqlparser::ast::Query) -> Result<DataFrame> {
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(
            datafusion::sql::sqlparser::ast::Statement::Query(Box::new(query.clone())),
        ));
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        Ok(DataFrame::new(self.ctx.state(), plan))
    }

    fn rows(&self, batch: RecordBatch) -> Result<DataFrame> {
        Ok(self.ctx.read_batch(batch)?)
    }

    /// The current value of `cairn.<key>`.
    pub fn option(&self, key: &str) -> Result<String> {
        let config = self.ctx.config();
        Ok(match key {
            "checkpoint_dir" => config.store().url().to_string(),
            "checkpoint_compression" => config
                .write_options()
                .compression
                .to_string()
                .to_lowercase(),
            "checkpoint_retention" => format_duration(config.lifetimes().retention),
            "checkpoint_orphan_grace" => format_duration(config.lifetimes().orphan_grace),
            "checkpoint_on_corrupt" => config.on_corrupt().to_string(),
            "s3.endpoint" => config.s3_options().endpoint.unwrap_or_default(),
            "s3.region" => config.s3_options().region.unwrap_or_default(),
            "s3.access_key_id" => config.s3_options().access_key_id.unwrap_or_default(),
            "s3.secret_access_key" => shown(config.s3_options().secret_access_key),
            "s3.session_token" => shown(config.s3_options().session_token),
            "s3.allow_http" => config
                .s3_options()
                .allow_http
                .map(|b| b.to_string())
                .unwrap_or_default(),
            other => return Err(unknown_option(other)),
        })
    }

    /// Sets `cairn.<key>`; a bad value is an error that changes nothing.
    /// A remote checkpoint dir is checked to take writes first.
    pub async fn set_option(&self, key: &str, value: &str) -> Result<()> {
        let config = self.ctx.config();
        let bad =
            |why: String| Error::Unsupported(format!("cannot set cairn.{key} to '{value}': {why}"));
        let mut s3 = config.s3_options();
        // An empty value goes back to the environment's.
        let given = Some(value.to_string()).filter(|v| !v.is_empty());
        match key {
            "checkpoint_dir" => self.ctx.use_checkpoint_dir(value).await?,
            "s3.endpoint" => s3.endpoint = given,
            "s3.region" => s3.region = given,
            "s3.access_key_id" => s3.access_key_id = given,
            "s3.secret_access_key" => s3.secret_access_key = given.map(Secret::new),
            "s3.session_token" => s3.session_token = given.map(Secret::new),
            "s3.allow_http" => {
                s3.allow_http = match value.to_lowercase().as_str() {
                    "" => None,
                    "true" | "on" => Some(true),
                    "false" | "off" => Some(false),
                    _ => return Err(bad("use true or false".into())),
                }
            }
            "checkpoint_compression" => {
                let compression: Compression = value.parse().map_err(|e| {
                    bad(format!(
                        "{e}; use lz4_raw, uncompressed, snappy or zstd(1..22)"
                    ))
                })?;
                config.set_write_options(WriteOptions { compression });
            }
            "checkpoint_retention" | "checkpoint_orphan_grace" => {
                let d = parse_duration(value).map_err(bad)?;
                let mut lifetimes: Lifetimes = config.lifetimes();
                if key == "checkpoint_retention" {
                    lifetimes.retention = d;
                } else {
                    lifetimes.orphan_grace = d;
                }
                config.set_lifetimes(lifetimes);
            }
            "checkpoint_on_corrupt" => config.set_on_corrupt(value.parse().map_err(bad)?),
            other => return Err(unknown_option(other)),
        }
        if key.starts_with("s3.") {
            config.set_s3_options(s3)?;
        }
        Ok(())
    }
}

/// A secret as `SHOW` gives it: whether it is set, never its value.
fn shown(secret: Option<Secret>) -> String {
    secret.map(|s| s.to_string()).unwrap_or_default()
}

fn unknown_option(key: &str) -> Error {
    let known: Vec<String> = OPTIONS.iter().map(|(k, _)| format!("cairn.{k}")).collect();
    Error::Unsupported(format!(
        "unknown setting 'cairn.{key}'; the settings are {}",
        known.join(", ")
    ))
}

/// `'90 seconds'`, `'30 minutes'`, `'12 hours'`, `'7 days'`, `'0'`.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = text
        .split_once(char::is_whitespace)
        .ok_or_else(|| "write a number and a unit, e.g. '7 days'".to_string())?;
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{number}' is not a whole number"))?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 604_800,
        other => {
            return Err(format!(
                "unknown unit '{other}'; use seconds, minutes, hours, days or weeks"
            ));
        }
    };
    Ok(Duration::from_secs(n * seconds))
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [
        ("week", 604_800),
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
    ] {
        if s >= size && s.is_multiple_of(size) {
            let n = s / size;
            return format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{s} seconds")
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

/// What `SHOW CHECKPOINTS` lists.
fn checkpoint_listing(infos: &[CheckpointInfo]) -> RecordBatch {
    let created: Vec<Option<i64>> = infos
        .iter()
        .map(|i| i.created.map(|t| t.timestamp_micros()))
        .collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "name",
            text(infos.iter().map(|i| Some(i.name.clone())).collect()),
        ),
        ("id", text(infos.iter().map(|i| i.id.clone()).collect())),
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
        (
            "bytes",
            Arc::new(UInt64Array::from(
                infos.iter().map(|i| i.bytes).collect::<Vec<_>>(),
            )),
        ),
        (
            "created",
            Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC")),
        ),
        (
            "stale",
            Arc::new(BooleanArray::from(
                infos.iter().map(|i| i.stale).collect::<Vec<_>>(),
            )),
        ),
        (
            "location",
            text(infos.iter().map(|i| Some(i.location.clone())).collect()),
        ),
    ];
    batch(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, secs) in [
            ("7 days", 604_800),
            ("1 hour", 3600),
            ("90 seconds", 90),
            ("0", 0),
            ("2 weeks", 1_209_600),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(604_800)), "1 week");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2 hours");
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("number and a unit")
        );
        assert!(
            parse_duration("3 fortnights")
                .unwrap_err()
                .contains("unknown unit 'fortnight'")
        );
    }
}
