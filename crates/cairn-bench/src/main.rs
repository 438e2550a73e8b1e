//! The `cairn-bench` command line.

use std::path::PathBuf;

use anyhow::Result;
use cairn_bench::checkpoint_io::{self, DEFAULT_CODECS, IoOptions};
use cairn_bench::iterative::{self, Algorithm, Form, IterativeOptions, Mode};
use cairn_bench::report::Report;
use cairn_bench::{data, peers, seed, tpch};
use clap::{Args, Parser, Subcommand};

/// Benchmarks of Cairn, side by side with peer engines in the same run.
///
/// Data is generated once under the data dir and reused. Peers run through
/// Python (`CAIRN_BENCH_PYTHON`, else `CAIRN_PYTHON`, else python3) with
/// duckdb, polars, datafusion or pyspark installed; Sail through
/// `CAIRN_BENCH_SAIL_PYTHON`, an environment with pysail. A missing one is
/// skipped with a note.
#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version)]
struct Cli {
    #[command(subcommand)]
    suite: SuiteCommand,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Common {
    /// Where generated data and scratch files go [default: $CAIRN_BENCH_DATA or ~/.cache/cairn-bench]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Peers to run in the same run: duckdb, polars, datafusion-python, spark, sail (comma-separated)
    #[arg(long, global = true, default_value = "")]
    compare: String,
    /// Print the results as JSON on stdout instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// A setting for every Cairn session, e.g. cairn.reuse_subplans=off (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Run Cairn's sessions on the Cairn cluster at this scheduler
    /// (df://host:port); peers and plain DataFusion stay in this machine's processes
    #[arg(long, global = true, value_name = "URL")]
    cluster: Option<String>,
    /// Also write a Markdown report with SVG charts to this dir
    #[arg(long, global = true)]
    report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum SuiteCommand {
    /// The 22 TPC-H queries, every answer checked
    Tpch(TpchArgs),
    /// Label propagation and PageRank loops, with and without checkpoints
    Iterative(IterativeArgs),
    /// Checkpoint write and read-back throughput of TPC-H lineitem
    CheckpointIo(IoArgs),
    /// The seed example: ten maps, a checkpoint, sum and count
    Seed(SeedArgs),
    /// Every suite with its defaults, into one report
    All(AllArgs),
}

#[derive(Debug, Args)]
struct AllArgs {
    /// Scale factor for TPC-H and checkpoint I/O
    #[arg(long, default_value_t = 1.0)]
    sf: f64,
    /// Runs of each measurement; medians are reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Debug, Args)]
struct TpchArgs {
    /// Scale factor (0.01 to 10 and beyond; answers are checked at 1 and 0.01)
    #[arg(long, default_value_t = 1.0)]
    sf: f64,
    /// Runs of each query per engine; the median is reported
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// Which queries: all, or e.g. 1,3,5-7
    #[arg(long, default_value = "all")]
    queries: String,
}

#[derive(Debug, Args)]
struct IterativeArgs {
    /// Which jobs
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Algorithm::LabelPropagation, Algorithm::Pagerank])]
    algorithm: Vec<Algorithm>,
    /// Iterations of the loop (K)
    #[arg(long, default_value_t = 24)]
    iterations: usize,
    /// What cuts the lineage between iterations
    #[arg(long, value_enum, default_value_t = Mode::Checkpoint)]
    mode: Mode,
    /// How the loop is written: Rust DataFrames, or SQL statements through
    /// Session (with --mode none: a chain of CREATE VIEW, then one query)
    #[arg(long, value_enum, default_value_t = Form::Dataframe)]
    form: Form,
    /// Checkpoint every C-th iteration
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// Runs of the whole loop; each iteration's median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Nodes of the random graph
    #[arg(long, default_value_t = 20_000)]
    nodes: u64,
    /// Random edges (each stored both ways)
    #[arg(long, default_value_t = 100_000)]
    edges: u64,
    /// Seed of the graph generator
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct IoArgs {
    /// Scale factor of lineitem (1 is 6M rows)
    #[arg(long, default_value_t = 1.0)]
    sf: f64,
    /// Runs per codec; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Parquet codecs to measure
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CODECS.map(String::from))]
    codecs: Vec<String>,
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// Runs; each step's median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match cli.common.cluster.clone() {
        Some(url) => cairn_bench::settings::on_cluster(url, run(cli)).await,
        None => run(cli).await,
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("cairn-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the suite; `false` when one of Cairn's answers was wrong.
async fn run(cli: Cli) -> Result<bool> {
    let common = cli.common;
    cairn_bench::settings::set_all(&common.settings)?;
    let data_dir = common.data_dir.unwrap_or_else(data::default_data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let compare = peers::parse_compare(&common.compare)?;
    let command = std::iter::once("cairn-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let mut report = Report::new(command);
    match cli.suite {
        SuiteCommand::Tpch(args) => {
            let options = tpch::TpchOptions {
                sf: args.sf,
                iterations: args.iterations.max(1),
                queries: tpch::parse_queries(&args.queries)?,
                peers: compare,
            };
            report.suites.push(tpch::run(&data_dir, &options).await?);
        }
        SuiteCommand::Iterative(args) => {
            let options = IterativeOptions {
                algorithms: args.algorithm,
                nodes: args.nodes,
                edges: args.edges,
                seed: args.seed,
                iterations: args.iterations,
                mode: args.mode,
                form: args.form,
                every: args.every,
                runs: args.runs,
                peers: compare,
            };
            report
                .suites
                .extend(iterative::run(&data_dir, &options).await?);
        }
        SuiteCommand::CheckpointIo(args) => {
            let options = IoOptions {
                sf: args.sf,
                runs: args.runs,
                codecs: args.codecs,
                peers: compare,
            };
            report
                .suites
                .push(checkpoint_io::run(&data_dir, &options).await?);
        }
        SuiteCommand::Seed(args) => {
            report
                .suites
                .push(seed::run(&data_dir, args.runs, &compare).await?);
        }
        SuiteCommand::All(args) => {
            let runs = args.runs.max(1);
            let tpch = tpch::TpchOptions {
                sf: args.sf,
                iterations: runs,
                queries: (1..=22).collect(),
                peers: compare.clone(),
            };
            report.suites.push(tpch::run(&data_dir, &tpch).await?);
            let iterative = IterativeOptions {
                algorithms: vec![Algorithm::LabelPropagation, Algorithm::Pagerank],
                nodes: 20_000,
                edges: 100_000,
                seed: 1,
                iterations: 24,
                mode: Mode::Checkpoint,
                form: Form::Dataframe,
                every: 1,
                runs,
                peers: compare.clone(),
            };
            report
                .suites
                .extend(iterative::run(&data_dir, &iterative).await?);
            let io = IoOptions {
                sf: args.sf,
                runs,
                codecs: DEFAULT_CODECS.map(String::from).to_vec(),
                peers: compare.clone(),
            };
            report
                .suites
                .push(checkpoint_io::run(&data_dir, &io).await?);
            report
                .suites
                .push(seed::run(&data_dir, runs, &compare).await?);
        }
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.machine.describe());
        for suite in &report.suites {
            println!("{}", suite.describe());
        }
    }
    if let Some(dir) = &common.report {
        report.write(dir)?;
        eprintln!("report written to {}", dir.join("README.md").display());
    }
    Ok(report.suites.iter().all(|s| s.cairn_answers_right()))
}
