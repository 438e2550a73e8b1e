//! A committed checkpoint whose files were damaged is never read silently:
//! the error names the checkpoint, the file and what is wrong.

use std::path::{Path, PathBuf};

use cairn::prelude::*;

use crate::common::dir_ctx;

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
