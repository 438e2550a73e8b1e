//! Checkpoints Cairn places itself: a sub-plan one query reads twice is
//! computed once (where that spares work, and never where it could change
//! an answer or read more than the query needs), and a loop written with
//! no checkpoint at all stays linear.

use cairn::Session;
use cairn::datafusion::dataframe::DataFrame;
use cairn::datafusion::functions::core::expr_fn::{coalesce, least};
use cairn::datafusion::functions_aggregate::expr_fn::{count, min, sum};
use cairn::datafusion::logical_expr::JoinType;
use cairn::datafusion::physical_plan::{ExecutionPlan, collect};
use cairn::prelude::*;

use crate::common::{Counted, explain, memory_ctx, scalar, sorted_rows};

/// A session whose `cairn.reuse_subplans` is `on` or `off`, with a table
/// `t` of 1,000 rows whose `x` is counted as it is read (`counted(x)`),
/// and the same rows in a Parquet file, `f`.
async fn session(reuse: &str) -> (Session, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    static FILE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = FILE.get_or_init(|| tempfile::tempdir().unwrap());
    let file = dir
        .path()
        .join(format!("{}.parquet", crate::common::uuid_like()));
    let ctx = memory_ctx();
    let counted = Counted::register(&ctx);
    let session = Session::new(ctx).unwrap();
    session
        .sql(&format!(
            "SET cairn.reuse_subplans = '{reuse}'; \
             CREATE TABLE t AS SELECT value AS x, value % 10 AS k FROM range(0, 1000); \
             COPY t TO '{file}' STORED AS PARQUET; \
             CREATE EXTERNAL TABLE f STORED AS PARQUET LOCATION '{file}'",
            file = file.display()
        ))
        .await
        .unwrap();
    (session, counted)
}

async fn query(session: &Session, sql: &str) -> DataFrame {
    let parsed = session.parse(sql).unwrap();
    session.execute(&parsed[0]).await.unwrap()
}

/// Rows `counted` saw while `sql` ran, its answer, and its plan, with
/// sharing on; the answer is also checked against sharing off.
async fn run(sql: &str) -> (usize, Vec<String>, String) {
    let (on, seen) = session("on").await;
    let plan = explain(query(&on, sql).await).await;
    let answer = sorted_rows(query(&on, sql).await).await;
    let rows = seen.swap(0, std::sync::atomic::Ordering::SeqCst);
    let (off, _) = session("off").await;
    assert_eq!(sorted_rows(query(&off, sql).await).await, answer, "{sql}");
    (rows, answer, plan)
}

fn shared_reads(plan: &str) -> usize {
    plan.lines().filter(|l| l.contains("SharedScan:")).count()
}

#[tokio::test]
async fn a_cte_read_twice_is_computed_once() {
    let sql = "WITH g AS (SELECT k, sum(counted(x)) AS s FROM t GROUP BY k) \
               SELECT a.k, a.s + b.s AS s2 FROM g a JOIN g b ON a.k = b.k";
    let (rows, answer, plan) = run(sql).await;
    assert_eq!(answer.len(), 10 + 4, "{answer:?}");
    assert_eq!(rows, 1000, "counted(x) saw each row once:\n{plan}");
    assert_eq!(shared_reads(&plan), 2, "{plan}");
    assert!(plan.contains("auto: computed once for 2 reads"), "{plan}");
}

