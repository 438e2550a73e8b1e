//! The `cairn` binary end to end, as a process: `-c`, `-f` and stdin, every
//! output format, exit codes and error text, and, through a pseudo-terminal,
//! multi-line input, completion, history and Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(CAIRN)
        .arg("--checkpoint-dir")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("cairn runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const DATA: &str =
    "SELECT * FROM (VALUES (1, 'one'), (2, NULL), (3, 'three')) AS t(n, s) ORDER BY n";

#[test]
fn every_format_prints_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |format: &str| stdout(&cairn(dir.path(), &["--format", format, "-c", DATA]));
    assert_eq!(run("csv"), "n,s\n1,one\n2,NULL\n3,three\n");
    assert_eq!(run("tsv"), "n\ts\n1\tone\n2\tNULL\n3\tthree\n");
    assert_eq!(
        run("json"),
        "[{\"n\":1,\"s\":\"one\"},{\"n\":2},{\"n\":3,\"s\":\"three\"}]\n"
    );
    assert_eq!(
        run("ndjson"),
        "{\"n\":1,\"s\":\"one\"}\n{\"n\":2}\n{\"n\":3,\"s\":\"three\"}\n"
    );
    assert_eq!(
        run("markdown"),
        "| n | s |\n|---|---|\n| 1 | one |\n| 2 | NULL |\n| 3 | three |\n"
    );
    let table = run("table");
    let expected = "\
┌───────┬───────┐
│   n   ┆   s   │
│ Int64 ┆  Utf8 │
╞═══════╪═══════╡
│     1 ┆ one   │
│     2 ┆ NULL  │
│     3 ┆ three │
└───────┴───────┘
(3 rows)
";
    assert_eq!(table, expected);
}

#[test]
fn tables_cap_their_rows_and_say_how_many_were_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&cairn(
        dir.path(),
        &["--maxrows", "2", "-c", "SELECT value FROM range(0, 10)"],
    ));
    assert!(
        out.ends_with("(10 rows, 2 shown; \\maxrows N or \\maxrows all shows more)\n"),
        "{out}"
    );
    let out = stdout(&cairn(
        dir.path(),
        &[
            "-c",
            "\\maxrows all",
            "-c",
            "SELECT value FROM range(0, 50)",
        ],
    ));
    assert!(out.ends_with("(50 rows)\n"), "{out}");
}

#[test]
fn commands_and_files_run_in_order_and_share_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t AS SELECT value AS v FROM range(0, 4);\n\
         \\format csv\n\
         SELECT sum(v) AS total\n  FROM t;\n",
    )
    .unwrap();
    let out = cairn(
        dir.path(),
        &[
            "-c",
            "SELECT 'first' AS step",
            "-f",
            script.to_str().unwrap(),
            "-c",
            "SELECT count(*) AS n FROM t",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("first"), "{text}");
    assert!(text.ends_with("total\n6\nn\n4\n"), "{text}");
}

#[test]
fn sql_on_stdin_runs_when_no_command_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(CAIRN)
        .args([
            "--checkpoint-dir",
            dir.path().to_str().unwrap(),
            "--format",
            "csv",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 40 + 2 AS answer;\nSELECT 'bye' AS word;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "answer\n42\nword\nbye\n");
}

#[test]
fn the_first_failure_stops_the_script_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT 1 AS a; SELECT nope FROM (SELECT 1 AS x); SELECT 3 AS c",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "a\n1\n");
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: Schema error: No field named nope."),
        "{err}"
    );
    assert!(
        !err.contains("DataFusionError") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn parse_errors_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(
        dir.path(),
        &["-c", "SELECT 1;\nCHECKPOINT TABLE t SELECT 1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Expected: AS followed by a query, found: SELECT at Line: 2, Column: 20"),
        "{err}"
    );
    let out = cairn(dir.path(), &["-c", "\\frobnicate"]);
    assert_eq!(
        stderr(&out),
        "Error: unknown command '\\frobnicate'; \\? lists the commands\n"
    );
}

#[test]
fn a_checkpoint_made_by_one_process_is_read_by_name_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let first = cairn(
        dir.path(),
        &[
            "--quiet",
            "-c",
            "CHECKPOINT TABLE squares AS SELECT value * value AS sq FROM range(0, 100)",
        ],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let second = cairn(
        dir.path(),
        &["--format", "csv", "-c", "SELECT sum(sq) AS s FROM squares"],
    );
    assert_eq!(stdout(&second), "s\n328350\n");
    let listing = stdout(&cairn(
        dir.path(),
        &["--format", "csv", "-c", "\\checkpoints"],
    ));
    assert!(
        listing.starts_with("name,kind,rows,size,age,stale,location\nsquares,reliable,100,"),
        "{listing}"
    );
}

