//! The filter a hash join derives from its build side drops the probe
//! side's rows where they are scanned (`cairn.join_filters_on_rows`), so
//! the aggregate between the scan and the join sees only the keys the join
//! keeps (TPC-H Q17's shape).

use std::path::Path;
use std::sync::Arc;

use cairn::CairnContext;
use cairn::arrow::util::pretty::pretty_format_batches;
use cairn::datafusion::datasource::source::DataSourceExec;
use cairn::datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use cairn::datafusion::physical_plan::joins::HashJoinExec;
use cairn::datafusion::physical_plan::{ExecutionPlan, collect};
use cairn::datafusion::prelude::SessionContext;
use cairn::exec::JoinFilterExec;

use crate::common::memory_ctx;

/// 100,000 facts whose keys are a permutation of 0..100,000 (so every page
/// of the file spans all keys and no statistics can skip any), and three
/// wanted keys (and 90,000 for a filter that keeps most rows).
async fn tables(ctx: &SessionContext, dir: &Path) {
    let dir = dir.display();
    for sql in [
        format!(
            "COPY (SELECT (value * 7919) % 100000 AS k, value % 7 AS v FROM range(0, 100000)) \
             TO '{dir}/fact.parquet' STORED AS PARQUET"
        ),
        format!(
            "COPY (SELECT column1 AS k FROM (VALUES (11), (50003), (99998))) \
             TO '{dir}/wanted.parquet' STORED AS PARQUET"
        ),
        format!(
            "COPY (SELECT value AS k FROM range(0, 90000)) TO '{dir}/most.parquet' STORED AS PARQUET"
        ),
        format!("CREATE EXTERNAL TABLE most STORED AS PARQUET LOCATION '{dir}/most.parquet'"),
        format!("CREATE EXTERNAL TABLE fact STORED AS PARQUET LOCATION '{dir}/fact.parquet'"),
        format!("CREATE EXTERNAL TABLE wanted STORED AS PARQUET LOCATION '{dir}/wanted.parquet'"),
    ] {
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
}

const PER_WANTED_KEY: &str = "SELECT w.k, a.n, a.total FROM wanted w \
     JOIN (SELECT k, count(*) AS n, sum(v) AS total FROM fact GROUP BY k) a ON a.k = w.k \
     ORDER BY w.k";

const ANSWER: &str = "+-------+---+-------+\n\
     | k     | n | total |\n\
     +-------+---+-------+\n\
     | 11    | 1 | 4     |\n\
     | 50003 | 1 | 6     |\n\
     | 99998 | 1 | 4     |\n\
     +-------+---+-------+";

/// A Cairn session over the tables, after `settings` (`SET` statements).
async fn session(dir: &Path, settings: &[&str]) -> CairnContext {
    let ctx = memory_ctx();
    for sql in settings {
        ctx.sql(sql).await.unwrap().collect().await.unwrap();
    }
    tables(&ctx, dir).await;
    ctx
}

/// Runs `sql` once: its rows as a table, and its plan with the metrics
/// of that run.
async fn run(ctx: &SessionContext, sql: &str) -> (String, Arc<dyn ExecutionPlan>) {
    let df = ctx.sql(sql).await.unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let table = pretty_format_batches(&batches).unwrap().to_string();
    (table, plan)
}

/// [`run`] of the Q17-shaped query, its answer checked.
async fn run_per_wanted_key(ctx: &SessionContext) -> Arc<dyn ExecutionPlan> {
    let (table, plan) = run(ctx, PER_WANTED_KEY).await;
    assert_eq!(table, ANSWER);
    plan
}

/// Rows that entered the partial aggregate of `fact`.
fn aggregated_rows(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut found = None;
    visit(plan, &mut |node| {
        if let Some(agg) = node.downcast_ref::<AggregateExec>()
            && *agg.mode() == AggregateMode::Partial
        {
            found = Some(output_rows(agg.input()));
        }
    });
    found.expect("the plan aggregates in two phases")
}

/// The join filters Cairn placed above scans, with what each did.
fn join_filters_above_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut found = vec![];
    visit(plan, &mut |node| {
        if let Some(filter) = node.downcast_ref::<JoinFilterExec>() {
            assert!(filter.input().downcast_ref::<DataSourceExec>().is_some());
            assert!(filter.predicate().to_string().contains("DynamicFilter"));
            found.push(Arc::clone(node));
        }
    });
    found
}

fn metric(node: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    node.metrics()
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize())
}

fn output_rows(node: &Arc<dyn ExecutionPlan>) -> usize {
    node.metrics()
        .and_then(|m| m.output_rows())
        .expect("the node ran")
}

fn visit(node: &Arc<dyn ExecutionPlan>, f: &mut impl FnMut(&Arc<dyn ExecutionPlan>)) {
    f(node);
    for child in node.children() {
        visit(child, f);
    }
}

