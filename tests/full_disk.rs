//! Storage that fills up mid-write: the checkpoint fails with an error that
//! names it and the dir, commits nothing, leaves no files behind, and the
//! session goes on working.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cairn::datafusion::functions_aggregate::expr_fn::sum;
use cairn::object_store::memory::InMemory;
use cairn::object_store::path::Path;
use cairn::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use cairn::prelude::*;
use cairn::store::CheckpointStore;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::common::{cells, scalar};

/// An in-memory store that holds at most `capacity` bytes, like a small
/// disk: writes past it fail with "no space left on device"; deletes free
/// space again.
#[derive(Debug)]
struct SmallDisk {
    inner: InMemory,
    usage: Arc<Mutex<Usage>>,
}

#[derive(Debug, Default)]
struct Usage {
    capacity: u64,
    stored: HashMap<String, u64>,
    in_flight: u64,
}

impl Usage {
    fn reserve(&mut self, bytes: u64) -> object_store::Result<()> {
        let used = self.stored.values().sum::<u64>() + self.in_flight;
        if used + bytes > self.capacity {
            return Err(object_store::Error::Generic {
                store: "small disk",
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                )),
            });
        }
        self.in_flight += bytes;
        Ok(())
    }

    /// Moves `bytes` in flight to a stored object (or frees them).
    fn settle(&mut self, bytes: u64, stored_as: Option<&Path>) {
        self.in_flight -= bytes;
        if let Some(path) = stored_as {
            self.stored.insert(path.to_string(), bytes);
        }
    }
}

impl SmallDisk {
    fn new(capacity: u64) -> Self {
        Self {
            inner: InMemory::new(),
            usage: Arc::new(Mutex::new(Usage {
                capacity,
                ..Default::default()
            })),
        }
    }

    /// Bytes of the Parquet files stored.
    fn data_bytes(&self) -> u64 {
        let usage = self.usage.lock().unwrap();
        usage
            .stored
            .iter()
            .filter(|(path, _)| path.ends_with(".parquet"))
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// Every object in the store.
    async fn objects(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .inner
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        all.sort();
        all
    }
}

impl fmt::Display for SmallDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmallDisk")
    }
}

#[derive(Debug)]
struct SmallDiskUpload {
    inner: Box<dyn MultipartUpload>,
    usage: Arc<Mutex<Usage>>,
    path: Path,
    bytes: u64,
}

