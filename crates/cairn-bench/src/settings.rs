//! Settings given on the command line (`--set cairn.key=value`), applied to
//! every Cairn session a suite starts, so that one run can measure a
//! setting against its default.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use cairn_core::{CairnContext, CairnContextBuilder};

static SETTINGS: OnceLock<Vec<(String, String)>> = OnceLock::new();

tokio::task_local! {
    /// The cluster `--cluster` names, for the suites run inside [`on_cluster`].
    static CLUSTER: String;
}

/// Runs `suites` with every Cairn session they start on the cluster whose
/// scheduler `url` names (`--cluster df://host:port`).
pub async fn on_cluster<F: Future>(url: String, suites: F) -> F::Output {
    CLUSTER.scope(url, suites).await
}

/// The builder every suite starts its Cairn sessions from: on the cluster
/// of [`on_cluster`] when inside one.
pub fn builder() -> CairnContextBuilder {
    let builder = CairnContext::builder();
    match CLUSTER.try_with(String::clone) {
        Ok(url) => builder.cluster(url),
        Err(_) => builder,
    }
}

/// Keeps `pairs` (each `key=value`) for the sessions to come.
pub fn set_all(pairs: &[String]) -> Result<()> {
    let parsed = pairs
        .iter()
        .map(|p| {
            let (key, value) = p
                .split_once('=')
                .with_context(|| format!("--set {p}: write it as key=value"))?;
            Ok((key.trim().to_string(), value.trim().to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    SETTINGS
        .set(parsed)
        .map_err(|_| anyhow::anyhow!("settings are given once"))
}

/// Applies the settings to `ctx`: `cairn.*` keys through Cairn, the others
/// as DataFusion settings.
pub async fn apply(ctx: &CairnContext) -> Result<()> {
    for (key, value) in SETTINGS.get().map(Vec::as_slice).unwrap_or_default() {
        match key.strip_prefix("cairn.") {
            Some(cairn_key) => ctx
                .set_option(cairn_key, value)
                .await
                .with_context(|| format!("--set {key}={value}"))?,
            None => {
                ctx.sql(&format!("SET {key} = '{}'", value.replace('\'', "''")))
                    .await
                    .with_context(|| format!("--set {key}={value}"))?;
            }
        }
    }
    Ok(())
}
