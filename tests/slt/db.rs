//! A sqllogictest database on a `cairn::Session`.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use cairn::Session;
use cairn::prelude::*;
use sqllogictest::DBOutput;

use super::normalize::{ColumnKind, column_kinds, rows_of};

/// The statement running now, for a file that does not finish.
pub static RUNNING: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Whose conventions a file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Cairn's own files.
    Cairn,
    /// DataFusion's files: its test settings and error prefix.
    DataFusion,
}

pub struct CairnDb {
    session: Session,
    flavor: Flavor,
    /// Every query is also checked through `CHECKPOINT(...)` and through
    /// Cairn's codecs: see `inline` and `codec`.
    inline: bool,
}

/// Errors as the files expect them: DataFusion's carry its prefix.
#[derive(Debug)]
pub struct DbError {
    message: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl CairnDb {
    /// A new session on the checkpoint dir `dir`.
    pub fn open(dir: &Path, flavor: Flavor) -> Result<Self, DbError> {
        let ctx = CairnContext::builder()
            .checkpoint_dir(dir.display().to_string())
            // Fixed, so that plans do not depend on the machine.
            .target_partitions(4)
            .build()
            .map_err(|e| DbError {
                message: e.to_string(),
            })?;
        if flavor == Flavor::DataFusion {
            // DataFusion's own test sessions run without it.
            let state = ctx.state_ref();
            state
                .write()
                .config_mut()
                .options_mut()
                .catalog
                .information_schema = false;
        }
        let session = Session::new(ctx).map_err(|e| DbError {
            message: e.to_string(),
        })?;
        Ok(Self {
            session,
            flavor,
            inline: true,
        })
    }

    fn error(&self, e: cairn::Error) -> DbError {
        let message = match (self.flavor, e) {
            (Flavor::DataFusion, cairn::Error::DataFusion(e)) => format!("DataFusion error: {e}"),
            (Flavor::DataFusion, cairn::Error::Arrow(e)) => format!("Arrow error: {e}"),
            (_, e) => e.to_string(),
        };
        DbError { message }
    }

    async fn run_script(&self, sql: &str) -> Result<DBOutput<ColumnKind>, cairn::Error> {
        let mut last = None;
        for statement in self.session.parse(sql)? {
            last = Some(self.session.run(&statement).await?);
        }
        let Some(output) = last else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let types = column_kinds(output.schema.fields());
        let rows = rows_of(&output.batches)?;
        Ok(if rows.is_empty() && types.is_empty() {
            DBOutput::StatementComplete(0)
        } else {
            DBOutput::Rows { types, rows }
        })
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for CairnDb {
    type Error = DbError;
    type ColumnType = ColumnKind;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnKind>, DbError> {
        *RUNNING.lock().unwrap() = sql.to_string();
        let output = self.run_script(sql).await;
        if self.inline {
            super::inline::check(&self.session, sql, &output)
                .await
                .map_err(|message| DbError { message })?;
            super::codec::check(&self.session, sql, &output)
                .await
                .map_err(|message| DbError { message })?;
        }
        output.map_err(|e| self.error(e))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "cairn"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}
