//! The `tpch` suite: the 22 TPC-H queries (`sql/tpch/qNN.sql`, with the
//! spec's validation parameters) on Cairn, on plain DataFusion in the same
//! process, and on the peers, interleaved; every answer is checked.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use cairn_sql::Session;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde_json::json;

use crate::answers::{self, Rows, Tolerance};
use crate::data::{self, TPCH_TABLES, TpchData};
use crate::peers::{self, Peer};
use crate::progress;
use crate::report::{Chart, Check, Measurement, Suite, geomean};

/// The queries, `QUERIES[n - 1]` being TPC-H Qn.
pub const QUERIES: [&str; 22] = [
    include_str!("../../../sql/tpch/q01.sql"),
    include_str!("../../../sql/tpch/q02.sql"),
    include_str!("../../../sql/tpch/q03.sql"),
    include_str!("../../../sql/tpch/q04.sql"),
    include_str!("../../../sql/tpch/q05.sql"),
    include_str!("../../../sql/tpch/q06.sql"),
    include_str!("../../../sql/tpch/q07.sql"),
    include_str!("../../../sql/tpch/q08.sql"),
    include_str!("../../../sql/tpch/q09.sql"),
    include_str!("../../../sql/tpch/q10.sql"),
    include_str!("../../../sql/tpch/q11.sql"),
    include_str!("../../../sql/tpch/q12.sql"),
    include_str!("../../../sql/tpch/q13.sql"),
    include_str!("../../../sql/tpch/q14.sql"),
    include_str!("../../../sql/tpch/q15.sql"),
    include_str!("../../../sql/tpch/q16.sql"),
    include_str!("../../../sql/tpch/q17.sql"),
    include_str!("../../../sql/tpch/q18.sql"),
    include_str!("../../../sql/tpch/q19.sql"),
    include_str!("../../../sql/tpch/q20.sql"),
    include_str!("../../../sql/tpch/q21.sql"),
    include_str!("../../../sql/tpch/q22.sql"),
];

/// Answers at SF 0.01, committed so that tests need no other engine:
/// computed by Cairn and checked against DuckDB when they were written.
const ANSWERS_SF_0_01: [&str; 22] = [
    include_str!("../../../sql/tpch/answers/sf0.01/q01.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q02.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q03.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q04.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q05.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q06.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q07.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q08.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q09.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q10.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q11.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q12.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q13.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q14.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q15.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q16.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q17.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q18.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q19.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q20.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q21.tbl"),
    include_str!("../../../sql/tpch/answers/sf0.01/q22.tbl"),
];

/// Stands in for the keys of tpchgen's SF1 answer to Q11, which are cut.
pub const Q11_KEY_NOT_CHECKED: &str = "(key not checked)";

