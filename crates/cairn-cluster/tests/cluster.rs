//! Cairn on a Ballista cluster of real processes: `cairn-scheduler` and two
//! `cairn-executor`s on 127.0.0.1 (the cluster `.ci/run` starts, named by
//! `CAIRN_TEST_CLUSTER`, or one this test starts from the built binaries).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ballista_executor::executor_process::start_executor_process;
use cairn_cluster::executor::ExecutorArgs;
use cairn_core::cluster::server_config;
use cairn_core::datafusion::arrow::util::pretty::pretty_format_batches;
use cairn_core::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, path::Path as ObjectPath,
};
use cairn_core::store::{CheckpointStore, SessionStores};
use cairn_core::{CairnContext, CheckpointExt, S3Options, Secret};
use cairn_sql::Session;
use clap::Parser;
use futures::stream::BoxStream;

/// Processes of a cluster, killed when dropped.
struct Cluster {
    url: String,
    scheduler: Option<Child>,
    executors: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain(self.scheduler.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The environment a server of the test cluster needs for the S3 test
/// server: its secret (clients never send theirs).
fn server_env(command: &mut Command) -> &mut Command {
    if let Ok(secret) = std::env::var("CAIRN_TEST_S3_SECRET_ACCESS_KEY") {
        command.env("AWS_SECRET_ACCESS_KEY", secret);
    }
    command.stdout(Stdio::null()).stderr(Stdio::null())
}

impl Cluster {
    /// A scheduler and `executors` executors of its own.
    fn start(executors: usize) -> Cluster {
        let port = free_port();
        let scheduler = server_env(&mut Command::new(env!("CARGO_BIN_EXE_cairn-scheduler")))
            .args(["--bind-host", "127.0.0.1", "--bind-port", &port.to_string()])
            .args(["--executor-timeout-seconds", "4"])
            .args(["--expire-dead-executor-interval-seconds", "1"])
            .spawn()
            .unwrap();
        wait_for_port(port);
        let mut cluster = Cluster {
            url: format!("df://127.0.0.1:{port}"),
            scheduler: Some(scheduler),
            executors: Vec::new(),
        };
        for _ in 0..executors {
            cluster.add_executor(port);
        }
        cluster
    }

    fn add_executor(&mut self, scheduler_port: u16) {
        let (flight, grpc) = (free_port(), free_port());
        let child = server_env(&mut Command::new(env!("CARGO_BIN_EXE_cairn-executor")))
            .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
            .args(["--scheduler-host", "127.0.0.1"])
            .args(["--scheduler-port", &scheduler_port.to_string()])
            .args(["--bind-port", &flight.to_string()])
            .args(["--bind-grpc-port", &grpc.to_string()])
            .args(["--concurrent-tasks", "2"])
            .args(["--scheduler-connect-timeout-seconds", "30"])
            .spawn()
            .unwrap();
        wait_for_port(flight);
        self.executors.push(child);
    }
}

/// A cluster to run on: `CAIRN_TEST_CLUSTER`'s, or one of this test's own
/// (stopped when the test ends).
struct Shared {
    url: String,
    _own: Option<Cluster>,
}

fn shared() -> Shared {
    match std::env::var("CAIRN_TEST_CLUSTER") {
        Ok(url) => Shared { url, _own: None },
        Err(_) => {
            let cluster = Cluster::start(2);
            Shared {
                url: cluster.url.clone(),
                _own: Some(cluster),
            }
        }
    }
}

fn s3() -> Option<S3Options> {
    let var = |name: &str| std::env::var(format!("CAIRN_TEST_S3_{name}")).ok();
    let found = (|| {
        Some(S3Options {
            endpoint: Some(var("ENDPOINT")?),
            region: Some("us-east-1".into()),
            access_key_id: Some(var("ACCESS_KEY_ID")?),
            secret_access_key: Some(Secret::new(var("SECRET_ACCESS_KEY")?)),
            ..Default::default()
        })
    })();
    if found.is_none() {
        assert!(
            std::env::var_os("CAIRN_REQUIRE_S3").is_none(),
            "CAIRN_REQUIRE_S3 is set but CAIRN_TEST_S3_* are not"
        );
        eprintln!("skipped: no S3 test server (see tests/s3/moto_server.py)");
    }
    found
}

async fn table(session: &Session, sql: &str) -> String {
    let statements = session.parse(sql).unwrap();
    let df = session.execute(&statements[0]).await.unwrap();
    pretty_format_batches(&df.collect().await.unwrap())
        .unwrap()
        .to_string()
}

/// A session with checkpoints in the local dir `dir`, on the cluster at
/// `cluster` or, with `None`, in this process.
fn session_in(dir: &std::path::Path, cluster: Option<&str>) -> Session {
    let mut builder = CairnContext::builder().checkpoint_dir(dir.display().to_string());
    if let Some(url) = cluster {
        builder = builder.cluster(url);
    }
    Session::new(builder.build().unwrap()).unwrap()
}

async fn error_of(session: &Session, sql: &str) -> String {
    session.sql(sql).await.unwrap_err().to_string()
}

async fn run(session: &Session, sql: &str) {
    session.sql(sql).await.unwrap();
}

/// Data files of the checkpoint `name` in the local dir `dir`.
fn data_files(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                let name = file.unwrap().file_name().to_string_lossy().to_string();
                if name.ends_with(".parquet") {
                    files.push(name);
                }
            }
        }
    }
    files.sort();
    files
}

