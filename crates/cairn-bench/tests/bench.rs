//! Every suite at a tiny scale, so that the harness cannot rot: TPC-H SF
//! 0.01 against answers committed in the repo, the iterative jobs with
//! K = 3 against a plain-Rust reference, checkpoint I/O, the seed example,
//! and the report files. DuckDB joins in when it is installed (required
//! with `CAIRN_REQUIRE_DUCKDB=1`, as in CI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cairn_bench::checkpoint_io::{self, IoOptions};
use cairn_bench::iterative::{self, Algorithm, Answer, Form, IterativeOptions, Mode};
use cairn_bench::report::{Report, Suite};
use cairn_bench::{answers, data, seed, tpch};

/// One data dir in the target dir, kept between runs; TPC-H SF 0.01 is
/// generated once, before any test uses it.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cairn-bench-data");
        data::tpch(&dir, 0.01).unwrap();
        dir
    })
}

fn assert_answers_right(suite: &Suite) {
    let failed: Vec<_> = suite.failed_checks().collect();
    assert!(
        failed.is_empty(),
        "{}: wrong answers: {failed:#?}",
        suite.title
    );
}

/// The TPC-H SF 0.01 run of all 22 queries, with `peers`.
fn tpch_options(peers: Vec<String>) -> tpch::TpchOptions {
    tpch::TpchOptions {
        sf: 0.01,
        iterations: 1,
        queries: (1..=22).collect(),
        peers,
    }
}

/// How many of Cairn's answers were checked against the committed ones.
fn checked_against_committed(suite: &Suite) -> usize {
    suite
        .checks
        .iter()
        .filter(|c| c.engine == "cairn" && c.against == "committed SF0.01 answers")
        .count()
}

