//! Settings through DataFusion's config (`SET`, `SHOW`, `df_settings`), and
//! what planning may and may not do to a checkpoint dir.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use cairn::{CairnOptions, Session};

use crate::common::{cells, dir_ctx};

/// Every file and directory under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let name = path.strip_prefix(dir).unwrap().display().to_string();
        out.insert(name, (meta.len(), meta.modified().unwrap()));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    out
}

async fn run(session: &Session, sql: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for statement in session.parse(sql).unwrap() {
        let df = session.execute(&statement).await.unwrap();
        rows = cells(df).await;
    }
    rows
}

/// `EXPLAIN` (and a physical plan made without running it) over committed
/// checkpoints, named and unnamed, leaves their dir byte-for-byte as it was:
/// a checkpoint's last use is recorded when it is read.
#[tokio::test]
async fn planning_over_a_committed_checkpoint_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    run(
        &session,
        "CHECKPOINT TABLE named AS SELECT value AS v FROM range(0, 1000); \
         SELECT count(*) FROM CHECKPOINT(SELECT * FROM (SELECT value * 2 AS w FROM range(0, 10))) AS t",
    )
    .await;
    // Opening the dir (a new session, as another process would) probes it.
    let fresh = Session::new(dir_ctx(dir.path())).unwrap();
    let before = snapshot(dir.path());
    for sql in [
        "EXPLAIN SELECT * FROM named WHERE v > 3",
        "EXPLAIN VERBOSE SELECT sum(v) FROM named",
        "EXPLAIN SELECT count(*) FROM \
         CHECKPOINT(SELECT * FROM (SELECT value * 2 AS w FROM range(0, 10))) AS t",
        "EXPLAIN SELECT * FROM CHECKPOINT(SELECT v FROM named) AS t",
    ] {
        let plan = run(&fresh, sql).await;
        assert!(!plan.is_empty(), "{sql}");
    }
    let df = fresh.context().sql("SELECT v FROM named").await.unwrap();
    df.create_physical_plan().await.unwrap();
    assert_eq!(snapshot(dir.path()), before, "planning wrote to the dir");
}

/// Reading a checkpoint records its use, so that retention counts from it;
/// the writer's own reads need not (its manifest is as new).
#[tokio::test]
async fn reading_a_checkpoint_records_its_use() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    let used_files = || {
        walkdir_names(dir.path())
            .into_iter()
            .filter(|n| n.ends_with("_last_used"))
            .count()
    };
    run(
        &session,
        "CHECKPOINT TABLE used AS SELECT value AS v FROM range(0, 100); \
         SELECT sum(v) FROM used",
    )
    .await;
    assert_eq!(used_files(), 0, "a checkpoint just written is fresh");
    // Another session (as another process would) plans a read: nothing yet.
    let reader = dir_ctx(dir.path());
    let df = reader.sql("SELECT sum(v) FROM used").await.unwrap();
    df.clone().create_physical_plan().await.unwrap();
    assert_eq!(used_files(), 0, "planning recorded a use");
    assert_eq!(df.collect().await.unwrap()[0].num_rows(), 1);
    assert_eq!(used_files(), 1, "reading recorded no use");
}

fn walkdir_names(dir: &Path) -> Vec<String> {
    snapshot(dir).into_keys().collect()
}

#[tokio::test]
async fn an_unknown_setting_is_named_with_the_ones_there_are() {
    let session = Session::new(crate::common::memory_ctx()).unwrap();
    let before = session.context().options();
    for sql in ["SET cairn.nope = 1", "SHOW cairn.nope"] {
        let err = session.sql(sql).await.unwrap_err().to_string();
        assert!(err.contains("unknown setting 'cairn.nope'"), "{err}");
        for (key, _) in CairnOptions::keys() {
            assert!(err.contains(&key), "{key} missing from: {err}");
        }
        assert!(!err.contains("cannot checkpoint"), "{err}");
    }
    // DataFusion's own statement path says the same.
    let err = session
        .context()
        .sql("SET cairn.nope = 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting 'cairn.nope'"), "{err}");
    assert_eq!(session.context().options(), before);
}

