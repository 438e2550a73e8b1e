//! Cairn's codecs: each part Cairn adds to a plan survives encoding and
//! decoding with the same answer; bytes that are not Cairn's, cut short or
//! hostile are errors, never panics; sources that live in this process's
//! memory are refused with advice.

use std::sync::Arc;

use cairn::Session;
use cairn::arrow::array::Int64Array;
use cairn::arrow::datatypes::{DataType, Field, Schema};
use cairn::arrow::record_batch::RecordBatch;
use cairn::datafusion::datasource::MemTable;
use cairn::datafusion::logical_expr::LogicalPlan;
use cairn::datafusion::physical_plan::{ExecutionPlan, collect};
use cairn::datafusion::prelude::DataFrame;
use cairn::datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use cairn::exec::wire;
use cairn::prelude::*;
use cairn::{CairnLogicalCodec, CairnPhysicalCodec};

use crate::common::{dir_ctx, sorted_rows};

/// A session over a temp dir with a named checkpoint `a`, a lazy one `z`,
/// and `a`'s rows for reference.
async fn session(dir: &std::path::Path) -> Session {
    let session = Session::new(dir_ctx(dir)).unwrap();
    session
        .sql(
            "CHECKPOINT TABLE a AS SELECT value AS x FROM generate_series(1, 1000); \
             CHECKPOINT LAZY TABLE z AS SELECT x % 7 AS k, count(*) AS n FROM a GROUP BY 1",
        )
        .await
        .unwrap();
    session
}

/// The DataFrame of one query, planned as the shell plans it (the inline
/// `CHECKPOINT(...)` is Cairn's SQL).
async fn df(session: &Session, sql: &str) -> DataFrame {
    let parsed = session.parse(sql).unwrap();
    session.execute(&parsed[0]).await.unwrap()
}

fn logical_round_trip(ctx: &CairnContext, plan: &LogicalPlan) -> LogicalPlan {
    let codec = CairnLogicalCodec::default();
    let bytes = codec.encode(plan).unwrap();
    keep_as_fuzz_seed("logical", &bytes);
    codec.decode(&bytes, &ctx.session().task_ctx()).unwrap()
}

/// With `CAIRN_FUZZ_SEEDS=<dir>`, the encoded plans are kept there as seeds
/// for the `plan_decoder` fuzz target (`fuzz/seeds/plan_decoder`): real
/// plans with every Cairn part, from which the fuzzer mutates.
fn keep_as_fuzz_seed(kind: &str, bytes: &[u8]) {
    let Some(dir) = std::env::var_os("CAIRN_FUZZ_SEEDS") else {
        return;
    };
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let name = format!("{kind}-{:016x}", hasher.finish());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
}

async fn physical_round_trip(
    ctx: &CairnContext,
    plan: Arc<dyn ExecutionPlan>,
) -> Arc<dyn ExecutionPlan> {
    let codec = CairnPhysicalCodec::default();
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &codec).unwrap();
    keep_as_fuzz_seed("physical", &bytes);
    physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.session().task_ctx(), &codec)
        .unwrap()
}

/// Each query answers the same after its logical plan and its physical plan
/// went through Cairn's codecs.
#[tokio::test]
async fn each_part_answers_the_same_after_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path()).await;
    let ctx = session.context();
    let queries = [
        // The committed checkpoint as a table.
        "SELECT sum(x) AS s FROM a",
        // A lazy checkpoint as a table (written at first read).
        "SELECT k, n FROM z",
        // A checkpoint node (inline operator) and generate_series / range.
        "SELECT count(*) AS n FROM CHECKPOINT(SELECT value * 2 AS v FROM range(0, 500)) AS t",
        "SELECT v FROM CHECKPOINT(SELECT value AS v FROM generate_series(1, 5, 2)) AS t",
    ];
    for query in queries {
        let expected = sorted_rows(df(&session, query).await).await;
        assert!(!expected.is_empty(), "{query} answers nothing");

        let plain = df(&session, query).await;
        let decoded = logical_round_trip(ctx, plain.logical_plan());
        let through = ctx.execute_logical_plan(decoded).await.unwrap();
        assert_eq!(sorted_rows(through).await, expected, "logical: {query}");

        let plan = df(&session, query)
            .await
            .create_physical_plan()
            .await
            .unwrap();
        let decoded = physical_round_trip(ctx, plan).await;
        let batches = collect(decoded, ctx.session().task_ctx()).await.unwrap();
        let text = cairn::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
        rows.sort();
        assert_eq!(rows, expected, "physical: {query}");
    }
}

/// The physical plan of a checkpoint not yet written carries the write: run
/// after decoding, it commits the same checkpoint (same id) the plain run
/// would have.
#[tokio::test]
async fn a_decoded_checkpoint_write_commits_the_same_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    let ctx = session.context();
    let query = "SELECT sum(v) AS s FROM CHECKPOINT(SELECT value AS v FROM range(0, 777)) AS t";
    let plan = df(&session, query)
        .await
        .create_physical_plan()
        .await
        .unwrap();
    let text = cairn::datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    assert!(text.contains("CheckpointExec"), "no write in:\n{text}");
    let decoded = physical_round_trip(ctx, plan).await;
    let batches = collect(decoded, ctx.session().task_ctx()).await.unwrap();
    let sum = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(sum, (0..777).sum::<i64>());
    let written = ctx.checkpoint_store().checkpoint_dirs().await.unwrap();
    assert_eq!(written.len(), 1, "one checkpoint committed: {written:?}");
    // The plain run finds it committed and reads it.
    let explained = crate::common::explain(df(&session, query).await).await;
    assert!(
        explained.contains(&written[0][..12]),
        "the plain run does not read the decoded run's checkpoint:\n{explained}"
    );
}

