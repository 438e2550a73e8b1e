//! `CheckpointSource`: the file source of a checkpoint scan. It is
//! DataFusion's Parquet source (every optimization of a Parquet scan stays),
//! knowing which checkpoint it reads, so that a plan holding it can leave
//! the process and come back as a verified scan of the same checkpoint
//! (DataFusion's own encoding of a Parquet scan drops the verifying reader).

use std::fmt::{self, Formatter};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::common::config::ConfigOptions;
use datafusion::common::internal_datafusion_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileOpener, FileScanConfig, FileSource, ParquetSource,
};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::DisplayFormatType;
use datafusion::physical_plan::filter_pushdown::FilterPushdownPropagation;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::projection::ProjectionExprs;
use datafusion::physical_plan::sort_pushdown::SortOrderPushdownResult;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::{PhysicalExtensionNode, PhysicalPlanNode};
use object_store::ObjectStore;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::wire;

/// Which checkpoint a scan reads: enough for another process to open it.
#[derive(Debug, Clone)]
pub struct CheckpointRef {
    /// The checkpoint dir, as a URL.
    pub dir: String,
    /// What its manifest records (its lineage left out: a scan needs none).
    pub manifest: Arc<crate::store::manifest::Manifest>,
}

/// DataFusion's Parquet source over a checkpoint's files.
#[derive(Debug, Clone)]
pub struct CheckpointSource {
    parquet: ParquetSource,
    checkpoint: CheckpointRef,
}

impl CheckpointSource {
    /// `parquet` reading the checkpoint `checkpoint` names.
    pub fn new(parquet: ParquetSource, checkpoint: CheckpointRef) -> Self {
        Self {
            parquet,
            checkpoint,
        }
    }

    /// The checkpoint it reads.
    pub fn checkpoint(&self) -> &CheckpointRef {
        &self.checkpoint
    }

    /// The Parquet source underneath.
    pub fn parquet(&self) -> &ParquetSource {
        &self.parquet
    }

    /// The same checkpoint, read by what `source` became (a Parquet
    /// source with a batch size, a filter or a projection pushed into it).
    fn with(&self, source: Arc<dyn FileSource>) -> Arc<dyn FileSource> {
        match source.downcast_ref::<ParquetSource>() {
            Some(parquet) => Arc::new(Self::new(parquet.clone(), self.checkpoint.clone())),
            // Not a Parquet source: nothing of ours to keep.
            None => source,
        }
    }
}

impl FileSource for CheckpointSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        self.parquet
            .create_file_opener(object_store, base_config, partition)
    }

    fn create_morselizer(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Box<dyn datafusion_datasource::morsel::Morselizer>> {
        self.parquet
            .create_morselizer(object_store, base_config, partition)
    }

    fn table_schema(&self) -> &TableSchema {
        self.parquet.table_schema()
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        self.with(self.parquet.with_batch_size(batch_size))
    }

    fn filter(&self) -> Option<Arc<dyn PhysicalExpr>> {
        self.parquet.filter()
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        self.parquet.projection()
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        self.parquet.metrics()
    }

    fn file_type(&self) -> &str {
        self.parquet.file_type()
    }

    fn fmt_extra(&self, t: DisplayFormatType, f: &mut Formatter) -> fmt::Result {
        self.parquet.fmt_extra(t, f)?;
        if matches!(t, DisplayFormatType::Verbose) {
            write!(f, ", checkpoint={}", self.checkpoint.manifest.id)?;
        }
        Ok(())
    }

    fn supports_repartitioning(&self) -> bool {
        self.parquet.supports_repartitioning()
    }

    fn repartitioned(
        &self,
        target_partitions: usize,
        repartition_file_min_size: usize,
        output_ordering: Option<LexOrdering>,
        config: &FileScanConfig,
    ) -> Result<Option<FileScanConfig>> {
        self.parquet.repartitioned(
            target_partitions,
            repartition_file_min_size,
            output_ordering,
            config,
        )
    }

    fn try_pushdown_filters(
        &self,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn FileSource>>> {
        let pushed = self.parquet.try_pushdown_filters(filters, config)?;
        Ok(FilterPushdownPropagation {
            filters: pushed.filters,
            updated_node: pushed.updated_node.map(|s| self.with(s)),
        })
    }

    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
        eq_properties: &EquivalenceProperties,
    ) -> Result<SortOrderPushdownResult<Arc<dyn FileSource>>> {
        Ok(
            match self.parquet.try_pushdown_sort(order, eq_properties)? {
                SortOrderPushdownResult::Exact { inner } => SortOrderPushdownResult::Exact {
                    inner: self.with(inner),
                },
                SortOrderPushdownResult::Inexact { inner } => SortOrderPushdownResult::Inexact {
                    inner: self.with(inner),
                },
                SortOrderPushdownResult::Unsupported => SortOrderPushdownResult::Unsupported,
            },
        )
    }

    fn reorder_files(&self, files: Vec<PartitionedFile>) -> Vec<PartitionedFile> {
        self.parquet.reorder_files(files)
    }

    fn try_pushdown_projection(
        &self,
        projection: &ProjectionExprs,
    ) -> Result<Option<Arc<dyn FileSource>>> {
        Ok(self
            .parquet
            .try_pushdown_projection(projection)?
            .map(|s| self.with(s)))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.parquet.apply_expressions(f)
    }

    fn try_to_proto(
        &self,
        base: &FileScanConfig,
        ctx: &datafusion::physical_plan::proto::ExecutionPlanEncodeCtx<'_>,
    ) -> Result<Option<PhysicalPlanNode>> {
        encode_checkpoint_scan(self, base, ctx).map(Some)
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ScanPayload {
    pub(crate) dir: String,
    pub(crate) manifest: crate::store::manifest::Manifest,
    /// DataFusion's encoding of the Parquet scan (files, projection,
    /// predicate, options), base64.
    pub(crate) parquet: String,
}

fn encode_checkpoint_scan(
    source: &CheckpointSource,
    base: &FileScanConfig,
    ctx: &datafusion::physical_plan::proto::ExecutionPlanEncodeCtx<'_>,
) -> Result<PhysicalPlanNode> {
    let parquet = source
        .parquet()
        .try_to_proto(base, ctx)?
        .ok_or_else(|| internal_datafusion_err!("a Parquet scan that does not encode"))?;
    let Some(PhysicalPlanType::ParquetScan(scan)) = parquet.physical_plan_type else {
        return Err(internal_datafusion_err!(
            "a Parquet scan encoded as something else"
        ));
    };
    let payload = ScanPayload {
        dir: source.checkpoint().dir.clone(),
        manifest: source.checkpoint().manifest.as_ref().clone(),
        parquet: BASE64.encode(scan.encode_to_vec()),
    };
    let mut node = Vec::new();
    wire::encode(wire::Kind::CheckpointScan, &payload, &mut node)?;
    Ok(PhysicalPlanNode {
        physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
            node,
            inputs: Vec::new(),
        })),
    })
}
