//! How long checkpoints live: named ones until dropped, unnamed ones for the
//! retention after their last use, orphaned directories for a grace period,
//! and never while this process still reads them. The clock is passed in.

use std::collections::HashSet;
use std::time::Duration;

use cairn::Lifetimes;
use cairn::prelude::*;
use cairn::{CheckpointKind, Materialize};
use chrono::Utc;

use crate::common::dir_ctx;

const DAY: Duration = Duration::from_secs(86_400);

fn lifetimes() -> Lifetimes {
    Lifetimes {
        retention: DAY,
        orphan_grace: Duration::from_secs(3600),
    }
}

fn ids_in(dir: &std::path::Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "_names" && n != "_lineage")
        .collect()
}

#[tokio::test]
async fn vacuum_keeps_named_and_fresh_and_removes_expired_and_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    let store = ctx.checkpoint_store();
    let named = ctx.sql("SELECT 1 AS x").await.unwrap();
    ctx.checkpoint_table(
        "kept",
        named,
        CheckpointKind::Reliable,
        Materialize::Eager,
        false,
    )
    .await
    .unwrap();
    drop(
        ctx.sql("SELECT 2 AS x")
            .await
            .unwrap()
            .checkpoint()
            .await
            .unwrap(),
    );
    // A writer that died before its commit.
    std::fs::create_dir(dir.path().join("deadbeef")).unwrap();
    std::fs::write(
        dir.path().join("deadbeef/abc-part-00000.parquet"),
        b"partial",
    )
    .unwrap();
    assert_eq!(ids_in(dir.path()).len(), 3);
    let keep: HashSet<String> = store
        .bindings()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();

    // Within every period: nothing goes.
    let now = Utc::now();
    let report = store.vacuum(now, lifetimes(), &keep).await.unwrap();
    assert!(
        report.checkpoints.is_empty() && report.orphans.is_empty(),
        "{report:?}"
    );

    // Two hours on: the orphan is past its grace, the unnamed one is not expired.
    let report = store
        .vacuum(now + chrono::Duration::hours(2), lifetimes(), &keep)
        .await
        .unwrap();
    assert_eq!(report.orphans, vec!["deadbeef".to_string()]);
    assert!(report.checkpoints.is_empty());

    // Two days on: the unnamed one expired; the named one stays.
    let report = store
        .vacuum(now + chrono::Duration::days(2), lifetimes(), &keep)
        .await
        .unwrap();
    assert_eq!(report.checkpoints.len(), 1);
    assert_eq!(ids_in(dir.path()), keep);
    assert_eq!(
        ctx.sql("SELECT x FROM kept")
            .await
            .unwrap()
            .count()
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_checkpoint_this_process_reads_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    let store = ctx.checkpoint_store();
    let live = ctx
        .sql("SELECT 3 AS x")
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    let later = Utc::now() + chrono::Duration::days(30);
    let report = store
        .vacuum(later, lifetimes(), &HashSet::new())
        .await
        .unwrap();
    assert!(
        report.checkpoints.is_empty(),
        "removed while read: {report:?}"
    );
    assert_eq!(live.clone().count().await.unwrap(), 1);
    drop(live);
    let report = store
        .vacuum(later, lifetimes(), &HashSet::new())
        .await
        .unwrap();
    assert_eq!(report.checkpoints.len(), 1);
}

#[tokio::test]
async fn drop_keeps_data_a_live_dataframe_reads_and_the_name_goes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    let df = ctx.sql("SELECT 4 AS x").await.unwrap();
    ctx.checkpoint_table("c", df, CheckpointKind::Reliable, Materialize::Eager, false)
        .await
        .unwrap();
    let reader = ctx.sql("SELECT x FROM c").await.unwrap();
    assert!(ctx.drop_checkpoint("c", false).await.unwrap());
    assert!(
        ctx.sql("SELECT x FROM c").await.is_err(),
        "the name is gone"
    );
    assert_eq!(reader.clone().count().await.unwrap(), 1, "the data is not");
    drop(reader);
    let mut options = ctx.options();
    options.lifetimes = Lifetimes {
        retention: Duration::ZERO,
        orphan_grace: Duration::ZERO,
    };
    ctx.set_options(options).await.unwrap();
    let report = ctx.vacuum_checkpoints().await.unwrap();
    assert_eq!(report.checkpoints.len(), 1);
    assert!(ids_in(dir.path()).is_empty());
}

