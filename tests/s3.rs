//! Checkpoints on a real S3-compatible server (moto, started by `.ci/run`
//! from tests/s3/moto_server.py, with authentication enforced): the tests
//! that run on local dirs run here too, and secrets never show.

use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn::Session;
use cairn::arrow::util::pretty::pretty_format_batches;
use cairn::datafusion::functions_aggregate::expr_fn::count;
use cairn::object_store::{ObjectStoreExt, PutPayload};
use cairn::prelude::*;
use futures::TryStreamExt;

use crate::common::{TestS3, dir_ctx, listing, scalar, sorted_rows};

/// How many races and kills run against S3 (`CAIRN_S3_RACES`, 3, and
/// `CAIRN_S3_KILLS`, 5): fewer than on a local disk, as every write goes
/// through a Python server. `tests/long/run.sh` runs more.
fn runs(variable: &str, default: u64) -> u64 {
    std::env::var(variable)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn s3_checkpoints_round_trip_with_their_types() {
    let Some(s3) = TestS3::or_skip("s3 round trip") else {
        return;
    };
    let dir = s3.fresh_dir();
    let ctx = dir_ctx(Path::new(&dir));
    let sql = "SELECT value AS id, value * 1.5 AS f, concat('v', value) AS s, \
               CASE WHEN value % 3 = 0 THEN NULL ELSE value END AS maybe, \
               make_array(value, value + 1) AS l, \
               named_struct('a', value, 'b', 'x') AS st, \
               arrow_cast(concat('k', value % 4), 'Dictionary(Int32, Utf8)') AS d \
               FROM range(0, 50000)";
    let expected = sorted_rows(ctx.sql(sql).await.unwrap()).await;
    let df = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(sorted_rows(df.clone()).await, expected);
    let plan = crate::common::explain(df).await;
    assert!(plan.contains("TableScan: checkpoint_"), "{plan}");
    // Written under the dir's prefix: data files and one manifest.
    let dirs = listing(Path::new(&dir)).await;
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].1.iter().any(|f| f == "_manifest.json"), "{dirs:?}");
    assert!(
        dirs[0].1.iter().any(|f| f.ends_with(".parquet")),
        "{dirs:?}"
    );
}

#[tokio::test]
async fn s3_checkpoints_are_reused_across_processes() {
    let Some(s3) = TestS3::or_skip("s3 reuse") else {
        return;
    };
    let dir = s3.fresh_dir();
    // The racers of the race test, one after the other: the first writes,
    // the second, another process, reuses its checkpoint.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut said = Vec::new();
    for _ in 0..2 {
        let out = crate::races::spawn_racer(Path::new(&dir), 99, now)
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said.push(String::from_utf8_lossy(&out.stdout).to_string());
    }
    assert!(said[0].contains("wrote"), "{said:?}");
    assert!(said[1].contains("reused"), "{said:?}");
    let sum = format!("sum {}", crate::races::expected_sum(99));
    assert!(said.iter().all(|s| s.contains(&sum)), "{said:?}");
}

#[tokio::test]
async fn s3_concurrent_writers_commit_once_and_both_answer() {
    let Some(s3) = TestS3::or_skip("s3 races") else {
        return;
    };
    crate::races::race_in(Path::new(&s3.fresh_dir()), runs("CAIRN_S3_RACES", 3)).await;
}

#[tokio::test]
async fn s3_sigkill_never_leaves_a_partial_checkpoint() {
    let Some(s3) = TestS3::or_skip("s3 kills") else {
        return;
    };
    crate::atomicity::kill_writers_in(Path::new(&s3.fresh_dir()), runs("CAIRN_S3_KILLS", 5)).await;
}

#[tokio::test]
async fn s3_damaged_files_are_named_when_read() {
    let Some(s3) = TestS3::or_skip("s3 corruption") else {
        return;
    };
    let dir = s3.fresh_dir();
    let ctx = dir_ctx(Path::new(&dir));
    let df = ctx
        .sql("SELECT value AS a, concat('row ', value) AS s FROM range(0, 100000)")
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    assert_eq!(
        scalar(df.clone().aggregate(vec![], vec![count(lit(1))]).unwrap()).await,
        "100000"
    );
    // Flip one byte in the middle of a data file, through the store.
    let (id, files) = listing(Path::new(&dir)).await.remove(0);
    let file = files.iter().find(|f| f.ends_with(".parquet")).unwrap();
    let prefix = dir.trim_start_matches("s3://").split_once('/').unwrap().1;
    let path = cairn::object_store::path::Path::from(format!("{prefix}{id}/{file}"));
    let store = s3.bucket_store();
    let mut bytes = store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    store.put(&path, PutPayload::from(bytes)).await.unwrap();

    // This process reads the batches it wrote; another one reads the files.
    assert_eq!(df.clone().count().await.unwrap(), 100_000);
    let other = dir_ctx(Path::new(&dir));
    let again = other
        .sql("SELECT value AS a, concat('row ', value) AS s FROM range(0, 100000)")
        .await
        .unwrap();
    let err = match again.checkpoint().await {
        Ok(reused) => reused.collect().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("checkpoint {id} is corrupt")),
        "{err}"
    );
    assert!(err.contains(file.as_str()), "{err}");
}

