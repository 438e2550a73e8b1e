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
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::source_as_provider;
use datafusion::datasource::view::ViewTable;
use datafusion::functions_table::generate_series::GenerateSeriesTable;
use datafusion::logical_expr::LogicalPlan;
use futures::TryStreamExt;

use super::series::SeriesTable;
use super::view::CairnView;
use crate::error::Result;
use crate::exec::{CheckpointTable, LocalCheckpointTable};
use crate::store::manifest::{
    FORMAT_VERSION, Fingerprint, FingerprintInfo, SourceFile, SourceListing,
};

/// Fingerprints `plan`, as given by the user (before optimization, whose
/// generated aliases vary from run to run).
pub async fn fingerprint(plan: &LogicalPlan, session: &dyn Session) -> Result<Fingerprint> {
    let mut found = Sources::default();
    let reusable = collect_sources(plan, session, &mut found).await? && !is_volatile(plan)?;
    let Sources {
        identities: sources,
        listings,
        checkable,
    } = found;
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
        info: FingerprintInfo {
            reusable,
            sources,
            listings,
            checkable,
        },
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

/// What a plan reads.
struct Sources {
    identities: Vec<String>,
    listings: Vec<SourceListing>,
    checkable: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            identities: Vec::new(),
            listings: Vec::new(),
            checkable: true,
        }
    }
}

/// Records the identity of every source in `found`; false if one has none.
async fn collect_sources(
    plan: &LogicalPlan,
    session: &dyn Session,
    found: &mut Sources,
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
            found.identities.push(format!("{name}: unknown source"));
            known = false;
            continue;
        };
        let identity = if let Some(t) = provider.downcast_ref::<CheckpointTable>() {
            known &= t.reusable();
            format!("checkpoint {}", t.id())
        } else if let Some(t) = provider.downcast_ref::<LocalCheckpointTable>() {
            known &= t.reusable();
            found.checkable = false;
            format!("local checkpoint {}", t.id())
        } else if let Some(t) = provider.downcast_ref::<ListingTable>() {
            let listings = list_files(t, session).await?;
            let text = listings
                .iter()
                .flat_map(|l| l.files.iter())
                .map(|f| {
                    let etag = f.etag.as_deref().unwrap_or("-");
                    format!(
                        "{} size={} modified={} etag={etag}",
                        f.location,
                        f.size,
                        f.modified.to_rfc3339()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            found.listings.extend(listings);
            format!("files [{text}]")
        } else if let Some(t) = provider.downcast_ref::<MemTable>() {
            found.checkable = false;
            format!("memory table {}", mem_table_hash(t).await?)
        } else if let Some(t) = provider.downcast_ref::<GenerateSeriesTable>() {
            format!("{t:?}")
        } else if let Some(t) = provider.downcast_ref::<SeriesTable>() {
            // Decoded in another process: the same series, the same id.
            format!("{:?}", t.inner())
        } else if let Some(plan) = provider
            .downcast_ref::<ViewTable>()
            .map(ViewTable::logical_plan)
            .or_else(|| {
                provider
                    .downcast_ref::<CairnView>()
                    .map(|v| v.plan().as_ref())
            })
        {
            let inner = Box::pin(fingerprint(plan, session)).await?;
            known &= inner.info.reusable;
            found.checkable &= inner.info.checkable;
            found.listings.extend(inner.info.listings);
            format!("view {}", inner.id)
        } else {
            known = false;
            "source without identity".to_string()
        };
        found.identities.push(format!("{name}: {identity}"));
    }
    Ok(known)
}

/// Every file a listing table reads, with its size and version.
async fn list_files(table: &ListingTable, session: &dyn Session) -> Result<Vec<SourceListing>> {
    let extension = &table.options().file_extension;
    let mut listings = Vec::new();
    for url in table.table_paths() {
        listings.push(SourceListing {
            url: url.as_str().to_string(),
            extension: extension.clone(),
            files: list_url(url, extension, session).await?,
        });
    }
    Ok(listings)
}

async fn list_url(
    url: &ListingTableUrl,
    extension: &str,
    session: &dyn Session,
) -> Result<Vec<SourceFile>> {
    let store = session.runtime_env().object_store(url)?;
    let listed: Vec<_> = url
        .list_all_files(session, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    let mut files: Vec<SourceFile> = listed
        .into_iter()
        .map(|meta| SourceFile {
            location: format!("{}{}", url.object_store().as_str(), meta.location),
            size: meta.size,
            modified: meta.last_modified,
            etag: meta.e_tag,
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Whether the files a checkpoint read have changed since: `None` when
/// that cannot be told (in-memory sources, or a store not reachable now).
pub async fn sources_changed(listings: &[SourceListing], session: &dyn Session) -> Option<bool> {
    for listing in listings {
        let url = ListingTableUrl::parse(&listing.url).ok()?;
        let now = list_url(&url, &listing.extension, session).await.ok()?;
        if now != listing.files {
            return Some(true);
        }
    }
    Some(false)
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