#[tokio::test]
async fn a_view_read_twice_and_a_self_join_of_a_subquery_are_computed_once() {
    let (session, seen) = session("on").await;
    session
        .sql("CREATE VIEW g AS SELECT k, max(counted(x)) AS m FROM t GROUP BY k")
        .await
        .unwrap();
    for sql in [
        "SELECT count(*) FROM g a JOIN g b ON a.m = b.m",
        "SELECT count(*) FROM (SELECT k, max(counted(x)) AS m FROM t GROUP BY k) a \
         JOIN (SELECT k, max(counted(x)) AS m FROM t GROUP BY k) b ON a.k = b.k AND a.m = b.m",
    ] {
        assert_eq!(scalar(query(&session, sql).await).await, "10", "{sql}");
        let rows = seen.swap(0, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(rows, 1000, "{sql}");
    }
}

/// Scalar subqueries read the shared sub-plan too (TPC-H Q15's `revenue0`).
#[tokio::test]
async fn a_cte_read_by_a_scalar_subquery_is_shared_with_the_query() {
    let sql = "WITH g AS (SELECT k, sum(counted(x)) AS s FROM t GROUP BY k) \
               SELECT k FROM g WHERE s = (SELECT max(s) FROM g)";
    let (rows, answer, plan) = run(sql).await;
    assert!(answer.iter().any(|l| l.contains("| 9 ")), "{answer:?}");
    assert_eq!(rows, 1000, "{plan}");
    assert_eq!(shared_reads(&plan), 2, "{plan}");
}

/// A shared sub-plan computes only the columns its reads use together:
/// DataFusion prunes each read, but cannot see through a read into it.
#[tokio::test]
async fn a_shared_sub_plan_keeps_only_the_columns_its_reads_use() {
    let sql = "WITH g AS (SELECT k, count(*) AS n, sum(x) AS s FROM f GROUP BY k) \
               SELECT a.k, b.n FROM g a JOIN g b ON a.k = b.k";
    let (rows, answer, plan) = run(sql).await;
    assert_eq!(rows, 0);
    assert_eq!(answer.len(), 10 + 4, "{answer:?}");
    assert_eq!(shared_reads(&plan), 2, "{plan}");
    assert!(
        !plan.contains("sum(f.x)"),
        "the unused sum is computed:\n{plan}"
    );
}

/// The query keeps its ORDER BY (and LIMIT) above the shared sub-plans:
/// DataFusion looks for a query's order below single-child operators only.
#[tokio::test]
async fn a_query_that_shares_keeps_its_order() {
    let sql = "WITH g AS (SELECT k, sum(x) AS s FROM t GROUP BY k) \
               SELECT a.s - b.k AS d FROM g a JOIN g b ON a.k = b.k ORDER BY a.k DESC";
    let (on, _) = session("on").await;
    let (off, _) = session("off").await;
    let plan = explain(query(&on, sql).await).await;
    assert_eq!(shared_reads(&plan), 2, "{plan}");
    let ordered = crate::common::rows(query(&on, sql).await).await;
    assert_eq!(ordered, crate::common::rows(query(&off, sql).await).await);
    let limited = format!("{sql} LIMIT 3");
    let first = crate::common::rows(query(&on, &limited).await).await;
    assert_eq!(
        first,
        crate::common::rows(query(&off, &limited).await).await
    );
}

#[tokio::test]
async fn nothing_is_shared_where_it_could_change_an_answer_or_spares_nothing() {
    let cases = [
        // Volatile: each read draws its own numbers.
        "WITH g AS (SELECT k, sum(x * random()) AS s FROM t GROUP BY k) \
         SELECT count(*) FROM g a JOIN g b ON a.k = b.k",
        // Read once.
        "WITH g AS (SELECT k, sum(x) AS s FROM t GROUP BY k) SELECT count(*) FROM g",
        // A bare scan of a file, or a filter of one: reading it again costs
        // what reading a copy costs.
        "WITH g AS (SELECT * FROM f) SELECT count(*) FROM g a JOIN g b ON a.x = b.x",
        "WITH g AS (SELECT * FROM f WHERE x > 5) SELECT count(*) FROM g a JOIN g b ON a.x = b.x",
        // Under a LIMIT: the query may need only a few rows of each read.
        "WITH g AS (SELECT x, row_number() OVER (ORDER BY x) AS r FROM t) \
         SELECT * FROM (SELECT x FROM g UNION ALL SELECT r FROM g) LIMIT 3",
    ];
    for sql in cases {
        let (_, _, plan) = run(sql).await;
        assert_eq!(shared_reads(&plan), 0, "{sql}\n{plan}");
    }
}

/// Label propagation over a small graph, the DataFrame way, with no
/// checkpoint at all: each step reads the previous labels twice. Every
/// column is named with its qualifier: DataFusion's DataFrame builder
/// resolves an unqualified name by walking the whole plan, as a tree
/// (`LogicalPlan::using_columns`), which alone doubles every step here.
fn step(edges: &DataFrame, labels: DataFrame) -> DataFrame {
    let cur = labels.alias("cur").unwrap();
    let neighbours = cur
        .clone()
        .select(vec![col("cur.v").alias("nv"), col("cur.l").alias("nl")])
        .unwrap()
        .alias("n")
        .unwrap();
    let nb = edges
        .clone()
        .alias("e")
        .unwrap()
        .join_on(neighbours, JoinType::Inner, [col("e.dst").eq(col("n.nv"))])
        .unwrap()
        .aggregate(vec![col("e.src")], vec![min(col("n.nl")).alias("m")])
        .unwrap()
        .alias("nb")
        .unwrap();
    cur.join_on(nb, JoinType::Left, [col("cur.v").eq(col("nb.src"))])
        .unwrap()
        .select(vec![
            col("cur.v").alias("v"),
            least(vec![
                col("cur.l"),
                coalesce(vec![col("nb.m"), col("cur.l")]),
            ])
            .alias("l"),
        ])
        .unwrap()
}

/// The sum of the labels (qualified, for the reason `step` gives).
fn label_sum(labels: DataFrame) -> DataFrame {
    labels
        .alias("f")
        .unwrap()
        .aggregate(vec![], vec![sum(col("f.l"))])
        .unwrap()
}

/// Nodes of a physical plan.
fn nodes(plan: &std::sync::Arc<dyn ExecutionPlan>) -> usize {
    1 + plan.children().into_iter().map(nodes).sum::<usize>()
}

/// A chain of 200 nodes in a line: the answer after `k` steps is known.
async fn line_graph(ctx: &CairnContext) -> (DataFrame, DataFrame) {
    let edges = ctx
        .sql(
            "SELECT value AS src, value + 1 AS dst FROM range(0, 199) \
             UNION ALL SELECT value + 1, value FROM range(0, 199)",
        )
        .await
        .unwrap();
    let labels = ctx
        .sql("SELECT value AS v, value AS l FROM range(0, 200)")
        .await
        .unwrap();
    (edges, labels)
}

/// Sum of the labels of a line of 200 nodes after `k` steps: node `v`
/// holds `max(0, v - k)`.
fn line_answer(k: i64) -> i64 {
    (0..200).map(|v: i64| (v - k).max(0)).sum()
}

/// Thirty steps with an action after each and no checkpoint: without
/// Cairn's own checkpoints the plan of step 30 would stand for 2^30 steps.
#[tokio::test]
async fn a_naive_loop_of_thirty_steps_stays_linear() {
    let ctx = memory_ctx();
    let (edges, mut labels) = line_graph(&ctx).await;
    let mut largest = 0;
    for _ in 0..30 {
        labels = step(&edges, labels);
        let counted = labels
            .clone()
            .aggregate(vec![], vec![count(lit(1))])
            .unwrap();
        let plan = counted.create_physical_plan().await.unwrap();
        largest = largest.max(nodes(&plan));
        collect(plan, ctx.session().task_ctx()).await.unwrap();
    }
    assert!(largest < 200, "a step's plan grew to {largest} nodes");
    assert_eq!(scalar(label_sum(labels)).await, line_answer(30).to_string());
    assert!(ctx.auto_checkpoints_placed() > 0);
}

/// The same loop with a checkpoint and an action after every step: nothing
/// grows, so Cairn places nothing of its own (a step reads what the last
/// action read, a checkpoint, which is no lineage to cut).
#[tokio::test]
async fn a_loop_checkpointed_by_hand_gets_no_automatic_checkpoint() {
    let ctx = memory_ctx();
    let (edges, labels) = line_graph(&ctx).await;
    let edges = edges.checkpoint().await.unwrap();
    let mut labels = labels.checkpoint().await.unwrap();
    for _ in 0..10 {
        labels = step(&edges, labels).checkpoint().await.unwrap();
        assert_eq!(labels.clone().count().await.unwrap(), 200);
    }
    assert_eq!(scalar(label_sum(labels)).await, line_answer(10).to_string());
    assert_eq!(ctx.auto_checkpoints_placed(), 0);
}

/// The same loop in SQL as a chain of views, then one query of the last.
#[tokio::test]
async fn a_chain_of_thirty_views_runs_as_thirty_steps() {
    let session = Session::new(memory_ctx()).unwrap();
    session
        .sql(
            "CREATE VIEW edges AS SELECT value AS src, value + 1 AS dst FROM range(0, 199) \
               UNION ALL SELECT value + 1, value FROM range(0, 199); \
             CREATE VIEW l0 AS SELECT value AS v, value AS l FROM range(0, 200)",
        )
        .await
        .unwrap();
    for i in 0..30 {
        let step = crate::common::LABEL_STEP.replace("labels", &format!("l{i}"));
        session
            .sql(&format!("CREATE VIEW l{} AS {step}", i + 1))
            .await
            .unwrap();
    }
    let total = query(&session, "SELECT sum(l) FROM l30").await;
    assert_eq!(scalar(total).await, line_answer(30).to_string());
    // Cut below the ORDER BY, so the order holds: node v holds v - 30.
    let ordered = query(&session, "SELECT l FROM l30 ORDER BY v DESC").await;
    let labels: Vec<i64> = crate::common::cells(ordered)
        .await
        .iter()
        .map(|row| row[0].parse().unwrap())
        .collect();
    let expected: Vec<i64> = (0..200).rev().map(|v: i64| (v - 30).max(0)).collect();
    assert_eq!(labels, expected);
}

/// A naive loop with reliable automatic checkpoints, killed half-way and
/// run again from the start in a new process, computes only the rest.
#[tokio::test]
async fn a_naive_loop_with_reliable_automatic_checkpoints_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let committed = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("_manifest.json").exists())
            .count()
    };
    let run = |steps: usize| {
        let dir = dir.path().to_path_buf();
        async move {
            let ctx = CairnContext::builder()
                .checkpoint_dir(dir.display().to_string())
                .target_partitions(2)
                .auto_checkpoint(cairn::AutoCheckpoint::Reliable)
                .build()
                .unwrap();
            let (edges, mut labels) = line_graph(&ctx).await;
            for _ in 0..steps {
                labels = step(&edges, labels);
                labels.clone().count().await.unwrap();
            }
            // SHOW CHECKPOINTS lists the ones Cairn placed, as `auto`.
            let session = Session::new(ctx.clone()).unwrap();
            let shown = session.sql("SHOW CHECKPOINTS").await.unwrap();
            let listing = cairn::arrow::util::pretty::pretty_format_batches(&shown[0].batches)
                .unwrap()
                .to_string();
            assert!(listing.contains("| auto "), "{listing}");
            scalar(label_sum(labels)).await
        }
    };
    assert_eq!(run(10).await, line_answer(10).to_string());
    let after_first = committed(dir.path());
    assert!(after_first >= 8, "{after_first} checkpoints after 10 steps");
    // The rerun reuses every step the first run committed.
    assert_eq!(run(20).await, line_answer(20).to_string());
    let after_second = committed(dir.path());
    assert_eq!(
        after_second - after_first,
        10,
        "the rerun wrote {} checkpoints for 10 new steps",
        after_second - after_first
    );
}
