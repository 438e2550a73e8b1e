//! Bad checkpoint dirs and failed checkpoints give clear errors that name
//! what is wrong, and leave the session and its checkpoints as they were.

use cairn::prelude::*;

use cairn::{CheckpointKind, Materialize};

use crate::common::{dir_ctx, memory_ctx};

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.path().display().to_string());
        }
    }
    out
}

#[test]
fn an_unwritable_dir_is_named_in_the_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("ckpt");
    let err = CairnContext::builder()
        .checkpoint_dir(dir.display().to_string())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("not writable"), "{err}");
}

#[test]
fn an_invalid_dir_url_is_named_in_the_error() {
    let err = CairnContext::builder()
        .checkpoint_dir("hdfs://namenode/ckpt")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'hdfs://namenode/ckpt'") && err.contains("unknown scheme"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_change_of_dir_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    let before = ctx.checkpoint_dir();
    let file = tempfile::NamedTempFile::new().unwrap();
    let bad = file.path().join("x");
    let err = ctx
        .use_checkpoint_dir(bad.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(bad.to_str().unwrap()), "{err}");
    assert_eq!(ctx.checkpoint_dir(), before);
    let df = ctx
        .sql("SELECT 1 AS x")
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    assert_eq!(df.count().await.unwrap(), 1);
    assert_eq!(
        files_under(dir.path())
            .iter()
            .filter(|f| f.ends_with("_manifest.json"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_failing_input_commits_nothing_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    // Fails while running, after some rows were produced.
    let sql = "SELECT CAST(CASE WHEN value < 50000 THEN 'ok' ELSE 'x' END AS INT) AS bad \
               FROM range(0, 100000)";
    let df = ctx
        .sql(&format!(
            "SELECT value, {} FROM range(0, 100000)",
            "value * 2 AS y"
        ))
        .await
        .unwrap();
    let err = ctx
        .sql(sql)
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Cannot cast") || err.contains("cast"), "{err}");
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
    // The session works, and so do checkpoints.
    assert_eq!(
        df.checkpoint().await.unwrap().count().await.unwrap(),
        100_000
    );
}

/// A join's two `id` columns are told apart by their qualifiers: an
/// unnamed checkpoint keeps both (stored under distinct names, read back
/// under theirs), as a derived table does; a named one is a table, whose
/// columns need distinct names, so it is refused with the fix.
#[tokio::test]
async fn duplicate_column_names_are_kept_apart_or_refused_with_a_fix() {
    let ctx = memory_ctx();
    let join = "SELECT * FROM (SELECT 1 AS id, 'x' AS v) a JOIN (SELECT 1 AS id, 2 AS w) b \
                ON a.id = b.id";
    for df in [
        ctx.sql(join).await.unwrap().checkpoint().await.unwrap(),
        ctx.sql(join)
            .await
            .unwrap()
            .local_checkpoint()
            .await
            .unwrap(),
        ctx.sql(join).await.unwrap().checkpoint_lazy().unwrap(),
    ] {
        let rows =
            crate::common::cells(df.select_exprs(&["a.id", "b.id", "v", "w"]).unwrap()).await;
        assert_eq!(rows, vec![vec!["1", "1", "x", "2"]]);
    }
    let session = cairn::Session::new(ctx.clone()).unwrap();
    let inline = session
        .sql(&format!(
            "SELECT count(*), sum(t.w) FROM CHECKPOINT({join}) AS t"
        ))
        .await
        .unwrap();
    assert_eq!(inline[0].num_rows(), 1);
    let df = ctx.sql(join).await.unwrap();
    let err = ctx
        .checkpoint_table("j", df, CheckpointKind::Reliable, Materialize::Eager, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column name 'id' appears more than once"),
        "{err}"
    );
    assert!(err.contains("AS b_id"), "{err}");
}

/// Found by running every query of DataFusion's tests through
/// CHECKPOINT(...): a decimal of negative scale was written until Parquet
/// refused it, and the error blamed the disk ("free space or choose another
/// dir"). It is refused before anything runs, naming the column.
#[tokio::test]
async fn a_type_parquet_cannot_store_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    ctx.sql("SET datafusion.sql_parser.parse_float_as_decimal = true")
        .await
        .unwrap();
    let df = ctx.sql("SELECT 1.23e3 AS x").await.unwrap();
    let err = df.clone().checkpoint().await.unwrap_err().to_string();
    assert!(
        err.contains("cannot checkpoint this plan: column 'x' has type Decimal128(3, -1)"),
        "{err}"
    );
    assert!(err.contains("LOCAL CHECKPOINT"), "{err}");
    assert!(!err.contains("free space"), "{err}");
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
    assert_eq!(
        df.local_checkpoint().await.unwrap().count().await.unwrap(),
        1
    );
}

#[tokio::test]
async fn a_dataframe_from_another_session_is_refused() {
    let plain = SessionContext::new();
    let df = plain.sql("SELECT 1").await.unwrap();
    let err = df.checkpoint_lazy().unwrap_err().to_string();
    assert!(err.contains("does not come from a CairnContext"), "{err}");
}