#[tokio::test]
async fn two_names_on_one_checkpoint_keep_it_until_both_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    for name in ["a", "b"] {
        let df = ctx.sql("SELECT 5 AS x").await.unwrap();
        ctx.checkpoint_table(
            name,
            df,
            CheckpointKind::Reliable,
            Materialize::Eager,
            false,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        ids_in(dir.path()).len(),
        1,
        "equal plans share one checkpoint"
    );
    ctx.drop_checkpoint("a", false).await.unwrap();
    assert_eq!(
        ctx.sql("SELECT x FROM b")
            .await
            .unwrap()
            .count()
            .await
            .unwrap(),
        1
    );
    ctx.drop_checkpoint("b", false).await.unwrap();
    assert!(ids_in(dir.path()).is_empty());
}

/// A loop that checkpoints every second iteration keeps only the last two
/// checkpoints on disk, never removing one that a live DataFrame reads.
#[tokio::test]
async fn a_periodic_checkpointer_keeps_the_last_n() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir_ctx(dir.path());
    let mut periodic = cairn::PeriodicCheckpointer::new(2, 2).unwrap();
    let mut df = ctx
        .sql("SELECT value AS x FROM range(0, 1000)")
        .await
        .unwrap();
    let mut held = None;
    for i in 1..=10 {
        df = periodic
            .update(df.select_exprs(&["x + 1 AS x"]).unwrap())
            .await
            .unwrap();
        if i == 4 {
            held = Some(df.clone()); // a DataFrame still reading iteration 4's checkpoint
        }
    }
    assert_eq!(periodic.updates(), 10);
    periodic.finish().await.unwrap();
    let kept: HashSet<String> = periodic.kept().into_iter().collect();
    assert_eq!(kept.len(), 2);
    let held = held.unwrap();
    let on_disk = ids_in(dir.path());
    assert_eq!(
        on_disk.len(),
        3,
        "the last two and the held one: {on_disk:?}"
    );
    assert!(kept.is_subset(&on_disk));

    // The held DataFrame still reads its rows; once it is gone, the next
    // checkpoint removes its checkpoint.
    let held_sum = crate::common::scalar(
        held.aggregate(
            vec![],
            vec![cairn::datafusion::functions_aggregate::expr_fn::sum(col(
                "x",
            ))],
        )
        .unwrap(),
    )
    .await;
    assert_eq!(held_sum, (4..1004).sum::<i64>().to_string());
    let df = periodic
        .update(df.select_exprs(&["x + 1 AS x"]).unwrap())
        .await
        .unwrap();
    let df = periodic
        .update(df.select_exprs(&["x + 1 AS x"]).unwrap())
        .await
        .unwrap();
    periodic.finish().await.unwrap();
    assert_eq!(ids_in(dir.path()).len(), 2);
    let total = crate::common::scalar(
        df.aggregate(
            vec![],
            vec![cairn::datafusion::functions_aggregate::expr_fn::sum(col(
                "x",
            ))],
        )
        .unwrap(),
    )
    .await;
    assert_eq!(total, (12..1012).sum::<i64>().to_string());
}

