//! Checkpoint micro-benchmarks (issue: engine core).
//!
//! - `write/10M x 8`: checkpoint write of a 10-million-row, 8-column table
//!   next to DataFusion's own `DataFrame::write_parquet` of the same data,
//!   with DataFusion's default encoding and with the checkpoint's.
//! - `read/10-step lineage`: reading a checkpoint back next to recomputing
//!   the 10-step lineage it replaced, and next to a plain DataFusion Parquet
//!   scan of the same files: the cost of verifying every block's checksum.
//!
//! `cargo bench --bench checkpoint` (set `CAIRN_BENCH_ROWS` for other sizes).

use std::sync::Arc;

use cairn::WriteOptions;
use cairn::datafusion::config::TableParquetOptions;
use cairn::datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use cairn::datafusion::datasource::MemTable;
use cairn::datafusion::functions_aggregate::expr_fn::sum;
use cairn::datafusion::parquet::basic::{Compression, ZstdLevel};
use cairn::prelude::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn rows() -> usize {
    std::env::var("CAIRN_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000_000)
}

const EIGHT_COLUMNS: &str = "SELECT value AS c0, value * 2 AS c1, value % 1000 AS c2, \
    CAST(value AS DOUBLE) / 3 AS c3, value % 7 AS c4, concat('name-', value % 10000) AS c5, \
    value + 1 AS c6, CAST(value % 100000 AS DOUBLE) * 1.5 AS c7 FROM range(0, {rows})";

/// The source table, computed once and held in memory, so that the write
/// benchmarks measure writing.
fn source(rt: &Runtime) -> Arc<MemTable> {
    rt.block_on(async {
        let ctx = CairnContext::builder()
            .checkpoint_dir("memory://bench-src")
            .build()
            .unwrap();
        let sql = EIGHT_COLUMNS.replace("{rows}", &rows().to_string());
        let df = ctx.sql(&sql).await.unwrap();
        let schema = Arc::new(df.schema().as_arrow().clone());
        let partitions = df.collect_partitioned().await.unwrap();
        Arc::new(MemTable::try_new(schema, partitions).unwrap())
    })
}

fn context(dir: &std::path::Path, table: &Arc<MemTable>, write: WriteOptions) -> CairnContext {
    let ctx = CairnContext::builder()
        .checkpoint_dir(dir.display().to_string())
        .write_options(write)
        .build()
        .unwrap();
    ctx.register_table("src", Arc::clone(table) as _).unwrap();
    ctx
}

fn write(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let table = source(&rt);
    let mut group = c.benchmark_group(format!("write/{}M x 8", rows() / 1_000_000));
    group
        .sample_size(10)
        .throughput(Throughput::Elements(rows() as u64));

    for compression in [
        Compression::LZ4_RAW,
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::ZSTD(ZstdLevel::try_new(1).unwrap()),
    ] {
        let name = format!("checkpoint ({compression})");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let ctx = context(
                        dir.path(),
                        &table,
                        WriteOptions {
                            compression,
                            ..WriteOptions::default()
                        },
                    );
                    (dir, ctx)
                },
                |(dir, ctx)| async move {
                    ctx.table("src").await.unwrap().checkpoint().await.unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    for (name, compression) in [
        ("write_parquet (zstd, DataFusion's default)", None),
        ("write_parquet (lz4_raw)", Some("lz4_raw")),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let ctx = context(dir.path(), &table, WriteOptions::default());
                    (dir, ctx)
                },
                |(dir, ctx)| async move {
                    let mut options = TableParquetOptions::default();
                    if let Some(c) = compression {
                        options.global.compression = Some(c.to_string());
                    }
                    let out = dir.path().join("out");
                    std::fs::create_dir(&out).unwrap();
                    ctx.table("src")
                        .await
                        .unwrap()
                        .write_parquet(
                            out.to_str().unwrap(),
                            DataFrameWriteOptions::new(),
                            Some(options),
                        )
                        .await
                        .unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Ten steps, each reading the previous one.
fn lineage(df: DataFrame) -> DataFrame {
    (0..10).fold(df, |df, i| {
        df.select(vec![
            (col("c0") + lit(i)).alias("c0"),
            (col("c1") * lit(2) - col("c0")).alias("c1"),
            (col("c3") + col("c7") / lit(2.0)).alias("c3"),
            col("c7"),
        ])
        .unwrap()
        .filter((col("c1") % lit(97)).not_eq(lit(0)))
        .unwrap()
    })
}

fn read(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let table = source(&rt);
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &table, WriteOptions::default());
    let (lazy, checkpointed) = rt.block_on(async {
        let lazy = lineage(ctx.table("src").await.unwrap());
        let checkpointed = lazy.clone().checkpoint().await.unwrap();
        (lazy, checkpointed)
    });
    let totals = |df: &DataFrame| {
        df.clone()
            .aggregate(vec![], vec![sum(col("c0")), sum(col("c3"))])
            .unwrap()
    };
    let mut group = c.benchmark_group("read/10-step lineage");
    group.sample_size(10);
    group.bench_function("recompute", |b| {
        b.to_async(&rt)
            .iter(|| async { totals(&lazy).collect().await.unwrap() })
    });
    group.bench_function("read checkpoint", |b| {
        b.to_async(&rt)
            .iter(|| async { totals(&checkpointed).collect().await.unwrap() })
    });
    // The same files through DataFusion's own Parquet scan: no checksums.
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("_manifest.json").exists())
        .unwrap();
    let plain = rt.block_on(async {
        ctx.read_parquet(
            format!("{}/", files.display()),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap()
    });
    group.bench_function("read same files unverified", |b| {
        b.to_async(&rt)
            .iter(|| async { totals(&plain).collect().await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, write, read);
criterion_main!(benches);
