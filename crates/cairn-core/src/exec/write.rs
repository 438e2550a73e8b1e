//! Writing a reliable checkpoint: the input runs once, every partition
//! streams into its own Parquet file in parallel, and the manifest commits.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::runtime::JoinSet;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, SendableRecordBatchStream,
};
use futures::{FutureExt, StreamExt};

use super::held::{Held, Keeper};
use super::task::{CheckpointTask, WriteMetrics, renamed, storable_schema};
use crate::config::CommitMode;
use crate::error::{Error, Result};
use crate::store::CheckpointStore;
use crate::store::Commit;
use crate::store::manifest::{DataFile, FORMAT_VERSION, Manifest, SchemaInfo, SortColumn};

/// Runs `input` once and commits its result as the checkpoint `task`
/// describes, with the batches written when the memory pool could hold
/// them (see [`Held`]). If another writer commits the same id first, its
/// checkpoint is returned and ours is removed. With an asynchronous commit
/// it returns once the files are written and commits in the background.
#[tracing::instrument(level = "info", skip_all, fields(id = %task.fingerprint.id, dir = %task.store.url()))]
pub(crate) async fn write_checkpoint(
    task: &CheckpointTask,
    input: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    metrics: &WriteMetrics,
) -> Result<(Manifest, Option<Held>)> {
    let started = Instant::now();
    let (store, options) = (&task.store, task.options);
    let id = task.fingerprint.id.clone();
    let attempt = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let ordering = sort_columns(input.output_ordering());
    let input = parallelize(input, ctx.session_config().target_partitions());
    let schema = storable_schema(&input.schema());
    let partitions = input.output_partitioning().partition_count();
    let names: Vec<String> = (0..partitions)
        .map(|p| format!("{attempt}-part-{p:05}.parquet"))
        .collect();

    let props = writer_properties(&schema, options.compression);
    check_storable(&schema, &props)?;
    store.check_writable().await?;
    let keeper = Keeper::new(ctx.memory_pool(), options.write_through);
    let sync_files = options.commit == CommitMode::Sync;
    let mut tasks = JoinSet::new();
    for (p, name) in names.iter().enumerate() {
        let stream = input.execute(p, Arc::clone(&ctx))?;
        let (store, id, name, props) = (Arc::clone(store), id.clone(), name.clone(), props.clone());
        let (metrics, schema, keeper) = (metrics.clone(), Arc::clone(&schema), Arc::clone(&keeper));
        tasks.spawn(async move {
            write_partition(
                &store, &id, &name, stream, &schema, props, &metrics, &keeper, sync_files,
            )
            .await
        });
    }
    let mut written = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Some(file))) => written.push(file),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(e) => {
                failure = Some(Error::Internal(format!("a writer task failed: {e}")));
                break;
            }
        }
    }
    if let Some(e) = failure {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        store.remove_attempt(&id, &attempt).await;
        return Err(storage_failure(store, &id, e));
    }
    written.sort_by(|(a, _), (b, _)| a.path.cmp(&b.path));
    let (files, kept): (Vec<DataFile>, Vec<Vec<RecordBatch>>) = written.into_iter().unzip();
    let manifest = manifest_of(task, &schema, files, ordering);
    if options.commit == CommitMode::Async {
        commit_in_background(store, manifest.clone(), attempt, started);
        return Ok((manifest, keeper.held(&id, kept)));
    }
    let (won, manifest) = commit_written(store, manifest, &attempt, started).await?;
    // Another writer's files are not the batches we kept.
    let held = if won { keeper.held(&id, kept) } else { None };
    Ok((manifest, held))
}

/// The manifest of the checkpoint `task` describes, made of `files`.
pub(crate) fn manifest_of(
    task: &CheckpointTask,
    schema: &Schema,
    files: Vec<DataFile>,
    ordering: Vec<SortColumn>,
) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        id: task.fingerprint.id.clone(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: Utc::now(),
        schema: SchemaInfo::new(schema),
        rows: files.iter().map(|f| f.rows).sum(),
        bytes: files.iter().map(|f| f.size).sum(),
        compression: task.options.compression.to_string(),
        files,
        ordering,
        fingerprint: task.fingerprint.info.clone(),
        lineage: task.lineage.clone(),
    }
}