/// The reference answer for query `n` at `sf`, where one is known, and how
/// closely it must be matched.
pub fn reference_answer(n: usize, sf: f64) -> Option<(Rows, Tolerance, &'static str)> {
    if sf == 1.0 {
        let text = tpchgen::q_and_a::answers_sf1::answer(n as i32)?;
        let mut rows = answers::parse_tbl(text);
        if n == 11 {
            // tpchgen 4.0.0's Q11 answer cuts ps_partkey to its first digits
            // (1297 for 129760): check the values, and the keys by DuckDB.
            rows.iter_mut()
                .for_each(|r| r[0] = Q11_KEY_NOT_CHECKED.into());
        }
        Some((rows, Tolerance::Spec, "tpchgen SF1 answers"))
    } else if sf == 0.01 {
        Some((
            answers::parse_tbl(ANSWERS_SF_0_01[n - 1]),
            Tolerance::Computed,
            "committed SF0.01 answers",
        ))
    } else {
        None
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct TpchOptions {
    pub sf: f64,
    pub iterations: usize,
    /// Query numbers, 1 to 22.
    pub queries: Vec<usize>,
    pub peers: Vec<String>,
}

/// Registers the tables of `data` in `ctx`.
pub async fn register(ctx: &SessionContext, data: &TpchData) -> Result<()> {
    for table in TPCH_TABLES {
        let dir = format!("{}/", data.table_dir(table).display());
        ctx.register_parquet(table, &dir, ParquetReadOptions::default())
            .await
            .with_context(|| format!("registering {dir}"))?;
    }
    Ok(())
}

/// Runs `sql` on `session`: seconds and rows.
pub async fn run_cairn(session: &Session, sql: &str) -> Result<(f64, Rows)> {
    let start = Instant::now();
    let out = session.sql(sql).await?;
    let seconds = start.elapsed().as_secs_f64();
    let batches: Vec<_> = out.into_iter().flat_map(|o| o.batches).collect();
    Ok((seconds, answers::rows_of(&batches)?))
}

async fn run_datafusion(ctx: &SessionContext, sql: &str) -> Result<(f64, Rows)> {
    let start = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    let seconds = start.elapsed().as_secs_f64();
    Ok((seconds, answers::rows_of(&batches)?))
}

fn run_peer(peer: &mut Peer, sql: &str) -> Result<(f64, Rows)> {
    let reply = peer.call(&json!({"op": "tpch", "query": sql}))?;
    Ok((
        reply["seconds"].as_f64().unwrap_or(f64::NAN),
        peers::rows_of(&reply),
    ))
}

/// A Cairn session over the TPC-H tables of `data` (checkpoints, which
/// TPC-H does not take, would go to `checkpoint_dir`).
pub async fn cairn_session(data: &TpchData, checkpoint_dir: &Path) -> Result<Session> {
    let ctx = crate::settings::builder()
        .checkpoint_dir(checkpoint_dir.display().to_string())
        .build()?;
    crate::settings::apply(&ctx).await?;
    register(ctx.session(), data).await?;
    Ok(Session::new(ctx)?)
}

/// Runs the suite.
pub async fn run(data_dir: &Path, options: &TpchOptions) -> Result<Suite> {
    let data = data::tpch(data_dir, options.sf)?;
    let checkpoints = tempfile::tempdir_in(data_dir)?;
    let cairn = cairn_session(&data, checkpoints.path()).await?;
    let datafusion = SessionContext::new();
    register(&datafusion, &data).await?;
    let (mut peers, notes) = peers::start_all(&options.peers);
    let mut suite = Suite::new(
        "tpch",
        format!(
            "TPC-H SF {} ({} iterations, median)",
            options.sf, options.iterations
        ),
        Chart::Bars,
    );
    suite.notes = notes;
    let mut failed_peers = Vec::new();
    for peer in &mut peers {
        if let Err(e) = peer.load_tpch(&data.dir) {
            suite.notes.push(format!("{} skipped: {e:#}", peer.name));
            failed_peers.push(peer.name.clone());
        }
    }
    peers.retain(|p| !failed_peers.contains(&p.name));
    suite.param("sf", &options.sf);
    suite.param("iterations", &options.iterations);
    for peer in &peers {
        suite.param(&peer.name, &peer.version);
    }
    let bar = progress::bar(
        (options.queries.len() * options.iterations) as u64,
        &format!("TPC-H SF {}", options.sf),
    );
    for &n in &options.queries {
        let sql = QUERIES[n - 1];
        let item = format!("q{n:02}");
        let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut answers: BTreeMap<String, Rows> = BTreeMap::new();
        let mut broken: Vec<String> = Vec::new();
        // Interleaved: each iteration runs every engine once, starting one
        // engine later each time, so that no engine always runs right after
        // another's leftover work (a JVM's garbage collection, say).
        let engines = 2 + peers.len();
        for iteration in 0..options.iterations {
            for slot in (0..engines).map(|k| (k + iteration) % engines) {
                match slot {
                    0 => {
                        let (t, rows) = run_cairn(&cairn, sql)
                            .await
                            .with_context(|| format!("Cairn failed on {item}"))?;
                        times.entry("cairn".into()).or_default().push(t);
                        answers.entry("cairn".into()).or_insert(rows);
                    }
                    1 => {
                        let (t, rows) = run_datafusion(&datafusion, sql)
                            .await
                            .with_context(|| format!("DataFusion failed on {item}"))?;
                        times.entry("datafusion".into()).or_default().push(t);
                        answers.entry("datafusion".into()).or_insert(rows);
                    }
                    p => {
                        let peer = &mut peers[p - 2];
                        if broken.contains(&peer.name) {
                            continue;
                        }
                        match run_peer(peer, sql) {
                            Ok((t, rows)) => {
                                times.entry(peer.name.clone()).or_default().push(t);
                                answers.entry(peer.name.clone()).or_insert(rows);
                            }
                            Err(e) => {
                                suite.notes.push(format!("{item} on {}: {e:#}", peer.name));
                                broken.push(peer.name.clone());
                            }
                        }
                    }
                }
            }
            bar.inc(1);
        }
        let mut engines = vec!["cairn".to_string(), "datafusion".to_string()];
        engines.extend(peers.iter().map(|p| p.name.clone()));
        for engine in &engines {
            if let Some(samples) = times.remove(engine) {
                suite.add(Measurement::new(engine, &item, samples));
            }
        }
        check(&mut suite, &item, n, options.sf, &answers);
    }
    bar.finish_and_clear();
    suite.summarize("geomean", geomean);
    suite.summarize("total", |v| v.iter().sum());
    Ok(suite)
}

/// Checks Cairn's answer against the reference (if any), and every other
/// engine's against Cairn's.
fn check(suite: &mut Suite, item: &str, n: usize, sf: f64, answers: &BTreeMap<String, Rows>) {
    let Some(cairn) = answers.get("cairn") else {
        return;
    };
    let mut add = |engine: &str, against: &str, result: Result<(), String>| {
        suite.checks.push(Check {
            item: item.to_string(),
            engine: engine.to_string(),
            against: against.to_string(),
            ok: result.is_ok(),
            detail: result.err().unwrap_or_default(),
        });
    };
    if let Some((expected, tolerance, source)) = reference_answer(n, sf) {
        let mut actual = cairn.clone();
        if expected
            .first()
            .is_some_and(|r| r[0] == Q11_KEY_NOT_CHECKED)
        {
            actual
                .iter_mut()
                .for_each(|r| r[0] = Q11_KEY_NOT_CHECKED.into());
        }
        add(
            "cairn",
            source,
            answers::compare(&expected, &actual, tolerance),
        );
    }
    for (engine, rows) in answers.iter().filter(|(e, _)| *e != "cairn") {
        // DuckDB is the reference at any scale: say it that way round.
        if engine == "duckdb" {
            add(
                "cairn",
                "duckdb",
                answers::compare(rows, cairn, Tolerance::Computed),
            );
        } else {
            add(
                engine,
                "cairn",
                answers::compare(cairn, rows, Tolerance::Computed),
            );
        }
    }
}

/// Parses `--queries`: `all`, or numbers and ranges like `1,3,5-7`.
pub fn parse_queries(list: &str) -> Result<Vec<usize>> {
    if list.trim() == "all" {
        return Ok((1..=22).collect());
    }
    let mut queries = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| -> Result<usize> {
            let n: usize = s
                .trim()
                .trim_start_matches(['q', 'Q'])
                .parse()
                .with_context(|| format!("--queries: '{s}' is not a query number"))?;
            anyhow::ensure!(
                (1..=22).contains(&n),
                "--queries: TPC-H has queries 1 to 22, not {n}"
            );
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => queries.extend(number(a)?..=number(b)?),
            None => queries.push(number(part)?),
        }
    }
    anyhow::ensure!(
        !queries.is_empty(),
        "--queries: name at least one query, e.g. 1,3,5-7 or all"
    );
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lists() {
        assert_eq!(parse_queries("all").unwrap().len(), 22);
        assert_eq!(parse_queries("q1, 3,5-7").unwrap(), [1, 3, 5, 6, 7]);
        assert!(
            parse_queries("23")
                .unwrap_err()
                .to_string()
                .contains("1 to 22")
        );
        assert!(parse_queries("x").is_err());
    }

    #[test]
    fn every_sf1_reference_answer_parses() {
        for n in 1..=22 {
            let (rows, _, _) = reference_answer(n, 1.0).expect("SF1 answers exist");
            assert!(!rows.is_empty(), "q{n}");
        }
    }
}