#[test]
fn files_are_queried_by_path_and_written_with_copy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.parquet");
    let f = file.to_str().unwrap();
    let copy = format!("COPY (SELECT value AS v FROM range(0, 10)) TO '{f}' STORED AS PARQUET");
    let out = cairn(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            &copy,
            "-c",
            &format!("SELECT count(*) AS n FROM '{f}'"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("n\n10\n"), "{}", stdout(&out));
}

#[test]
fn help_shows_a_first_session() {
    let out = Command::new(CAIRN).arg("--help").output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("--checkpoint-dir") && text.contains("--memory-limit"),
        "{text}"
    );
    assert!(text.contains("CHECKPOINT TABLE degrees"), "{text}");
}

/// A reader that stops early (`| head -1`) ends the statement quietly, in
/// every format and every way SQL comes in: exit 0, nothing on stderr.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // Longer than a pipe holds (64 KiB) in every format.
    let long = "SELECT value, value * 2 AS twice FROM generate_series(1, 300000)";
    let ways = [
        ("table", "-c"),
        ("csv", "-c"),
        ("tsv", "-c"),
        ("json", "-c"),
        ("ndjson", "-c"),
        ("markdown", "-c"),
        ("csv", "-f"),
        ("csv", "stdin"),
        ("table", "stdin"),
    ];
    for (format, how) in ways {
        let script = dir.path().join("long.sql");
        std::fs::write(&script, format!("{long};")).unwrap();
        let mut command = Command::new(CAIRN);
        command
            .arg("--checkpoint-dir")
            .arg(dir.path())
            .args(["--format", format, "--maxrows", "all"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match how {
            "-c" => {
                command.args(["-c", long]);
            }
            "-f" => {
                command.arg("-f").arg(&script);
            }
            _ => {}
        }
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if how == "stdin" {
            stdin.write_all(format!("{long};").as_bytes()).unwrap();
        }
        drop(stdin);
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{format} {how}: no output");
        // The reader goes away: the rest of the output has nowhere to go.
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format} {how}: {}",
            stderr(&out)
        );
        assert_eq!(stderr(&out), "", "{format} {how}");
    }
}