/// Iterative SQL: every form of `... OR REPLACE ... TABLE` in a loop of 50
/// keeps its kind, answers each step, and releases what the version it
/// replaced held: the dir and the memory pool stay bounded.
#[tokio::test]
async fn replace_loops_of_every_kind_stay_bounded() {
    for (form, kind) in [
        ("CHECKPOINT OR REPLACE TABLE", "reliable"),
        ("CHECKPOINT OR REPLACE LAZY TABLE", "reliable"),
        ("LOCAL CHECKPOINT OR REPLACE TABLE", "local"),
        ("LOCAL CHECKPOINT OR REPLACE LAZY TABLE", "local"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let session = cairn::Session::new(dir_ctx(dir.path())).unwrap();
        let sum = |sql: String| {
            let session = session.clone();
            async move {
                let out = session
                    .sql(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                cairn::arrow::util::pretty::pretty_format_batches(&out.last().unwrap().batches)
                    .unwrap()
                    .to_string()
            }
        };
        sum(format!(
            "{form} z AS SELECT value AS a FROM range(0, 1000); SELECT sum(a) FROM z"
        ))
        .await;
        let pool = session.context().runtime_env().memory_pool.clone();
        let one = pool.reserved();
        for i in 1..=50 {
            let shown = sum(format!(
                "{form} z AS SELECT a + 1 AS a FROM z; SELECT sum(a) FROM z"
            ))
            .await;
            let expected = 499_500 + 1000 * i;
            assert!(
                shown.contains(&expected.to_string()),
                "{form} step {i}: {shown}"
            );
            // Replaced versions are removed in the background: at most
            // one removal runs behind the statements.
            let dirs = ids_in(dir.path()).len();
            assert!(dirs <= 3, "{form} step {i}: {dirs} checkpoints on disk");
            session.context().wait_for_background().await.unwrap();
            let dirs = ids_in(dir.path()).len();
            assert!(dirs <= 2, "{form} step {i}: {dirs} checkpoints on disk");
            assert!(
                pool.reserved() <= 3 * one.max(1),
                "{form} step {i}: {} bytes reserved, one checkpoint {one}",
                pool.reserved()
            );
        }
        let listed = session.context().checkpoints().await.unwrap();
        assert_eq!(listed.len(), 1, "{form}: {listed:?}");
        assert_eq!(listed[0].kind.to_string(), kind, "{form}");
        if kind == "local" {
            assert!(ids_in(dir.path()).is_empty(), "{form} wrote to the dir");
        }
    }
}

/// Every form of the statement works, and a name in use is refused with
/// advice for the statement of the same kind.
#[tokio::test]
async fn every_form_works_and_advises_its_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let session = cairn::Session::new(dir_ctx(dir.path())).unwrap();
    for (i, (local, lazy)) in [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .enumerate()
    {
        let (local, lazy) = (
            if local { "LOCAL " } else { "" },
            if lazy { "LAZY " } else { "" },
        );
        let name = format!("t{i}");
        let make = format!("{local}CHECKPOINT {lazy}TABLE {name} AS SELECT {i} AS x");
        session.sql(&make).await.unwrap();
        let err = session.sql(&make).await.unwrap_err().to_string();
        let advice = format!("{local}CHECKPOINT OR REPLACE {lazy}TABLE {name} AS ...");
        assert!(err.contains(&advice), "{make}: {err}");
        let replace = format!("{local}CHECKPOINT OR REPLACE {lazy}TABLE {name} AS SELECT 7 AS x");
        session.sql(&replace).await.unwrap();
        let out = session.sql(&format!("SELECT x FROM {name}")).await.unwrap();
        let shown = cairn::arrow::util::pretty::pretty_format_batches(&out[0].batches)
            .unwrap()
            .to_string();
        assert!(shown.contains('7'), "{replace}: {shown}");
    }
}

/// With `cairn.checkpoint_commit = 'async'`, named checkpoints made in SQL
/// read back at once in the session, their names bind once their commits
/// end, and once the session waited for them another session sees them
/// committed; a SQL replace loop stays bounded as with the default.
#[tokio::test]
async fn background_commits_read_back_at_once_and_are_committed_when_the_session_waits() {
    let dir = tempfile::tempdir().unwrap();
    let session = cairn::Session::new(dir_ctx(dir.path())).unwrap();
    session
        .sql("SET cairn.checkpoint_commit = 'async'")
        .await
        .unwrap();
    let shown = |out: Vec<cairn::StatementOutput>| {
        cairn::arrow::util::pretty::pretty_format_batches(&out.last().unwrap().batches)
            .unwrap()
            .to_string()
    };
    let out = session
        .sql("CHECKPOINT TABLE z AS SELECT value AS a FROM range(0, 1000); SELECT sum(a) FROM z")
        .await
        .unwrap();
    assert!(shown(out).contains("499500"));
    for i in 1..=20 {
        let out = session
            .sql("CHECKPOINT OR REPLACE TABLE z AS SELECT a + 1 AS a FROM z; SELECT sum(a) FROM z")
            .await
            .unwrap();
        let expected = 499_500 + 1000 * i;
        assert!(shown(out).contains(&expected.to_string()), "step {i}");
    }
    session.context().wait_for_background().await.unwrap();
    assert!(ids_in(dir.path()).len() <= 2, "{:?}", ids_in(dir.path()));

    // Another session, as another process would, reads the committed one.
    let other = cairn::Session::new(dir_ctx(dir.path())).unwrap();
    let out = other.sql("SELECT sum(a) FROM z").await.unwrap();
    assert!(shown(out).contains("519500"));
}
