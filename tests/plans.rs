//! What plans look like around a checkpoint: the cut is visible, nothing
//! is pushed through it, and the scan carries exact statistics and order.

use cairn::datafusion::functions_aggregate::count::count_all;
use cairn::prelude::*;

use crate::common::{cells, explain, memory_ctx, scalar};

const TEN_MAPS: &str = "SELECT x + 1 AS x FROM (SELECT x + 1 AS x FROM (SELECT x + 1 AS x FROM \
     (SELECT x + 1 AS x FROM (SELECT value AS x FROM range(1, 1000)))))";

#[tokio::test]
async fn explain_of_a_checkpoint_shows_the_scan_and_none_of_the_lineage() {
    let ctx = memory_ctx();
    let df = ctx.sql(TEN_MAPS).await.unwrap();
    assert!(explain(df.clone()).await.contains("range"));
    let plan = explain(df.checkpoint().await.unwrap()).await;
    assert!(plan.contains("TableScan: checkpoint_"), "{plan}");
    assert!(plan.contains("DataSourceExec"), "{plan}");
    assert!(plan.contains("-part-00000.parquet"), "{plan}");
    for lineage in [
        "range",
        "x + Int",
        "Projection: x",
        "LazyMemoryExec",
        "ProjectionExec",
    ] {
        assert!(
            !plan.contains(lineage),
            "'{lineage}' of the lineage is still in:\n{plan}"
        );
    }
}

#[tokio::test]
async fn a_lazy_checkpoint_is_visible_in_explain_until_it_runs() {
    let ctx = memory_ctx();
    let df = ctx.sql(TEN_MAPS).await.unwrap().checkpoint_lazy().unwrap();
    let before = explain(df.clone()).await;
    assert!(
        before.contains("Checkpoint: kind=reliable, lazy"),
        "{before}"
    );
    assert!(before.contains("CheckpointExec: kind=reliable"), "{before}");
    // EXPLAIN does not run it.
    let again = explain(df.clone()).await;
    assert!(again.contains("CheckpointExec"), "{again}");
    df.clone().count().await.unwrap();
    let after = explain(df).await;
    assert!(!after.contains("CheckpointExec"), "{after}");
    assert!(after.contains("DataSourceExec"), "{after}");
    assert!(!after.contains("LazyMemoryExec"), "{after}");
}

#[tokio::test]
async fn no_filter_projection_or_limit_is_pushed_through_a_lazy_checkpoint() {
    let ctx = memory_ctx();
    ctx.sql("CREATE TABLE t AS SELECT value AS a, value * 2 AS b FROM range(0, 100)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let lazy = ctx.table("t").await.unwrap().checkpoint_lazy().unwrap();
    let query = lazy
        .filter(col("a").gt(lit(10)))
        .unwrap()
        .select(vec![col("a")])
        .unwrap()
        .limit(0, Some(3))
        .unwrap();
    let plan = explain(query.clone()).await;
    let logical = plan.split("physical_plan").next().unwrap();
    let below = logical
        .split("Checkpoint: kind=reliable, lazy")
        .nth(1)
        .unwrap();
    assert!(
        !below.contains("Filter"),
        "a filter went below the checkpoint:\n{plan}"
    );
    assert!(
        !below.contains("Limit"),
        "a limit went below the checkpoint:\n{plan}"
    );
    assert!(
        below.contains("projection=[a, b]"),
        "a projection went below:\n{plan}"
    );
    assert_eq!(query.count().await.unwrap(), 3);
    // The reader stopped after 3 rows, but the checkpoint holds all 100.
    let found = ctx.table("t").await.unwrap().checkpoint().await.unwrap();
    assert_eq!(found.count().await.unwrap(), 100);
}

#[tokio::test]
async fn the_scan_carries_exact_row_counts() {
    let ctx = memory_ctx();
    let df = ctx.sql(TEN_MAPS).await.unwrap().checkpoint().await.unwrap();
    let counted = df.aggregate(vec![], vec![count_all().alias("n")]).unwrap();
    let plan = explain(counted.clone()).await;
    // Answered from the statistics: the files are not even read.
    assert!(!plan.contains("DataSourceExec"), "{plan}");
    assert_eq!(scalar(counted).await, "999");
}

#[tokio::test]
async fn the_scan_declares_the_recorded_order_so_nothing_sorts_again() {
    let ctx = memory_ctx();
    let sorted = ctx
        .sql("SELECT value AS x, value % 7 AS y FROM range(0, 5000) ORDER BY x DESC")
        .await
        .unwrap();
    let df = sorted.checkpoint().await.unwrap();
    let resorted = df.sort(vec![col("x").sort(false, true)]).unwrap();
    let plan = explain(resorted.clone()).await;
    let physical = plan.split("physical_plan").nth(1).unwrap();
    assert!(!physical.contains("SortExec"), "{plan}");
    let first = cells(resorted.limit(0, Some(2)).unwrap()).await;
    assert_eq!(first, vec![vec!["4999", "1"], vec!["4998", "0"]]);
}
