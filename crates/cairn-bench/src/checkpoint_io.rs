//! The `checkpoint-io` suite: writing TPC-H lineitem as a checkpoint and
//! reading it back, per Parquet codec, next to DataFusion's own Parquet
//! writer, DuckDB's `COPY ... (FORMAT parquet)`, and a raw sequential write
//! of as many bytes with fsync (what the disk can do).

use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result};
use cairn_core::{CheckpointExt, WriteOptions};
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::parquet::basic::Compression;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use serde_json::json;

use crate::data::{self, dir_bytes};
use crate::peers::{self, Peer};
use crate::progress;
use crate::report::{Chart, Check, Measurement, Suite, median};

/// What to run.
#[derive(Debug, Clone)]
pub struct IoOptions {
    pub sf: f64,
    pub runs: usize,
    /// Codec names as Parquet writes them: `lz4_raw`, `snappy`, `zstd(1)`, ...
    pub codecs: Vec<String>,
    pub peers: Vec<String>,
}

/// The codecs measured unless `--codecs` says otherwise.
pub const DEFAULT_CODECS: [&str; 4] = ["lz4_raw", "snappy", "zstd(1)", "uncompressed"];

/// Parses a codec name, with a message that lists the good ones.
pub fn parse_codec(name: &str) -> Result<Compression> {
    Compression::from_str(&name.to_ascii_lowercase()).map_err(|e| {
        anyhow::anyhow!(
            "--codecs: '{name}' is not a Parquet codec ({e}); use e.g. {}",
            DEFAULT_CODECS.join(", ")
        )
    })
}

struct Written {
    seconds: f64,
    bytes: u64,
}

/// Writes `lineitem` as a Cairn checkpoint under `dir` and reads it back.
async fn cairn_write_read(
    lineitem: &str,
    codec: Compression,
    dir: &Path,
) -> Result<(Written, f64, u64)> {
    let ctx = crate::settings::builder()
        .checkpoint_dir(dir.display().to_string())
        .write_options(WriteOptions {
            compression: codec,
            ..WriteOptions::default()
        })
        .build()?;
    crate::settings::apply(&ctx).await?;
    let source = ctx
        .read_parquet(lineitem, ParquetReadOptions::default())
        .await?;
    let start = Instant::now();
    let checkpoint = source.checkpoint().await?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = dir_bytes(dir)?;
    // Read back every column of every row.
    let start = Instant::now();
    let mut stream = checkpoint.execute_stream().await?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows() as u64;
    }
    let read = start.elapsed().as_secs_f64();
    Ok((Written { seconds, bytes }, read, rows))
}

/// Writes `lineitem` with DataFusion's own Parquet writer (no checkpoint).
async fn datafusion_write(lineitem: &str, codec: &str, dir: &Path) -> Result<Written> {
    let ctx = SessionContext::new();
    let source = ctx
        .read_parquet(lineitem, ParquetReadOptions::default())
        .await?;
    let mut options = TableParquetOptions::default();
    options.global.compression = Some(codec.to_string());
    let target = format!("{}/", dir.display());
    let start = Instant::now();
    source
        .write_parquet(&target, DataFrameWriteOptions::new(), Some(options))
        .await?;
    Ok(Written {
        seconds: start.elapsed().as_secs_f64(),
        bytes: dir_bytes(dir)?,
    })
}

/// Writes `bytes` bytes sequentially to a new file in `dir`, then fsyncs.
fn raw_write(bytes: u64, dir: &Path) -> Result<f64> {
    let path = dir.join("raw.bin");
    // Incompressible, so that no layer below can shrink it.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let block: Vec<u8> = (0..8 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let start = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    let seconds = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(seconds)
}

fn duckdb_copy(peer: &mut Peer, lineitem: &Path, codec: &str, dir: &Path) -> Result<Written> {
    let reply = peer.call(&json!({
        "op": "copy_parquet",
        "source": lineitem,
        "target": dir.join("lineitem.parquet"),
        "compression": codec,
    }))?;
    Ok(Written {
        seconds: reply["seconds"].as_f64().unwrap_or(f64::NAN),
        bytes: reply["bytes"].as_u64().unwrap_or(0),
    })
}