#[async_trait]
impl MultipartUpload for SmallDiskUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let n = data.content_length() as u64;
        match self.usage.lock().unwrap().reserve(n) {
            Ok(()) => {
                self.bytes += n;
                self.inner.put_part(data)
            }
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await;
        let stored = result.is_ok().then_some(&self.path);
        self.usage.lock().unwrap().settle(self.bytes, stored);
        self.bytes = 0;
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.usage.lock().unwrap().settle(self.bytes, None);
        self.bytes = 0;
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for SmallDisk {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let n = payload.content_length() as u64;
        self.usage.lock().unwrap().reserve(n)?;
        let result = self.inner.put_opts(location, payload, opts).await;
        let stored = result.is_ok().then_some(location);
        self.usage.lock().unwrap().settle(n, stored);
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SmallDiskUpload {
            inner,
            usage: Arc::clone(&self.usage),
            path: location.clone(),
            bytes: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let usage = Arc::clone(&self.usage);
        self.inner
            .delete_stream(locations)
            .inspect(move |deleted| {
                if let Ok(path) = deleted {
                    usage.lock().unwrap().stored.remove(path.as_ref());
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn ctx_on(disk: &Arc<SmallDisk>) -> CairnContext {
    let store = CheckpointStore::on_object_store("memory://small-disk", Arc::clone(disk) as _);
    CairnContext::builder()
        .checkpoint_store(store)
        .target_partitions(2)
        .build()
        .unwrap()
}

const BIG: &str = "SELECT value AS a, concat('row ', value) AS s FROM range(0, 2000000)";
const SMALL: &str = "SELECT value AS a FROM range(0, 1000)";

#[tokio::test]
async fn a_full_disk_fails_the_checkpoint_cleanly_and_the_session_goes_on() {
    let disk = Arc::new(SmallDisk::new(2 * 1024 * 1024));
    let ctx = ctx_on(&disk);

    let err = ctx
        .sql(BIG)
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no space left on device"), "{err}");
    assert!(
        err.contains("could not write checkpoint") && err.contains("memory://small-disk"),
        "{err}"
    );
    assert!(err.contains("nothing was committed"), "{err}");
    // Nothing committed, nothing left behind.
    assert_eq!(disk.objects().await, Vec::<String>::new());

    // The session is usable: queries run and a checkpoint that fits commits.
    assert_eq!(scalar(ctx.sql("SELECT 40 + 2").await.unwrap()).await, "42");
    let df = ctx.sql(SMALL).await.unwrap().checkpoint().await.unwrap();
    let total = cells(df.aggregate(vec![], vec![sum(col("a"))]).unwrap()).await;
    assert_eq!(total, vec![vec!["499500".to_string()]]);
    let objects = disk.objects().await;
    assert!(
        objects.iter().any(|o| o.ends_with("_manifest.json")),
        "{objects:?}"
    );
}

#[tokio::test]
async fn a_full_disk_in_sql_leaves_named_checkpoints_as_they_were() {
    let disk = Arc::new(SmallDisk::new(2 * 1024 * 1024));
    let session = cairn::Session::new(ctx_on(&disk)).unwrap();
    session
        .sql("CHECKPOINT TABLE kept AS SELECT value AS a FROM range(0, 100)")
        .await
        .unwrap();
    let before = disk.objects().await;
    let err = session
        .sql(&format!("CHECKPOINT OR REPLACE TABLE kept AS {BIG}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no space left on device"), "{err}");
    assert_eq!(
        disk.objects().await,
        before,
        "the failed replace changed the dir"
    );
    let out = session.sql("SELECT count(*) AS n FROM kept").await.unwrap();
    assert_eq!(out[0].num_rows(), 1);
    let n = cairn::arrow::util::pretty::pretty_format_batches(&out[0].batches)
        .unwrap()
        .to_string();
    assert!(n.contains("| 100 |"), "{n}");
}

/// A disk with room for the data files of a checkpoint of `SMALL`, not for
/// the manifest after them (the same checkpoint on a roomy disk tells the
/// size of its data files).
async fn full_at_the_manifest() -> Arc<SmallDisk> {
    let roomy = Arc::new(SmallDisk::new(64 * 1024 * 1024));
    ctx_on(&roomy)
        .sql(SMALL)
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    let data = roomy.data_bytes();
    assert!(data > 0);
    Arc::new(SmallDisk::new(data + 100))
}

/// Runs `statement` until it fails (a background commit failing meanwhile),
/// for at most five seconds: its error.
async fn first_failure<T, E: fmt::Display, F: Future<Output = Result<T, E>>>(
    mut statement: impl FnMut() -> F,
) -> String {
    for _ in 0..500 {
        match statement().await {
            Err(e) => return e.to_string(),
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    panic!("the failed commit failed no statement");
}

/// With `cairn.checkpoint_commit = 'async'` the statement returns once the
/// files are written; a commit that then fails (here the disk fills up
/// exactly at the manifest) fails a later statement of the session, once,
/// with the usual advice, and leaves nothing half-committed.
#[tokio::test]
async fn a_background_commit_that_fails_fails_the_next_statement_and_leaves_nothing() {
    let disk = full_at_the_manifest().await;
    let ctx = ctx_on(&disk);
    ctx.sql("SET cairn.checkpoint_commit = 'async'")
        .await
        .unwrap();
    let df = ctx.sql(SMALL).await.unwrap().checkpoint().await.unwrap();
    // This process reads what it wrote while the commit runs or fails.
    let total = cells(df.aggregate(vec![], vec![sum(col("a"))]).unwrap()).await;
    assert_eq!(total, vec![vec!["499500".to_string()]]);

    // A later statement fails with the commit's error, once.
    let err =
        first_failure(|| async { ctx.sql("SELECT 40 + 2").await.unwrap().collect().await }).await;
    assert!(err.contains("was not committed"), "{err}");
    assert!(err.contains("no space left on device"), "{err}");
    assert!(err.contains("memory://small-disk"), "{err}");
    assert_eq!(disk.objects().await, Vec::<String>::new(), "half-committed");
    assert_eq!(scalar(ctx.sql("SELECT 40 + 2").await.unwrap()).await, "42");
    ctx.wait_for_background().await.unwrap();
}

/// Cairn's own statements (`SET`, `DROP CHECKPOINT`, ...) plan no query of
/// their own, yet a failed background commit fails the next of them too,
/// once.
#[tokio::test]
async fn a_failed_background_commit_fails_the_next_cairn_statement() {
    let disk = full_at_the_manifest().await;
    let session = cairn::Session::new(ctx_on(&disk)).unwrap();
    session
        .sql(&format!(
            "SET cairn.checkpoint_commit = 'async'; CHECKPOINT TABLE t AS {SMALL}"
        ))
        .await
        .unwrap();
    let err = first_failure(|| session.sql("SET cairn.checkpoint_commit = 'async'")).await;
    assert!(err.contains("was not committed"), "{err}");
    assert!(err.contains("no space left on device"), "{err}");
    // Reported once: the next statement runs.
    session
        .sql("SET cairn.checkpoint_commit = 'sync'")
        .await
        .unwrap();
    assert_eq!(
        session
            .context()
            .options()
            .get("checkpoint_commit")
            .unwrap(),
        "sync"
    );
}
