//! Chains of checkpoints, as loops make them: every link reads the one
//! before. A damaged link is rebuilt from its lineage, the links below it
//! first where they are damaged or gone, down to the sources; a source
//! that changed is refused, and `REFRESH` recomputes the chain from it.

use std::path::Path;

use cairn::Session;
use cairn::datafusion::functions_aggregate::expr_fn::sum;
use cairn::prelude::*;

use crate::common::{LABEL_STEP, dir_ctx, env_or, scalar};

/// Flips a byte in the middle of every data file of checkpoint `id`.
fn damage(dir: &Path, id: &str) {
    let mut flipped = 0;
    for entry in std::fs::read_dir(dir.join(id)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 0, "no data file of {id}");
}

/// With damaged checkpoints rebuilt on demand, `df` answers `answer`.
async fn assert_rebuilt_answer(ctx: &CairnContext, df: &DataFrame, answer: &str) {
    ctx.set_option("checkpoint_on_corrupt", "recompute")
        .await
        .unwrap();
    let batches = ctx.collect(df).await.unwrap();
    let shown = cairn::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(shown.contains(answer), "{shown} vs {answer}");
}

async fn one(session: &Session, sql: &str) -> String {
    let out = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = &out.last().unwrap().batches;
    cairn::arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
        .lines()
        .nth(3)
        .unwrap()
        .trim_matches(|c| c == '|' || c == ' ')
        .to_string()
}

/// The source, a Parquet file, and a session with a table over it.
async fn chain_session(dir: &Path, rows: u64) -> Session {
    let session = Session::new(dir_ctx(&dir.join("ckpt"))).unwrap();
    let source = dir.join("source.parquet");
    session
        .sql(&format!(
            "COPY (SELECT value AS v FROM range(0, {rows})) TO '{}' STORED AS PARQUET; \
             CREATE EXTERNAL TABLE src STORED AS PARQUET LOCATION '{}'",
            source.display(),
            source.display()
        ))
        .await
        .unwrap();
    session
}

/// Five named links: l1 reads the file, each next one the one before.
async fn five_links(session: &Session) -> Vec<String> {
    session
        .sql("CHECKPOINT TABLE l1 AS SELECT v, v * 2 AS w FROM src")
        .await
        .unwrap();
    for i in 2..=5 {
        session
            .sql(&format!(
                "CHECKPOINT TABLE l{i} AS SELECT v, w + 1 AS w FROM l{}",
                i - 1
            ))
            .await
            .unwrap();
    }
    let infos = session.context().checkpoints().await.unwrap();
    (1..=5)
        .map(|i| {
            infos
                .iter()
                .find(|c| c.name == format!("l{i}"))
                .and_then(|c| c.id.clone())
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn damaged_links_are_rebuilt_down_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 10_000).await;
    let ids = five_links(&session).await;
    // sum(2v + 4) over 0..10000
    let answer = "100030000";
    assert_eq!(one(&session, "SELECT sum(w) FROM l5").await, answer);

    let ckpt = dir.path().join("ckpt");
    for id in &ids[2..] {
        damage(&ckpt, id);
    }
    // Another session, as a later process: nothing of the writes is cached.
    let session = Session::new(dir_ctx(&ckpt)).unwrap();
    let err = session.sql("SELECT sum(w) FROM l5").await.unwrap_err();
    assert!(err.to_string().contains("is corrupt"), "{err}");
    session
        .sql("SET cairn.checkpoint_on_corrupt = 'recompute'")
        .await
        .unwrap();
    assert_eq!(one(&session, "SELECT sum(w) FROM l5").await, answer);
    // Every link reads again, without recomputing (the policy back to
    // 'error' would fail on any damage left).
    session
        .sql("SET cairn.checkpoint_on_corrupt = 'error'")
        .await
        .unwrap();
    for i in 1..=5 {
        let rows = one(&session, &format!("SELECT count(*) FROM l{i}")).await;
        assert_eq!(rows, "10000", "l{i}");
    }
    // The links keep their ids: the ones above still read them.
    let infos = session.context().checkpoints().await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let name = format!("l{}", i + 1);
        let now = infos.iter().find(|c| c.name == name).unwrap();
        assert_eq!(now.id.as_ref(), Some(id), "{name}");
    }
}

#[tokio::test]
async fn a_dropped_link_is_rebuilt_from_the_lineage_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 5000).await;
    let ids = five_links(&session).await;
    let answer = one(&session, "SELECT sum(w) FROM l5").await;
    session.sql("DROP CHECKPOINT l4").await.unwrap();
    let ckpt = dir.path().join("ckpt");
    assert!(!ckpt.join(&ids[3]).exists(), "l4's data is gone");
    damage(&ckpt, &ids[4]);
    damage(&ckpt, &ids[2]);
    let session = Session::new(dir_ctx(&ckpt)).unwrap();
    session
        .sql("SET cairn.checkpoint_on_corrupt = 'recompute'")
        .await
        .unwrap();
    assert_eq!(one(&session, "SELECT sum(w) FROM l5").await, answer);
    assert!(
        ckpt.join(&ids[3]).join("_manifest.json").exists(),
        "l4 rebuilt"
    );
}

