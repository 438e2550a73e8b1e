//! SQL logic tests, run through Cairn's statement path (`cairn::Session`):
//!
//! - `sql/slt/*.slt`: Cairn's own statements, their errors, and checkpoint
//!   reuse across reopened sessions (`connection` blocks open new sessions
//!   on the same checkpoint dir);
//! - DataFusion's own suite: the files listed in `tests/datafusion_slt.txt`,
//!   read from the `datafusion-sqllogictest` crate, to show Cairn keeps
//!   DataFusion's SQL intact.
//!
//! Every query of both is also run as `CHECKPOINT(query)` (`slt/inline.rs`):
//! the inline operator must take what a derived table takes and answer the
//! same rows. And its plans are encoded with Cairn's codecs, decoded and run
//! again (`slt/codec.rs`): they must answer the same rows.
//!
//! ```text
//! cargo test --test sqllogictests                 # everything
//! cargo test --test sqllogictests -- checkpoint   # files whose path contains "checkpoint"
//! cargo test --test sqllogictests -- --complete   # rewrite Cairn's expected results
//! ```

mod slt {
    pub mod codec;
    pub mod db;
    pub mod files;
    pub mod inline;
    pub mod normalize;
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use slt::db::{CairnDb, Flavor};

/// Far past the slowest file (20 s in a debug build): a file still running
/// then has a query that stopped, and fails instead of stopping the suite.
const FILE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

struct Args {
    filter: Option<String>,
    complete: bool,
}

fn args() -> Args {
    let mut filter = None;
    let mut complete = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--complete" => complete = true,
            // Flags libtest would take; `cargo test` passes some of them.
            a if a.starts_with('-') => {}
            a => filter = Some(a.to_string()),
        }
    }
    Args { filter, complete }
}

fn main() -> ExitCode {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 * 1024 * 1024)
        .build()
        .expect("a tokio runtime");
    let mut files: Vec<(PathBuf, Flavor)> = slt::files::cairn_files()
        .into_iter()
        .map(|f| (f, Flavor::Cairn))
        .collect();
    match slt::files::datafusion_files() {
        Ok(df) => files.extend(df.into_iter().map(|f| (f, Flavor::DataFusion))),
        Err(e) => {
            eprintln!("cannot find DataFusion's test files: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(filter) = &args.filter {
        files.retain(|(f, _)| f.to_string_lossy().contains(filter.as_str()));
    }
    let started = Instant::now();
    let mut failures = Vec::new();
    for (file, flavor) in &files {
        let t = Instant::now();
        let result = runtime.block_on(async {
            tokio::time::timeout(FILE_LIMIT, run_file(file, *flavor, args.complete))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "did not finish within {FILE_LIMIT:?}; running:\n{}",
                        slt::db::RUNNING.lock().unwrap()
                    ))
                })
        });
        let name = display_name(file);
        match result {
            Ok(()) => println!("ok     {name} ({:.1?})", t.elapsed()),
            Err(e) => {
                println!("FAILED {name}\n{e}");
                failures.push(name);
            }
        }
    }
    println!("\n{}", slt::inline::summary());
    println!("{}", slt::codec::summary());
    println!(
        "{} files, {} failed, in {:.1?}",
        files.len(),
        failures.len(),
        started.elapsed()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}

fn display_name(file: &Path) -> String {
    let text = file.to_string_lossy();
    match text.find("test_files/") {
        Some(i) => format!("datafusion/{}", &text[i + "test_files/".len()..]),
        None => text.rsplit("sql/").next().unwrap_or(&text).to_string(),
    }
}

async fn run_file(file: &Path, flavor: Flavor, complete: bool) -> Result<(), String> {
    // One checkpoint dir per file, shared by its connections.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir_path = dir.path().to_path_buf();
    let mut runner = sqllogictest::Runner::new(move || {
        let dir = dir_path.clone();
        async move { CairnDb::open(&dir, flavor) }
    });
    slt::normalize::configure(&mut runner);
    if complete && flavor == Flavor::Cairn {
        runner
            .update_test_file(
                file,
                " ",
                slt::normalize::validator,
                slt::normalize::normalizer,
                sqllogictest::strict_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(file)
            .await
            .map_err(|e| e.display(false).to_string())
    }
}
