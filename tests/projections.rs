//! DataFusion 55 collapses stacked projections whose expression lists are
//! equal (`x + 1 AS x` ten times answers `x + 1`). Cairn answers correctly
//! under the full default optimizer, at every depth, in SQL and DataFrames.

use std::sync::Arc;

use cairn::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use cairn::datafusion::functions_aggregate::expr_fn::{count, sum};
use cairn::prelude::*;

use crate::common::{cells, memory_ctx, on_big_stack, scalar};

const ROWS: i64 = 100;

/// Sum of x over 1..=ROWS after adding `depth` to every x.
fn expected_sum(depth: i64) -> String {
    let base: i64 = (1..=ROWS).sum();
    (base + depth * ROWS).to_string()
}

async fn sum_of_x(df: DataFrame) -> String {
    scalar(df.aggregate(vec![], vec![sum(col("x"))]).unwrap()).await
}

fn numbers(ctx: &CairnContext) {
    let batch = RecordBatch::try_from_iter(vec![(
        "x",
        Arc::new(Int64Array::from_iter_values(1..=ROWS)) as ArrayRef,
    )])
    .unwrap();
    ctx.register_batch("numbers", batch).unwrap();
}

#[test]
fn sql_nested_subqueries_add_at_every_depth() {
    on_big_stack(sql_nested_subqueries);
}

async fn sql_nested_subqueries() {
    let ctx = memory_ctx();
    for depth in 1..=20 {
        let mut sql = format!("SELECT value AS x FROM generate_series(1, {ROWS})");
        for _ in 0..depth {
            sql = format!("SELECT x + 1 AS x FROM ({sql})");
        }
        let got = scalar(
            ctx.sql(&format!("SELECT sum(x) FROM ({sql})"))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, expected_sum(depth), "depth {depth}");
    }
}

#[tokio::test]
async fn dataframe_with_column_adds_at_every_depth() {
    let ctx = memory_ctx();
    for depth in 1..=20 {
        let mut df = ctx
            .sql(&format!("SELECT value AS x FROM range(1, {})", ROWS + 1))
            .await
            .unwrap();
        for _ in 0..depth {
            df = df.with_column("x", col("x") + lit(1)).unwrap();
        }
        assert_eq!(sum_of_x(df).await, expected_sum(depth), "depth {depth}");
    }
}

#[tokio::test]
async fn dataframe_select_alias_over_a_memory_table_adds_at_every_depth() {
    let ctx = memory_ctx();
    numbers(&ctx);
    for depth in 1..=20 {
        let mut df = ctx.table("numbers").await.unwrap();
        for _ in 0..depth {
            df = df.select(vec![(col("x") + lit(1)).alias("x")]).unwrap();
        }
        assert_eq!(sum_of_x(df).await, expected_sum(depth), "depth {depth}");
    }
}

#[tokio::test]
async fn repeated_column_uses_and_swaps_compose() {
    let ctx = memory_ctx();
    // x * x twice: 2 -> 4 -> 16 (a column used twice, which DataFusion keeps unmerged).
    let df = ctx.sql("SELECT 2 AS x").await.unwrap();
    let df = df.select(vec![(col("x") * col("x")).alias("x")]).unwrap();
    let df = df.select(vec![(col("x") * col("x")).alias("x")]).unwrap();
    assert_eq!(scalar(df).await, "16");
    // Swapping two columns an odd number of times swaps them.
    let mut df = ctx.sql("SELECT 1 AS a, 2 AS b").await.unwrap();
    for _ in 0..5 {
        df = df
            .select(vec![col("a").alias("b"), col("b").alias("a")])
            .unwrap();
    }
    let df = df.select(vec![col("a"), col("b")]).unwrap();
    assert_eq!(cells(df).await, vec![vec!["2", "1"]]);
}

#[tokio::test]
async fn the_seed_pipeline_through_a_checkpoint_is_right() {
    let ctx = memory_ctx();
    let mut df = ctx
        .sql("SELECT value AS x FROM range(1, 100000)")
        .await
        .unwrap();
    for _ in 0..10 {
        df = df.select(vec![(col("x") + lit(1)).alias("x")]).unwrap();
    }
    let df = df.checkpoint().await.unwrap();
    let got = cells(
        df.aggregate(vec![], vec![sum(col("x")), count(col("x"))])
            .unwrap(),
    )
    .await;
    assert_eq!(got, vec![vec!["5000949990", "99999"]]);
}

/// When this fails, DataFusion has fixed the bug: delete
/// `cairn_core::optimizer` and this test, keep the others.
#[tokio::test]
async fn datafusion_55_still_needs_the_workaround() {
    let plain = SessionContext::new();
    let mut sql = "SELECT value AS x FROM generate_series(1, 100)".to_string();
    for _ in 0..10 {
        sql = format!("SELECT x + 1 AS x FROM ({sql})");
    }
    let got = scalar(
        plain
            .sql(&format!("SELECT sum(x) FROM ({sql})"))
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(
        got,
        expected_sum(10),
        "DataFusion now answers stacked projections correctly: remove Cairn's workaround"
    );
}
