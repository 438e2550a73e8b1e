//! Reading a committed checkpoint: a Parquet scan of its files that verifies
//! every block it reads, records that the checkpoint was used, and declares
//! exact row counts and the recorded order.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Statistics, ToDFSchema};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use super::held::{Held, HeldScanExec};
use super::source::{CheckpointRef, CheckpointSource};
use crate::store::CheckpointStore;
use crate::store::integrity::VerifyingStore;
use crate::store::lifecycle::LiveRef;
use crate::store::manifest::Manifest;

/// A committed checkpoint, usable as a table.
#[derive(Debug)]
pub struct CheckpointTable {
    store: Arc<CheckpointStore>,
    manifest: Arc<Manifest>,
    schema: SchemaRef,
    /// The manifest without its lineage, as plans carry it.
    reference: Arc<Manifest>,
    /// Carried in a plan from elsewhere: checked against the dir's
    /// manifest at the first scan (planning here cannot read the store).
    carried: Option<OnceCell<()>>,
    /// The batches this process wrote, read instead of the files.
    held: Option<Arc<Held>>,
    /// While this table exists, this process never removes the checkpoint.
    _live: LiveRef,
}

impl CheckpointTable {
    /// The committed checkpoint `manifest` describes, in `store`.
    pub fn new(store: Arc<CheckpointStore>, manifest: Manifest) -> Self {
        let schema = manifest.schema();
        let live = store.hold(&manifest.id);
        Self {
            store,
            reference: Arc::new(manifest.without_lineage()),
            manifest: Arc::new(manifest),
            schema,
            carried: None,
            held: None,
            _live: live,
        }
    }

    /// The same checkpoint, read from `held`, the batches this process
    /// wrote into it (its files stay the durable copy).
    pub(crate) fn holding(self, held: Held) -> Self {
        Self {
            held: Some(Arc::new(held)),
            ..self
        }
    }

    /// The checkpoint a decoded plan names: before its first scan, the dir
    /// must still hold it, with the files the plan carries.
    pub fn carried(store: Arc<CheckpointStore>, manifest: Manifest) -> Self {
        Self {
            carried: Some(OnceCell::new()),
            ..Self::new(store, manifest)
        }
    }

    /// Checks, once, that the dir still holds the checkpoint a plan carried.
    async fn check_carried(&self) -> datafusion::error::Result<()> {
        let Some(checked) = &self.carried else {
            return Ok(());
        };
        let id = &self.manifest.id;
        checked
            .get_or_try_init(|| async {
                // Rebuilt in this process: the scan reads the new files.
                if self.store.rebuilt(id).is_some() {
                    return Ok(());
                }
                let problem = match self.store.read_manifest(id).await? {
                    None => "is no longer there (dropped or vacuumed since the plan was made)",
                    Some(m) if m.files != self.manifest.files => {
                        "holds other files than the plan was made for"
                    }
                    Some(_) => return Ok(()),
                };
                Err(datafusion::error::DataFusionError::Plan(format!(
                    "checkpoint {id} in '{}' {problem}; plan the query again",
                    self.store.url()
                )))
            })
            .await
            .map(|_| ())
    }

    /// The checkpoint's id.
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// Whether another query with the same plan may reuse this checkpoint.
    pub fn reusable(&self) -> bool {
        self.manifest.fingerprint.reusable
    }

    /// What its manifest records.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The checkpoint dir it is in.
    pub fn store(&self) -> &Arc<CheckpointStore> {
        &self.store
    }

    /// Where the checkpoint's files are.
    pub fn location(&self) -> String {
        self.store.location(&self.manifest.id, "")
    }

    fn statistics_of(&self, rows: u64) -> Statistics {
        Statistics::new_unknown(&self.schema).with_num_rows(Precision::Exact(rows as usize))
    }

    fn ordering(&self) -> Option<LexOrdering> {
        let exprs = self.manifest.ordering.iter().map_while(|c| {
            let index = self.schema.index_of(&c.column).ok()?;
            let options = SortOptions {
                descending: c.descending,
                nulls_first: c.nulls_first,
            };
            Some(PhysicalSortExpr::new(
                Arc::new(Column::new(&c.column, index)),
                options,
            ))
        });
        LexOrdering::new(exprs)
    }

    /// DataFusion's Parquet source over this checkpoint's files, reading
    /// through a store that verifies every block and recording the use.
    pub(crate) fn parquet_source(&self) -> ParquetSource {
        let verifying = Arc::new(VerifyingStore::new(
            Arc::clone(self.store.object_store()),
            self.store.verified_files(&self.manifest),
        ));
        let readers = CheckpointReaders {
            inner: DefaultParquetFileReaderFactory::new(verifying),
            use_record: Arc::new(UseRecord {
                store: Arc::clone(&self.store),
                id: self.manifest.id.clone(),
                done: OnceCell::new(),
            }),
        };
        ParquetSource::new(Arc::clone(&self.schema))
            .with_parquet_file_reader_factory(Arc::new(readers))
    }