#[tokio::test]
async fn a_changed_source_is_refused_and_refresh_recomputes_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 1000).await;
    let ids = five_links(&session).await;
    let before = one(&session, "SELECT sum(w) FROM l5").await;
    // The source changes, and every link is damaged.
    let source = dir.path().join("source.parquet");
    std::thread::sleep(std::time::Duration::from_millis(20));
    session
        .sql(&format!(
            "COPY (SELECT value AS v FROM range(0, 2000)) TO '{}' STORED AS PARQUET",
            source.display()
        ))
        .await
        .unwrap();
    let ckpt = dir.path().join("ckpt");
    for id in &ids {
        damage(&ckpt, id);
    }
    let session = Session::new(dir_ctx(&ckpt)).unwrap();
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE src STORED AS PARQUET LOCATION '{}'; \
             SET cairn.checkpoint_on_corrupt = 'recompute'",
            source.display()
        ))
        .await
        .unwrap();
    let err = session
        .sql("SELECT sum(w) FROM l5")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a source changed"), "{err}");
    assert!(err.contains("source.parquet"), "names the source: {err}");
    assert!(err.contains("REFRESH CHECKPOINT"), "{err}");
    // REFRESH recomputes from the sources as they are now, down the chain.
    session.sql("REFRESH CHECKPOINT l5").await.unwrap();
    let after = one(&session, "SELECT sum(w) FROM l5").await;
    assert_ne!(after, before);
    // sum(2v + 4) over 0..2000
    assert_eq!(after, "4006000");
}

/// The same chain through the DataFrame API: unnamed checkpoints, the
/// last one damaged with the two below it, collected with the policy.
#[tokio::test]
async fn a_dataframe_chain_is_rebuilt_when_collected() {
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 10_000).await;
    let ctx = session.context().clone();
    let mut df = ctx.sql("SELECT v, v * 2 AS w FROM src").await.unwrap();
    for _ in 0..5 {
        df = df.checkpoint().await.unwrap();
        df = df
            .select(vec![col("v"), (col("w") + lit(1)).alias("w")])
            .unwrap();
    }
    let total = df.clone().aggregate(vec![], vec![sum(col("w"))]).unwrap();
    let answer = scalar(total.clone()).await;
    let ckpt = dir.path().join("ckpt");
    let mut dirs: Vec<_> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
        .map(|e| {
            let modified = std::fs::metadata(e.path().join("_manifest.json"))
                .unwrap()
                .modified()
                .unwrap();
            (modified, e.file_name().to_string_lossy().to_string())
        })
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 5, "{dirs:?}");
    for (_, id) in &dirs[2..] {
        damage(&ckpt, id);
    }
    assert_rebuilt_answer(&ctx, &total, &answer).await;
}