#[tokio::test]
async fn s3_data_is_read_and_written_by_path() {
    let Some(s3) = TestS3::or_skip("s3 paths") else {
        return;
    };
    let ctx = CairnContext::builder()
        .checkpoint_dir("memory://s3-paths")
        .s3_options(s3.options())
        .url_tables(true)
        .build()
        .unwrap();
    let data = format!("{}data/numbers.parquet", s3.fresh_dir());
    ctx.sql(&format!(
        "COPY (SELECT value AS n FROM range(0, 1000)) TO '{data}'"
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let by_path = ctx
        .sql(&format!("SELECT sum(n) FROM '{data}'"))
        .await
        .unwrap();
    assert_eq!(scalar(by_path).await, "499500");
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE numbers STORED AS PARQUET LOCATION '{data}'"
    ))
    .await
    .unwrap();
    let df = ctx.sql("SELECT count(*) FROM numbers").await.unwrap();
    assert_eq!(scalar(df.checkpoint().await.unwrap()).await, "1000");
}

#[tokio::test]
async fn s3_problems_are_clear_errors_that_change_nothing() {
    let Some(s3) = TestS3::or_skip("s3 errors") else {
        return;
    };
    let session = Session::new(
        CairnContext::builder()
            .checkpoint_dir("memory://s3-errors")
            .s3_options(s3.options())
            .build()
            .unwrap(),
    )
    .unwrap();
    let fails = async |sql: &str| session.sql(sql).await.unwrap_err().to_string();

    let err = fails("SET cairn.checkpoint_dir = 's3://no-such-bucket/ckpt'").await;
    assert!(
        err.contains("'s3://no-such-bucket/ckpt/' cannot be used"),
        "{err}"
    );
    assert!(err.contains("the bucket does not exist"), "{err}");

    let good = s3.options();
    let wrong = cairn::S3Options {
        secret_access_key: Some(cairn::Secret::new("not-the-secret")),
        ..good.clone()
    };
    set_s3(&session, wrong).await;
    let err = fails(&format!("SET cairn.checkpoint_dir = '{}'", s3.fresh_dir())).await;
    assert!(err.contains("the credentials were refused"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");

    let unreachable = cairn::S3Options {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..good.clone()
    };
    set_s3(&session, unreachable).await;
    let err = fails(&format!("SET cairn.checkpoint_dir = '{}'", s3.fresh_dir())).await;
    assert!(err.contains("check cairn.s3.endpoint"), "{err}");
    assert!(
        err.contains("retries"),
        "a bounded number of retries: {err}"
    );

    // Each failure left the session as it was.
    assert_eq!(session.context().checkpoint_dir(), "memory://s3-errors");
    set_s3(&session, good).await;
    let out = session.sql("SELECT 41 + 1 AS x").await.unwrap();
    assert_eq!(out[0].num_rows(), 1);
}

/// Makes `options` the session's S3 settings.
async fn set_s3(session: &Session, options: cairn::S3Options) {
    let mut all = session.context().options();
    all.s3 = options;
    session.context().set_options(all).await.unwrap();
}

/// Collects every event and span field Cairn logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn s3_secrets_never_show() {
    let Some(s3) = TestS3::or_skip("s3 secrets") else {
        return;
    };
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // This test runs on one thread, so every task logs to this subscriber.
    let _logging = tracing::subscriber::set_default(subscriber);

    let session = Session::new(
        CairnContext::builder()
            .checkpoint_dir("memory://s3-secrets")
            .build()
            .unwrap(),
    )
    .unwrap();
    let dir = s3.fresh_dir();
    let secret = &s3.secret_access_key;
    let mut shown = String::new();
    let script = format!(
        "SET cairn.s3.endpoint = '{}'; SET cairn.s3.access_key_id = '{}'; \
         SET cairn.s3.secret_access_key = '{secret}'; SET cairn.checkpoint_dir = '{dir}'; \
         CHECKPOINT TABLE t AS SELECT value AS v FROM range(0, 1000); \
         SHOW cairn.s3.secret_access_key; SHOW CHECKPOINTS; EXPLAIN SELECT sum(v) FROM t; \
         EXPLAIN LINEAGE t; SELECT * FROM information_schema.df_settings; \
         SELECT sum(v) FROM CHECKPOINT(SELECT v FROM t WHERE v > 10) AS c",
        s3.endpoint, s3.access_key_id
    );
    for output in session.sql(&script).await.unwrap() {
        shown += &pretty_format_batches(&output.batches).unwrap().to_string();
        shown += &format!("{output:?}");
    }
    assert!(shown.contains("********"), "SHOW of the secret: {shown}");
    assert!(shown.contains("s3://"), "SHOW CHECKPOINTS: {shown}");
    // Errors: a statement that quotes nothing right, and a refused secret.
    for bad in [
        // Not a quoted value (the secret alone may read as a name).
        format!("SET cairn.s3.secret_access_key = {secret} + 1"),
        format!(
            "SET cairn.s3.secret_access_key = '{secret}x'; SET cairn.checkpoint_dir = '{}'",
            s3.fresh_dir()
        ),
        format!("SET cairn.s3.secret_access_key = '{secret}"),
    ] {
        shown += &session.sql(&bad).await.unwrap_err().to_string();
    }
    shown += &format!("{:?}", session.context());
    shown += &format!("{:?}", session.context().options());
    // Everything written under the dir: manifests, names, data.
    let store = s3.bucket_store();
    let prefix = cairn::object_store::path::Path::from(
        dir.trim_start_matches("s3://").split_once('/').unwrap().1,
    );
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    assert!(objects.len() >= 3, "{objects:?}");
    let mut written = Vec::new();
    for object in objects {
        written.extend(
            store
                .get(&object.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        );
    }
    drop(_logging);
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("checkpoint committed"),
        "the logs were captured: {logged}"
    );

    for (what, text) in [
        ("output and errors", shown.as_bytes()),
        ("stored objects", &written[..]),
        ("logs", logged.as_bytes()),
    ] {
        assert!(
            !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret shows in the {what}"
        );
    }
}
