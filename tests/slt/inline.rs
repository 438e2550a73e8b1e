//! The inline operator accepts exactly the queries a derived table does:
//! every query of the test files is also run as `CHECKPOINT(query)`, and
//! must parse to the same tree as `(query)` and `CHECKPOINT((query))`, plan
//! where the derived table plans, and answer the same rows.

use cairn::Session;
use cairn::arrow::record_batch::RecordBatch;
use cairn::datafusion::sql::parser::Statement as DfStatement;
use cairn::datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Query, SetExpr, Statement, TableFactor,
};
use cairn::sql::Statement as CairnStatement;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqllogictest::DBOutput;

use super::normalize::{ColumnKind, rows_of};

/// The query a test file runs, if `sql` is one plain query.
pub fn query_of(session: &Session, sql: &str) -> Option<String> {
    let parsed = session.parse(sql).ok()?;
    let [statement] = parsed.as_slice() else {
        return None;
    };
    match &statement.statement {
        CairnStatement::DataFusion(s) => match s.as_ref() {
            DfStatement::Statement(s) if matches!(s.as_ref(), Statement::Query(_)) => {
                Some(statement.text.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// `q` without parentheses around it as a whole, which change nothing.
fn unparenthesized(mut q: Box<Query>) -> Box<Query> {
    loop {
        let plain = q.with.is_none()
            && q.order_by.is_none()
            && q.limit_clause.is_none()
            && q.fetch.is_none()
            && q.pipe_operators.is_empty();
        match *q.body {
            SetExpr::Query(inner) if plain => q = inner,
            body => {
                q.body = Box::new(body);
                return q;
            }
        }
    }
}

/// The query inside `SELECT * FROM <relation> AS cairn_inline`.
fn inner_query(session: &Session, sql: &str) -> Result<Box<Query>, String> {
    let parsed = session.parse(sql).map_err(|e| e.to_string())?;
    let statement = match parsed.first().map(|p| &p.statement) {
        Some(CairnStatement::DataFusion(s)) => s.as_ref().clone(),
        other => return Err(format!("not a query: {other:?}")),
    };
    let DfStatement::Statement(statement) = statement else {
        return Err("not a query".into());
    };
    let Statement::Query(query) = *statement else {
        return Err("not a query".into());
    };
    let SetExpr::Select(select) = *query.body else {
        return Err("not a SELECT".into());
    };
    match &select.from[0].relation {
        TableFactor::Derived { subquery, .. } => Ok(unparenthesized(subquery.clone())),
        TableFactor::Table {
            args: Some(args), ..
        } => match args.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Subquery(q)))] => {
                Ok(unparenthesized(q.clone()))
            }
            other => Err(format!("CHECKPOINT's argument is not a query: {other:?}")),
        },
        other => Err(format!("unexpected relation {other}")),
    }
}

type Output = Result<DBOutput<ColumnKind>, cairn::Error>;

/// Queries checked, by outcome, for the summary line.
pub static SAME_ANSWER: AtomicUsize = AtomicUsize::new(0);
pub static BOTH_FAIL: AtomicUsize = AtomicUsize::new(0);
pub static NOT_CHECKPOINTABLE: AtomicUsize = AtomicUsize::new(0);
pub static CHANGING: AtomicUsize = AtomicUsize::new(0);

/// What the checks found, in a line.
pub fn summary() -> String {
    format!(
        "CHECKPOINT(query) checked for {} queries: {} answered the same, {} failed both ways, \
         {} cannot be checkpointed (names twice or types Parquet cannot store), {} answer \
         differently from run to run",
        SAME_ANSWER.load(Ordering::Relaxed)
            + BOTH_FAIL.load(Ordering::Relaxed)
            + NOT_CHECKPOINTABLE.load(Ordering::Relaxed)
            + CHANGING.load(Ordering::Relaxed),
        SAME_ANSWER.load(Ordering::Relaxed),
        BOTH_FAIL.load(Ordering::Relaxed),
        NOT_CHECKPOINTABLE.load(Ordering::Relaxed),
        CHANGING.load(Ordering::Relaxed),
    )
}

fn counted(counter: &AtomicUsize) -> Result<(), String> {
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn run(session: &Session, sql: &str) -> Result<(Vec<ColumnKind>, Vec<String>), String> {
    let mut last = None;
    for statement in session.parse(sql).map_err(|e| e.to_string())? {
        last = Some(session.run(&statement).await.map_err(|e| e.to_string())?);
    }
    let output = last.ok_or("no statement")?;
    let kinds = super::normalize::column_kinds(output.schema.fields());
    Ok((kinds, sorted_rows(&output.batches)?))
}

/// The rows of `batches` as the files write them, one line each, sorted.
pub fn sorted_rows(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    let mut rows: Vec<String> = rows_of(batches)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|cells| cells.join(" "))
        .collect();
    rows.sort();
    Ok(rows)
}

/// The types and sorted rows of a query's output, if it answered rows.
pub fn sorted(output: &DBOutput<ColumnKind>) -> Option<(Vec<ColumnKind>, Vec<String>)> {
    match output {
        DBOutput::Rows { types, rows } => {
            let mut rows: Vec<String> = rows.iter().map(|cells| cells.join(" ")).collect();
            rows.sort();
            Some((types.clone(), rows))
        }
        _ => None,
    }
}

/// Checks `sql` (when it is one query) through `CHECKPOINT(...)`, given
/// what it answered plainly. The checkpoints it writes are removed again,
/// so that the file's own statements see the dir as they left it.
pub async fn check(session: &Session, sql: &str, plain: &Output) -> Result<(), String> {
    let Some(query) = query_of(session, sql) else {
        return Ok(());
    };
    let query = query.trim().trim_end_matches(';');
    let derived = format!("SELECT * FROM ({query}) AS cairn_inline");
    let bare = format!("SELECT * FROM CHECKPOINT({query}) AS cairn_inline");
    let parenthesized = format!("SELECT * FROM CHECKPOINT(({query})) AS cairn_inline");
    let trees = [&derived, &bare, &parenthesized].map(|s| inner_query(session, s));
    match &trees {
        [Ok(a), Ok(b), Ok(c)] if a == b && b == c => {}
        [Err(_), Err(_), Err(_)] => return counted(&BOTH_FAIL),
        other => {
            return Err(format!(
                "CHECKPOINT({query}) does not parse as ({query}) does: {other:?}"
            ));
        }
    }
    let store = session.context().checkpoint_store();
    let before = store.checkpoint_dirs().await.map_err(|e| e.to_string())?;
    let through = run(session, &bare).await;
    let after = store.checkpoint_dirs().await.map_err(|e| e.to_string())?;
    for id in after.iter().filter(|id| !before.contains(id)) {
        store
            .delete_if_unused(id)
            .await
            .map_err(|e| e.to_string())?;
    }
    let plain_rows = plain.as_ref().ok().and_then(sorted);
    match (plain, through) {
        (Err(_), Err(_)) => counted(&BOTH_FAIL),
        (Err(e), Ok(_)) => Err(format!("CHECKPOINT({query}) ran, but the query fails: {e}")),
        (Ok(_), Err(e)) => {
            // What a derived table cannot be, a checkpoint cannot either;
            // and some results Parquet cannot store, or name twice.
            if run(session, &derived).await.is_err() {
                counted(&BOTH_FAIL)
            } else if e.contains("cannot checkpoint this plan") {
                if std::env::var_os("CAIRN_SLT_SHOW_REFUSED").is_some() {
                    eprintln!("refused: {e}");
                }
                counted(&NOT_CHECKPOINTABLE)
            } else {
                Err(format!(
                    "CHECKPOINT({query}) fails where ({query}) runs: {e}"
                ))
            }
        }
        (Ok(_), Ok(through)) => {
            let Some(plain) = plain_rows else {
                return counted(&SAME_ANSWER);
            };
            if plain == through {
                return counted(&SAME_ANSWER);
            }
            // Queries whose answer changes from run to run (volatile
            // functions, LIMIT without ORDER BY) are compared with themselves.
            match run(session, &derived).await {
                Ok(again) if again != plain => counted(&CHANGING),
                _ => Err(format!(
                    "CHECKPOINT({query}) answers differently:\nplain:   {plain:?}\nthrough: {through:?}"
                )),
            }
        }
    }
}
