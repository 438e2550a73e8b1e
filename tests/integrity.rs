//! A committed checkpoint whose files were damaged is never read silently:
//! the error names the checkpoint, the file and what is wrong.

use std::path::{Path, PathBuf};

use cairn::OnCorrupt;
use cairn::datafusion::functions_aggregate::expr_fn::count;
use cairn::prelude::*;

use crate::common::{dir_ctx, scalar};

const QUERY: &str = "SELECT value AS x, value * 7 AS y FROM range(0, 200000)";

/// Writes the checkpoint of QUERY and returns its data files.
async fn committed(dir: &Path) -> Vec<PathBuf> {
    let ctx = dir_ctx(dir);
    ctx.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
    let id_dir = std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&id_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

async fn read_again(dir: &Path) -> String {
    let ctx = dir_ctx(dir);
    match ctx.sql(QUERY).await.unwrap().checkpoint().await {
        Ok(df) => df
            .collect()
            .await
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_data_page_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let files = committed(dir.path()).await;
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&files[0], bytes).unwrap();
    let err = read_again(dir.path()).await;
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(err.contains("is corrupt") && err.contains(name), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[tokio::test]
async fn a_truncated_or_missing_file_is_caught_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let files = committed(dir.path()).await;
    let len = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let err = read_again(dir.path()).await;
    assert!(
        err.contains(&format!("size is {} bytes, manifest says {len}", len - 10)),
        "{err}"
    );
    std::fs::remove_file(&files[0]).unwrap();
    let err = read_again(dir.path()).await;
    assert!(err.contains("the file is missing"), "{err}");
}

#[tokio::test]
async fn a_manifest_that_is_not_json_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let files = committed(dir.path()).await;
    let manifest = files[0].parent().unwrap().join("_manifest.json");
    std::fs::write(&manifest, b"{\"format_version\": 1, \"id\": ").unwrap();
    let err = read_again(dir.path()).await;
    assert!(
        err.contains("unreadable manifest") && err.contains("_manifest.json"),
        "{err}"
    );
}

/// With `OnCorrupt::Recompute`, a checkpoint found damaged when it is
/// opened is written again from the plan that asked for it.
#[tokio::test]
async fn a_damaged_checkpoint_is_recomputed_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let files = committed(dir.path()).await;
    std::fs::remove_file(&files[0]).unwrap();
    let ctx = dir_ctx(dir.path());
    let mut options = ctx.options();
    options.on_corrupt = OnCorrupt::Recompute;
    ctx.set_options(options).await.unwrap();
    let df = ctx.sql(QUERY).await.unwrap().checkpoint().await.unwrap();
    let n = scalar(df.aggregate(vec![], vec![count(lit(1))]).unwrap()).await;
    assert_eq!(n, "200000");
    // Rebuilt in place: the next process reads it without complaint.
    assert_eq!(read_again(dir.path()).await, "");
}

/// A named checkpoint whose data page is damaged, found mid-query: under
/// `recompute` the statement runs again on the checkpoint rebuilt from its
/// manifest's lineage, and the name points at it.
#[tokio::test]
async fn sql_recomputes_a_named_checkpoint_damaged_in_a_data_page() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let session = || cairn::Session::new(dir_ctx(dir.path())).unwrap();
    // A file source: its plan can be recorded and rebuilt (in-memory
    // sources and table functions cannot).
    let source = data.path().join("src.parquet");
    session()
        .sql(&format!(
            "COPY ({QUERY}) TO '{0}' STORED AS PARQUET;
             CREATE EXTERNAL TABLE src STORED AS PARQUET LOCATION '{0}';
             CHECKPOINT TABLE t AS SELECT x, y FROM src",
            source.display()
        ))
        .await
        .unwrap();
    let file = parquet_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();

    let sum = "SELECT sum(x) AS s, count(*) AS n FROM t";
    let err = session().sql(sum).await.unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");

    let s = session();
    s.sql("SET cairn.checkpoint_on_corrupt = 'recompute'")
        .await
        .unwrap();
    let out = s.sql(sum).await.unwrap();
    let text = pretty(&out[0].batches);
    assert!(text.contains("| 19999900000 | 200000 |"), "{text}");
    // Fixed for everyone: a fresh session with the default policy reads it.
    let out = session().sql(sum).await.unwrap();
    assert!(pretty(&out[0].batches).contains("| 19999900000 | 200000 |"));
}

#[tokio::test]
async fn a_named_checkpoint_without_a_usable_lineage_cannot_be_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let s = cairn::Session::new(dir_ctx(dir.path())).unwrap();
    s.sql(&format!(
        "CHECKPOINT TABLE t AS {QUERY}; SET cairn.checkpoint_on_corrupt = 'recompute'"
    ))
    .await
    .unwrap();
    let file = parquet_files(dir.path()).remove(0);
    std::fs::write(file.with_file_name("_manifest.json"), b"{ not json").unwrap();
    let fresh = cairn::Session::new(dir_ctx(dir.path())).unwrap();
    fresh
        .sql("SET cairn.checkpoint_on_corrupt = 'recompute'")
        .await
        .unwrap();
    let err = fresh
        .sql("SELECT count(*) FROM t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint 't'") && err.contains("cannot be recomputed"),
        "{err}"
    );
    assert!(err.contains("CHECKPOINT OR REPLACE TABLE t"), "{err}");
    // Nothing was removed: the damaged files are still there to look at.
    assert_eq!(parquet_files(dir.path()).len(), 2);
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "parquet")),
            );
        }
    }
    files.sort();
    files
}

fn pretty(batches: &[cairn::arrow::array::RecordBatch]) -> String {
    cairn::arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}
