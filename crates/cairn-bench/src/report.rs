//! Results: the terminal table, `--json`, and `--report DIR` (Markdown and
//! SVG charts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// Everything one `cairn-bench` run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub started: String,
    pub machine: Machine,
    pub suites: Vec<Suite>,
}

/// The machine the run was on.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kb = m
                    .lines()
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<f64>()
                    .ok()?;
                Some((kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
            })
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            os: std::env::consts::OS.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {} GiB, {}",
            self.cores, self.cpu, self.memory_gib, self.os
        )
    }
}

/// What a suite's numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Lower is better.
    Seconds,
}

/// How a suite is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// One group of bars per item (TPC-H queries, checkpoint I/O steps).
    Bars,
    /// One line per engine over the items (iterations).
    Lines,
}

/// One suite's results: a table of items (rows) by engines (columns).
#[derive(Debug, Serialize)]
pub struct Suite {
    /// File-name-safe id, e.g. `tpch` or `iterative-label-propagation`.
    pub id: String,
    pub title: String,
    pub params: BTreeMap<String, String>,
    pub unit: Unit,
    pub chart: Chart,
    /// Column order; the first is Cairn, the one ratios are taken against.
    pub engines: Vec<String>,
    /// Row order.
    pub items: Vec<String>,
    pub results: Vec<Measurement>,
    /// Rows under the line: totals, geometric means.
    pub summary: Vec<Measurement>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

/// The median of `samples` for one engine and item, with extra figures
/// (throughput, plan size) that belong with it.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub engine: String,
    pub item: String,
    pub median: f64,
    pub samples: Vec<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

impl Measurement {
    pub fn new(engine: &str, item: &str, samples: Vec<f64>) -> Self {
        Self {
            engine: engine.to_string(),
            item: item.to_string(),
            median: median(&samples),
            samples,
            extra: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: f64) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

/// An answer check: `engine`'s answer for `item` against `against`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub item: String,
    pub engine: String,
    pub against: String,
    pub ok: bool,
    pub detail: String,
}

/// The median (mean of the middle two for an even count); NaN when empty.
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The geometric mean; NaN when empty.
pub fn geomean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

impl Suite {
    pub fn new(id: &str, title: String, chart: Chart) -> Self {
        Self {
            id: id.to_string(),
            title,
            params: BTreeMap::new(),
            unit: Unit::Seconds,
            chart,
            engines: Vec::new(),
            items: Vec::new(),
            results: Vec::new(),
            summary: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn param(&mut self, key: &str, value: &dyn std::fmt::Display) {
        self.params.insert(key.to_string(), value.to_string());
    }

    /// Records a result, adding its engine and item to the table's order.
    pub fn add(&mut self, m: Measurement) {
        if !self.engines.contains(&m.engine) {
            self.engines.push(m.engine.clone());
        }
        if !self.items.contains(&m.item) {
            self.items.push(m.item.clone());
        }
        self.results.push(m);
    }

    pub fn result(&self, engine: &str, item: &str) -> Option<&Measurement> {
        self.results
            .iter()
            .chain(&self.summary)
            .find(|m| m.engine == engine && m.item == item)
    }

    /// Adds a summary row `item` made by `f` from each engine's medians
    /// (only for engines with a result for every item).
    pub fn summarize(&mut self, item: &str, f: fn(&[f64]) -> f64) {
        for engine in self.engines.clone() {
            let values: Vec<f64> = self
                .items
                .iter()
                .filter_map(|i| self.result(&engine, i).map(|m| m.median))
                .collect();
            if values.len() == self.items.len() {
                self.summary.push(Measurement {
                    engine,
                    item: item.to_string(),
                    median: f(&values),
                    samples: Vec::new(),
                    extra: BTreeMap::new(),
                });
            }
        }
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// Whether every answer of Cairn's was right (a peer's wrong answer is
    /// reported, but it is the peer's bug).
    pub fn cairn_answers_right(&self) -> bool {
        self.failed_checks().all(|c| !c.engine.starts_with("cairn"))
    }

    /// The header and rows of the results table, as text cells.
    fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let base = self.engines.first().cloned().unwrap_or_default();
        let mut header = vec![String::new()];
        for engine in &self.engines {
            header.push(format!("{engine} (s)"));
            if *engine != base {
                header.push("vs cairn".into());
            }
        }
        let mut rows = Vec::new();
        let items = self
            .items
            .iter()
            .chain(
                self.summary
                    .iter()
                    .map(|m| &m.item)
                    .fold(Vec::new(), |mut v, i| {
                        if !v.contains(&i) {
                            v.push(i);
                        }
                        v
                    }),
            );
        for item in items {
            let mut row = vec![item.clone()];
            let base_value = self.result(&base, item).map(|m| m.median);
            for engine in &self.engines {
                let m = self.result(engine, item);
                row.push(m.map_or("-".into(), format_measurement));
                if *engine != base {
                    row.push(match (m, base_value) {
                        (Some(m), Some(b)) if b > 0.0 => format!("{:.2}x", m.median / b),
                        _ => "-".into(),
                    });
                }
            }
            rows.push(row);
        }
        (header, rows)
    }

    /// The results table for a terminal.
    pub fn table(&self) -> Table {
        let (header, rows) = self.cells();
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header);
        for row in rows {
            table.add_row(row.into_iter().enumerate().map(|(i, c)| {
                let cell = Cell::new(c);
                if i == 0 {
                    cell
                } else {
                    cell.set_alignment(CellAlignment::Right)
                }
            }));
        }
        table
    }

    /// Everything about the suite for a terminal: title, table, checks, notes.
    pub fn describe(&self) -> String {
        let mut out = format!("\n{}\n", self.title);
        if !self.params.is_empty() {
            let params: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "({})", params.join(", "));
        }
        let _ = writeln!(out, "{}", self.table());
        let _ = writeln!(
            out,
            "vs cairn: an engine's time over Cairn's (above 1: Cairn is faster)"
        );
        let _ = writeln!(out, "{}", self.checks_line());
        for check in self.failed_checks() {
            let _ = writeln!(
                out,
                "  WRONG ANSWER {} on {} (against {}): {}",
                check.item, check.engine, check.against, check.detail
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn checks_line(&self) -> String {
        let failed = self.failed_checks().count();
        let mut against: Vec<&str> = self.checks.iter().map(|c| c.against.as_str()).collect();
        against.sort();
        against.dedup();
        if self.checks.is_empty() {
            "answers: not checked".into()
        } else if failed == 0 {
            format!(
                "answers: {} checks passed (against {})",
                self.checks.len(),
                against.join(", ")
            )
        } else {
            format!("answers: {failed} of {} checks FAILED", self.checks.len())
        }
    }

    fn markdown(&self) -> String {
        let (header, rows) = self.cells();
        let mut out = format!("## {}\n\n", self.title);
        if !self.params.is_empty() {
            let params: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("`{k}={v}`"))
                .collect();
            let _ = writeln!(out, "{}\n", params.join(", "));
        }
        let _ = writeln!(out, "![{}]({}.svg)\n", self.title, self.id);
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(out, "\n{}\n", self.checks_line());
        for check in self.failed_checks() {
            let _ = writeln!(
                out,
                "- wrong answer: {} on {} (against {}): {}",
                check.item, check.engine, check.against, check.detail
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

fn format_measurement(m: &Measurement) -> String {
    let mut text = format_seconds(m.median);
    let extras: Vec<String> = m
        .extra
        .iter()
        .map(|(k, v)| match k.as_str() {
            "MB/s" => format!("{v:.0} MB/s"),
            "rows/s" => format!("{:.1}M rows/s", v / 1e6),
            "plan nodes" => format!("plan: {v:.0} nodes"),
            _ => format!("{k} {v}"),
        })
        .collect();
    if !extras.is_empty() {
        let _ = write!(text, " ({})", extras.join(", "));
    }
    text
}

fn format_seconds(s: f64) -> String {
    if s.is_nan() {
        "-".into()
    } else if s < 0.1 {
        format!("{s:.4}")
    } else if s < 10.0 {
        format!("{s:.3}")
    } else {
        format!("{s:.1}")
    }
}

impl Report {
    pub fn new(command: String) -> Self {
        Self {
            command,
            started: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            machine: Machine::this(),
            suites: Vec::new(),
        }
    }

    /// Writes `README.md`, `report.json` and one SVG per suite to `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report dir {}", dir.display()))?;
        let mut md = format!(
            "# cairn-bench report\n\n`{}`, {}, on {}.\n\n",
            self.command,
            self.started,
            self.machine.describe()
        );
        md.push_str("Times are medians in seconds; a `vs cairn` column is the engine to its left's time over Cairn's (above 1: Cairn is faster). Engines take turns in a rotating order, one run of each at a time.\n\n");
        for suite in &self.suites {
            md.push_str(&suite.markdown());
            md.push('\n');
            crate::chart::draw(suite, &dir.join(format!("{}.svg", suite.id)))?;
        }
        std::fs::write(dir.join("README.md"), md)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_geomeans() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!((geomean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_table_shows_ratios_against_the_first_engine() {
        let mut suite = Suite::new("t", "T".into(), Chart::Bars);
        suite.add(Measurement::new("cairn", "q1", vec![1.0, 2.0, 3.0]));
        suite.add(Measurement::new("duckdb", "q1", vec![3.0]));
        suite.add(Measurement::new("cairn", "q2", vec![4.0]).with("MB/s", 12.0));
        suite.summarize("geomean", geomean);
        let (header, rows) = suite.cells();
        assert_eq!(header, ["", "cairn (s)", "duckdb (s)", "vs cairn"]);
        assert_eq!(rows[0], ["q1", "2.000", "3.000", "1.50x"]);
        assert_eq!(rows[1], ["q2", "4.000 (12 MB/s)", "-", "-"]);
        // duckdb has no q2, so it gets no geomean.
        assert_eq!(rows[2], ["geomean", "2.828", "-", "-"]);
    }
}
