//! The seed example: the integers 1 to 99,999, ten `x + 1` maps, a
//! checkpoint, then sum and count, with the plan before and after the
//! checkpoint and the time of each step.
//!
//! Run it twice: the second run finds the committed checkpoint (same plan,
//! same sources) and reuses it instead of computing it again.
//!
//! ```text
//! cargo run --example seed [-- CHECKPOINT_DIR]
//! ```

use std::time::Instant;

use cairn::datafusion::functions_aggregate::expr_fn::{count, sum};
use cairn::prelude::*;

#[tokio::main]
async fn main() -> cairn::Result<()> {
    let started = Instant::now();
    let mut builder = CairnContext::builder();
    if let Some(dir) = std::env::args().nth(1) {
        builder = builder.checkpoint_dir(dir);
    }
    let ctx = builder.build()?;
    println!("checkpoint dir: {}", ctx.checkpoint_dir());

    let step = Instant::now();
    let mut df = ctx.sql("SELECT value AS x FROM range(1, 100000)").await?;
    for _ in 0..10 {
        df = df.select(vec![(col("x") + lit(1)).alias("x")])?;
    }
    println!(
        "\nplan before the checkpoint:\n{}",
        df.logical_plan().display_indent()
    );
    println!("built the plan in {:.1?}", step.elapsed());

    let step = Instant::now();
    let df = df.checkpoint().await?;
    println!("\ncheckpoint written (or reused) in {:.1?}", step.elapsed());
    println!(
        "\nplan after the checkpoint:\n{}",
        df.logical_plan().display_indent()
    );

    let step = Instant::now();
    let totals = df
        .aggregate(
            vec![],
            vec![sum(col("x")).alias("sum"), count(col("x")).alias("count")],
        )?
        .collect()
        .await?;
    println!("\nsum and count in {:.1?}:", step.elapsed());
    println!(
        "{}",
        cairn::arrow::util::pretty::pretty_format_batches(&totals)?
    );
    println!("(expected: sum 5000949990, count 99999)");
    println!("\ntotal {:.1?}", started.elapsed());
    Ok(())
}
