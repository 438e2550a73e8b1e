//! The `iterative` suite: label propagation and PageRank as loops whose
//! plan doubles every iteration unless it is checkpointed. Cairn runs them
//! with `--mode none | checkpoint | local`; peers run their nearest
//! equivalent (DuckDB CREATE TABLE, Polars collect, DataFusion cache,
//! Spark checkpoint), reading the same Parquet graph.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use cairn_core::{CairnContext, CheckpointExt, PeriodicCheckpointer};
use cairn_sql::Session;
use datafusion::arrow::array::{Array, Float64Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::functions::core::expr_fn::{coalesce, least};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, min, sum};
use datafusion::logical_expr::{JoinType, LogicalPlan, cast};
use datafusion::prelude::{ParquetReadOptions, col, lit};
use serde_json::json;

use crate::answers::first_row_i64;
use crate::data::{self, Graph};
use crate::peers::{self, Peer};
use crate::progress;
use crate::report::{Chart, Check, Measurement, Suite};

/// What cuts the lineage between iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Nothing: the plan doubles every iteration.
    None,
    /// A reliable checkpoint (Parquet in the checkpoint dir).
    Checkpoint,
    /// A local checkpoint (memory, spilling to local disk).
    Local,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Checkpoint => "checkpoint",
            Mode::Local => "local",
        }
    }
}

/// How the loop is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Form {
    /// Rust DataFrames, an action (`count`) after every step.
    Dataframe,
    /// SQL through `Session`: with `--mode none` a chain of `CREATE VIEW`
    /// then one query of the last; otherwise a `[LOCAL] CHECKPOINT OR
    /// REPLACE TABLE` and a `count(*)` per step.
    Sql,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Dataframe => "dataframe",
            Form::Sql => "sql",
        }
    }
}

/// The two jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    LabelPropagation,
    Pagerank,
}

impl Algorithm {
    fn id(self) -> &'static str {
        match self {
            Algorithm::LabelPropagation => "label_propagation",
            Algorithm::Pagerank => "pagerank",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Algorithm::LabelPropagation => "Label propagation",
            Algorithm::Pagerank => "PageRank",
        }
    }
}

/// PageRank's damping factor.
pub const DAMPING: f64 = 0.85;

/// What to run.
#[derive(Debug, Clone)]
pub struct IterativeOptions {
    pub algorithms: Vec<Algorithm>,
    pub nodes: u64,
    pub edges: u64,
    pub seed: u64,
    /// Loop iterations (K).
    pub iterations: usize,
    pub mode: Mode,
    /// DataFrames or SQL.
    pub form: Form,
    /// Checkpoint every C-th iteration.
    pub every: usize,
    /// Repetitions of the whole loop; each iteration's median is reported.
    pub runs: usize,
    pub peers: Vec<String>,
}

/// The result of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Label propagation: distinct labels and their sum (over all nodes).
    Labels { distinct: i64, sum: i64 },
    /// PageRank: the rank of each node, by node id.
    Ranks(Vec<f64>),
}

impl Answer {
    fn from_reply(algorithm: Algorithm, reply: &serde_json::Value) -> Answer {
        match algorithm {
            Algorithm::LabelPropagation => Answer::Labels {
                distinct: reply["distinct"].as_i64().unwrap_or(-1),
                sum: reply["sum"].as_i64().unwrap_or(-1),
            },
            Algorithm::Pagerank => Answer::Ranks(peers::numbers(reply, "ranks")),
        }
    }

    /// `Ok` when `self` is `expected` (ranks to 1e-9 relative).
    pub fn matches(&self, expected: &Answer) -> Result<(), String> {
        match (expected, self) {
            (Answer::Ranks(e), Answer::Ranks(a)) => {
                if e.len() != a.len() {
                    return Err(format!("{} ranks, expected {}", a.len(), e.len()));
                }
                let worst = e
                    .iter()
                    .zip(a)
                    .enumerate()
                    .map(|(v, (e, a))| (v, (e - a).abs() / e.abs().max(1e-300)))
                    .max_by(|x, y| x.1.total_cmp(&y.1));
                match worst {
                    Some((v, d)) if d > 1e-9 => Err(format!(
                        "node {v}: rank {}, expected {} (relative difference {d:.1e})",
                        a[v], e[v]
                    )),
                    _ => Ok(()),
                }
            }
            (e, a) if e == a => Ok(()),
            (e, a) => Err(format!("{a:?}, expected {e:?}")),
        }
    }
}

