//! A checkpoint returns exactly the rows (and types) of its input, for
//! every kind of checkpoint and the shapes of data people checkpoint.

use std::sync::Arc;

use cairn::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int8Array, Int32Array, Int64Array, LargeStringArray, ListArray, RecordBatch, StringArray,
    StringViewArray, StructArray, TimestampMicrosecondArray, TimestampNanosecondArray, UInt16Array,
};
use cairn::arrow::datatypes::{DataType, Field, Int32Type};
use cairn::datafusion::datasource::MemTable;
use cairn::datafusion::functions_aggregate::expr_fn::{count, sum};
use cairn::prelude::*;

use crate::common::{memory_ctx, sorted_rows};

/// Every type Parquet carries, with NULLs in every column.
fn types_batch() -> RecordBatch {
    let n = 6;
    let nth_null = |i: usize| i % 3 != 2;
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(
        (0..n).map(|i| nth_null(i).then(|| vec![Some(i as i32), None, Some(7)])),
    );
    let strukt = StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int32, true)),
            Arc::new(Int32Array::from_iter(
                (0..n).map(|i| nth_null(i).then_some(i as i32)),
            )) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, true)),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| Some(format!("s{i}"))),
            )) as ArrayRef,
        ),
    ]);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
        (
            "i8",
            Arc::new(Int8Array::from_iter(
                (0..n).map(|i| nth_null(i).then_some(-(i as i8))),
            )),
        ),
        (
            "u16",
            Arc::new(UInt16Array::from_iter(
                (0..n).map(|i| nth_null(i).then_some(i as u16 * 1000)),
            )),
        ),
        (
            "f32",
            Arc::new(Float32Array::from_iter(
                (0..n).map(|i| nth_null(i).then_some(i as f32 / 3.0)),
            )),
        ),
        (
            "f64",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| nth_null(i).then_some(i as f64 * 1e300)),
            )),
        ),
        (
            "dec",
            Arc::new(
                Decimal128Array::from_iter(
                    (0..n).map(|i| nth_null(i).then_some(i as i128 * 123_456_789)),
                )
                .with_precision_and_scale(20, 4)
                .unwrap(),
            ),
        ),
        (
            "day",
            Arc::new(Date32Array::from_iter(
                (0..n).map(|i| nth_null(i).then_some(19_000 + i as i32)),
            )),
        ),
        (
            "ts_tz",
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    (0..n).map(|i| nth_null(i).then_some(1_700_000_000_000_000 + i as i64)),
                )
                .with_timezone("+02:00"),
            ),
        ),
        (
            "ts_utc_ns",
            Arc::new(
                TimestampNanosecondArray::from_iter(
                    (0..n).map(|i| nth_null(i).then_some(i as i64 * 1_000_000_007)),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            "s",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| nth_null(i).then(|| format!("ß{i}☃"))),
            )),
        ),
        (
            "sv",
            Arc::new(StringViewArray::from_iter((0..n).map(|i| {
                nth_null(i).then(|| "a long string view value ".repeat(i))
            }))),
        ),
        (
            "ls",
            Arc::new(LargeStringArray::from_iter(
                (0..n).map(|i| nth_null(i).then(|| format!("large {i}"))),
            )),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from_iter(
                (0..n).map(|i| nth_null(i).then(|| vec![0u8, i as u8, 255])),
            )),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| nth_null(i).then_some(i % 2 == 0)),
            )),
        ),
        ("list", Arc::new(list)),
        ("strukt", Arc::new(strukt)),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn numbers_batch(n: i64, modulo: i64) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
        ),
        (
            "k",
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (i % 7 != 0).then_some(i % modulo)),
            )),
        ),
        (
            "v",
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| (i * 37 % 101) as f64 / 4.0),
            )),
        ),
        (
            "s",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 5 != 0).then(|| format!("name{}", i % 13))),
            )),
        ),
    ])
    .unwrap()
}