#[tokio::test]
async fn a_failed_set_changes_no_setting() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    run(&session, "SET cairn.checkpoint_retention = '2 days'").await;
    let before = session.context().options();
    let file = tempfile::NamedTempFile::new().unwrap();
    for bad in [
        "SET cairn.checkpoint_retention = 'soon'".to_string(),
        "SET cairn.checkpoint_on_corrupt = 'retry'".to_string(),
        "SET cairn.checkpoint_compression = 'fast'".to_string(),
        "SET cairn.s3.allow_http = 'maybe'".to_string(),
        format!(
            "SET cairn.checkpoint_dir = '{}'",
            file.path().join("x").display()
        ),
    ] {
        assert!(session.sql(&bad).await.is_err(), "{bad} was accepted");
        assert_eq!(session.context().options(), before, "after {bad}");
    }
    assert_eq!(
        run(&session, "SHOW cairn.checkpoint_retention").await,
        vec![vec!["cairn.checkpoint_retention", "2 days"]]
    );
}

/// `SHOW ALL` and `information_schema.df_settings` list every `cairn.` key
/// with its description; a secret shows as `********`.
#[tokio::test]
async fn df_settings_lists_every_cairn_key_with_secrets_hidden() {
    let session = Session::new(crate::common::memory_ctx()).unwrap();
    run(
        &session,
        "SET cairn.s3.secret_access_key = 'wJalrXUtnFEMI-very-secret'; \
         SET cairn.s3.region = 'eu-west-1'",
    )
    .await;
    let rows = run(
        &session,
        "SELECT name, value, description FROM information_schema.df_settings \
         WHERE name LIKE 'cairn.%' ORDER BY name",
    )
    .await;
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let mut keys: Vec<String> = CairnOptions::keys().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(names, keys);
    let value = |key: &str| {
        rows.iter()
            .find(|r| r[0] == key)
            .map(|r| r[1].clone())
            .unwrap()
    };
    assert_eq!(value("cairn.s3.secret_access_key"), "********");
    assert_eq!(value("cairn.s3.region"), "eu-west-1");
    assert!(value("cairn.checkpoint_dir").starts_with("memory://"));
    assert!(rows.iter().all(|r| !r[2].is_empty()), "{rows:?}");
    let all = run(&session, "SHOW ALL").await;
    assert!(
        all.iter()
            .any(|r| r[0] == "cairn.checkpoint_compression" && r[1] == "lz4_raw")
    );
    assert!(!format!("{all:?}").contains("very-secret"));
    // RESET goes back to the default.
    run(&session, "RESET cairn.s3.region").await;
    assert_eq!(session.context().options().s3.region, None);
}

/// `EXPLAIN ANALYZE` of a checkpoint write shows what it wrote.
#[tokio::test]
async fn explain_analyze_shows_rows_and_bytes_written() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    let rows = run(
        &session,
        "EXPLAIN ANALYZE SELECT count(*) FROM \
         CHECKPOINT(SELECT * FROM (SELECT value AS v, value * 3 AS w FROM range(0, 5000))) AS t",
    )
    .await;
    let plan = rows
        .iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    let line = plan
        .lines()
        .find(|l| l.contains("CheckpointExec"))
        .unwrap_or_else(|| panic!("no CheckpointExec in:\n{plan}"));
    let metric = |name: &str| {
        let text = line.split(&format!("{name}=")).nth(1)?;
        let number: String = text
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let scale = match text[number.len()..].trim_start().chars().next() {
            Some('K') => 1e3,
            Some('M') => 1e6,
            Some('G') => 1e9,
            _ => 1.0,
        };
        Some(number.parse::<f64>().ok()? * scale)
    };
    assert_eq!(metric("rows_written"), Some(5000.0), "{line}");
    assert!(metric("files_written").is_some_and(|n| n >= 1.0), "{line}");
    assert!(
        metric("bytes_written").is_some_and(|n| n > 1000.0),
        "{line}"
    );
}

/// A lineage that cannot be encoded says why in words, never with a path
/// of the machine Cairn was built on.
#[tokio::test]
async fn lineage_errors_name_no_build_path() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir_ctx(dir.path())).unwrap();
    let rows = run(
        &session,
        "CHECKPOINT TABLE a AS SELECT value AS x FROM generate_series(1, 1000); \
         CHECKPOINT TABLE b AS SELECT x * 2 AS y FROM a; \
         EXPLAIN LINEAGE b",
    )
    .await;
    let text = format!("{rows:?}");
    for leak in [".cargo", "registry", ".rs:", "/src/"] {
        assert!(!text.contains(leak), "'{leak}' in: {text}");
    }
    let err = session
        .sql("REFRESH CHECKPOINT b")
        .await
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string());
    for leak in [".cargo", "registry", ".rs:", "/src/"] {
        assert!(!err.contains(leak), "'{leak}' in: {err}");
    }
}