/// One run of a job: each iteration's seconds and plan size, and the answer.
#[derive(Debug, Clone)]
pub struct LoopRun {
    pub seconds: Vec<f64>,
    pub plan_nodes: Vec<usize>,
    pub answer: Answer,
}

/// Nodes in `plan` (a plan read twice counts twice, as it runs twice),
/// counted on the plan as it is in memory: without checkpoints the tree
/// doubles every iteration while the plan in memory grows by one step.
pub fn plan_nodes(plan: &LogicalPlan) -> usize {
    cairn_core::plan::tree_size(plan)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .expect("counting cannot fail")
}

/// Cuts the lineage of `df` as `mode` says, on the iterations it applies to.
struct Cut {
    mode: Mode,
    every: usize,
    periodic: PeriodicCheckpointer,
    iteration: usize,
}

impl Cut {
    fn new(mode: Mode, every: usize) -> Result<Self> {
        anyhow::ensure!(every >= 1, "--every must be at least 1");
        Ok(Self {
            mode,
            every,
            // Keeps the last two: one being read, one just written.
            periodic: PeriodicCheckpointer::new(every, 2)?,
            iteration: 0,
        })
    }

    async fn apply(&mut self, df: DataFrame) -> Result<DataFrame> {
        self.iteration += 1;
        Ok(match self.mode {
            Mode::None => df,
            Mode::Checkpoint => self.periodic.update(df).await?,
            Mode::Local if self.iteration.is_multiple_of(self.every) => {
                df.local_checkpoint().await?
            }
            Mode::Local => df,
        })
    }

    /// Waits for what the loop left running in the background (removals
    /// of old checkpoints; commits with `cairn.checkpoint_commit=async`):
    /// the loop is done when its checkpoints are.
    async fn finish(&mut self, ctx: &CairnContext) -> Result<()> {
        self.periodic.finish().await?;
        ctx.wait_for_background().await?;
        Ok(())
    }
}

