//! Input data, generated once under the data dir and reused by every run
//! and every engine: TPC-H tables (`tpchgen`) and the iterative suite's graph.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use indicatif::ProgressBar;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::progress;

/// The eight TPC-H tables, smallest first.
pub const TPCH_TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// The default data dir: `$CAIRN_BENCH_DATA`, else `~/.cache/cairn-bench`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_BENCH_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    cache.join("cairn-bench")
}

/// TPC-H tables at one scale factor: `<dir>/<table>/part-N.parquet`.
#[derive(Debug, Clone)]
pub struct TpchData {
    pub dir: PathBuf,
    pub sf: f64,
}

impl TpchData {
    /// The directory holding `table`'s Parquet files.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.dir.join(table)
    }

    /// Bytes of `table`'s Parquet files.
    pub fn table_bytes(&self, table: &str) -> Result<u64> {
        dir_bytes(&self.table_dir(table))
    }
}

/// Generates the TPC-H tables at `sf` under `data_dir` unless they are there.
pub fn tpch(data_dir: &Path, sf: f64) -> Result<TpchData> {
    if !(sf > 0.0 && sf <= 1000.0) {
        anyhow::bail!("--sf {sf} is out of range: give a scale factor above 0, e.g. 0.01, 1 or 10");
    }
    let data = TpchData {
        dir: data_dir.join(format!("tpch-sf{sf}")),
        sf,
    };
    let missing: Vec<&str> = TPCH_TABLES
        .into_iter()
        .filter(|t| !data.table_dir(t).is_dir())
        .collect();
    if missing.is_empty() {
        return Ok(data);
    }
    fs::create_dir_all(&data.dir)
        .with_context(|| format!("cannot create the data dir {}", data.dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Jobs are (table, part); the big tables are split so that both the
    // generation and later scans use every core.
    let mut jobs = Vec::new();
    let mut rows = 0u64;
    for table in &missing {
        let parts = if table_rows(table, sf) > 200_000 {
            threads
        } else {
            1
        };
        for part in 1..=parts {
            jobs.push((*table, part, parts));
        }
        rows += table_rows(table, sf);
    }
    let bar = progress::bar(
        rows,
        &format!("generating TPC-H SF {sf} ({})", missing.join(", ")),
    );
    let jobs = Mutex::new(jobs.into_iter());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let Some((table, part, parts)) = jobs.lock().expect("jobs").next() else {
                            return Ok(());
                        };
                        let dir = data.dir.join(tmp_name(table));
                        fs::create_dir_all(&dir)?;
                        let path = dir.join(format!("part-{part}.parquet"));
                        write_tpch_part(table, sf, part, parts, &path, &bar)
                            .with_context(|| format!("generating {}", path.display()))?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("generator thread panicked")?;
        }
        Ok(())
    })?;
    for table in missing {
        let done = fs::rename(data.dir.join(tmp_name(table)), data.table_dir(table));
        // Another process may have finished the same table first.
        if done.is_err() && data.table_dir(table).is_dir() {
            fs::remove_dir_all(data.dir.join(tmp_name(table)))?;
        } else {
            done?;
        }
    }
    bar.finish_and_clear();
    Ok(data)
}

/// Where this process writes `table` before renaming it into place.
fn tmp_name(table: &str) -> String {
    format!("{table}.tmp-{}", std::process::id())
}

/// Rows of `table` at `sf`, as the TPC-H spec sizes them (lineitem is about).
fn table_rows(table: &str, sf: f64) -> u64 {
    let per_sf = match table {
        "region" => return 5,
        "nation" => return 25,
        "supplier" => 10_000.0,
        "customer" => 150_000.0,
        "part" => 200_000.0,
        "partsupp" => 800_000.0,
        "orders" => 1_500_000.0,
        _ => 6_001_215.0,
    };
    (per_sf * sf).ceil() as u64
}

fn write_tpch_part(
    table: &str,
    sf: f64,
    part: usize,
    parts: usize,
    path: &Path,
    bar: &ProgressBar,
) -> Result<()> {
    let (p, n) = (part as i32, parts as i32);
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>> = match table {
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(sf, p, n))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(sf, p, n))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(sf, p, n))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(sf, p, n))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(sf, p, n))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, p, n))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(sf, p, n))),
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(sf, p, n))),
        other => anyhow::bail!("no TPC-H table is called {other}"),
    };
    let mut batches = batches;
    let Some(first) = batches.next().transpose()? else {
        return Ok(());
    };
    let schema = first.schema();
    let mut writer = parquet_writer(path, schema, Compression::SNAPPY)?;
    for batch in std::iter::once(Ok(first)).chain(batches) {
        let batch = batch?;
        bar.inc(batch.num_rows() as u64);
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(())
}

fn parquet_writer(
    path: &Path,
    schema: std::sync::Arc<Schema>,
    compression: Compression,
) -> Result<ArrowWriter<File>> {
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(ArrowWriter::try_new(file, schema, Some(props))?)
}

/// The iterative suite's graph: `edges.parquet` with `src`, `dst` (Int64),
/// every edge stored in both directions.
#[derive(Debug, Clone)]
pub struct Graph {
    pub path: PathBuf,
    pub nodes: u64,
    pub edges: u64,
}

/// Generates the graph (`nodes` nodes, `edges` random edges from `seed`)
/// under `data_dir` unless it is there.
pub fn graph(data_dir: &Path, nodes: u64, edges: u64, seed: u64) -> Result<Graph> {
    if nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let dir = data_dir.join(format!("graph-n{nodes}-e{edges}-s{seed}"));
    let graph = Graph {
        path: dir.join("edges.parquet"),
        nodes,
        edges,
    };
    if graph.path.is_file() {
        return Ok(graph);
    }
    fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    let mut rng = SplitMix64(seed);
    let (src, dst): (Vec<i64>, Vec<i64>) = (0..edges)
        .map(|_| (rng.below(nodes) as i64, rng.below(nodes) as i64))
        .unzip();
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("src", DataType::Int64, false),
        Field::new("dst", DataType::Int64, false),
    ]));
    let both = |a: &[i64], b: &[i64]| Int64Array::from([a, b].concat());
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(both(&src, &dst)),
            std::sync::Arc::new(both(&dst, &src)),
        ],
    )?;
    let tmp = dir.join(format!("edges.parquet.{}", tmp_name("tmp")));
    let mut writer = parquet_writer(&tmp, schema, Compression::SNAPPY)?;
    writer.write(&batch)?;
    writer.close()?;
    fs::rename(&tmp, &graph.path)?;
    Ok(graph)
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seeded and the same on
/// every platform, so every run and engine reads the same graph.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2^-40 here).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Total size of the files under `dir` (recursively).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
