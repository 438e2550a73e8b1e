//! Helpers shared by the integration tests.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn::arrow::datatypes::DataType;
use cairn::arrow::util::pretty::pretty_format_batches;
use cairn::datafusion::dataframe::DataFrame;
use cairn::datafusion::error::Result as DfResult;
use cairn::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use cairn::prelude::*;

/// A context on a private in-memory checkpoint dir, two partitions.
pub fn memory_ctx() -> CairnContext {
    let name = uuid_like();
    CairnContext::builder()
        .checkpoint_dir(format!("memory://{name}"))
        .target_partitions(2)
        .build()
        .expect("a memory dir always opens")
}

/// A context on a checkpoint dir: a local path, or an `s3://` URL on the
/// test server (see [`TestS3`]).
/// A size a long run may raise (`tests/long/run.sh`): `$var` if it parses,
/// else `default`.
pub fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn dir_ctx(dir: &std::path::Path) -> CairnContext {
    let dir = dir.display().to_string();
    let mut builder = CairnContext::builder().target_partitions(2);
    if dir.starts_with("s3://") {
        builder = builder.s3_options(TestS3::from_env().expect("an S3 test server").options());
    }
    builder
        .checkpoint_dir(dir)
        .build()
        .expect("a test dir opens")
}

/// The S3-compatible server the tests run against: `.ci/run` starts one
/// (tests/s3/moto_server.py) and exports its settings as `CAIRN_TEST_S3_*`.
#[derive(Debug, Clone)]
pub struct TestS3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl TestS3 {
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(format!("CAIRN_TEST_S3_{name}")).ok();
        Some(Self {
            endpoint: var("ENDPOINT")?,
            bucket: var("BUCKET")?,
            access_key_id: var("ACCESS_KEY_ID")?,
            secret_access_key: var("SECRET_ACCESS_KEY")?,
        })
    }

    /// The server, or `None` (and a note) where none runs; CI sets
    /// `CAIRN_REQUIRE_S3=1` so that S3 tests cannot be skipped there.
    pub fn or_skip(test: &str) -> Option<Self> {
        let found = Self::from_env();
        if found.is_none() {
            assert!(
                std::env::var_os("CAIRN_REQUIRE_S3").is_none(),
                "{test}: CAIRN_REQUIRE_S3 is set but CAIRN_TEST_S3_* are not"
            );
            eprintln!("{test}: skipped, no S3 test server (see tests/s3/moto_server.py)");
        }
        found
    }

    pub fn options(&self) -> cairn::S3Options {
        cairn::S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.access_key_id.clone()),
            secret_access_key: Some(cairn::Secret::new(&self.secret_access_key)),
            ..Default::default()
        }
    }

    /// A fresh, empty checkpoint dir on the server.
    pub fn fresh_dir(&self) -> String {
        format!("s3://{}/{}/", self.bucket, uuid_like())
    }

    /// The bucket, to look at what was written.
    pub fn bucket_store(&self) -> Arc<dyn cairn::object_store::ObjectStore> {
        cairn::store::s3::bucket_store(&self.options(), &self.bucket).unwrap()
    }
}

/// The checkpoint directories of a local or `s3://` dir and, for each, its
/// file names, sorted.
pub async fn listing(dir: &std::path::Path) -> Vec<(String, Vec<String>)> {
    use futures::TryStreamExt;
    let shown = dir.display().to_string();
    let mut dirs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    if let Some(rest) = shown.strip_prefix("s3://") {
        let s3 = TestS3::from_env().expect("an S3 test server");
        let prefix = rest
            .split_once('/')
            .map_or("", |(_, p)| p)
            .trim_matches('/');
        let prefix = cairn::object_store::path::Path::from(prefix);
        let objects: Vec<_> = s3
            .bucket_store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        for object in objects {
            let parts: Vec<_> = object.location.prefix_match(&prefix).unwrap().collect();
            if let [id, file] = parts.as_slice() {
                dirs.entry(id.as_ref().to_string())
                    .or_default()
                    .push(file.as_ref().to_string());
            }
        }
    } else {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_dir() {
                continue;
            }
            let files = std::fs::read_dir(entry.path())
                .unwrap()
                .map(|f| f.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            dirs.insert(entry.file_name().to_string_lossy().to_string(), files);
        }
    }
    dirs.into_iter()
        .map(|(id, mut files)| {
            files.sort();
            (id, files)
        })
        .collect()
}

pub fn uuid_like() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `body` on a runtime whose thread has a 64 MiB stack: unoptimized
/// builds of DataFusion need more than a test thread's 2 MiB for deeply
/// nested queries.
pub fn on_big_stack<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The rows of `df` as sorted text lines: equal lines mean equal multisets.
pub async fn sorted_rows(df: DataFrame) -> Vec<String> {
    let batches = df.collect().await.expect("query runs");
    let text = pretty_format_batches(&batches)
        .expect("formats")
        .to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The rows of a query's result, in the order the query returns them.
pub async fn rows(df: DataFrame) -> String {
    let batches = df.collect().await.expect("query runs");
    pretty_format_batches(&batches)
        .expect("formats")
        .to_string()
}

/// The cells of a result, row by row, trimmed, header excluded.
pub async fn cells(df: DataFrame) -> Vec<Vec<String>> {
    let text = rows(df).await;
    text.lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The single value of a one-row, one-column result.
pub async fn scalar(df: DataFrame) -> String {
    let cells = cells(df).await;
    assert_eq!(cells.len(), 1, "expected one row: {cells:?}");
    assert_eq!(cells[0].len(), 1, "expected one column: {cells:?}");
    cells[0][0].clone()
}

/// The plan text of `EXPLAIN` for a DataFrame: logical and physical.
pub async fn explain(df: DataFrame) -> String {
    rows(df.explain(false, false).expect("explains")).await
}

/// `counted(x)` returns `x` and counts the rows it saw: how many times an
/// input was computed, observed from inside the plan.
#[derive(Debug)]
pub struct Counted {
    signature: Signature,
    rows: Arc<AtomicUsize>,
}

impl Counted {
    pub fn register(ctx: &CairnContext) -> Arc<AtomicUsize> {
        let rows = Arc::new(AtomicUsize::new(0));
        let udf = Counted {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
            rows: Arc::clone(&rows),
        };
        ctx.register_udf(ScalarUDF::from(udf));
        rows
    }
}

impl PartialEq for Counted {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Counted {}

impl Hash for Counted {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "counted".hash(state);
    }
}

impl ScalarUDFImpl for Counted {
    fn name(&self) -> &str {
        "counted"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.rows.fetch_add(args.number_rows, Ordering::SeqCst);
        Ok(args.args[0].clone())
    }
}

/// One step of label propagation over `edges(src, dst)` and `labels(v, l)`:
/// every node takes the smallest label of itself and its neighbours.
pub const LABEL_STEP: &str = "WITH nb AS (SELECT src, MIN(nl) AS m FROM edges \
       JOIN (SELECT v AS nv, l AS nl FROM labels) ON dst = nv GROUP BY src) \
     SELECT v, LEAST(l, COALESCE(m, l)) AS l FROM labels LEFT JOIN nb ON v = src";