/// Runs `algorithm` for `k` iterations on Cairn, checkpoints in `checkpoint_dir`.
pub async fn run_cairn(
    algorithm: Algorithm,
    graph: &Graph,
    k: usize,
    mode: Mode,
    every: usize,
    checkpoint_dir: &Path,
) -> Result<LoopRun> {
    let ctx = crate::settings::builder()
        .checkpoint_dir(checkpoint_dir.display().to_string())
        .build()?;
    crate::settings::apply(&ctx).await?;
    let n = graph.nodes;
    // Every engine holds the edges in memory before the loop.
    let edges = hold(
        &ctx,
        ctx.read_parquet(
            graph.path.display().to_string(),
            ParquetReadOptions::default(),
        )
        .await?,
    )
    .await?;
    let mut looped = Looped {
        cut: Cut::new(mode, every)?,
        seconds: Vec::with_capacity(k),
        plan_nodes: Vec::with_capacity(k),
    };
    let answer = match algorithm {
        Algorithm::LabelPropagation => {
            let labels = ctx
                .sql(&format!("SELECT value AS v, value AS l FROM range(0, {n})"))
                .await?;
            // Every column is named with its qualifier: DataFusion's
            // DataFrame builder resolves an unqualified name by walking the
            // whole plan as a tree, which without checkpoints doubles every
            // step (`LogicalPlan::using_columns`).
            let step = |labels: DataFrame| {
                let cur = labels.alias("cur")?;
                let neighbours = cur
                    .clone()
                    .select(vec![col("cur.v").alias("nv"), col("cur.l").alias("nl")])?
                    .alias("n")?;
                let nb = edges
                    .clone()
                    .alias("e")?
                    .join_on(neighbours, JoinType::Inner, [col("e.dst").eq(col("n.nv"))])?
                    .aggregate(vec![col("e.src")], vec![min(col("n.nl")).alias("m")])?
                    .alias("nb")?;
                cur.join_on(nb, JoinType::Left, [col("cur.v").eq(col("nb.src"))])?
                    .select(vec![
                        col("cur.v").alias("v"),
                        least(vec![
                            col("cur.l"),
                            coalesce(vec![col("nb.m"), col("cur.l")]),
                        ])
                        .alias("l"),
                    ])
            };
            let labels = looped.run(&ctx, labels, k, step).await?;
            let totals = labels
                .alias("f")?
                .aggregate(vec![], vec![count_distinct(col("f.l")), sum(col("f.l"))])?
                .collect()
                .await?;
            Answer::Labels {
                distinct: first_row_i64(&totals, 0),
                sum: first_row_i64(&totals, 1),
            }
        }
        Algorithm::Pagerank => {
            let degrees = edges
                .clone()
                .aggregate(vec![col("src")], vec![count(lit(1)).alias("deg")])?
                .select(vec![
                    col("src").alias("s"),
                    (lit(1.0) / cast(col("deg"), DataType::Float64)).alias("w"),
                ])?;
            let links = hold(
                &ctx,
                edges
                    .clone()
                    .join(degrees, JoinType::Inner, &["src"], &["s"], None)?
                    .select(vec![col("src"), col("dst"), col("w")])?,
            )
            .await?;
            let ranks = ctx
                .sql(&format!(
                    "SELECT value AS v, CAST(1.0 AS DOUBLE) / {n} AS r FROM range(0, {n})"
                ))
                .await?;
            let base = (1.0 - DAMPING) / n as f64;
            // Qualified names, for the reason the label propagation step gives.
            let step = |ranks: DataFrame| {
                let cur = ranks.alias("cur")?;
                let current = cur
                    .clone()
                    .select(vec![col("cur.v").alias("rv"), col("cur.r").alias("rr")])?
                    .alias("c")?;
                let contributions = links
                    .clone()
                    .alias("k")?
                    .join_on(current, JoinType::Inner, [col("k.src").eq(col("c.rv"))])?
                    .aggregate(
                        vec![col("k.dst")],
                        vec![sum(col("c.rr") * col("k.w")).alias("c")],
                    )?
                    .alias("t")?;
                cur.join_on(
                    contributions,
                    JoinType::Left,
                    [col("cur.v").eq(col("t.dst"))],
                )?
                .select(vec![
                    col("cur.v").alias("v"),
                    (lit(base) + lit(DAMPING) * coalesce(vec![col("t.c"), lit(0.0)])).alias("r"),
                ])
            };
            let ranks = looped.run(&ctx, ranks, k, step).await?;
            let batches = ranks
                .alias("f")?
                .sort_by(vec![col("f.v")])?
                .collect()
                .await?;
            let mut values = Vec::with_capacity(n as usize);
            for batch in batches {
                let r = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .context("ranks are not DOUBLE")?;
                values.extend((0..r.len()).map(|i| r.value(i)));
            }
            Answer::Ranks(values)
        }
    };
    Ok(LoopRun {
        seconds: looped.seconds,
        plan_nodes: looped.plan_nodes,
        answer,
    })
}

/// The SQL of one step of `algorithm` over the relation `prev`.
fn sql_step(algorithm: Algorithm, prev: &str, nodes: u64) -> String {
    match algorithm {
        Algorithm::LabelPropagation => format!(
            "SELECT v, LEAST(l, COALESCE(m, l)) AS l FROM {prev} LEFT JOIN \
             (SELECT src, MIN(nl) AS m FROM edges JOIN (SELECT v AS nv, l AS nl FROM {prev}) AS n \
             ON dst = nv GROUP BY src) AS nb ON v = src"
        ),
        Algorithm::Pagerank => {
            let base = (1.0 - DAMPING) / nodes as f64;
            format!(
                "SELECT v, CAST({base:e} AS DOUBLE) + {DAMPING} * COALESCE(c, 0.0) AS r FROM {prev} \
                 LEFT JOIN (SELECT dst, SUM(rr * w) AS c FROM links JOIN \
                 (SELECT v AS rv, r AS rr FROM {prev}) AS cur ON src = rv GROUP BY dst) AS t \
                 ON v = dst"
            )
        }
    }
}