const DEGREES: &str = "SELECT value % 100 AS src, count(*) AS n, sum(value) AS total \
                       FROM range(0, 200000) GROUP BY value % 100";

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_written_by_executors_is_read_by_a_local_session_and_back() {
    let cluster = shared();
    let dir = tempfile::tempdir().unwrap();
    let on_cluster = session_in(dir.path(), Some(&cluster.url));
    run(
        &on_cluster,
        &format!("CHECKPOINT TABLE degrees AS {DEGREES}"),
    )
    .await;
    let files = data_files(dir.path());
    assert!(!files.is_empty(), "the executors wrote no file");
    let top = "SELECT src, n, total FROM degrees ORDER BY total DESC LIMIT 3";
    let from_cluster = table(&on_cluster, top).await;
    assert!(from_cluster.contains("| 99  | 2000 |"), "{from_cluster}");

    // One process, the same dir: the same checkpoint, no recompute.
    let local = session_in(dir.path(), None);
    assert_eq!(table(&local, top).await, from_cluster);
    assert_eq!(data_files(dir.path()), files);

    // And back: a checkpoint one process wrote, read on the cluster.
    run(
        &local,
        "CHECKPOINT TABLE small AS SELECT value AS v FROM range(0, 10)",
    )
    .await;
    let sum = table(&on_cluster, "SELECT sum(v) AS s FROM small").await;
    assert!(sum.contains("| 45 |"), "{sum}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lazy_and_chained_checkpoints_run_as_jobs_before_the_query() {
    let cluster = shared();
    let dir = tempfile::tempdir().unwrap();
    let session = session_in(dir.path(), Some(&cluster.url));
    let sql = "SELECT count(*) AS c, sum(x) AS s FROM CHECKPOINT( \
               SELECT v * 2 AS x FROM CHECKPOINT(SELECT value AS v FROM range(0, 1000)) AS a \
               ) AS b";
    let answer = table(&session, sql).await;
    assert!(answer.contains("| 1000 | 999000 |"), "{answer}");
    // Two checkpoints, each committed once.
    let manifests = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("_manifest.json").exists())
        .count();
    assert_eq!(manifests, 2);
    // Run again: both are reused, nothing is written.
    let before = data_files(dir.path());
    assert_eq!(table(&session, sql).await, answer);
    assert_eq!(data_files(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_on_s3_round_trip_through_the_cluster() {
    let Some(options) = s3() else {
        return;
    };
    let bucket = std::env::var("CAIRN_TEST_S3_BUCKET").unwrap();
    let dir = format!("s3://{bucket}/cluster-{}/", std::process::id());
    let cluster = shared();
    let build = |on_cluster: bool| {
        let mut builder = CairnContext::builder()
            .s3_options(options.clone())
            .checkpoint_dir(dir.clone());
        if on_cluster {
            builder = builder.cluster(cluster.url.clone());
        }
        Session::new(builder.build().unwrap()).unwrap()
    };
    let on_cluster = build(true);
    run(
        &on_cluster,
        &format!("CHECKPOINT TABLE degrees AS {DEGREES}"),
    )
    .await;
    let top = "SELECT src, n FROM degrees ORDER BY src LIMIT 2";
    let from_cluster = table(&on_cluster, top).await;
    assert!(from_cluster.contains("| 1   | 2000 |"), "{from_cluster}");
    assert_eq!(table(&build(false), top).await, from_cluster);
    // The catalog works as in one process: listed, then dropped for all.
    let listed = table(&on_cluster, "SHOW CHECKPOINTS").await;
    assert!(listed.contains("degrees"), "{listed}");
    run(&on_cluster, "DROP CHECKPOINT degrees").await;
    let err = error_of(&build(false), top).await;
    assert!(err.contains("degrees"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_cluster_cannot_do_fails_before_running_and_says_what_to_use() {
    let cluster = shared();
    let dir = tempfile::tempdir().unwrap();
    let session = session_in(dir.path(), Some(&cluster.url));
    let err = error_of(&session, "LOCAL CHECKPOINT TABLE t AS SELECT 1 AS x").await;
    assert!(err.contains("reliable checkpoint"), "{err}");
    let err = error_of(&session, "SET cairn.reuse_subplans = on").await;
    assert!(err.contains("on a cluster"), "{err}");
    let err = error_of(&session, "CREATE TABLE m AS SELECT 1 AS x").await;
    assert!(err.contains("CHECKPOINT TABLE m AS"), "{err}");
    // Nothing was written, and the session still works.
    assert!(data_files(dir.path()).is_empty());
    let one = table(&session, "SELECT 1 + 1 AS two").await;
    assert!(one.contains("| 2   |"), "{one}");
    // A scan of no column (DataFusion's codec drops its projection; see SeriesTable).
    let counted = table(&session, "SELECT count(*) AS n FROM range(0, 10)").await;
    assert!(counted.contains("| 10 |"), "{counted}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_that_is_not_there_is_an_error_within_seconds() {
    let port = free_port();
    let ctx = CairnContext::builder()
        .checkpoint_dir("memory://cluster-unreachable")
        .cluster(format!("df://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = match ctx.sql("SELECT 1 AS x").await {
        Ok(df) => df.collect().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("cannot reach the Cairn scheduler") && err.contains(&port.to_string()),
        "{err}"
    );
    // An eager checkpoint says the same before it writes anything.
    let df = ctx.sql("SELECT 1 AS x").await.unwrap();
    let err = df.checkpoint().await.unwrap_err().to_string();
    assert!(err.contains("cannot reach the Cairn scheduler"), "{err}");
}

/// Files and staging files under the id dirs of `dir`, as `id/name`.
fn everything_written(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let path = entry.path();
        let id = entry.file_name().to_string_lossy().to_string();
        if !path.is_dir() || id.starts_with('_') {
            continue;
        }
        for file in std::fs::read_dir(&path).unwrap().filter_map(|e| e.ok()) {
            found.push(format!("{id}/{}", file.file_name().to_string_lossy()));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_killed_while_it_writes_costs_a_task_run_not_the_checkpoint() {
    // A cluster of its own: one executor, a second added once the first writes.
    let mut cluster = Cluster::start(1);
    let scheduler_port: u16 = cluster.url.rsplit(':').next().unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let session = session_in(dir.path(), Some(&cluster.url));
    let rows = 5_000_000u64;
    let statement =
        format!("CHECKPOINT TABLE big AS SELECT value AS v, value * 2 AS w FROM range(0, {rows})");
    let writer = tokio::spawn(async move {
        let outcome = session.sql(&statement).await.map(|_| ());
        (session, outcome)
    });
    // Kill the only executor as soon as its task has begun a file.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !everything_written(dir.path())
        .iter()
        .any(|f| f.contains("-part-"))
    {
        assert!(Instant::now() < deadline, "the task wrote nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.add_executor(scheduler_port);
    let mut killed = cluster.executors.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();

    let (session, outcome) = writer.await.unwrap();
    outcome.expect("the job answers once its task ran on the other executor");
    let answer = table(&session, "SELECT count(*) AS n, sum(w) AS s FROM big").await;
    assert!(
        answer.contains(&format!("| {rows} | {} |", rows * (rows - 1))),
        "{answer}"
    );
    // One manifest, listing files that are all there; the dead task's
    // file is not among them.
    let ids: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_manifest.json").exists())
        .collect();
    assert_eq!(ids.len(), 1);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ids[0].path().join("_manifest.json")).unwrap())
            .unwrap();
    let listed: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    for file in &listed {
        assert!(
            ids[0].path().join(file).exists(),
            "{file} is listed, not there"
        );
    }
    let id = ids[0].file_name().to_string_lossy().to_string();
    let strays: Vec<String> = everything_written(dir.path())
        .into_iter()
        .filter(|f| f.contains("-part-") && !listed.iter().any(|l| *f == format!("{id}/{l}")))
        .collect();
    assert!(!strays.is_empty(), "the dead task's file is gone already");
    // VACUUM removes what no manifest lists, once the grace is over.
    run(&session, "SET cairn.checkpoint_orphan_grace = '0'").await;
    let vacuumed = table(&session, "VACUUM CHECKPOINTS").await;
    assert!(
        vacuumed.contains(&format!("| {} ", strays.len())),
        "{vacuumed}"
    );
    for stray in &strays {
        assert!(!dir.path().join(stray).exists(), "{stray} stayed");
    }
    let again = table(&session, "SELECT count(*) AS n, sum(w) AS s FROM big").await;
    assert_eq!(again, answer);
}

/// A data file of a checkpoint the executors wrote, damaged on disk: the
/// executor that reads it stops the query with an error naming the damage,
/// and under `cairn.checkpoint_on_corrupt = 'recompute'` the checkpoint is
/// rebuilt on the cluster from the lineage in its manifest.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_checkpoint_is_caught_on_the_cluster_and_recomputed_when_asked() {
    let cluster = shared();
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = data.path().join("src.parquet");
    // A file source: its plan is recorded in the manifest and can be rebuilt.
    run(
        &session_in(data.path(), None),
        &format!(
            "COPY (SELECT value AS x FROM range(0, 200000)) TO '{}' STORED AS PARQUET",
            source.display()
        ),
    )
    .await;
    let session = || session_in(dir.path(), Some(&cluster.url));
    run(
        &session(),
        &format!(
            "CREATE EXTERNAL TABLE src STORED AS PARQUET LOCATION '{}';
             CHECKPOINT TABLE t AS SELECT x, x * 7 AS y FROM src",
            source.display()
        ),
    )
    .await;
    let written = everything_written(dir.path());
    let file = dir
        .path()
        .join(written.iter().find(|f| f.ends_with(".parquet")).unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();

    let sum = "SELECT sum(x) AS s, count(*) AS n FROM t";
    let damaged = session();
    let err = error_of(&damaged, sum).await;
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    // Read as in one process, not as Ballista's Debug text of the task error.
    assert!(
        err.starts_with("checkpoint ") && err.contains(" is corrupt: file '"),
        "{err}"
    );
    assert!(
        err.contains("checksum mismatch") && err.contains(&name),
        "{err}"
    );

    run(&damaged, "SET cairn.checkpoint_on_corrupt = 'recompute'").await;
    let out = damaged.sql(sum).await.unwrap();
    let answer = pretty_format_batches(&out[0].batches).unwrap().to_string();
    assert!(answer.contains("| 19999900000 | 200000 |"), "{answer}");
    // Fixed for every session, on the cluster or not.
    assert_eq!(table(&session(), sum).await, answer);
    assert_eq!(table(&session_in(dir.path(), None), sum).await, answer);
}

/// A checkpoint dir whose first write of a task's file fails, as a flaky
/// connection to S3 would.
#[derive(Debug)]
struct FailsFirstWrite {
    inner: Arc<dyn ObjectStore>,
    failed: AtomicUsize,
}

impl FailsFirstWrite {
    fn check(&self, location: &ObjectPath) -> object_store::Result<()> {
        let task_file = location.as_ref().contains("-part-");
        if task_file && self.failed.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "connection reset by peer".into(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Display for FailsFirstWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailsFirstWrite({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FailsFirstWrite {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A storage error while a task writes its file costs that task a run, as
/// an I/O error does (the only kind Ballista retries), not the checkpoint:
/// an executor of this process writes through a store whose first write of
/// a task's file fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_transient_storage_error_in_a_write_task_is_retried() {
    let cluster = Cluster::start(0);
    let scheduler_port = cluster.url.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let real = CheckpointStore::open(&dir.path().display().to_string()).unwrap();
    let flaky = Arc::new(FailsFirstWrite {
        inner: Arc::clone(real.object_store()),
        failed: AtomicUsize::new(0),
    });
    let stores = Arc::new(SessionStores::new(
        CheckpointStore::on_object_store(real.url(), Arc::clone(&flaky) as _),
        S3Options::default(),
    ));
    let (flight, grpc) = (free_port().to_string(), free_port().to_string());
    let args = ExecutorArgs::parse_from([
        "cairn-executor",
        "--bind-host",
        "127.0.0.1",
        "--external-host",
        "127.0.0.1",
        "--scheduler-host",
        "127.0.0.1",
        "--scheduler-port",
        &scheduler_port,
        "--bind-port",
        &flight,
        "--bind-grpc-port",
        &grpc,
        "--concurrent-tasks",
        "2",
    ]);
    let mut config = args.config().unwrap();
    config.override_config_producer = Some(Arc::new(move || {
        server_config().with_extension(Arc::clone(&stores))
    }));
    let executor = tokio::spawn(start_executor_process(Arc::new(config)));
    wait_for_port(flight.parse().unwrap());

    let session = session_in(dir.path(), Some(&cluster.url));
    run(
        &session,
        "CHECKPOINT TABLE t AS SELECT value AS v FROM range(0, 100000)",
    )
    .await;
    // The job answered although its first write failed: that task ran again.
    assert!(
        flaky.failed.load(Ordering::SeqCst) >= 2,
        "the executor did not write through the failing store"
    );
    let answer = table(&session, "SELECT count(*) AS n, sum(v) AS s FROM t").await;
    assert!(answer.contains("| 100000 | 4999950000 |"), "{answer}");
    // Read in one process too: the manifest lists files that are all there.
    assert_eq!(
        table(
            &session_in(dir.path(), None),
            "SELECT count(*) AS n, sum(v) AS s FROM t"
        )
        .await,
        answer
    );
    executor.abort();
}