/// Plans print as text under their type, not as a table padded to the
/// widest line: no line wider than the plan's own, no box characters.
#[test]
fn explain_prints_plans_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(
        dir.path(),
        &[
            "-c",
            "CHECKPOINT TABLE wide AS SELECT value AS v, value % 7 AS k FROM range(0, 100000); \
             EXPLAIN SELECT k, count(*) FROM wide WHERE v > 10 GROUP BY k",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let plan_start = text.find("logical_plan").expect("a logical plan");
    let plans = &text[plan_start..];
    assert!(plans.contains("\nphysical_plan\n"), "{plans}");
    assert!(plans.contains("DataSourceExec"), "{plans}");
    // The plans' own lines, from the rows as data.
    let rows = cairn(
        dir.path(),
        &[
            "--format",
            "ndjson",
            "-c",
            "EXPLAIN SELECT k, count(*) FROM wide WHERE v > 10 GROUP BY k",
        ],
    );
    let widest = stdout(&rows)
        .lines()
        .flat_map(|row| {
            let plan = row
                .split("\"plan\":\"")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            plan.split("\\n")
                .map(|l| l.chars().count())
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap();
    for line in plans.lines() {
        assert!(
            line.chars().count() <= widest + 2,
            "wider than the plan ({widest}): {line:?}"
        );
        assert!(!line.ends_with(' '), "a padded line: {line:?}");
        assert!(
            !line.contains(['│', '┌', '─', '┐', '└', '┘', '├', '┤']),
            "a table line: {line:?}"
        );
    }
    // DataFusion's tree form reads well too.
    let tree = cairn(
        dir.path(),
        &[
            "-c",
            "EXPLAIN FORMAT TREE SELECT k, count(*) FROM wide GROUP BY k",
        ],
    );
    assert_eq!(tree.status.code(), Some(0), "{}", stderr(&tree));
    let tree = stdout(&tree);
    assert!(tree.starts_with("physical_plan\n"), "{tree}");
    assert!(tree.contains("DataSourceExec"), "{tree}");
    // Data formats keep the rows as they are.
    let csv = cairn(dir.path(), &["--format", "csv", "-c", "EXPLAIN SELECT 1"]);
    assert!(
        stdout(&csv).starts_with("plan_type,plan\n"),
        "{}",
        stdout(&csv)
    );
}

/// A misspelt table or checkpoint is named with the nearest names.
#[test]
fn a_misspelt_name_suggests_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(
        dir.path(),
        &[
            "-c",
            "CREATE TABLE edges AS SELECT value % 100 AS src, value % 37 AS dst FROM range(0, 1000); \
             CHECKPOINT TABLE degrees AS SELECT src, count(*) AS n FROM edges GROUP BY src; \
             SELECT * FROM degres",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("table 'datafusion.public.degres' not found"),
        "{err}"
    );
    assert!(err.contains("did you mean 'degrees'?"), "{err}");
    let drop = cairn(dir.path(), &["-c", "DROP CHECKPOINT degree"]);
    let err = stderr(&drop);
    assert!(
        err.contains("checkpoint 'degree' does not exist; did you mean 'degrees'?"),
        "{err}"
    );
    let edges = cairn(dir.path(), &["-c", "SELECT * FROM edgse"]);
    // A new process: tables of the last one are gone, checkpoints are not.
    assert!(
        !stderr(&edges).contains("did you mean 'edges'"),
        "{}",
        stderr(&edges)
    );
}

/// Through a pseudo-terminal, as a person types.
mod terminal {
    use super::*;
    use rexpect::session::{PtySession, spawn_command};

    fn shell(dir: &Path) -> PtySession {
        let mut command = Command::new(CAIRN);
        command
            .arg("--checkpoint-dir")
            .arg(dir.join("ckpt"))
            .env("CAIRN_HISTORY", dir.join("history"))
            .env("NO_COLOR", "1")
            .env("TERM", "xterm-256color");
        let mut session = spawn_command(command, Some(60_000)).expect("a pty");
        session.exp_string("\\q or Ctrl-D to quit").unwrap();
        session
    }

    /// Waits for `text`, then for the prompt after it: input typed while a
    /// statement runs is dropped when the line editor takes the terminal back.
    fn expect_then_prompt(s: &mut PtySession, text: &str) {
        s.exp_string(text).unwrap();
        s.exp_string("cairn> ").unwrap();
    }

    #[test]
    fn multi_line_statements_completion_history_and_ctrl_c() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = shell(dir.path());

        // A statement over two lines runs when it ends with ';'.
        s.send_line("SELECT 20 + 22").unwrap();
        s.send_line("  AS answer;").unwrap();
        s.exp_string("42").unwrap();
        expect_then_prompt(&mut s, "(1 row)");

        // Tab completes a table name.
        s.send_line("CREATE TABLE measurements AS SELECT value AS v FROM range(0, 3);")
            .unwrap();
        expect_then_prompt(&mut s, "range(0, 3);");
        s.send("SELECT count(*) AS n FROM measurem\t").unwrap();
        s.flush().unwrap();
        s.exp_string("FROM measurements").unwrap();
        s.send_line(";").unwrap();
        s.exp_string("     3 ").unwrap();
        expect_then_prompt(&mut s, "(1 row)");

        // Up recalls the last statement.
        s.send("\x1b[A").unwrap();
        s.flush().unwrap();
        s.exp_string("FROM measurements;").unwrap();
        s.send_line("").unwrap();
        s.exp_string("     3 ").unwrap();
        expect_then_prompt(&mut s, "(1 row)");

        // Tab completes a column of the tables the session has, before
        // the statement names one.
        s.send_line("CREATE TABLE degrees AS SELECT 1 AS src, 2 AS n;")
            .unwrap();
        expect_then_prompt(&mut s, "2 AS n;");
        s.send("SELECT sr\t").unwrap();
        s.flush().unwrap();
        s.exp_string("SELECT src").unwrap();
        s.send_line(" FROM degrees;").unwrap();
        s.exp_string("(1 row)").unwrap();
        s.exp_string("cairn> ").unwrap();

        // Ctrl-C cancels a long statement; the shell stays.
        s.send_line("SELECT count(*) FROM range(0, 100000000000) WHERE value % 7 = 3;")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        s.send_control('c').unwrap();
        expect_then_prompt(&mut s, "Cancelled.");
        s.send_line("SELECT 'still here' AS status;").unwrap();
        s.exp_string("still here").unwrap();
        expect_then_prompt(&mut s, "(1 row)");

        // A line with a credential runs, and stays out of the history.
        s.send_line("SET cairn.s3.secret_access_key = 'hunter2-in-history';")
            .unwrap();
        s.exp_string("cairn> ").unwrap();
        s.send_line("SHOW cairn.s3.secret_access_key;").unwrap();
        expect_then_prompt(&mut s, "********");

        s.send_line("\\q").unwrap();
        s.exp_eof().unwrap();
        let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
        assert!(
            history.contains("SELECT count(*) AS n FROM measurements;"),
            "{history}"
        );
        assert!(!history.contains("hunter2"), "{history}");
    }

    /// The shell says once, on a terminal, that Cairn placed a checkpoint
    /// of its own; not at every statement.
    #[test]
    fn an_automatic_checkpoint_is_told_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = shell(dir.path());
        s.send_line("SET cairn.auto_checkpoint_nodes = 1; SELECT 'ready' AS status;")
            .unwrap();
        expect_then_prompt(&mut s, "(1 row)");
        let query = "SELECT k, count(*) AS n FROM (SELECT value % 3 AS k FROM range(0, 90)) \
                     GROUP BY k ORDER BY k;";
        s.send_line(query).unwrap();
        s.exp_string("Cairn kept part of it as a checkpoint")
            .unwrap();
        expect_then_prompt(&mut s, "auto_checkpoint");
        s.send_line(query).unwrap();
        let again = s.exp_string("(3 rows)").unwrap();
        let rest = s.exp_string("cairn> ").unwrap();
        assert!(
            !again.contains("note:") && !rest.contains("note:"),
            "{again}{rest}"
        );
        s.send_line("\\q").unwrap();
        s.exp_eof().unwrap();
    }
}

/// The README's first session on the cluster `.ci/run` starts
/// (`CAIRN_TEST_CLUSTER`; required with `CAIRN_REQUIRE_CLUSTER=1`): each
/// statement works, or is refused before it runs with what to use instead,
/// and that works.
#[test]
fn the_first_session_works_on_a_cluster_or_says_what_to_use() {
    let Ok(cluster) = std::env::var("CAIRN_TEST_CLUSTER") else {
        assert!(
            std::env::var_os("CAIRN_REQUIRE_CLUSTER").is_none(),
            "CAIRN_REQUIRE_CLUSTER is set but CAIRN_TEST_CLUSTER is not"
        );
        eprintln!("skipped: no cluster (tests/cluster/start.sh starts one)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let on_cluster = |sql: &str| {
        cairn(
            dir.path(),
            &["--cluster", &cluster, "--format", "csv", "-c", sql],
        )
    };
    let edges = "SELECT value % 100 AS src, value % 37 AS dst FROM range(0, 10000)";
    let refused = on_cluster(&format!("CREATE TABLE edges AS {edges}"));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("CHECKPOINT TABLE edges AS"),
        "{}",
        stderr(&refused)
    );
    let statements = format!(
        "CHECKPOINT TABLE edges AS {edges}; \
         CHECKPOINT TABLE degrees AS SELECT src, count(*) AS n FROM edges GROUP BY src; \
         EXPLAIN SELECT * FROM degrees WHERE n > 90;"
    );
    let done = cairn(
        dir.path(),
        &[
            "--cluster",
            &cluster,
            "-c",
            &statements,
            "-c",
            "\\checkpoints",
        ],
    );
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains("degrees"), "{}", stdout(&done));
    // A new process reuses the checkpoints (writes no file); and so does
    // one that is not on the cluster.
    let written = checkpoint_files(dir.path());
    let manifests = written.iter().filter(|f| f.ends_with("/_manifest.json"));
    assert_eq!(manifests.count(), 2, "{written:?}");
    let max = on_cluster("SELECT max(n) AS m FROM degrees");
    assert_eq!(stdout(&max), "m\n100\n", "{}", stderr(&max));
    assert_eq!(checkpoint_files(dir.path()), written);
    let local = cairn(
        dir.path(),
        &["--format", "csv", "-c", "SELECT max(n) AS m FROM degrees"],
    );
    assert_eq!(stdout(&local), "m\n100\n", "{}", stderr(&local));
    assert_eq!(checkpoint_files(dir.path()), written);
}

/// The manifests and data files under the checkpoint dirs of `dir`.
fn checkpoint_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for id in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        if !id.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(id.path()).unwrap().filter_map(|e| e.ok()) {
            let name = file.file_name().to_string_lossy().to_string();
            if name.ends_with(".parquet") || name == "_manifest.json" {
                found.push(format!("{}/{name}", id.file_name().to_string_lossy()));
            }
        }
    }
    found.sort();
    found
}