/// Runs `algorithm` for `k` iterations written in SQL, through `Session`:
/// with `Mode::None` a chain of views and one query of the last (each
/// view's creation timed as an iteration, the query with the last), else a
/// `[LOCAL] CHECKPOINT OR REPLACE TABLE` and a `count(*)` per iteration.
pub async fn run_cairn_sql(
    algorithm: Algorithm,
    graph: &Graph,
    k: usize,
    mode: Mode,
    every: usize,
    checkpoint_dir: &Path,
) -> Result<LoopRun> {
    anyhow::ensure!(
        every == 1,
        "--form sql checkpoints every iteration (--every 1)"
    );
    let ctx = crate::settings::builder()
        .checkpoint_dir(checkpoint_dir.display().to_string())
        .build()?;
    crate::settings::apply(&ctx).await?;
    let session = Session::new(ctx)?;
    let n = graph.nodes;
    let path = graph.path.display().to_string().replace('\'', "''");
    // Every engine holds the edges in memory before the loop (on a
    // cluster, where no memory is shared, in the checkpoint dir).
    let held = if session.context().on_cluster() {
        ""
    } else {
        "LOCAL "
    };
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE edges_file STORED AS PARQUET LOCATION '{path}'; \
             {held}CHECKPOINT TABLE edges AS SELECT * FROM edges_file"
        ))
        .await?;
    let (start, answer_sql) = match algorithm {
        Algorithm::LabelPropagation => (
            format!("SELECT value AS v, value AS l FROM range(0, {n})"),
            "SELECT count(DISTINCT l), sum(l) FROM {last}",
        ),
        Algorithm::Pagerank => {
            session
                .sql(
                    "LOCAL CHECKPOINT TABLE links AS SELECT e.src, e.dst, 1.0 / CAST(d.deg AS DOUBLE) AS w \
                     FROM edges e JOIN (SELECT src AS s, count(*) AS deg FROM edges GROUP BY src) d \
                     ON e.src = d.s",
                )
                .await?;
            (
                format!("SELECT value AS v, CAST(1.0 AS DOUBLE) / {n} AS r FROM range(0, {n})"),
                "SELECT r FROM {last} ORDER BY v",
            )
        }
    };
    session.sql(&format!("CREATE VIEW s0 AS {start}")).await?;
    let mut seconds = Vec::with_capacity(k);
    let mut plan_nodes = Vec::with_capacity(k);
    let mut prev = "s0".to_string();
    let keyword = match mode {
        Mode::None => None,
        Mode::Checkpoint => Some("CHECKPOINT"),
        Mode::Local => Some("LOCAL CHECKPOINT"),
    };
    for i in 1..=k {
        let step = sql_step(algorithm, &prev, n);
        let started = Instant::now();
        match keyword {
            None => {
                let name = format!("s{i}");
                session
                    .sql(&format!("CREATE VIEW {name} AS {step}"))
                    .await?;
                prev = name;
            }
            Some(keyword) => {
                session
                    .sql(&format!(
                        "{keyword} OR REPLACE TABLE state AS {step}; SELECT count(*) FROM state"
                    ))
                    .await?;
                prev = "state".to_string();
            }
        }
        seconds.push(started.elapsed().as_secs_f64());
        // A view counts as the views it reads, as a query reads it.
        let plan = session.context().table(prev.as_str()).await?;
        plan_nodes.push(self::plan_nodes(plan.logical_plan()));
    }
    let started = Instant::now();
    let batches = session
        .sql(&answer_sql.replace("{last}", &prev))
        .await?
        .pop()
        .map(|o| o.batches)
        .unwrap_or_default();
    // Done when its checkpoints are (commits may run in the background).
    session.context().wait_for_background().await?;
    if let Some(last) = seconds.last_mut() {
        *last += started.elapsed().as_secs_f64();
    }
    let answer = match algorithm {
        Algorithm::LabelPropagation => Answer::Labels {
            distinct: first_row_i64(&batches, 0),
            sum: first_row_i64(&batches, 1),
        },
        Algorithm::Pagerank => {
            let mut values = Vec::with_capacity(n as usize);
            for batch in &batches {
                let r = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .context("ranks are not DOUBLE")?;
                values.extend((0..r.len()).map(|i| r.value(i)));
            }
            Answer::Ranks(values)
        }
    };
    Ok(LoopRun {
        seconds,
        plan_nodes,
        answer,
    })
}

/// A loop's iterations as they run: how each is cut, its time and plan size.
struct Looped {
    cut: Cut,
    seconds: Vec<f64>,
    plan_nodes: Vec<usize>,
}

