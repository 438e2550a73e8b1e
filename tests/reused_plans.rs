//! A query over checkpoints only reuses the optimized plan of an earlier
//! query of the same shape (`cairn.reuse_plans`): a loop's next step reads
//! the new checkpoints and answers as if planned afresh.

use cairn::datafusion::functions_aggregate::expr_fn::{max, sum};
use cairn::prelude::*;
use cairn::{CheckpointKind, Materialize};

use crate::common::{explain, memory_ctx, scalar};

/// A reliable checkpoint of the query `sql`.
async fn checkpointed(ctx: &CairnContext, sql: &str) -> DataFrame {
    ctx.sql(sql).await.unwrap().checkpoint().await.unwrap()
}

/// Registers `t`, a checkpoint of `v` from 0 to 9.
async fn register_t(ctx: &CairnContext) {
    let t = checkpointed(ctx, "SELECT value AS v FROM range(0, 10)").await;
    ctx.register_table("t", t.into_view()).unwrap();
}

/// Ten loop steps: each joins the state to a fixed table,
/// aggregates and checkpoints; the sum of `x` after every step.
async fn ten_steps(ctx: &CairnContext) -> Vec<i64> {
    let fixed = checkpointed(
        ctx,
        "SELECT value AS k, value % 7 AS bump FROM range(0, 50)",
    )
    .await;
    let mut state = checkpointed(ctx, "SELECT value AS k, value AS x FROM range(0, 50)").await;
    let mut sums = Vec::new();
    for _ in 0..10 {
        let step = state
            .alias("s")
            .unwrap()
            .join_on(
                fixed.clone().alias("f").unwrap(),
                JoinType::Inner,
                [col("s.k").eq(col("f.k"))],
            )
            .unwrap()
            .aggregate(
                vec![col("s.k")],
                vec![max(col("s.x") + col("f.bump")).alias("x")],
            )
            .unwrap()
            .select(vec![col("s.k").alias("k"), col("x")])
            .unwrap();
        state = step.checkpoint().await.unwrap();
        assert_eq!(state.clone().count().await.unwrap(), 50);
        let sum = state
            .clone()
            .aggregate(vec![], vec![sum(col("x"))])
            .unwrap();
        sums.push(scalar(sum).await.parse().unwrap());
    }
    sums
}

/// The sums `ten_steps` must give: each step adds `k % 7` to every `x`.
fn expected_sums() -> Vec<i64> {
    let base: i64 = (0..50).sum();
    let bump: i64 = (0..50).map(|k| k % 7).sum();
    (1..=10).map(|i| base + i * bump).collect()
}

#[tokio::test]
async fn a_loop_reuses_its_step_plans_and_answers_as_planned_afresh() {
    let ctx = memory_ctx();
    assert_eq!(ten_steps(&ctx).await, expected_sums());
    // Every step from the third (the first reads `x` not null, the rest a
    // nullable `x`: another shape), and every count and sum after the first.
    assert!(
        ctx.optimized_plans_reused() >= 8 + 9 + 9,
        "reused {} plans",
        ctx.optimized_plans_reused()
    );

    let off = memory_ctx();
    off.sql("SET cairn.reuse_plans = off").await.unwrap();
    assert_eq!(ten_steps(&off).await, expected_sums());
    assert_eq!(off.optimized_plans_reused(), 0);
}

/// The name DataFusion shows for the checkpoint scan of `df`.
fn scan_name(df: &DataFrame) -> String {
    let text = df.logical_plan().display_indent().to_string();
    let at = text.find("checkpoint_").expect("a checkpoint scan");
    text[at..at + "checkpoint_".len() + 12].to_string()
}

#[tokio::test]
async fn explain_of_a_reused_plan_shows_the_checkpoint_it_reads() {
    let ctx = memory_ctx();
    let query = |df: DataFrame| df.filter(col("v").gt(lit(3))).unwrap();
    let first = checkpointed(&ctx, "SELECT value AS v FROM range(0, 10)").await;
    let second = checkpointed(&ctx, "SELECT value + 100 AS v FROM range(0, 10)").await;
    assert_eq!(query(first.clone()).collect().await.unwrap().len(), 1);
    let before = ctx.optimized_plans_reused();
    let plan = explain(query(second.clone())).await;
    assert_eq!(ctx.optimized_plans_reused(), before + 1, "{plan}");
    assert!(plan.contains(&scan_name(&second)), "{plan}");
    assert!(!plan.contains(&scan_name(&first)), "{plan}");
    assert!(plan.contains("Filter: "), "{plan}");
    assert_eq!(query(second).count().await.unwrap(), 10);
}

#[tokio::test]
async fn queries_that_may_answer_differently_each_run_are_planned_each_time() {
    let ctx = memory_ctx();
    register_t(&ctx).await;
    for query in [
        "SELECT max(v) + extract(epoch FROM now()) AS x FROM t",
        "SELECT max(v + random()) AS x FROM t",
    ] {
        let before = ctx.optimized_plans_reused();
        for _ in 0..3 {
            ctx.sql(query).await.unwrap().collect().await.unwrap();
        }
        assert_eq!(ctx.optimized_plans_reused(), before, "{query}");
    }
}

#[tokio::test]
async fn a_changed_setting_plans_the_query_again() {
    let ctx = memory_ctx();
    register_t(&ctx).await;
    // A DataFrame keeps the settings of its making: query anew each time.
    let sum_of_t = || async { scalar(ctx.sql("SELECT sum(v) FROM t").await.unwrap()).await };
    assert_eq!(sum_of_t().await, "45");
    assert_eq!(sum_of_t().await, "45");
    let reused = ctx.optimized_plans_reused();
    assert!(reused >= 1);
    ctx.sql("SET datafusion.optimizer.max_passes = 2")
        .await
        .unwrap();
    assert_eq!(sum_of_t().await, "45");
    assert_eq!(ctx.optimized_plans_reused(), reused);
    assert_eq!(sum_of_t().await, "45");
    assert_eq!(ctx.optimized_plans_reused(), reused + 1);
}

#[tokio::test]
async fn a_table_replaced_by_one_of_another_type_is_planned_again() {
    let ctx = memory_ctx();
    let int = ctx.sql("SELECT 41 AS a").await.unwrap();
    ctx.checkpoint_table(
        "t",
        int,
        CheckpointKind::Reliable,
        Materialize::Eager,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        scalar(ctx.sql("SELECT a || '!' AS a FROM t").await.unwrap()).await,
        "41!"
    );
    let text = ctx.sql("SELECT 'forty-one' AS a").await.unwrap();
    ctx.checkpoint_table(
        "t",
        text,
        CheckpointKind::Reliable,
        Materialize::Eager,
        true,
    )
    .await
    .unwrap();
    let before = ctx.optimized_plans_reused();
    assert_eq!(
        scalar(ctx.sql("SELECT a || '!' AS a FROM t").await.unwrap()).await,
        "forty-one!"
    );
    assert_eq!(ctx.optimized_plans_reused(), before);
}
