//! Peer engines (DuckDB, Polars, DataFusion Python, Spark, Sail), each in a
//! long-lived Python process running `benches/peers/peer.py ENGINE`, so that
//! their start-up is paid once and their runs interleave with Cairn's.
//!
//! Protocol: one JSON object per line each way. The peer first says
//! `{"ready": true, "version": ...}` (or `{"error": ...}` when the engine is
//! not installed); then each request `{"op": ..., args}` gets one reply,
//! `{"error": ...}` on failure.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The peer engines `--compare` knows, in the order they are shown.
pub const PEERS: [&str; 5] = ["duckdb", "polars", "datafusion-python", "spark", "sail"];

/// Where the peer scripts are: `$CAIRN_BENCH_PEERS`, else the repo's
/// `benches/peers`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("CAIRN_BENCH_PEERS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/peers"))
        })
}

/// The Python to run peers with: `$CAIRN_BENCH_PYTHON`, else
/// `$CAIRN_PYTHON` (the tests' Python), else `python3`.
pub fn python() -> String {
    ["CAIRN_BENCH_PYTHON", "CAIRN_PYTHON"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "python3".into())
}

/// The Python to run peer `name` with: Sail needs an environment of its
/// own (pysail 0.7 accepts pyspark 4.0 only), `$CAIRN_BENCH_SAIL_PYTHON`;
/// every other peer runs with [`python`].
pub fn python_for(name: &str) -> String {
    if name == "sail"
        && let Some(p) = std::env::var("CAIRN_BENCH_SAIL_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
    {
        return p;
    }
    python()
}

/// Parses `--compare`: names from [`PEERS`], comma-separated.
pub fn parse_compare(list: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = match name {
            "datafusion" | "df" => "datafusion-python",
            "pyspark" => "spark",
            "pysail" => "sail",
            other => other,
        };
        if !PEERS.contains(&name) {
            bail!(
                "--compare: no peer engine is called '{name}'; choose from {}",
                PEERS.join(", ")
            );
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// A running peer.
#[derive(Debug)]
pub struct Peer {
    pub name: String,
    pub version: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts `name`. `Err` says why it cannot run (not installed, no
    /// Python), for a note in the results.
    pub fn start(name: &str) -> Result<Self> {
        let script = peers_dir().join("peer.py");
        let python = python_for(name);
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {python} {} (set CAIRN_BENCH_PYTHON to a Python with the peer \
                     engines, CAIRN_BENCH_SAIL_PYTHON for Sail)",
                    script.display()
                )
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut peer = Self {
            name: name.to_string(),
            version: String::new(),
            child,
            stdin,
            stdout,
        };
        let hello = peer.read()?;
        peer.version = hello["version"].as_str().unwrap_or("?").to_string();
        Ok(peer)
    }

    /// Sends `request` and waits for its reply.
    pub fn call(&mut self, request: &Value) -> Result<Value> {
        let line = serde_json::to_string(request)?;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| anyhow!("{} stopped: {e}", self.name))?;
        self.read()
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from {}", self.name))?;
        if n == 0 {
            bail!("{} exited (its messages are above)", self.name);
        }
        let reply: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} replied with something that is not JSON: {line}",
                self.name
            )
        })?;
        if let Some(error) = reply.get("error") {
            bail!("{}: {}", self.name, error.as_str().unwrap_or("failed"));
        }
        Ok(reply)
    }

    /// Asks the peer to load the TPC-H tables under `dir`.
    pub fn load_tpch(&mut self, dir: &std::path::Path) -> Result<()> {
        self.call(&json!({"op": "tpch_load", "data": dir}))?;
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing stdin ends the peer's loop; kill in case it is stuck.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts each of `names`, and a note for each that cannot run.
pub fn start_all(names: &[String]) -> (Vec<Peer>, Vec<String>) {
    let mut peers = Vec::new();
    let mut notes = Vec::new();
    for name in names {
        match Peer::start(name) {
            Ok(peer) => peers.push(peer),
            Err(e) => notes.push(format!("{name} skipped: {e:#}")),
        }
    }
    (peers, notes)
}

/// Rows in a peer's reply (`"rows": [[cell, ...], ...]`) as text, the way
/// [`crate::answers::rows_of`] writes Cairn's.
pub fn rows_of(reply: &Value) -> crate::answers::Rows {
    reply["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|cells| cells.iter().map(cell_text).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list of numbers in a reply (`"seconds": [...]`).
pub fn numbers(reply: &Value, key: &str) -> Vec<f64> {
    reply[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_lists_are_checked_and_deduplicated() {
        assert_eq!(
            parse_compare("duckdb, spark,duckdb,datafusion").unwrap(),
            ["duckdb", "spark", "datafusion-python"]
        );
        let err = parse_compare("duckdb,velox").unwrap_err().to_string();
        assert!(err.contains("'velox'") && err.contains("polars"), "{err}");
    }
}