impl Looped {
    /// Runs `k` iterations of `step` from `state`: each is cut as the mode
    /// says and followed by an action (`count`), as in the peers' loops.
    async fn run(
        &mut self,
        ctx: &CairnContext,
        mut state: DataFrame,
        k: usize,
        step: impl Fn(DataFrame) -> datafusion::error::Result<DataFrame>,
    ) -> Result<DataFrame> {
        for _ in 0..k {
            let start = Instant::now();
            state = self.cut.apply(step(state)?).await?;
            state.clone().count().await?;
            self.seconds.push(start.elapsed().as_secs_f64());
            self.plan_nodes.push(plan_nodes(state.logical_plan()));
        }
        let start = Instant::now();
        self.cut.finish(ctx).await?;
        if let Some(last) = self.seconds.last_mut() {
            *last += start.elapsed().as_secs_f64();
        }
        Ok(state)
    }
}

/// The same jobs in plain Rust over the edge list: the answer every engine
/// must give.
pub fn reference(algorithm: Algorithm, graph: &Graph, k: usize) -> Result<Answer> {
    let edges = read_edges(graph)?;
    let n = graph.nodes as usize;
    Ok(match algorithm {
        Algorithm::LabelPropagation => {
            let mut labels: Vec<i64> = (0..n as i64).collect();
            for _ in 0..k {
                let mut next = labels.clone();
                for &(src, dst) in &edges {
                    next[src] = next[src].min(labels[dst]);
                }
                labels = next;
            }
            let mut distinct = labels.clone();
            distinct.sort_unstable();
            distinct.dedup();
            Answer::Labels {
                distinct: distinct.len() as i64,
                sum: labels.iter().sum(),
            }
        }
        Algorithm::Pagerank => {
            let mut degree = vec![0u64; n];
            for &(src, _) in &edges {
                degree[src] += 1;
            }
            let mut ranks = vec![1.0 / n as f64; n];
            for _ in 0..k {
                let mut contributions = vec![0.0; n];
                for &(src, dst) in &edges {
                    contributions[dst] += ranks[src] / degree[src] as f64;
                }
                ranks = contributions
                    .iter()
                    .map(|c| (1.0 - DAMPING) / n as f64 + DAMPING * c)
                    .collect();
            }
            Answer::Ranks(ranks)
        }
    })
}

fn read_edges(graph: &Graph) -> Result<Vec<(usize, usize)>> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(&graph.path)?;
    let mut edges = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        let batch = batch?;
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .context("edges are not BIGINT")
        };
        let (src, dst) = (column(0)?, column(1)?);
        edges.extend((0..batch.num_rows()).map(|i| (src.value(i) as usize, dst.value(i) as usize)));
    }
    Ok(edges)
}

fn run_peer(
    peer: &mut Peer,
    algorithm: Algorithm,
    graph: &Graph,
    options: &IterativeOptions,
) -> Result<(String, Vec<f64>, Answer)> {
    let reply = peer.call(&json!({
        "op": algorithm.id(),
        "edges": graph.path,
        "nodes": graph.nodes,
        "iterations": options.iterations,
        "mode": options.mode.name(),
        "every": options.every,
        "damping": DAMPING,
    }))?;
    let mode = reply["mode"].as_str().unwrap_or("?").to_string();
    Ok((
        mode,
        peers::numbers(&reply, "seconds"),
        Answer::from_reply(algorithm, &reply),
    ))
}

