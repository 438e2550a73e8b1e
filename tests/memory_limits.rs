//! Queries under a memory limit answer or fail, never stop: DataFusion 55's
//! `RepartitionExec` can deadlock when it spills (apache/datafusion#24883),
//! and Cairn's sessions keep its buffers in memory instead
//! (`KeepRepartitionInMemory`).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use cairn::arrow::array::{Int64Array, RecordBatch, StringArray};
use cairn::arrow::datatypes::{DataType, Field, Schema};
use cairn::datafusion::datasource::MemTable;
use cairn::datafusion::execution::memory_pool::MemoryLimit;
use cairn::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use cairn::datafusion::prelude::{SessionConfig, SessionContext};
use cairn::exec::KeepRepartitionInMemory;
use cairn::prelude::*;

/// Small enough that the repartition below the distinct count runs out of
/// memory, large enough that the aggregates often finish.
const MEMORY_LIMIT: usize = 256 * 1024;

/// A healthy run takes well under a second in a debug build.
const PATIENCE: Duration = Duration::from_secs(10);

/// The deadlock is a race between two input tasks that spill at once: one
/// run in about thirty stops (debug build, two cores).
const ATTEMPTS: usize = 300;

const QUERY: &str = "SELECT g, count(DISTINCT trace_id) AS traces FROM spans GROUP BY g";

const ANSWER: &str = "[(0, 10000), (1, 10000), (2, 10000), (3, 10000)]";

/// Small batches and no reserved sort memory: many small spills.
fn config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(128);
    config.options_mut().execution.sort_spill_reservation_bytes = 0;
    config
}

/// 40,000 spans in two partitions, each of them its own trace.
fn spans() -> Arc<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, false),
    ]));
    let partition = |p: i64| {
        (0..20)
            .map(|b| {
                let ids: Vec<i64> = (0..1000).map(|i| p * 20_000 + b * 1000 + i).collect();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 4))),
                        Arc::new(StringArray::from_iter_values(
                            ids.iter().map(|i| format!("t{i}")),
                        )),
                    ],
                )
                .expect("a batch")
            })
            .collect::<Vec<_>>()
    };
    let partitions = vec![partition(0), partition(1)];
    Arc::new(MemTable::try_new(schema, partitions).expect("a table"))
}

/// The rows of [`QUERY`], or the error it failed with.
async fn traces_by_group(df: Result<DataFrame, String>) -> Result<String, String> {
    let batches = df?.collect().await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in batches {
        let g = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let n = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        rows.extend((0..batch.num_rows()).map(|i| (g.value(i), n.value(i))));
    }
    rows.sort();
    Ok(format!("{rows:?}"))
}

/// Runs `query` on a runtime of its own: what it answered, or `None` when
/// it has not answered within [`PATIENCE`] (that run is left parked).
fn answer_in_time<F>(query: impl FnOnce() -> F + Send + 'static) -> Option<Result<String, String>>
where
    F: Future<Output = Result<String, String>>,
{
    let (sent, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let rows = runtime.block_on(query());
        let _ = sent.send(rows);
        runtime.shutdown_background();
    });
    match answer.recv_timeout(PATIENCE) {
        Ok(rows) => Some(rows),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the query panicked (see above)"),
    }
}

/// What a run may answer: the rows, or a clear refusal for want of memory.
fn check(answer: &Result<String, String>) {
    match answer {
        Ok(rows) => assert_eq!(rows, ANSWER),
        Err(e) => assert!(e.contains("Resources exhausted"), "{e}"),
    }
}

/// DataFusion 55 alone: some run of the query never answers. When this test
/// fails, DataFusion has fixed apache/datafusion#24883: drop
/// `KeepRepartitionInMemory` and this test.
#[test]
fn known_difference_datafusion_repartition_deadlocks_when_it_spills() {
    let stopped = (0..ATTEMPTS).find(|_| {
        let answer = answer_in_time(|| async {
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_limit(MEMORY_LIMIT, 1.0)
                .build_arc()
                .unwrap();
            let ctx = SessionContext::new_with_config_rt(config(), runtime);
            ctx.register_table("spans", spans()).unwrap();
            traces_by_group(ctx.sql(QUERY).await.map_err(|e| e.to_string())).await
        });
        answer.as_ref().map(check).is_none()
    });
    assert!(
        stopped.is_some(),
        "DataFusion answered all {ATTEMPTS} runs under a {MEMORY_LIMIT}-byte limit"
    );
}

/// The same query on Cairn's sessions: every run answers or says it lacks
/// memory, and some answer.
#[test]
fn cairn_answers_every_run_under_the_same_limit() {
    let mut answered = 0;
    for attempt in 0..ATTEMPTS {
        let answer = answer_in_time(move || async move {
            let ctx = CairnContext::builder()
                .checkpoint_dir(format!("memory://memory-limits-{attempt}"))
                .session_config(config())
                .memory_limit(MEMORY_LIMIT)
                .build()
                .unwrap();
            ctx.session().register_table("spans", spans()).unwrap();
            traces_by_group(ctx.sql(QUERY).await.map_err(|e| e.to_string())).await
        })
        .unwrap_or_else(|| panic!("run {attempt} did not answer within {PATIENCE:?}"));
        check(&answer);
        answered += usize::from(answer.is_ok());
    }
    assert!(answered > 0, "no run had memory enough to answer");
}

/// `SET datafusion.runtime.memory_limit` makes DataFusion a new pool: the
/// session wraps it as it wrapped the first, and keeps the limit set.
#[tokio::test]
async fn a_memory_limit_set_by_sql_keeps_repartition_in_memory() {
    let session = cairn::Session::new(crate::common::memory_ctx()).unwrap();
    let pool = |s: &cairn::Session| Arc::clone(&s.context().session().runtime_env().memory_pool);
    assert!(pool(&session).is::<KeepRepartitionInMemory>());
    session
        .sql("SET datafusion.runtime.memory_limit = '256K'")
        .await
        .unwrap();
    let limited = pool(&session);
    assert!(limited.is::<KeepRepartitionInMemory>());
    assert!(matches!(limited.memory_limit(), MemoryLimit::Finite(n) if n == MEMORY_LIMIT));
    session
        .sql("RESET datafusion.runtime.memory_limit")
        .await
        .unwrap();
    assert!(pool(&session).is::<KeepRepartitionInMemory>());
}
