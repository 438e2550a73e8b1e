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

/// A context on a local checkpoint dir.
pub fn dir_ctx(dir: &std::path::Path) -> CairnContext {
    CairnContext::builder()
        .checkpoint_dir(dir.display().to_string())
        .target_partitions(2)
        .build()
        .expect("a temp dir opens")
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
