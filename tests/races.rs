//! Two processes checkpoint the same query into the same dir at the same
//! moment: exactly one commit wins, the other uses it, no file is torn or
//! left behind, and both answer correctly. `CAIRN_RACES` sets how many
//! races run (10 by default; `tests/long/run.sh` runs more).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn::datafusion::functions_aggregate::expr_fn::sum;
use cairn::prelude::*;

use crate::common::{dir_ctx, env_or, listing, scalar};

fn query(race: u64) -> String {
    format!(
        "SELECT value AS a, value * 2 AS b, concat('v', value) AS s FROM range(0, {})",
        200_000 + race
    )
}

pub(crate) fn expected_sum(race: u64) -> u64 {
    let n = 200_000 + race;
    n * (n - 1) / 2
}

/// Run by the race test: waits for a start moment shared by both racers,
/// then checkpoints and prints the sum it reads back.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_races_to_checkpoint() {
    let (Ok(dir), Ok(race), Ok(start)) = (
        std::env::var("CAIRN_TEST_DIR"),
        std::env::var("CAIRN_TEST_RUN"),
        std::env::var("CAIRN_TEST_START"),
    ) else {
        return;
    };
    let race: u64 = race.parse().unwrap();
    let ctx = dir_ctx(Path::new(&dir));
    let df = ctx.sql(&query(race)).await.unwrap();
    let start = UNIX_EPOCH + Duration::from_millis(start.parse().unwrap());
    if let Ok(wait) = start.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let watch = std::sync::Arc::new(cairn::PlanWatch::default());
    ctx.observe(&watch);
    let df = df.checkpoint().await.unwrap();
    let wrote = watch.bytes_written() > 0;
    let total = scalar(df.aggregate(vec![], vec![sum(col("a"))]).unwrap()).await;
    println!("sum {total}");
    println!("{}", if wrote { "wrote" } else { "reused" });
}

pub(crate) fn spawn_racer(dir: &Path, race: u64, start_ms: u128) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "races::child_races_to_checkpoint",
            "--ignored",
            "--quiet",
            "--nocapture",
        ])
        .env("CAIRN_TEST_DIR", dir)
        .env("CAIRN_TEST_RUN", race.to_string())
        .env("CAIRN_TEST_START", start_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn concurrent_writers_of_one_checkpoint_commit_once_and_both_answer() {
    let races: u64 = env_or("CAIRN_RACES", 10);
    let dir = tempfile::tempdir().unwrap();
    race_in(dir.path(), races).await;
}

/// Runs `races` races in `dir` (local or `s3://`) and checks each.
pub(crate) async fn race_in(dir: &Path, races: u64) {
    let mut both_wrote = 0;
    for race in 0..races {
        // Both start computing at the same moment, well after both are up.
        let start =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(400);
        let racers = [
            spawn_racer(dir, race, start.as_millis()),
            spawn_racer(dir, race, start.as_millis()),
        ];
        let mut writers = 0;
        for racer in racers {
            let out = racer.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "race {race}: a racer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains(&format!("sum {}", expected_sum(race))),
                "race {race}: wrong answer: {stdout}"
            );
            writers += usize::from(stdout.contains("wrote"));
        }
        assert!(writers >= 1, "race {race}: nobody wrote the checkpoint");
        // One directory for the query's id, one manifest, and only the
        // winner's data files: the loser removed its own.
        let dirs = listing(dir).await;
        assert_eq!(dirs.len() as u64, race + 1, "race {race}: {dirs:?}");
        for (id, files) in &dirs {
            let manifests = files.iter().filter(|f| *f == "_manifest.json").count();
            assert_eq!(manifests, 1, "race {race}, checkpoint {id}: {files:?}");
            let attempts: std::collections::HashSet<&str> = files
                .iter()
                .filter(|f| f.ends_with(".parquet"))
                .map(|f| f.split('-').next().unwrap())
                .collect();
            assert!(
                attempts.len() <= 1,
                "race {race}: files of two writers: {files:?}"
            );
            assert!(
                files.iter().all(|f| !f.ends_with(".tmp")),
                "race {race}: a private manifest was left: {files:?}"
            );
        }
        if writers == 2 {
            both_wrote += 1;
        }
    }
    println!("{both_wrote} of {races} races had both writers compute and race to commit");
    assert!(
        both_wrote > 0,
        "the racers never overlapped: nothing was tested"
    );
    // Every committed checkpoint reads back whole in a new process's view.
    let ctx = dir_ctx(dir);
    for (id, _) in listing(dir).await {
        assert!(ctx.open_checkpoint(&id).await.unwrap().is_some(), "{id}");
    }
}
