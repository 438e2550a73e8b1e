//! Checkpoint ids: a stable hash of a plan and of the identity of what it reads.
//!
//! Two equal plans over unchanged sources get the same id, in this process or
//! another, so a committed checkpoint is found again instead of recomputed.
//! Plans whose result can change between runs (volatile functions, sources
//! of unknown identity) get a fresh id every time and are never reused.

use std::io::Write;

use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::Session;
use datafusion::catalog::memory::MemTable;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::datasource::view::ViewTable;
use datafusion::functions_table::generate_series::GenerateSeriesTable;
use datafusion::logical_expr::LogicalPlan;
use futures::TryStreamExt;

use crate::error::Result;
use crate::local::LocalCheckpointTable;
use crate::scan::CheckpointTable;
use crate::store::manifest::FORMAT_VERSION;

/// The id of a checkpoint and what it was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub id: String,
    pub reusable: bool,
    pub sources: Vec<String>,
}

impl Fingerprint {
    /// An id for a result that must never be reused.
    pub fn unique(sources: Vec<String>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            reusable: false,
            sources,
        }
    }
}

/// Fingerprints `plan`, as given by the user (before optimization, whose
/// generated aliases vary from run to run).
pub async fn fingerprint(plan: &LogicalPlan, session: &dyn Session) -> Result<Fingerprint> {
    let mut sources = Vec::new();
    let reusable = collect_sources(plan, session, &mut sources).await? && !is_volatile(plan)?;
    if !reusable {
        return Ok(Fingerprint::unique(sources));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("cairn checkpoint format {FORMAT_VERSION}\n").as_bytes());
    hasher.update(plan.display_indent_schema().to_string().as_bytes());
    for s in &sources {
        hasher.update(b"\n");
        hasher.update(s.as_bytes());
    }
    Ok(Fingerprint {
        id: hasher.finalize().to_hex()[..32].to_string(),
        reusable,
        sources,
    })
}

/// True when some expression of the plan, its subqueries included, can give
/// a different answer each time it runs (`random()`, `now()`, `uuid()`).
pub fn is_volatile(plan: &LogicalPlan) -> Result<bool> {
    let mut volatile = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            volatile |= e.is_volatile();
            Ok(if volatile {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    })?;
    Ok(volatile)
}

/// Appends the identity of every source to `out`; false if one has none.
async fn collect_sources(
    plan: &LogicalPlan,
    session: &dyn Session,
    out: &mut Vec<String>,
) -> Result<bool> {
    let mut scans = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            scans.push((scan.table_name.to_string(), scan.source.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut known = true;
    for (name, source) in scans {
        let Ok(provider) = source_as_provider(&source) else {
            out.push(format!("{name}: unknown source"));
            known = false;
            continue;
        };
        if let Some(t) = provider.downcast_ref::<CheckpointTable>() {
            out.push(format!("{name}: checkpoint {}", t.id()));
            known &= t.reusable();
        } else if let Some(t) = provider.downcast_ref::<LocalCheckpointTable>() {
            out.push(format!("{name}: local checkpoint {}", t.id()));
            known &= t.reusable();
        } else if let Some(t) = provider.downcast_ref::<ListingTable>() {
            out.push(format!("{name}: {}", listing_identity(t, session).await?));
        } else if let Some(t) = provider.downcast_ref::<MemTable>() {
            out.push(format!("{name}: memory table {}", mem_table_hash(t).await?));
        } else if let Some(t) = provider.downcast_ref::<GenerateSeriesTable>() {
            out.push(format!("{name}: {t:?}"));
        } else if let Some(t) = provider.downcast_ref::<ViewTable>() {
            let inner = Box::pin(fingerprint(t.logical_plan(), session)).await?;
            out.push(format!("{name}: view {}", inner.id));
            known &= inner.reusable;
        } else {
            out.push(format!("{name}: source without identity"));
            known = false;
        }
    }
    Ok(known)
}

/// Every file a listing table reads, with its size and version.
async fn listing_identity(table: &ListingTable, session: &dyn Session) -> Result<String> {
    let ext = &table.options().file_extension;
    let mut files = Vec::new();
    for url in table.table_paths() {
        let store = session.runtime_env().object_store(url)?;
        let listed: Vec<_> = url
            .list_all_files(session, store.as_ref(), ext)
            .await?
            .try_collect()
            .await?;
        for meta in listed {
            files.push(format!(
                "{}{} size={} modified={} etag={}",
                url.object_store().as_str(),
                meta.location,
                meta.size,
                meta.last_modified.to_rfc3339(),
                meta.e_tag.as_deref().unwrap_or("-")
            ));
        }
    }
    files.sort();
    Ok(format!("files [{}]", files.join(", ")))
}

/// A hash of an in-memory table's content.
async fn mem_table_hash(table: &MemTable) -> Result<String> {
    let mut hasher = HashWriter(blake3::Hasher::new());
    let schema = datafusion::datasource::TableProvider::schema(table);
    let mut writer = StreamWriter::try_new(&mut hasher, &schema)?;
    for partition in &table.batches {
        for batch in partition.read().await.iter() {
            writer.write(batch)?;
        }
        writer.flush()?;
    }
    writer.finish()?;
    drop(writer);
    Ok(hasher.0.finalize().to_hex()[..32].to_string())
}

struct HashWriter(blake3::Hasher);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