async fn fixture() -> CairnContext {
    let ctx = memory_ctx();
    let types = types_batch();
    let t = MemTable::try_new(
        types.schema(),
        vec![vec![types.slice(0, 3)], vec![types.slice(3, 3)]],
    )
    .unwrap();
    ctx.register_table("types", Arc::new(t)).unwrap();
    let a = numbers_batch(500, 11);
    let b = numbers_batch(300, 17);
    ctx.register_batch("a", a).unwrap();
    ctx.register_batch("b", b).unwrap();
    ctx
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Read from the batches this process wrote (write-through).
    Eager,
    /// Read from the files.
    EagerFromFiles,
    Lazy,
    Local,
    LocalLazy,
}

async fn checkpointed(ctx: &CairnContext, sql: &str, kind: Kind) -> DataFrame {
    if let Kind::EagerFromFiles = kind {
        ctx.set_option("checkpoint_write_through", "off")
            .await
            .unwrap();
        let df = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
        ctx.set_option("checkpoint_write_through", "1G")
            .await
            .unwrap();
        return df;
    }
    let df = ctx.sql(sql).await.unwrap();
    match kind {
        Kind::EagerFromFiles => unreachable!("checkpointed above"),
        Kind::Eager => df.checkpoint().await.unwrap(),
        Kind::Lazy => df.checkpoint_lazy().unwrap(),
        Kind::Local => df.local_checkpoint().await.unwrap(),
        Kind::LocalLazy => df.local_checkpoint_lazy().unwrap(),
    }
}

/// Every kind of checkpoint of `sql` returns its rows, with its types,
/// on first and later reads.
async fn assert_same_rows(ctx: &CairnContext, sql: &str) {
    let original = ctx.sql(sql).await.unwrap();
    let types: Vec<DataType> = original
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let expected = sorted_rows(original).await;
    for kind in [
        Kind::Eager,
        Kind::EagerFromFiles,
        Kind::Lazy,
        Kind::Local,
        Kind::LocalLazy,
    ] {
        let df = checkpointed(ctx, sql, kind).await;
        let got: Vec<DataType> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(got, types, "{kind:?} changed the types of {sql}");
        assert_eq!(
            sorted_rows(df.clone()).await,
            expected,
            "{kind:?} of {sql}, first read"
        );
        assert_eq!(
            sorted_rows(df).await,
            expected,
            "{kind:?} of {sql}, second read"
        );
    }
}

#[tokio::test]
async fn every_parquet_type_with_nulls_round_trips() {
    let ctx = fixture().await;
    assert_same_rows(&ctx, "SELECT * FROM types").await;
}

#[tokio::test]
async fn dictionary_columns_round_trip() {
    // Their schema once made the manifest writer panic.
    let ctx = fixture().await;
    assert_same_rows(
        &ctx,
        "SELECT id, arrow_cast(s, 'Dictionary(Int32, Utf8)') AS ds, \
         arrow_cast(k, 'Dictionary(UInt8, Int64)') AS dk FROM a",
    )
    .await;
}

#[tokio::test]
async fn a_type_parquet_cannot_store_is_refused_by_name() {
    let ctx = fixture().await;
    let df = ctx
        .sql("SELECT id, INTERVAL '1 day' AS span FROM a")
        .await
        .unwrap();
    let err = df.clone().checkpoint().await.unwrap_err().to_string();
    assert!(
        err.contains("column 'span' has type Interval(MonthDayNano), which Parquet cannot store")
            && err.contains("LOCAL CHECKPOINT"),
        "{err}"
    );
    // A local checkpoint keeps it.
    let local = df.local_checkpoint().await.unwrap();
    assert_eq!(local.count().await.unwrap(), 500);
}

#[tokio::test]
async fn joins_round_trip() {
    let ctx = fixture().await;
    assert_same_rows(
        &ctx,
        "SELECT a.id, a.s, b.v AS bv FROM a JOIN b ON a.id = b.id",
    )
    .await;
    assert_same_rows(
        &ctx,
        "SELECT a.id, b.k AS bk FROM a LEFT JOIN b ON a.k = b.id WHERE a.id < 50",
    )
    .await;
}

