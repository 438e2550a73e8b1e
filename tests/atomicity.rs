//! A writer killed with SIGKILL at any moment leaves, for each checkpoint,
//! either a complete readable one or nothing visible: never a partial one.
//! `CAIRN_KILLS` sets how many kills (20 by default; `tests/long/run.sh`
//! runs hundreds).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

use cairn::datafusion::functions_aggregate::expr_fn::{count, sum};
use cairn::prelude::*;

use crate::common::{dir_ctx, env_or, listing, scalar};

fn query(run: u64) -> String {
    // A different size per run, so that each run writes a new checkpoint.
    format!(
        "SELECT value AS a, value * 3 AS b, value % 1000 AS c, concat('row ', value) AS s \
         FROM range(0, {})",
        300_000 + run
    )
}

/// Run by `sigkill_at_random_moments_never_leaves_a_partial_checkpoint`.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_writes_a_large_checkpoint() {
    let (Ok(dir), Ok(run)) = (
        std::env::var("CAIRN_TEST_DIR"),
        std::env::var("CAIRN_TEST_RUN"),
    ) else {
        return;
    };
    let ctx = dir_ctx(Path::new(&dir));
    let commit = std::env::var("CAIRN_TEST_COMMIT").unwrap_or_else(|_| "sync".into());
    ctx.sql(&format!("SET cairn.checkpoint_commit = '{commit}'"))
        .await
        .unwrap();
    let run: u64 = run.parse().unwrap();
    ctx.sql(&query(run))
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    ctx.wait_for_background().await.unwrap();
}

fn spawn_writer(dir: &Path, commit: &str, run: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "atomicity::child_writes_a_large_checkpoint",
            "--ignored",
            "--quiet",
        ])
        .env("CAIRN_TEST_DIR", dir)
        .env("CAIRN_TEST_RUN", run.to_string())
        .env("CAIRN_TEST_COMMIT", commit)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Every committed checkpoint in `dir` not yet in `verified` reads back
/// whole; directories without a manifest are invisible. Returns how many
/// are committed.
async fn check_dir(dir: &Path, verified: &mut HashSet<String>) -> usize {
    let ctx = dir_ctx(dir);
    let mut committed = 0;
    for (id, files) in listing(dir).await {
        if verified.contains(&id) {
            committed += 1;
            continue;
        }
        let has_manifest = files.iter().any(|f| f == "_manifest.json");
        let opened = ctx.open_checkpoint(&id).await.unwrap();
        assert_eq!(opened.is_some(), has_manifest, "checkpoint {id}");
        let Some(df) = opened else { continue };
        committed += 1;
        let totals = df
            .aggregate(
                vec![],
                vec![count(col("a")).alias("n"), sum(col("a")).alias("total")],
            )
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n = totals[0]
            .column(0)
            .as_any()
            .downcast_ref::<cairn::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        let total = totals[0]
            .column(1)
            .as_any()
            .downcast_ref::<cairn::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert!(n >= 300_000, "checkpoint {id} has only {n} rows");
        assert_eq!(total, n * (n - 1) / 2, "checkpoint {id} has wrong data");
        verified.insert(id);
    }
    committed
}

#[tokio::test]
async fn sigkill_at_random_moments_never_leaves_a_partial_checkpoint() {
    let kills: u64 = env_or("CAIRN_KILLS", 20);
    let dir = tempfile::tempdir().unwrap();
    kill_writers_in(dir.path(), kills).await;
}

/// The same with the commit in the background (`cairn.checkpoint_commit =
/// 'async'`): a kill between the statement's return and the commit's end
/// loses that checkpoint, never leaves part of it.
#[tokio::test]
async fn sigkill_during_background_commits_never_leaves_a_partial_checkpoint() {
    let kills: u64 = env_or("CAIRN_KILLS", 10);
    let dir = tempfile::tempdir().unwrap();
    kill_writers_committing(dir.path(), "async", kills).await;
}

/// Kills `kills` writers in `dir` (local or `s3://`) at random moments and
/// checks what each left.
pub(crate) async fn kill_writers_in(dir: &Path, kills: u64) {
    kill_writers_committing(dir, "sync", kills).await;
}

async fn kill_writers_committing(dir: &Path, commit: &str, kills: u64) {
    let mut verified = HashSet::new();
    // One undisturbed run tells how long a write takes here.
    let started = Instant::now();
    assert!(spawn_writer(dir, commit, 0).wait().unwrap().success());
    let full = started.elapsed();
    assert_eq!(check_dir(dir, &mut verified).await, 1);

    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill test ({commit} commit) seed {seed}, a full write takes {full:?}");
    let mut state = seed | 1;
    let (mut committed_so_far, mut killed_before_commit) = (1, 0);
    for run in 1..=kills {
        // xorshift: a kill moment anywhere from start-up to just past the commit.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = full.mul_f64((state % 1000) as f64 / 900.0);
        let mut child = spawn_writer(dir, commit, run);
        std::thread::sleep(delay);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let committed = check_dir(dir, &mut verified).await;
        assert!(
            committed - committed_so_far <= 1,
            "one writer, at most one commit"
        );
        if committed == committed_so_far {
            assert!(
                !status.success(),
                "a writer that finished committed nothing"
            );
            killed_before_commit += 1;
        }
        committed_so_far = committed;
    }
    println!("{killed_before_commit} of {kills} writers were killed before their commit");

    // The dir stays usable: writing over the leftovers of killed writers works.
    let ctx = dir_ctx(dir);
    let df = ctx
        .sql(&query(7))
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    let n = scalar(df.aggregate(vec![], vec![count(lit(1))]).unwrap()).await;
    assert_eq!(n, "300007");
}