/// Runs the suite.
pub async fn run(data_dir: &Path, options: &IoOptions) -> Result<Suite> {
    anyhow::ensure!(options.runs >= 1, "--runs must be at least 1");
    let codecs = options
        .codecs
        .iter()
        .map(|c| Ok((c.to_ascii_lowercase(), parse_codec(c)?)))
        .collect::<Result<Vec<_>>>()?;
    let data = data::tpch(data_dir, options.sf)?;
    let lineitem_dir = data.table_dir("lineitem");
    let lineitem = format!("{}/", lineitem_dir.display());
    // Only DuckDB has a COPY to compare with.
    let wanted: Vec<String> = options
        .peers
        .iter()
        .filter(|p| *p == "duckdb")
        .cloned()
        .collect();
    let (mut peers, notes) = peers::start_all(&wanted);
    let mut suite = Suite::new(
        "checkpoint-io",
        format!(
            "Checkpoint I/O: TPC-H lineitem SF {} ({} runs, median)",
            options.sf, options.runs
        ),
        Chart::Bars,
    );
    suite.notes = notes;
    for other in options.peers.iter().filter(|p| *p != "duckdb") {
        suite.notes.push(format!(
            "{other}: not in this suite (only DuckDB's COPY is compared)"
        ));
    }
    suite.param("sf", &options.sf);
    suite.param("source bytes", &data.table_bytes("lineitem")?);
    suite
        .notes
        .push("DuckDB's default Parquet codec is snappy.".into());
    suite.notes.push(
        "write: from the Parquet source to durable files (Cairn fsyncs its files and manifest; \
         DataFusion's writer and DuckDB's COPY do not). read: every column of every row of the \
         checkpoint, just written (warm page cache)."
            .into(),
    );
    let bar = progress::bar(
        (options.runs * codecs.len()) as u64,
        &format!("checkpoint I/O SF {}", options.sf),
    );
    // What every read-back must return: the rows of the source.
    let source_rows = SessionContext::new()
        .read_parquet(&lineitem, ParquetReadOptions::default())
        .await?
        .count()
        .await? as u64;
    for (name, codec) in &codecs {
        let mut cairn_writes = Vec::new();
        let mut reads = Vec::new();
        let mut df_writes = Vec::new();
        let mut duck_writes = Vec::new();
        let mut raw = Vec::new();
        for _ in 0..options.runs {
            let dir = tempfile::tempdir_in(data_dir)?;
            let (written, read, rows) = cairn_write_read(&lineitem, *codec, dir.path())
                .await
                .with_context(|| format!("Cairn failed to checkpoint lineitem with {name}"))?;
            drop(dir);
            let rows_ok = rows == source_rows;
            if !rows_ok || reads.is_empty() {
                suite.checks.push(Check {
                    item: format!("read {name}"),
                    engine: "cairn".into(),
                    against: "rows of the source".into(),
                    ok: rows_ok,
                    detail: if rows_ok {
                        String::new()
                    } else {
                        format!("read {rows} rows")
                    },
                });
            }
            let dir = tempfile::tempdir_in(data_dir)?;
            raw.push((raw_write(written.bytes, dir.path())?, written.bytes));
            cairn_writes.push((written, rows));
            reads.push((read, rows));
            let dir = tempfile::tempdir_in(data_dir)?;
            df_writes.push(datafusion_write(&lineitem, name, dir.path()).await?);
            for peer in &mut peers {
                let dir = tempfile::tempdir_in(data_dir)?;
                match duckdb_copy(peer, &lineitem_dir, name, dir.path()) {
                    Ok(w) => duck_writes.push(w),
                    Err(e) => suite.notes.push(format!("duckdb with {name}: {e:#}")),
                }
            }
            bar.inc(1);
        }
        let rows = source_rows as f64;
        let write_item = format!("write {name}");
        let throughput = |engine: &str, item: &str, samples: Vec<(f64, u64)>| {
            let seconds: Vec<f64> = samples.iter().map(|s| s.0).collect();
            let bytes = median(&samples.iter().map(|s| s.1 as f64).collect::<Vec<_>>());
            let m = Measurement::new(engine, item, seconds);
            let t = m.median;
            let m = m.with("MB/s", bytes / t / 1e6);
            // The raw write moves bytes, not rows.
            if engine.starts_with("disk") {
                m
            } else {
                m.with("rows/s", rows / t)
            }
        };
        suite.add(throughput(
            "cairn",
            &write_item,
            cairn_writes
                .iter()
                .map(|(w, _)| (w.seconds, w.bytes))
                .collect(),
        ));
        suite.add(throughput(
            "datafusion",
            &write_item,
            df_writes.iter().map(|w| (w.seconds, w.bytes)).collect(),
        ));
        if !duck_writes.is_empty() {
            suite.add(throughput(
                "duckdb",
                &write_item,
                duck_writes.iter().map(|w| (w.seconds, w.bytes)).collect(),
            ));
        }
        suite.add(throughput("disk (same bytes, fsync)", &write_item, raw));
        let cairn_bytes = cairn_writes.first().map_or(0, |(w, _)| w.bytes);
        suite.add(throughput(
            "cairn",
            &format!("read {name}"),
            reads.iter().map(|(s, _)| (*s, cairn_bytes)).collect(),
        ));
    }
    bar.finish_and_clear();
    Ok(suite)
}
