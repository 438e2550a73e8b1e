//! Where the test files are.

use std::path::{Path, PathBuf};
use std::process::Command;

const DATAFUSION_SLT_CRATE: &str = "datafusion-sqllogictest-55.2.0";

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cairn's own files, by name.
pub fn cairn_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("sql/slt"))
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "slt"));
    files.sort();
    files
}

/// DataFusion's files listed in `tests/datafusion_slt.txt`.
pub fn datafusion_files() -> Result<Vec<PathBuf>, String> {
    let list = std::fs::read_to_string(workspace().join("tests/datafusion_slt.txt"))
        .map_err(|e| format!("tests/datafusion_slt.txt: {e}"))?;
    let dir = datafusion_test_files()?;
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|name| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{name} is not among DataFusion's test files in {}",
                    dir.display()
                ))
            }
        })
        .collect()
}

/// The `test_files` folder of the `datafusion-sqllogictest` crate, which
/// Cargo downloads (never builds) as a dev-dependency for these files.
fn datafusion_test_files() -> Result<PathBuf, String> {
    if let Some(dir) = find_in_registry() {
        return Ok(dir);
    }
    // Not unpacked yet: `cargo fetch` downloads and unpacks it.
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .arg("fetch")
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"))
        .status()
        .map_err(|e| format!("cannot run {cargo} fetch: {e}"))?;
    if !status.success() {
        return Err(format!("{cargo} fetch failed"));
    }
    find_in_registry().ok_or_else(|| format!("{DATAFUSION_SLT_CRATE} is not in the cargo registry"))
}

fn find_in_registry() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|index| index.path().join(DATAFUSION_SLT_CRATE).join("test_files"))
        .find(|dir| dir.is_dir())
}
