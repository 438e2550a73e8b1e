//! A checkpoint many times larger than the memory limit: it streams to disk
//! (reliable) or spills (local) instead of running out of memory. Prints
//! the rows, the bytes, the time and the process's peak resident memory.
//!
//! ```text
//! cargo run --release --example big_checkpoint -- [GB] [LIMIT_MB] [reliable|local] [DIR]
//! ```
//! Defaults: 5 GB of Arrow data through a 512 MB memory pool, reliable, in a
//! temporary local dir. DIR may be `s3://bucket/prefix` (settings from the
//! `AWS_*` environment), to compare S3 with a local disk.

use std::time::Instant;

use cairn::datafusion::functions_aggregate::expr_fn::{count, sum};
use cairn::prelude::*;

/// Bytes of Arrow data per row of `QUERY`: six 8-byte columns and a string
/// of about 24 bytes with its 4-byte offset.
const ROW_BYTES: u64 = 6 * 8 + 24 + 4;

const QUERY: &str = "SELECT value AS id, value * 3 AS a, value % 1000 AS b, \
    CAST(value AS DOUBLE) / 7 AS c, value % 12345 AS d, value + 11 AS e, \
    concat('customer-', value, '-', value % 97) AS s FROM range(0, {rows})";

#[tokio::main]
async fn main() -> cairn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let gb: f64 = args
        .first()
        .map_or(5.0, |a| a.parse().expect("GB is a number"));
    let limit_mb: usize = args
        .get(1)
        .map_or(512, |a| a.parse().expect("LIMIT_MB is a number"));
    let local = match args.get(2).map(String::as_str) {
        None | Some("reliable") => false,
        Some("local") => true,
        Some(other) => panic!("unknown kind '{other}': use reliable or local"),
    };
    let rows = (gb * 1e9 / ROW_BYTES as f64) as u64;
    let temp = tempfile::tempdir().expect("a temp dir");
    let dir = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| temp.path().display().to_string());
    let ctx = CairnContext::builder()
        .checkpoint_dir(&dir)
        .memory_limit(limit_mb * 1024 * 1024)
        .build()?;
    let df = ctx.sql(&QUERY.replace("{rows}", &rows.to_string())).await?;
    let watch = std::sync::Arc::new(cairn::PlanWatch::default());
    ctx.observe(&watch);

    let started = Instant::now();
    let df = if local {
        df.local_checkpoint().await?
    } else {
        df.checkpoint().await?
    };
    let written = started.elapsed();
    let totals = df
        .aggregate(vec![], vec![count(col("id")), sum(col("b"))])?
        .collect()
        .await?;
    let read = started.elapsed() - written;
    let stored = watch.bytes_written() as f64;
    println!(
        "{} checkpoint of {rows} rows (~{gb} GB of Arrow data) with a {limit_mb} MB memory limit in {dir}",
        if local { "local" } else { "reliable" }
    );
    println!(
        "write: {:.1} s, read back (count and sum of 2 of the 7 columns): {:.1} s, {:.1}M rows/s",
        written.as_secs_f64(),
        read.as_secs_f64(),
        rows as f64 / 1e6 / read.as_secs_f64()
    );
    if !local {
        println!(
            "checkpoint files: {:.2} GB, written at {:.0} MB/s",
            stored / 1e9,
            stored / 1e6 / written.as_secs_f64(),
        );
    }
    println!("peak resident memory: {} MB", peak_rss_kb() / 1024);
    println!(
        "{}",
        cairn::arrow::util::pretty::pretty_format_batches(&totals)?
    );
    Ok(())
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