/// A plan that carries a checkpoint, decoded after the checkpoint was
/// dropped: its first scan checks the dir and refuses with a message that
/// says what happened, instead of reading missing files.
#[tokio::test]
async fn a_decoded_table_whose_checkpoint_is_gone_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    session
        .sql("CHECKPOINT TABLE a AS SELECT value AS x FROM generate_series(1, 1000)")
        .await
        .unwrap();
    let ctx = session.context();
    let id = ctx.checkpoints().await.unwrap()[0].id.clone().unwrap();
    let codec = CairnLogicalCodec::default();
    let bytes = {
        let plain = ctx.sql("SELECT sum(x) FROM a").await.unwrap();
        codec.encode(plain.logical_plan()).unwrap()
    };
    // Nothing in this process reads `a` now: dropping it removes its files.
    session.sql("DROP CHECKPOINT a").await.unwrap();
    assert!(!dir.path().join(&id).exists(), "a's files are still there");
    let outcome = match codec.decode(&bytes, &ctx.session().task_ctx()) {
        Err(e) => e.to_string(),
        Ok(plan) => match ctx.execute_logical_plan(plan).await {
            Err(e) => e.to_string(),
            Ok(df) => match df.collect().await {
                Err(e) => e.to_string(),
                Ok(_) => "answered".into(),
            },
        },
    };
    assert!(
        outcome.contains(&format!("checkpoint {id}")) && outcome.contains("no longer there"),
        "{outcome}"
    );
}

/// Bytes that are not Cairn's, Cairn's cut at every length, and Cairn's
/// with each byte changed: errors, never panics.
#[tokio::test]
async fn foreign_truncated_and_hostile_bytes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path()).await;
    let ctx = session.context();
    let task = ctx.session().task_ctx();
    let codec = CairnLogicalCodec::default();

    // Not a plan at all.
    for junk in [&b""[..], b"\x00", b"CAIRN", b"hello, world", &[0xff; 64]] {
        assert!(codec.decode(junk, &task).is_err(), "{junk:?} decoded");
    }
    // Cairn's own tag with another version, an unknown kind, bad JSON.
    let mut bytes = Vec::new();
    wire::encode(wire::Kind::CheckpointNode, &"x", &mut bytes).unwrap();
    let version = {
        let mut b = bytes.clone();
        b[wire::TAG.len()] = wire::VERSION + 1;
        b
    };
    let err = wire::kind(&version).unwrap_err().to_string();
    assert!(err.contains("version"), "{err}");
    let unknown = {
        let mut b = bytes.clone();
        b[wire::TAG.len() + 1] = 200;
        b
    };
    assert!(
        wire::kind(&unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown")
    );
    let err =
        wire::decode::<serde_json::Value>(&bytes[..bytes.len() - 1], wire::Kind::CheckpointNode)
            .unwrap_err()
            .to_string();
    assert!(err.contains("do not decode"), "{err}");
    let err = wire::decode::<String>(&bytes, wire::Kind::CheckpointScan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a"), "{err}");

    // A real plan with every part of Cairn's, cut and changed.
    let all = df(
        &session,
        "SELECT * FROM a JOIN z ON a.x = z.k \
         JOIN CHECKPOINT(SELECT value AS v FROM generate_series(1, 3)) AS t ON t.v = a.x",
    )
    .await;
    let plan = codec.encode(all.logical_plan()).unwrap();
    assert!(codec.decode(&plan, &task).is_ok());
    let step = (plan.len() / 400).max(1);
    for cut in (0..plan.len()).step_by(step) {
        let _ = codec.decode(&plan[..cut], &task);
    }
    for at in (0..plan.len()).step_by(step) {
        let mut changed = plan.clone();
        changed[at] ^= 0x5a;
        let _ = codec.decode(&changed, &task);
    }

    let physical_codec = CairnPhysicalCodec::default();
    let physical = ctx
        .sql("SELECT sum(x) FROM a")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let bytes = physical_plan_to_bytes_with_extension_codec(physical, &physical_codec).unwrap();
    let step = (bytes.len() / 400).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        let _ =
            physical_plan_from_bytes_with_extension_codec(&bytes[..cut], &task, &physical_codec);
    }
    for at in (0..bytes.len()).step_by(step) {
        let mut changed = bytes.to_vec();
        changed[at] ^= 0x5a;
        let _ = physical_plan_from_bytes_with_extension_codec(&changed, &task, &physical_codec);
    }
}

/// A plan over a table in memory or a local checkpoint cannot leave the
/// process: the error names the table and says to checkpoint it.
#[tokio::test]
async fn in_memory_sources_are_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path()).await;
    let ctx = session.context();
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    let mem = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.session()
        .register_table("numbers", Arc::new(mem))
        .unwrap();
    session
        .sql("LOCAL CHECKPOINT TABLE kept AS SELECT x FROM a WHERE x < 10")
        .await
        .unwrap();
    let codec = CairnLogicalCodec::default();
    for table in ["numbers", "kept"] {
        let df = ctx.sql(&format!("SELECT * FROM {table}")).await.unwrap();
        let err = codec.encode(df.logical_plan()).unwrap_err().to_string();
        assert!(err.contains(&format!("'{table}'")), "{err}");
        assert!(err.contains("checkpoint it first"), "{err}");
        // DataFusion's own context names its source file; ours does not.
        assert!(!err.contains(".rs:"), "{err}");
    }
    let df = ctx.sql("SELECT * FROM kept").await.unwrap();
    let physical = df.create_physical_plan().await.unwrap();
    let err = physical_plan_to_bytes_with_extension_codec(physical, &CairnPhysicalCodec::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("reliable checkpoint"), "{err}");
}