#[tokio::test]
async fn a_join_filter_drops_probe_rows_before_the_aggregate_below_the_join() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path(), &[]).await;
    let plan = run_per_wanted_key(&ctx).await;
    let filters = join_filters_above_scans(&plan);
    assert_eq!(filters.len(), 1, "{plan:?}");
    assert_eq!(metric(&filters[0], "rows_tested"), 100_000);
    assert_eq!(metric(&filters[0], "partitions_stopped_testing"), 0);
    assert_eq!(aggregated_rows(&plan), 3);
}

/// A filter that keeps most rows (90%) is tested on the first rows only.
#[tokio::test]
async fn a_join_filter_that_keeps_most_rows_stops_testing_them() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path(), &[]).await;
    let (table, plan) = run(
        &ctx,
        "SELECT count(*) AS pairs, sum(a.n) AS facts FROM most w \
         JOIN (SELECT k, count(*) AS n FROM fact GROUP BY k) a ON a.k = w.k",
    )
    .await;
    assert_eq!(
        table,
        "+-------+-------+\n\
         | pairs | facts |\n\
         +-------+-------+\n\
         | 90000 | 90000 |\n\
         +-------+-------+"
    );
    let filters = join_filters_above_scans(&plan);
    assert_eq!(filters.len(), 1, "{plan:?}");
    assert!(metric(&filters[0], "partitions_stopped_testing") >= 1);
    let tested = metric(&filters[0], "rows_tested");
    assert!(tested < 100_000, "{tested}");
    // What it tested lost the keys `most` lacks; the rest passed untested.
    assert!(aggregated_rows(&plan) > 100_000 - tested / 5);
}

/// Where nothing lies between the scan and its join, a short list of keys
/// is tested (a third of a probe's cost) and a hash table is not.
#[tokio::test]
async fn a_scan_probed_directly_is_tested_by_key_lists_only() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path(), &[]).await;
    let probed_rows = |plan: &Arc<dyn ExecutionPlan>| {
        let mut rows = None;
        visit(plan, &mut |node| {
            if node.downcast_ref::<HashJoinExec>().is_some() {
                rows = Some(metric(node, "input_rows"));
            }
        });
        rows.expect("the plan joins")
    };
    let (table, plan) = run(
        &ctx,
        "SELECT count(*) AS n, sum(f.v) AS total FROM wanted w JOIN fact f ON f.k = w.k",
    )
    .await;
    assert_eq!(
        table,
        "+---+-------+\n| n | total |\n+---+-------+\n| 3 | 14    |\n+---+-------+"
    );
    let filters = join_filters_above_scans(&plan);
    assert_eq!(filters.len(), 1, "{plan:?}");
    assert!(
        filters[0]
            .downcast_ref::<JoinFilterExec>()
            .unwrap()
            .is_lists_only()
    );
    assert_eq!(metric(&filters[0], "rows_tested"), 100_000);
    assert_eq!(probed_rows(&plan), 3);

    let (table, plan) = run(
        &ctx,
        "SELECT count(*) AS n FROM most w JOIN fact f ON f.k = w.k",
    )
    .await;
    assert_eq!(
        table,
        "+-------+\n| n     |\n+-------+\n| 90000 |\n+-------+"
    );
    let filters = join_filters_above_scans(&plan);
    assert_eq!(filters.len(), 1, "{plan:?}");
    assert_eq!(metric(&filters[0], "rows_tested"), 0);
    assert!(metric(&filters[0], "partitions_stopped_testing") >= 1);
    assert_eq!(probed_rows(&plan), 100_000);
}

#[tokio::test]
async fn turned_off_every_fact_is_aggregated_and_the_answer_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path(), &["SET cairn.join_filters_on_rows = off"]).await;
    let plan = run_per_wanted_key(&ctx).await;
    assert!(join_filters_above_scans(&plan).is_empty());
    assert_eq!(aggregated_rows(&plan), 100_000);
}

#[tokio::test]
async fn with_parquet_pushdown_on_the_scan_filters_its_rows_itself() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(
        dir.path(),
        &["SET datafusion.execution.parquet.pushdown_filters = true"],
    )
    .await;
    let plan = run_per_wanted_key(&ctx).await;
    assert!(join_filters_above_scans(&plan).is_empty());
    assert_eq!(aggregated_rows(&plan), 3);
}

/// DataFusion 55 with its defaults uses the join's filter on row groups and
/// pages only. When this fails, DataFusion filters rows by it itself and
/// `JoinFiltersOnRows` can go.
#[tokio::test]
async fn known_difference_datafusion_aggregates_every_row_the_join_filter_excludes() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new_with_config(
        cairn::datafusion::prelude::SessionConfig::new().with_target_partitions(2),
    );
    tables(&ctx, dir.path()).await;
    let plan = run_per_wanted_key(&ctx).await;
    assert!(join_filters_above_scans(&plan).is_empty());
    assert_eq!(aggregated_rows(&plan), 100_000);
}
