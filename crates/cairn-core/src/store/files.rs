//! Writing a checkpoint's data files: bytes go to the store as they come,
//! and the block checksums the manifest keeps are computed on the way.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::parquet::arrow::async_writer::AsyncFileWriter;
use datafusion::parquet::errors::ParquetError;
use datafusion::physical_plan::metrics::Count;
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use super::CheckpointStore;
use super::integrity::{BlockChecksums, Checksummer, DEFAULT_BLOCK_SIZE};

/// Parquet's sink for a data file: forwards bytes to the store and keeps the
/// block checksums of everything written.
pub(crate) struct ChecksummingWriter {
    inner: BufWriter,
    sums: Checksummer,
    /// Bytes written, for whoever watches the write.
    written: Count,
    /// Set once completing began: the writer cannot be aborted after that
    /// (a failed completion has already dropped its upload).
    completing: bool,
}

impl CheckpointStore {
    /// A writer for one data file of checkpoint `id`, checksumming as it
    /// goes and adding the bytes it writes to `written`.
    pub(crate) fn create_file(&self, id: &str, name: &str, written: Count) -> ChecksummingWriter {
        let path = Self::file_path(id, name);
        ChecksummingWriter {
            inner: BufWriter::with_capacity(Arc::clone(&self.store), path, 16 * 1024 * 1024),
            sums: Checksummer::new(DEFAULT_BLOCK_SIZE),
            written,
            completing: false,
        }
    }
}

impl ChecksummingWriter {
    pub(crate) fn len(&self) -> u64 {
        self.sums.len()
    }

    pub(crate) fn checksums(self) -> BlockChecksums {
        self.sums.finish()
    }

    /// Discards a partial upload, if one is still open.
    pub(crate) async fn abort(&mut self) {
        if !self.completing {
            let _ = self.inner.abort().await;
        }
    }
}

impl AsyncFileWriter for ChecksummingWriter {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, Result<(), ParquetError>> {
        self.sums.update(&bs);
        self.written.add(bs.len());
        Box::pin(async move {
            self.inner
                .put(bs)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, Result<(), ParquetError>> {
        self.completing = true;
        Box::pin(async move {
            self.inner
                .shutdown()
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}