#[tokio::test]
async fn aggregates_round_trip() {
    let ctx = fixture().await;
    assert_same_rows(
        &ctx,
        "SELECT k, count(*) AS n, sum(v) AS total, avg(v) AS mean, min(s) AS first \
         FROM a GROUP BY k",
    )
    .await;
}

#[tokio::test]
async fn window_functions_round_trip() {
    let ctx = fixture().await;
    assert_same_rows(
        &ctx,
        "SELECT id, k, row_number() OVER (PARTITION BY k ORDER BY id) AS rn, \
         sum(v) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving \
         FROM a",
    )
    .await;
}

#[tokio::test]
async fn empty_results_round_trip_with_their_schema() {
    let ctx = fixture().await;
    assert_same_rows(&ctx, "SELECT * FROM types WHERE id < 0").await;
    let df = ctx
        .sql("SELECT id, s FROM a WHERE false")
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    assert_eq!(df.clone().count().await.unwrap(), 0);
    assert_eq!(df.schema().field(1).name(), "s");
}

#[tokio::test]
async fn qualified_names_still_resolve_after_a_checkpoint() {
    let ctx = fixture().await;
    let df = ctx.table("a").await.unwrap().checkpoint().await.unwrap();
    let picked = df
        .select(vec![col("a.id")])
        .unwrap()
        .filter(col("a.id").lt(lit(3)))
        .unwrap();
    assert_eq!(picked.count().await.unwrap(), 3);
}

#[tokio::test]
async fn an_empty_result_commits_on_a_local_disk_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "SELECT value AS x FROM range(0, 10) WHERE value > 100";
    let ctx = crate::common::dir_ctx(dir.path());
    let df = ctx.sql(sql).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(df.count().await.unwrap(), 0);
    let again = crate::common::dir_ctx(dir.path());
    let reused = again.sql(sql).await.unwrap().checkpoint().await.unwrap();
    assert_eq!(reused.schema().field(0).name(), "x");
    assert_eq!(reused.count().await.unwrap(), 0);
}

/// A reliable checkpoint this process wrote is read from the batches it
/// kept, counted in the memory pool; when they do not fit, from its files.
#[tokio::test]
async fn a_checkpoint_this_process_wrote_is_read_from_memory_while_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    let builder = || {
        CairnContext::builder()
            .checkpoint_dir(dir.path().display().to_string())
            .target_partitions(2)
    };
    let ctx = builder().build().unwrap();
    let small = ctx
        .sql("SELECT value AS x, value % 7 AS k FROM range(0, 1000)")
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    let plan = crate::common::explain(small.clone()).await;
    assert!(plan.contains("HeldScanExec"), "{plan}");
    let sum = crate::common::scalar(small.aggregate(vec![], vec![sum(col("x"))]).unwrap()).await;
    assert_eq!(sum, "499500");

    // 2M rows of 16 bytes are more than the 1 MiB this session may keep.
    ctx.set_option("checkpoint_write_through", "1M")
        .await
        .unwrap();
    let big = ctx
        .sql("SELECT value AS x, value * 2 AS y FROM range(0, 2000000)")
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    let plan = crate::common::explain(big.clone()).await;
    assert!(!plan.contains("HeldScanExec"), "{plan}");
    assert!(plan.contains("DataSourceExec"), "{plan}");
    let count = crate::common::scalar(big.aggregate(vec![], vec![count(lit(1))]).unwrap()).await;
    assert_eq!(count, "2000000");

    // Under a memory limit nothing is kept: kept batches would take memory
    // that operators cannot get back.
    let limited = builder().memory_limit(256 << 20).build().unwrap();
    let plan = crate::common::explain(
        limited
            .sql("SELECT value AS x FROM range(0, 10)")
            .await
            .unwrap()
            .checkpoint()
            .await
            .unwrap(),
    )
    .await;
    assert!(!plan.contains("HeldScanExec"), "{plan}");
}