fn duckdb_available() -> bool {
    let required = std::env::var("CAIRN_REQUIRE_DUCKDB").is_ok_and(|v| v == "1");
    let found = std::process::Command::new(cairn_bench::peers::python())
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || !required,
        "CAIRN_REQUIRE_DUCKDB=1 but {} cannot import duckdb",
        cairn_bench::peers::python()
    );
    if !found {
        eprintln!(
            "skipping the DuckDB comparison: {} cannot import duckdb",
            cairn_bench::peers::python()
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_at_sf_0_01_gives_the_committed_answers() {
    let peers = if duckdb_available() {
        vec!["duckdb".to_string()]
    } else {
        vec![]
    };
    let suite = tpch::run(data_dir(), &tpch_options(peers.clone()))
        .await
        .unwrap();
    assert_answers_right(&suite);
    assert_eq!(
        checked_against_committed(&suite),
        22,
        "every query is checked against its committed answer"
    );
    // Plain DataFusion ran every query too and agreed with Cairn.
    assert_eq!(
        suite
            .checks
            .iter()
            .filter(|c| c.engine == "datafusion")
            .count(),
        22
    );
    if !peers.is_empty() {
        assert_eq!(
            suite
                .checks
                .iter()
                .filter(|c| c.against == "duckdb")
                .count(),
            22,
            "{:?}",
            suite.notes
        );
    }
    assert_eq!(suite.items.len(), 22);
    let geomean = suite.result("cairn", "geomean").expect("a geomean row");
    assert!(geomean.median > 0.0 && geomean.median.is_finite());
}

/// Regenerates `sql/tpch/answers/sf0.01` from Cairn's answers (check them
/// against DuckDB with `cairn-bench tpch --sf 0.01 --compare duckdb` after):
/// `cargo test -p cairn-bench --test bench write_sf_0_01_answers -- --ignored`.
#[tokio::test]
#[ignore = "writes the committed answers"]
async fn write_sf_0_01_answers() {
    let data = data::tpch(data_dir(), 0.01).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let session = tpch::cairn_session(&data, scratch.path()).await.unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/tpch/answers/sf0.01");
    std::fs::create_dir_all(&out).unwrap();
    for (i, sql) in tpch::QUERIES.iter().enumerate() {
        let outputs = session.sql(sql).await.unwrap();
        let header: Vec<String> = outputs[0]
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches: Vec<_> = outputs.into_iter().flat_map(|o| o.batches).collect();
        let rows = answers::rows_of(&batches).unwrap();
        std::fs::write(
            out.join(format!("q{:02}.tbl", i + 1)),
            answers::to_tbl(&header, &rows),
        )
        .unwrap();
    }
}

fn iterative_options(mode: Mode, form: Form) -> IterativeOptions {
    IterativeOptions {
        algorithms: vec![Algorithm::LabelPropagation, Algorithm::Pagerank],
        nodes: 2_000,
        edges: 10_000,
        seed: 7,
        iterations: 3,
        mode,
        form,
        every: 1,
        runs: 1,
        peers: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterative_jobs_match_the_reference_in_every_mode_and_form() {
    for form in [Form::Dataframe, Form::Sql] {
        iterative_jobs_match_the_reference_in_every_mode(form).await;
    }
}

async fn iterative_jobs_match_the_reference_in_every_mode(form: Form) {
    let mut sizes = Vec::new();
    for mode in [Mode::Checkpoint, Mode::Local, Mode::None] {
        let suites = iterative::run(data_dir(), &iterative_options(mode, form))
            .await
            .unwrap();
        assert_eq!(suites.len(), 2);
        for suite in &suites {
            assert_answers_right(suite);
            assert_eq!(
                suite.checks.len(),
                1,
                "Cairn is checked against the reference"
            );
            assert_eq!(suite.items, ["1", "2", "3"]);
        }
        let nodes: Vec<f64> = (1..=3)
            .map(|i| suites[0].results[i - 1].extra["plan nodes"])
            .collect();
        sizes.push(nodes);
    }
    // A checkpoint keeps the plan one scan; without one it doubles.
    assert!(sizes[0].iter().all(|&n| n <= 3.0), "{form:?} {sizes:?}");
    assert!(sizes[1].iter().all(|&n| n <= 3.0), "{form:?} {sizes:?}");
    assert!(sizes[2][2] > 3.0 * sizes[2][0], "{form:?} {sizes:?}");
}

#[tokio::test]
async fn the_reference_is_what_the_jobs_mean() {
    // A path 0 - 1 - 2 and a lone node 3: after 2 iterations every node of
    // the path has label 0; PageRank keeps the total below 1 (node 3
    // has no links, so its mass leaks, as the job is defined).
    let dir = tempfile::tempdir().unwrap();
    let graph = data::graph(dir.path(), 4, 0, 1).unwrap();
    let lonely = iterative::reference(Algorithm::LabelPropagation, &graph, 2).unwrap();
    assert_eq!(
        lonely,
        Answer::Labels {
            distinct: 4,
            sum: 6
        }
    );
    // Same seed, same graph, same answer: the generator is deterministic.
    let a = data::graph(dir.path(), 50, 200, 3).unwrap();
    let b = data::graph(&dir.path().join("again"), 50, 200, 3).unwrap();
    assert_eq!(
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap()
    );
    let Answer::Ranks(ranks) = iterative::reference(Algorithm::Pagerank, &a, 5).unwrap() else {
        panic!("ranks")
    };
    let total: f64 = ranks.iter().sum();
    assert!(total > 0.5 && total <= 1.0 + 1e-9, "{total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_io_reads_back_every_row() {
    let options = IoOptions {
        sf: 0.01,
        runs: 1,
        codecs: vec!["lz4_raw".into(), "zstd(1)".into()],
        peers: vec![],
    };
    let suite = checkpoint_io::run(data_dir(), &options).await.unwrap();
    assert_answers_right(&suite);
    assert_eq!(suite.checks.len(), 2);
    assert_eq!(
        suite.items,
        [
            "write lz4_raw",
            "read lz4_raw",
            "write zstd(1)",
            "read zstd(1)"
        ]
    );
    let write = suite.result("cairn", "write zstd(1)").unwrap();
    assert!(write.extra["MB/s"] > 0.0 && write.extra["rows/s"] > 0.0);
    assert!(
        suite
            .result("disk (same bytes, fsync)", "write lz4_raw")
            .is_some()
    );
    let err = checkpoint_io::parse_codec("zip").unwrap_err().to_string();
    assert!(err.contains("'zip'") && err.contains("lz4_raw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_report() {
    let peers = if duckdb_available() {
        vec!["duckdb".to_string()]
    } else {
        vec![]
    };
    let suite = seed::run(data_dir(), 1, &peers).await.unwrap();
    assert_answers_right(&suite);
    assert_eq!(suite.checks.len(), 1 + peers.len());
    let mut iterative = iterative::run(
        data_dir(),
        &iterative_options(Mode::Checkpoint, Form::Dataframe),
    )
    .await
    .unwrap();
    let mut report = Report::new("cairn-bench test".into());
    report.suites.push(suite);
    report.suites.append(&mut iterative);
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(md.contains("| sum + count after the checkpoint |"), "{md}");
    assert!(md.contains("![PageRank"), "{md}");
    for id in ["seed", "iterative-label-propagation", "iterative-pagerank"] {
        let svg = std::fs::read_to_string(dir.path().join(format!("{id}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("cairn"),
            "{id}.svg: {svg:.200}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["suites"].as_array().unwrap().len(), 3);
}

/// The cluster `.ci/run` starts (`CAIRN_TEST_CLUSTER`); required when
/// `CAIRN_REQUIRE_CLUSTER=1`, as in CI.
fn test_cluster() -> Option<String> {
    let found = std::env::var("CAIRN_TEST_CLUSTER").ok();
    assert!(
        found.is_some() || std::env::var_os("CAIRN_REQUIRE_CLUSTER").is_none(),
        "CAIRN_REQUIRE_CLUSTER is set but CAIRN_TEST_CLUSTER is not"
    );
    if found.is_none() {
        eprintln!("skipped: no cluster (tests/cluster/start.sh starts one)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_and_label_propagation_on_the_cluster_give_the_right_answers() {
    let Some(url) = test_cluster() else {
        return;
    };
    let options = tpch_options(vec![]);
    let suite = cairn_bench::settings::on_cluster(url.clone(), tpch::run(data_dir(), &options))
        .await
        .unwrap();
    assert_answers_right(&suite);
    assert_eq!(checked_against_committed(&suite), 22, "{:?}", suite.notes);

    // Label propagation, K = 8, a checkpoint every iteration, against the reference.
    let options = IterativeOptions {
        algorithms: vec![Algorithm::LabelPropagation],
        iterations: 8,
        ..iterative_options(Mode::Checkpoint, Form::Dataframe)
    };
    let suites = cairn_bench::settings::on_cluster(url, iterative::run(data_dir(), &options))
        .await
        .unwrap();
    assert_eq!(suites.len(), 1);
    assert_answers_right(&suites[0]);
    assert_eq!(
        suites[0].checks.len(),
        1,
        "Cairn is checked against the reference"
    );
}
