//! The `seed` suite: the seed example (the integers 1 to 99,999, ten
//! `x + 1` maps, a checkpoint, then sum and count), on Cairn and the peers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use cairn_core::CheckpointExt;
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{col, lit};
use serde_json::json;

use crate::answers::first_row_i64;
use crate::peers;
use crate::report::{Chart, Check, Measurement, Suite};

/// The steps, in order, as the result table's rows.
pub const STEPS: [&str; 3] = [
    "sum + count, no checkpoint",
    "checkpoint (eager)",
    "sum + count after the checkpoint",
];

/// The answer: sum and count of 1..=99,999 plus 10.
pub const ANSWER: (i64, i64) = (5_000_949_990, 99_999);

async fn sum_count(df: &DataFrame) -> Result<(i64, i64)> {
    let batches = df
        .clone()
        .aggregate(vec![], vec![sum(col("x")), count(col("x"))])?
        .collect()
        .await?;
    Ok((first_row_i64(&batches, 0), first_row_i64(&batches, 1)))
}

/// One run on Cairn: each step's seconds and the answer after the checkpoint.
pub async fn run_cairn(checkpoint_dir: &Path) -> Result<(Vec<f64>, (i64, i64))> {
    let ctx = crate::settings::builder()
        .checkpoint_dir(checkpoint_dir.display().to_string())
        .build()?;
    crate::settings::apply(&ctx).await?;
    let mut df = ctx.sql("SELECT value AS x FROM range(1, 100000)").await?;
    for _ in 0..10 {
        df = df.select(vec![(col("x") + lit(1)).alias("x")])?;
    }
    let mut seconds = Vec::new();
    let start = Instant::now();
    sum_count(&df).await?;
    seconds.push(start.elapsed().as_secs_f64());
    let start = Instant::now();
    let df = df.checkpoint().await?;
    seconds.push(start.elapsed().as_secs_f64());
    let start = Instant::now();
    let answer = sum_count(&df).await?;
    seconds.push(start.elapsed().as_secs_f64());
    Ok((seconds, answer))
}

/// Runs the suite.
pub async fn run(data_dir: &Path, runs: usize, peer_names: &[String]) -> Result<Suite> {
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    std::fs::create_dir_all(data_dir)?;
    let (mut peers, notes) = peers::start_all(peer_names);
    let mut suite = Suite::new(
        "seed",
        format!("The seed example: 99,999 integers, ten maps, a checkpoint ({runs} runs, median)"),
        Chart::Bars,
    );
    suite.notes = notes;
    let mut times: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    let mut order = vec!["cairn".to_string()];
    for run in 0..runs {
        let dir = tempfile::tempdir_in(data_dir)?;
        let (seconds, answer) = run_cairn(dir.path()).await?;
        if run == 0 {
            check(&mut suite, "cairn", answer);
        }
        times.entry("cairn".into()).or_default().push(seconds);
        for peer in &mut peers {
            let dir = tempfile::tempdir_in(data_dir)?;
            match peer.call(&json!({"op": "seed", "dir": dir.path()})) {
                Ok(reply) => {
                    let engine =
                        format!("{} ({})", peer.name, reply["mode"].as_str().unwrap_or("?"));
                    if run == 0 {
                        let answer = (
                            reply["sum"].as_i64().unwrap_or(-1),
                            reply["count"].as_i64().unwrap_or(-1),
                        );
                        check(&mut suite, &engine, answer);
                        order.push(engine.clone());
                    }
                    times
                        .entry(engine)
                        .or_default()
                        .push(peers::numbers(&reply, "seconds"));
                }
                Err(e) => suite.notes.push(format!("{e:#}")),
            }
        }
    }
    for engine in order {
        let Some(runs) = times.remove(&engine) else {
            continue;
        };
        for (i, step) in STEPS.iter().enumerate() {
            let samples = runs.iter().filter_map(|r| r.get(i).copied()).collect();
            suite.add(Measurement::new(&engine, step, samples));
        }
    }
    Ok(suite)
}

fn check(suite: &mut Suite, engine: &str, answer: (i64, i64)) {
    let ok = answer == ANSWER;
    suite.checks.push(Check {
        item: "sum, count".into(),
        engine: engine.to_string(),
        against: "5000949990, 99999".into(),
        ok,
        detail: if ok {
            String::new()
        } else {
            format!("{answer:?}")
        },
    });
}
