//! Inputs are computed once: eagerly at the checkpoint, lazily at the first
//! action, and not at all when an equal plan was checkpointed before, in
//! this process or another. Volatile plans are never reused.

use std::process::Command;
use std::sync::atomic::Ordering;

use cairn::prelude::*;

use crate::common::{Counted, dir_ctx, memory_ctx, rows};

const QUERY: &str = "SELECT counted(value) AS v, value % 3 AS k FROM range(0, 3000)";

#[tokio::test]
async fn eager_computes_the_input_once() {
    let ctx = memory_ctx();
    let seen = Counted::register(&ctx);
    let df = ctx.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3000);
    for _ in 0..3 {
        assert_eq!(df.clone().count().await.unwrap(), 3000);
    }
    df.clone()
        .filter(col("k").eq(lit(1)))
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3000);
}

#[tokio::test]
async fn lazy_computes_the_input_once_at_the_first_action() {
    let ctx = memory_ctx();
    let seen = Counted::register(&ctx);
    let df = ctx.sql(QUERY).await.unwrap().checkpoint_lazy().unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "lazy must not run before an action"
    );
    assert_eq!(df.clone().count().await.unwrap(), 3000);
    assert_eq!(seen.load(Ordering::SeqCst), 3000);
    for _ in 0..3 {
        assert_eq!(df.clone().count().await.unwrap(), 3000);
    }
    let ones = df
        .clone()
        .filter(col("k").eq(lit(1)))
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(ones, 1000);
    assert_eq!(seen.load(Ordering::SeqCst), 3000);
}

#[tokio::test]
async fn concurrent_first_actions_on_a_lazy_checkpoint_compute_once() {
    let ctx = memory_ctx();
    let seen = Counted::register(&ctx);
    let df = ctx.sql(QUERY).await.unwrap().checkpoint_lazy().unwrap();
    let (a, b) = tokio::join!(df.clone().count(), df.clone().count());
    assert_eq!((a.unwrap(), b.unwrap()), (3000, 3000));
    assert_eq!(seen.load(Ordering::SeqCst), 3000);
}

#[tokio::test]
async fn an_equal_plan_reuses_the_committed_checkpoint_without_computing() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir_ctx(dir.path());
    let seen_first = Counted::register(&first);
    let expected = rows(
        first
            .sql(QUERY)
            .await
            .unwrap()
            .checkpoint()
            .await
            .unwrap()
            .sort(vec![col("v").sort(true, true)])
            .unwrap(),
    )
    .await;
    assert_eq!(seen_first.load(Ordering::SeqCst), 3000);

    // Same session, then a new session on the same dir.
    let again = first.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(seen_first.load(Ordering::SeqCst), 3000);
    assert_eq!(again.count().await.unwrap(), 3000);
    let second = dir_ctx(dir.path());
    let seen_second = Counted::register(&second);
    let reused = second.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
    let got = rows(reused.sort(vec![col("v").sort(true, true)]).unwrap()).await;
    assert_eq!(
        seen_second.load(Ordering::SeqCst),
        0,
        "the reuse recomputed"
    );
    assert_eq!(got, expected);

    // A lazy checkpoint of the same plan finds it too.
    let lazy = second.sql(QUERY).await.unwrap().checkpoint_lazy().unwrap();
    assert_eq!(lazy.count().await.unwrap(), 3000);
    assert_eq!(seen_second.load(Ordering::SeqCst), 0);
}

/// Run by `a_new_process_reuses_what_an_earlier_one_wrote` as a child process.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_writes_a_checkpoint() {
    let Ok(dir) = std::env::var("CAIRN_TEST_DIR") else {
        return;
    };
    let ctx = dir_ctx(std::path::Path::new(&dir));
    Counted::register(&ctx);
    ctx.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
}

#[tokio::test]
async fn a_new_process_reuses_what_an_earlier_one_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reuse::child_writes_a_checkpoint",
            "--ignored",
            "--quiet",
        ])
        .env("CAIRN_TEST_DIR", dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let ctx = dir_ctx(dir.path());
    let seen = Counted::register(&ctx);
    let df = ctx.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(df.count().await.unwrap(), 3000);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the new process recomputed");
}

#[tokio::test]
async fn volatile_plans_are_never_reused() {
    let ctx = memory_ctx();
    let seen = Counted::register(&ctx);
    let sql = "SELECT counted(value) AS v, random() AS r FROM range(0, 100)";
    let a = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
    let b = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 200);
    assert_ne!(rows(a).await, rows(b).await);
}

#[tokio::test]
async fn a_changed_source_file_is_recomputed() {
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("src.csv");
    std::fs::write(&csv, "a\n1\n2\n").unwrap();
    let ctx = memory_ctx();
    let seen = Counted::register(&ctx);
    ctx.register_csv("src", csv.to_str().unwrap(), CsvReadOptions::new())
        .await
        .unwrap();
    let sql = "SELECT counted(a) AS a FROM src";
    let before = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(before.count().await.unwrap(), 2);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    std::fs::write(&csv, "a\n1\n2\n3\n").unwrap();
    let after = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(after.count().await.unwrap(), 3);
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}
