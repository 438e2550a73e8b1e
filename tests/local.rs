//! Local checkpoints live in process memory, counted against the memory
//! pool, and spill to local disk instead of failing past the limit.

use cairn::datafusion::functions_aggregate::expr_fn::{count, sum};
use cairn::prelude::*;

use crate::common::{cells, explain};

#[tokio::test]
async fn a_local_checkpoint_is_held_in_the_memory_pool_and_written_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = crate::common::dir_ctx(dir.path());
    let pool = ctx.runtime_env().memory_pool.clone();
    let df = ctx
        .sql("SELECT value AS x, value * 2 AS y FROM range(0, 100000)")
        .await
        .unwrap()
        .local_checkpoint()
        .await
        .unwrap();
    assert!(
        pool.reserved() >= 100_000 * 16,
        "reserved {}",
        pool.reserved()
    );
    assert_eq!(df.clone().count().await.unwrap(), 100_000);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    drop(df);
    assert_eq!(pool.reserved(), 0);
}

#[tokio::test]
async fn a_local_checkpoint_over_the_memory_limit_spills_and_stays_right() {
    let ctx = CairnContext::builder()
        .checkpoint_dir("memory://local-spill")
        .memory_limit(2 * 1024 * 1024)
        .target_partitions(2)
        .build()
        .unwrap();
    let df = ctx
        .sql("SELECT value AS x, value % 10 AS k, concat('v', value) AS s FROM range(0, 400000)")
        .await
        .unwrap()
        .local_checkpoint()
        .await
        .unwrap();
    let plan = explain(df.clone()).await;
    assert!(plan.contains("LocalCheckpointExec"), "{plan}");
    assert!(
        !plan.contains("spilled_partitions=0"),
        "nothing spilled:\n{plan}"
    );
    let totals = cells(
        df.aggregate(vec![], vec![count(col("x")), sum(col("x"))])
            .unwrap(),
    )
    .await;
    assert_eq!(totals, vec![vec!["400000", "79999800000"]]);
}