/// Runs the suite: one result table per algorithm.
pub async fn run(data_dir: &Path, options: &IterativeOptions) -> Result<Vec<Suite>> {
    anyhow::ensure!(options.iterations >= 1, "--iterations must be at least 1");
    anyhow::ensure!(options.runs >= 1, "--runs must be at least 1");
    let graph = data::graph(data_dir, options.nodes, options.edges, options.seed)?;
    let (mut peers, notes) = peers::start_all(&options.peers);
    let mut suites = Vec::new();
    for &algorithm in &options.algorithms {
        let expected = reference(algorithm, &graph, options.iterations)?;
        let form = match options.form {
            Form::Dataframe => "",
            Form::Sql => ", SQL",
        };
        let cairn = match options.mode {
            Mode::None => format!("cairn (no checkpoint{form})"),
            Mode::Checkpoint => format!("cairn (checkpoint every {}{form})", options.every),
            Mode::Local => format!("cairn (local checkpoint every {}{form})", options.every),
        };
        let mut suite = Suite::new(
            &format!("iterative-{}", algorithm.id().replace('_', "-")),
            format!(
                "{}, {} nodes, {} edges both ways, K = {} ({} runs, median per iteration)",
                algorithm.title(),
                graph.nodes,
                graph.edges,
                options.iterations,
                options.runs
            ),
            Chart::Lines,
        );
        suite.notes = notes.clone();
        suite.param("mode", &options.mode.name());
        suite.param("form", &options.form.name());
        suite.param("every", &options.every);
        suite.param("seed", &options.seed);
        let mut seconds: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
        let mut order = vec![cairn.clone()];
        let mut plan_sizes = Vec::new();
        let mut broken = Vec::new();
        let bar = progress::bar(
            (options.runs * (1 + peers.len())) as u64,
            &format!("{} K = {}", algorithm.title(), options.iterations),
        );
        // Each run starts one engine later, as in the TPC-H suite.
        let engines = 1 + peers.len();
        for run in 0..options.runs {
            for slot in (0..engines).map(|k| (k + run) % engines) {
                if slot == 0 {
                    // A fresh dir per run: a reused checkpoint would skip the work.
                    let dir = tempfile::tempdir_in(data_dir)?;
                    let result = match options.form {
                        Form::Dataframe => {
                            run_cairn(
                                algorithm,
                                &graph,
                                options.iterations,
                                options.mode,
                                options.every,
                                dir.path(),
                            )
                            .await
                        }
                        Form::Sql => {
                            run_cairn_sql(
                                algorithm,
                                &graph,
                                options.iterations,
                                options.mode,
                                options.every,
                                dir.path(),
                            )
                            .await
                        }
                    }
                    .with_context(|| format!("Cairn failed on {}", algorithm.title()))?;
                    if run == 0 {
                        let matched = result.answer.matches(&expected);
                        check(&mut suite, &cairn, "reference (plain Rust)", matched);
                        plan_sizes = result.plan_nodes.clone();
                    }
                    seconds
                        .entry(cairn.clone())
                        .or_default()
                        .push(result.seconds);
                } else {
                    let peer = &mut peers[slot - 1];
                    if broken.contains(&peer.name) {
                        continue;
                    }
                    match run_peer(peer, algorithm, &graph, options) {
                        Ok((mode, times, answer)) => {
                            let engine = format!("{} ({mode})", peer.name);
                            if run == 0 {
                                let matched = answer.matches(&expected);
                                check(&mut suite, &engine, "reference (plain Rust)", matched);
                                order.push(engine.clone());
                            }
                            seconds.entry(engine).or_default().push(times);
                        }
                        Err(e) => {
                            suite.notes.push(format!("{}: {e:#}", peer.name));
                            broken.push(peer.name.clone());
                        }
                    }
                }
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        for engine in order {
            let Some(runs) = seconds.remove(&engine) else {
                continue;
            };
            for (i, nodes) in plan_sizes.iter().enumerate() {
                let samples: Vec<f64> = runs.iter().filter_map(|r| r.get(i).copied()).collect();
                let mut m = Measurement::new(&engine, &(i + 1).to_string(), samples);
                if engine == cairn {
                    m = m.with("plan nodes", *nodes as f64);
                }
                suite.add(m);
            }
            let totals = runs.iter().map(|r| r.iter().sum()).collect();
            suite
                .summary
                .push(Measurement::new(&engine, "total", totals));
        }
        suites.push(suite);
    }
    Ok(suites)
}

fn check(suite: &mut Suite, engine: &str, against: &str, result: Result<(), String>) {
    suite.checks.push(Check {
        item: "answer".into(),
        engine: engine.to_string(),
        against: against.to_string(),
        ok: result.is_ok(),
        detail: result.err().unwrap_or_default(),
    });
}

/// Holds `df` before a loop, as every engine holds its input: in this
/// process's memory, or, on a cluster, where no process's memory is
/// shared, as a reliable checkpoint.
async fn hold(ctx: &CairnContext, df: DataFrame) -> Result<DataFrame> {
    Ok(if ctx.on_cluster() {
        df.checkpoint().await?
    } else {
        df.local_checkpoint().await?
    })
}
