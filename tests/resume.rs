//! An iterative job killed half-way resumes from its last checkpoint: run
//! again on the same checkpoint dir, it reuses every committed iteration and
//! computes only the rest, with the same answer.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use cairn::arrow::array::{Int64Array, RecordBatch};
use cairn::arrow::datatypes::{DataType, Field, Schema};
use cairn::datafusion::datasource::MemTable;
use cairn::prelude::*;

use crate::common::{LABEL_STEP, dir_ctx, scalar};

const NODES: i64 = 20_000;
const EDGES: usize = 100_000;
const ITERATIONS: usize = 8;

/// The graph of `../shared/peers/README.md`'s label propagation: random
/// edges from a seeded generator, stored in both directions.
fn edges() -> RecordBatch {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % NODES as u64) as i64
    };
    let (mut src, mut dst) = (Vec::with_capacity(2 * EDGES), Vec::with_capacity(2 * EDGES));
    for _ in 0..EDGES {
        let (a, b) = (next(), next());
        src.extend([a, b]);
        dst.extend([b, a]);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("src", DataType::Int64, false),
        Field::new("dst", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(src)),
            Arc::new(Int64Array::from(dst)),
        ],
    )
    .unwrap()
}

/// Label propagation with a reliable checkpoint after every iteration.
/// Prints `iteration <i> computed|reused` as each one commits, then
/// `labels <distinct labels>`.
async fn label_propagation(dir: &Path, commit: &str) {
    let ctx = dir_ctx(dir);
    ctx.sql(&format!("SET cairn.checkpoint_commit = '{commit}'"))
        .await
        .unwrap();
    let edges = edges();
    let table = MemTable::try_new(edges.schema(), vec![vec![edges]]).unwrap();
    ctx.register_table("edges", Arc::new(table)).unwrap();
    let mut labels = ctx
        .sql(&format!(
            "SELECT value AS v, value AS l FROM range(0, {NODES})"
        ))
        .await
        .unwrap();
    for i in 1..=ITERATIONS {
        ctx.deregister_table("labels").unwrap();
        ctx.register_table("labels", labels.into_view()).unwrap();
        let next = ctx.sql(LABEL_STEP).await.unwrap();
        let watch = Arc::new(cairn::PlanWatch::default());
        ctx.observe(&watch);
        labels = next.checkpoint().await.unwrap();
        let how = if watch.bytes_written() == 0 {
            "reused"
        } else {
            "computed"
        };
        let n = labels.clone().count().await.unwrap();
        assert_eq!(n, NODES as usize);
        println!("iteration {i} {how}");
    }
    // The session waits for its commits before it ends.
    ctx.wait_for_background().await.unwrap();
    ctx.deregister_table("labels").unwrap();
    ctx.register_table("labels", labels.into_view()).unwrap();
    let distinct = scalar(
        ctx.sql("SELECT count(DISTINCT l) FROM labels")
            .await
            .unwrap(),
    )
    .await;
    println!("labels {distinct}");
}

/// Run by the test below in a child process it can kill.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_runs_label_propagation() {
    let Ok(dir) = std::env::var("CAIRN_TEST_DIR") else {
        return;
    };
    let commit = std::env::var("CAIRN_TEST_COMMIT").unwrap_or_else(|_| "sync".into());
    label_propagation(Path::new(&dir), &commit).await;
}

/// Runs the job in a child process; with `kill_after`, kills it (SIGKILL)
/// as soon as that iteration has committed. Returns its output lines.
fn run_job(dir: &Path, commit: &str, kill_after: Option<usize>) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resume::child_runs_label_propagation",
            "--ignored",
            "--quiet",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CAIRN_TEST_DIR", dir)
        .env("CAIRN_TEST_COMMIT", commit)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if !(line.starts_with("iteration ") || line.starts_with("labels ")) {
            continue;
        }
        let done = kill_after.is_some_and(|k| line == format!("iteration {k} computed"));
        lines.push(line);
        if done {
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.success(), kill_after.is_none(), "{lines:?}");
    lines
}

fn count(lines: &[String], how: &str) -> usize {
    lines.iter().filter(|l| l.ends_with(how)).count()
}

#[test]
fn a_killed_iterative_job_resumes_from_its_last_checkpoint() {
    killed_and_resumed("sync");
}

/// With commits in the background, a kill loses the iterations not yet
/// committed (the last, perhaps more): the rerun reuses those that were,
/// computes the rest, and gives the same answer.
#[test]
fn a_killed_job_with_background_commits_resumes_from_its_last_committed_iteration() {
    killed_and_resumed("async");
}

fn killed_and_resumed(commit: &str) {
    // An undisturbed run gives the answer.
    let clean = tempfile::tempdir().unwrap();
    let full = run_job(clean.path(), commit, None);
    assert_eq!(count(&full, "computed"), ITERATIONS, "{full:?}");
    let answer = full.last().unwrap().clone();
    assert!(answer.starts_with("labels "), "{full:?}");

    // Killed after a random iteration, then run again.
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let killed_after = 1 + seed % (ITERATIONS - 1);
    println!("{commit}: killed after iteration {killed_after}");
    let dir = tempfile::tempdir().unwrap();
    let first = run_job(dir.path(), commit, Some(killed_after));
    assert_eq!(first.len(), killed_after, "{first:?}");
    let resumed = run_job(dir.path(), commit, None);
    // Every committed iteration is reused, in order; only the rest run. (The
    // kill lands just after iteration `killed_after`; one more may have
    // committed before it did. In the background, the last ones may not.)
    let reused = count(&resumed, "reused");
    if commit == "sync" {
        assert!(reused >= killed_after, "{resumed:?}");
    }
    let expected: Vec<String> = (1..=ITERATIONS)
        .map(|i| {
            let how = if i <= reused { "reused" } else { "computed" };
            format!("iteration {i} {how}")
        })
        .chain([answer.clone()])
        .collect();
    assert_eq!(resumed, expected);
    println!(
        "{commit}: resumed: {reused} iterations reused, {} recomputed",
        ITERATIONS - reused
    );

    // A finished job run again computes nothing: every commit landed
    // before the job ended.
    let again = run_job(clean.path(), commit, None);
    assert_eq!(count(&again, "computed"), 0, "{again:?}");
    assert_eq!(again.last(), Some(&answer));
}
