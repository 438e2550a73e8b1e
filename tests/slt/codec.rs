//! Plans that leave the process: every query of the test files is also
//! encoded with Cairn's codecs, logical and physical, decoded in the same
//! session and run again; it must answer the rows it answered plainly.
//! A plan the codecs cannot carry is counted by its reason (the summary
//! lists them); one that decodes to other rows fails the file.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn::datafusion::physical_plan::collect;
use cairn::datafusion::prelude::DataFrame;
use cairn::datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use cairn::{CairnLogicalCodec, CairnPhysicalCodec, Session};
use sqllogictest::DBOutput;

use super::inline::{sorted, sorted_rows};
use super::normalize::ColumnKind;

/// Queries whose plans decoded to the same rows, per codec.
pub static LOGICAL_SAME: AtomicUsize = AtomicUsize::new(0);
pub static PHYSICAL_SAME: AtomicUsize = AtomicUsize::new(0);
/// Queries whose answer changes from run to run, left uncompared.
pub static CHANGING: AtomicUsize = AtomicUsize::new(0);

/// Plans a codec could not carry, by codec and reason.
static REFUSED: Mutex<BTreeMap<(&'static str, String), usize>> = Mutex::new(BTreeMap::new());

/// What the checks found, in a few lines.
pub fn summary() -> String {
    let refused = REFUSED.lock().unwrap();
    let count = |codec: &str| -> usize {
        refused
            .iter()
            .filter(|((c, _), _)| *c == codec)
            .map(|(_, n)| n)
            .sum()
    };
    let mut out = format!(
        "plans through Cairn's codecs: logical {} answered the same, {} not carried; \
         physical {} answered the same, {} not carried; {} answer differently from run to run",
        LOGICAL_SAME.load(Ordering::Relaxed),
        count("logical"),
        PHYSICAL_SAME.load(Ordering::Relaxed),
        count("physical"),
        CHANGING.load(Ordering::Relaxed),
    );
    for ((codec, reason), n) in refused.iter() {
        out.push_str(&format!("\n  {codec:>8} {n:>4} x {reason}"));
    }
    out
}

/// The first line of an error, with what varies between queries (names,
/// numbers, quoted text) left out, so that reasons group.
fn reason(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default();
    let mut out = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' | '"' | '`' => {
                quoted = !quoted;
                if quoted {
                    out.push_str("'…'");
                }
            }
            _ if quoted => {}
            c if c.is_ascii_digit() => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            c => out.push(c),
        }
    }
    out.chars().take(140).collect()
}

fn refused(codec: &'static str, error: &str) -> Result<(), String> {
    // Cairn's own parts must always travel; a refusal that names them
    // (other than the in-memory sources it refuses by design) is a bug.
    if error.contains("Cairn's") && !error.contains("memory") {
        return Err(format!("Cairn's {codec} codec fails: {error}"));
    }
    *REFUSED
        .lock()
        .unwrap()
        .entry((codec, reason(error)))
        .or_default() += 1;
    Ok(())
}

async fn logical(session: &Session, df: &DataFrame) -> Result<Vec<String>, String> {
    let ctx = session.context();
    let codec = CairnLogicalCodec::default();
    let bytes = codec
        .encode(df.logical_plan())
        .map_err(|e| format!("encode: {e}"))?;
    let plan = codec
        .decode(&bytes, &ctx.session().task_ctx())
        .map_err(|e| format!("decode: {e}"))?;
    let decoded = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| format!("plan: {e}"))?;
    let batches = decoded.collect().await.map_err(|e| format!("run: {e}"))?;
    sorted_rows(&batches)
}

async fn physical(session: &Session, df: &DataFrame) -> Result<Vec<String>, String> {
    let task = session.context().session().task_ctx();
    let codec = CairnPhysicalCodec::default();
    let plan = df
        .clone()
        .create_physical_plan()
        .await
        .map_err(|e| format!("plan: {e}"))?;
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &codec)
        .map_err(|e| format!("encode: {e}"))?;
    let decoded = physical_plan_from_bytes_with_extension_codec(&bytes, &task, &codec)
        .map_err(|e| format!("decode: {e}"))?;
    let batches = collect(decoded, task)
        .await
        .map_err(|e| format!("run: {e}"))?;
    sorted_rows(&batches)
}

/// Checks `sql` (when it is one query that answered rows) through both
/// codecs, given what it answered plainly.
pub async fn check(
    session: &Session,
    sql: &str,
    plain: &Result<DBOutput<ColumnKind>, cairn::Error>,
) -> Result<(), String> {
    let Some((_, plain)) = plain.as_ref().ok().and_then(sorted) else {
        return Ok(());
    };
    let Some(query) = super::inline::query_of(session, sql) else {
        return Ok(());
    };
    let Some(statement) = session
        .parse(&query)
        .ok()
        .and_then(|p| p.into_iter().next())
    else {
        return Ok(());
    };
    let Ok(df) = session.execute(&statement).await else {
        return Ok(());
    };
    for (codec, counter) in [("logical", &LOGICAL_SAME), ("physical", &PHYSICAL_SAME)] {
        let through = if codec == "logical" {
            logical(session, &df).await
        } else {
            physical(session, &df).await
        };
        match through {
            Err(e) => refused(codec, &e)?,
            Ok(rows) if rows == plain => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok(rows) => {
                // Volatile functions, LIMIT without ORDER BY: compared with
                // another plain run.
                let again = match df.clone().collect().await {
                    Ok(batches) => sorted_rows(&batches)?,
                    Err(e) => return Err(e.to_string()),
                };
                if again != plain {
                    CHANGING.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                return Err(format!(
                    "{query}\nthrough Cairn's {codec} codec answers differently:\n\
                     plain:   {plain:?}\nthrough: {rows:?}"
                ));
            }
        }
    }
    Ok(())
}