/// A loop that keeps only its last two checkpoints: the last one,
/// damaged, is rebuilt from the records the removed ones left.
#[tokio::test]
async fn a_periodic_loop_rebuilds_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 2000).await;
    let ctx = session.context().clone();
    let edges = dir.path().join("edges.parquet");
    ctx.sql(&format!(
        "COPY (SELECT v % 2000 AS src, (v * 7 + 3) % 2000 AS dst FROM src) TO '{}' \
         STORED AS PARQUET",
        edges.display()
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    ctx.register_parquet("edges", edges.display().to_string(), Default::default())
        .await
        .unwrap();
    let mut periodic = cairn::PeriodicCheckpointer::new(1, 2).unwrap();
    let mut labels = ctx.sql("SELECT v, v AS l FROM src").await.unwrap();
    for _ in 0..10 {
        ctx.deregister_table("labels").unwrap();
        ctx.register_table("labels", labels.clone().into_view())
            .unwrap();
        let next = ctx.sql(LABEL_STEP).await.unwrap();
        labels = periodic.update(next).await.unwrap();
    }
    let distinct = labels
        .clone()
        .aggregate(
            vec![],
            vec![cairn::datafusion::functions_aggregate::expr_fn::count_distinct(col("l"))],
        )
        .unwrap();
    let answer = scalar(distinct.clone()).await;
    let kept = periodic.kept();
    assert_eq!(kept.len(), 2);
    let ckpt = dir.path().join("ckpt");
    damage(&ckpt, kept.last().unwrap());
    assert_rebuilt_answer(&ctx, &distinct, &answer).await;
}

/// `EXPLAIN LINEAGE` shows the whole chain down to the source file; its
/// DOT form is a graph Graphviz reads.
#[tokio::test]
async fn explain_lineage_shows_the_chain_to_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 100).await;
    let ids = five_links(&session).await;
    let out = session.sql("EXPLAIN LINEAGE l5").await.unwrap();
    let text = cairn::arrow::util::pretty::pretty_format_batches(&out[0].batches)
        .unwrap()
        .to_string();
    assert_eq!(out[0].num_rows(), 5, "{text}");
    for id in &ids {
        assert!(text.contains(id), "{id} missing: {text}");
    }
    assert!(text.contains("source.parquet"), "{text}");
    assert!(text.contains("present"), "{text}");
    let dot = session.sql("EXPLAIN LINEAGE FORMAT DOT l5").await.unwrap();
    let graph = cairn::arrow::util::pretty::pretty_format_batches(&dot[0].batches)
        .unwrap()
        .to_string();
    assert!(graph.contains("digraph lineage"), "{graph}");
    let column = dot[0].batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<cairn::arrow::array::StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    let has_dot = std::process::Command::new("dot").arg("-V").output().is_ok();
    if !has_dot {
        assert!(
            std::env::var("CAIRN_REQUIRE_DOT").is_err(),
            "Graphviz's dot is required here"
        );
        eprintln!("note: Graphviz's dot is not installed; the DOT form is not parsed");
        return;
    }
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(column.as_bytes())
        .unwrap();
    let svg = child.wait_with_output().unwrap();
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| entries.map(|e| file_size(&e.unwrap().path())).sum())
        .unwrap_or(0)
}

/// A replace loop of many links (`CAIRN_CHAIN_LINKS`, 60 by default): each
/// manifest and each lineage record holds one link, never the chain below
/// it, so the last manifest is the size of an early one and the records grow
/// by the same amount per link; and the last link, damaged with every
/// earlier link's data gone, is still rebuilt to the same answer.
#[tokio::test]
async fn a_long_replace_loop_keeps_manifests_flat_and_stays_rebuildable() {
    let links: usize = env_or("CAIRN_CHAIN_LINKS", 60);
    let dir = tempfile::tempdir().unwrap();
    let session = chain_session(dir.path(), 1000).await;
    let ckpt = dir.path().join("ckpt");
    session
        .sql("CHECKPOINT TABLE l AS SELECT v, 0 AS w FROM src")
        .await
        .unwrap();
    let id_of = |infos: Vec<cairn::CheckpointInfo>| {
        infos
            .into_iter()
            .find(|c| c.name == "l")
            .and_then(|c| c.id)
            .unwrap()
    };
    let mut sizes = Vec::new();
    for _ in 1..links {
        session
            .sql("CHECKPOINT OR REPLACE TABLE l AS SELECT v, w + 1 AS w FROM l")
            .await
            .unwrap();
        let id = id_of(session.context().checkpoints().await.unwrap());
        let manifest = file_size(&ckpt.join(&id).join("_manifest.json"));
        sizes.push((manifest, dir_size(&ckpt.join("_lineage"))));
    }
    let (early_manifest, early_records) = sizes[9];
    let (last_manifest, last_records) = *sizes.last().unwrap();
    println!(
        "{links} links: last manifest {last_manifest} B (link 11: {early_manifest} B); \
         lineage records {last_records} B in all ({} B per link)",
        last_records / (links as u64 - 2)
    );
    assert!(
        last_manifest < early_manifest + early_manifest / 10,
        "the manifest grows with the chain: {early_manifest} B at link 11, {last_manifest} B \
         at link {links}"
    );
    let per_link_early = early_records / 10;
    let per_link_last = last_records / (links as u64 - 2);
    assert!(
        per_link_last < per_link_early + per_link_early / 5,
        "lineage records grow faster than the chain: {per_link_early} B per link at 11 \
         links, {per_link_last} B at {links}"
    );

    // Only the last link has data; damage it and rebuild from the records.
    let answer = (0..1000u64).sum::<u64>() + 1000 * (links as u64 - 1);
    let id = id_of(session.context().checkpoints().await.unwrap());
    // Superseded links are removed in the background.
    session.context().wait_for_background().await.unwrap();
    let data: Vec<_> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
        .collect();
    assert_eq!(data, vec![id.clone()], "earlier links' data was freed");
    damage(&ckpt, &id);
    let session = Session::new(dir_ctx(&ckpt)).unwrap();
    session
        .sql("SET cairn.checkpoint_on_corrupt = 'recompute'")
        .await
        .unwrap();
    assert_eq!(
        one(&session, "SELECT sum(v) + sum(w) FROM l").await,
        answer.to_string()
    );
}