    /// What a plan carries of this checkpoint: where it is and its files.
    pub(crate) fn reference(&self) -> CheckpointRef {
        CheckpointRef {
            dir: self.store.url().to_string(),
            manifest: Arc::clone(&self.reference),
        }
    }

    /// The scan: each file in one of `partitions` groups (one per file by default).
    pub(crate) fn scan_exec(
        &self,
        projection: Option<&Vec<usize>>,
        predicate: Option<Arc<dyn PhysicalExpr>>,
        limit: Option<usize>,
        partitions: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if let Some(newer) = self.store.rebuilt(self.id())
            && newer.files != self.manifest.files
        {
            let newer = CheckpointTable::new(Arc::clone(&self.store), newer.as_ref().clone());
            return newer.scan_exec(projection, predicate, limit, partitions);
        }
        let files = &self.manifest.files;
        let n = partitions.unwrap_or(files.len()).max(1);
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema).with_partitions(n)));
        }
        let mut source = self.parquet_source();
        if let Some(predicate) = predicate {
            source = source.with_predicate(predicate);
        }
        let source = CheckpointSource::new(source, self.reference());
        let mut groups = vec![Vec::new(); n];
        for (i, f) in files.iter().enumerate() {
            let path = CheckpointStore::file_path(&self.manifest.id, &f.path);
            let file = PartitionedFile::new(path.to_string(), f.size)
                .with_statistics(Arc::new(self.statistics_of(f.rows)));
            groups[i % n].push(file);
        }
        let mut config =
            FileScanConfigBuilder::new(self.store.object_store_url().clone(), Arc::new(source))
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_statistics(self.statistics_of(self.manifest.rows))
                .with_projection_indices(projection.cloned())?
                .with_limit(limit);
        if let Some(ordering) = self.ordering() {
            config = config.with_output_ordering(vec![ordering]);
        }
        let files: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config.build());
        let Some(held) = &self.held else {
            return Ok(files);
        };
        // The filters stay above the scan (the predicate only prunes).
        let held = HeldScanExec::try_new(
            Arc::clone(&files),
            held,
            Arc::clone(&self.schema),
            projection,
            limit,
            partitions,
            self.ordering(),
        )?;
        Ok(match held {
            Some(held) => Arc::new(held),
            None => files,
        })
    }
}

#[async_trait]
impl TableProvider for CheckpointTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.check_carried().await?;
        let predicate = match conjunction(filters.to_vec()) {
            Some(expr) => {
                let df_schema = self.schema.as_ref().clone().to_dfschema()?;
                Some(state.create_physical_expr(expr, &df_schema)?)
            }
            None => None,
        };
        self.scan_exec(projection, predicate, limit, None)
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics_of(self.manifest.rows))
    }
}

/// Opens a checkpoint's files for a scan: every block read is verified
/// (by the [`VerifyingStore`] underneath), and the first read of the scan
/// records that the checkpoint was used, so that planning alone never
/// writes to the store.
#[derive(Debug)]
struct CheckpointReaders {
    inner: DefaultParquetFileReaderFactory,
    use_record: Arc<UseRecord>,
}

/// Records one scan's use of a checkpoint, once.
#[derive(Debug)]
struct UseRecord {
    store: Arc<CheckpointStore>,
    id: String,
    done: OnceCell<()>,
}

impl UseRecord {
    /// Best effort: a read never fails because its use was not recorded.
    async fn record(&self) {
        self.done
            .get_or_init(|| async {
                if let Err(e) = self.store.record_use(&self.id).await {
                    tracing::warn!(id = %self.id, error = %e, "could not record the use of a checkpoint");
                }
            })
            .await;
    }
}

impl ParquetFileReaderFactory for CheckpointReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(RecordingReader {
            inner,
            use_record: Arc::clone(&self.use_record),
        }))
    }
}

/// A file reader that records the checkpoint's use before its first read.
struct RecordingReader {
    inner: Box<dyn AsyncFileReader + Send>,
    use_record: Arc<UseRecord>,
}

impl AsyncFileReader for RecordingReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        let use_record = Arc::clone(&self.use_record);
        async move {
            use_record.record().await;
            self.inner.get_bytes(range).await
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        let use_record = Arc::clone(&self.use_record);
        async move {
            use_record.record().await;
            self.inner.get_byte_ranges(ranges).await
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        let use_record = Arc::clone(&self.use_record);
        async move {
            use_record.record().await;
            self.inner.get_metadata(options).await
        }
        .boxed()
    }
}