/// Makes the files of `manifest` durable and commits it after the
/// statement returned (`cairn.checkpoint_commit = 'async'`). If another
/// writer committed the id first, this process's tables read theirs.
fn commit_in_background(
    store: &Arc<CheckpointStore>,
    manifest: Manifest,
    attempt: String,
    started: Instant,
) {
    let (id, owned) = (manifest.id.clone(), Arc::clone(store));
    let commit = async move {
        for file in &manifest.files {
            if let Err(e) = owned.sync_file(&manifest.id, &file.path).await {
                owned.remove_attempt(&manifest.id, &attempt).await;
                return Err(storage_failure(&owned, &manifest.id, e));
            }
        }
        let (won, stands) = commit_written(&owned, manifest, &attempt, started).await?;
        if !won {
            owned.note_rebuilt(&stands);
        }
        Ok(())
    };
    store.commit_later(&id, commit.boxed());
}

/// Commits `manifest`, whose files write attempt `attempt` wrote; the
/// attempt's files are removed if it does not commit. Returns whether ours
/// won (else another writer's stands) and the checkpoint that stands.
pub(crate) async fn commit_written(
    store: &CheckpointStore,
    manifest: Manifest,
    attempt: &str,
    started: Instant,
) -> Result<(bool, Manifest)> {
    let id = manifest.id.clone();
    match store.commit(&manifest, attempt).await {
        Ok(commit) => {
            let won = matches!(commit, Commit::Won);
            let stands = commit.into_manifest(manifest);
            store.recorded_use(&stands.id);
            tracing::info!(
                rows = stands.rows,
                bytes = stands.bytes,
                files = stands.files.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checkpoint committed"
            );
            Ok((won, stands))
        }
        Err(e) => {
            store.remove_attempt(&id, attempt).await;
            Err(storage_failure(store, &id, e))
        }
    }
}

/// Says which checkpoint and dir a storage error hit. Errors of the input
/// query (DataFusion's) stay as they are: the storage is not to blame.
pub(crate) fn storage_failure(store: &CheckpointStore, id: &str, e: Error) -> Error {
    match e {
        Error::DataFusion(_) | Error::NoAtomicCommit { .. } => e,
        other => Error::WriteFailed {
            id: id.to_string(),
            dir: store.url().to_string(),
            source: Box::new(other),
        },
    }
}

/// Refuses, before anything runs, a column that Parquet cannot store: the
/// writer itself is asked, with one row of nulls of each column written to
/// memory (parquet 59 finds some types unsupported only when writing).
/// Dictionaries of numbers, dates and the like end at 16 KiB (2,048
/// eight-byte values; past that the writer goes on plain), strings' at the
/// usual 1 MiB. A dictionary of mostly distinct numbers costs its hashing
/// and saves nothing: with 1 MiB for every column, the eager checkpoint of
/// 99,999 distinct integers took 7.2 to 9.5 ms, with 16 KiB 4.8 to 5.0 ms;
/// lineitem SF 1 wrote about 20% faster for 3% more bytes.
pub(crate) fn writer_properties(schema: &Schema, compression: Compression) -> WriterProperties {
    const SMALL_DICTIONARY: usize = 16 * 1024;
    const STRING_DICTIONARY: usize = 1024 * 1024;
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_created_by(format!("cairn {}", env!("CARGO_PKG_VERSION")))
        .set_dictionary_page_size_limit(SMALL_DICTIONARY);
    for field in schema.fields() {
        let strings = matches!(
            field.data_type(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Dictionary(..)
        );
        if strings {
            builder = builder.set_column_dictionary_page_size_limit(
                ColumnPath::from(field.name().as_str()),
                STRING_DICTIONARY,
            );
        }
    }
    builder.build()
}

pub(crate) fn check_storable(schema: &SchemaRef, props: &WriterProperties) -> Result<()> {
    for field in schema.fields() {
        let probe = Arc::new(Schema::new(vec![
            field.as_ref().clone().with_nullable(true),
        ]));
        let column = new_null_array(field.data_type(), 1);
        let Ok(batch) = RecordBatch::try_new(Arc::clone(&probe), vec![column]) else {
            continue;
        };
        // Written to memory, so an error is about the type, never the I/O
        // (a negative decimal scale, say, or a type not yet implemented).
        let written = ArrowWriter::try_new(Vec::new(), probe, Some(props.clone()))
            .and_then(|mut w| w.write(&batch).and_then(|()| w.close()));
        if let Err(e) = written {
            return Err(Error::Unsupported(format!(
                "column '{}' has type {}, which Parquet cannot store ({e}); cast it, for \
                 example to a string, or use a LOCAL CHECKPOINT, which keeps it in memory",
                field.name(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// Spreads a single unordered partition over the cores, so that Parquet
/// encoding, the expensive part, runs in parallel. Ordered inputs keep
/// their order and their single file.
fn parallelize(input: Arc<dyn ExecutionPlan>, target: usize) -> Arc<dyn ExecutionPlan> {
    if input.output_partitioning().partition_count() == 1
        && input.output_ordering().is_none()
        && target > 1
        && let Ok(r) =
            RepartitionExec::try_new(Arc::clone(&input), Partitioning::RoundRobinBatch(target))
    {
        return Arc::new(r);
    }
    input
}

/// The leading plain columns of an ordering: what a scan can declare again.
fn sort_columns(ordering: Option<&LexOrdering>) -> Vec<SortColumn> {
    let Some(ordering) = ordering else {
        return Vec::new();
    };
    ordering
        .iter()
        .map_while(|e| {
            let column = e.expr.downcast_ref::<Column>()?;
            Some(SortColumn {
                column: column.name().to_string(),
                descending: e.options.descending,
                nulls_first: e.options.nulls_first,
            })
        })
        .collect()
}

/// Writes one partition into the file `name`, keeping its batches while
/// `keeper` admits them; `None` for a partition without rows.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_partition(
    store: &CheckpointStore,
    id: &str,
    name: &str,
    mut stream: SendableRecordBatchStream,
    schema: &SchemaRef,
    props: WriterProperties,
    metrics: &WriteMetrics,
    keeper: &Keeper,
    sync: bool,
) -> Result<Option<(DataFile, Vec<RecordBatch>)>> {
    let mut writer = None;
    let mut rows = 0u64;
    let mut kept = Vec::new();
    let outcome: Result<()> = async {
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            if writer.is_none() {
                let file = store.create_file(id, name, metrics.bytes.clone());
                writer = Some(AsyncArrowWriter::try_new(
                    file,
                    Arc::clone(schema),
                    Some(props.clone()),
                )?);
            }
            let w = writer.as_mut().expect("created above");
            let batch_as_stored = renamed(&batch, schema)?;
            w.write(&batch_as_stored).await?;
            if keeper.admit(&batch_as_stored) {
                kept.push(batch_as_stored);
            } else {
                kept.clear();
            }
            rows += batch.num_rows() as u64;
            metrics.rows.add(batch.num_rows());
        }
        if let Some(w) = writer.as_mut() {
            w.finish().await?;
            // Each file is made durable as soon as it is whole, while the
            // other writers still encode (unless the commit does it later).
            if sync {
                store.sync_file(id, name).await?;
            }
            metrics.files.add(1);
        }
        Ok(())
    }
    .await;
    match (outcome, writer) {
        (Ok(()), None) => Ok(None),
        (Ok(()), Some(w)) => {
            let file = w.into_inner();
            let data_file = DataFile {
                path: name.to_string(),
                rows,
                size: file.len(),
                checksums: file.checksums(),
            };
            Ok(Some((data_file, kept)))
        }
        (Err(e), Some(w)) => {
            w.into_inner().abort().await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    use super::*;

    /// The dictionary page's bytes of each column of a file written with
    /// Cairn's properties (0: none).
    fn dictionary_bytes(batch: &RecordBatch) -> Vec<i64> {
        let props = writer_properties(batch.schema_ref(), Compression::UNCOMPRESSED);
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        let metadata = writer.close().unwrap();
        metadata
            .row_group(0)
            .columns()
            .iter()
            .map(|c| {
                c.dictionary_page_offset()
                    .map_or(0, |start| c.data_page_offset() - start)
            })
            .collect()
    }

    #[test]
    fn numbers_end_their_dictionary_early_and_strings_keep_theirs() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        // 100,000 distinct numbers; 3,000 distinct strings (about 30 KB).
        let numbers = Int64Array::from_iter_values(0..100_000);
        let strings =
            StringArray::from_iter_values((0..100_000).map(|i| format!("city {}", i % 3000)));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(numbers), Arc::new(strings)]).unwrap();
        let [numbers, strings] = dictionary_bytes(&batch)[..] else {
            panic!("two columns");
        };
        // With the writer's default (1 MiB) the numbers' would be 800 KB.
        assert!(numbers <= 17 * 1024, "numbers' dictionary: {numbers} bytes");
        assert!(strings > 20 * 1024, "strings' dictionary: {strings} bytes");
    }
}
