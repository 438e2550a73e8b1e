//! Block checksums for checkpoint files, HDFS style.
//!
//! Parquet as written by arrow-rs carries no page checksums, so the manifest
//! keeps a CRC32C of every block of every data file. [`VerifyingStore`] rounds
//! every read out to block bounds and checks each block it touches, so a
//! flipped byte is caught even when a query reads only part of a file.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Bytes covered by one checksum: small enough that a partial read fetches
/// little extra, large enough that the manifest stays small.
pub const DEFAULT_BLOCK_SIZE: u64 = 256 * 1024;

/// The checksums of one file, as kept in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChecksums {
    /// Bytes per block; the last block may be shorter.
    pub block_size: u64,
    /// One CRC32C per block, in order.
    pub crc32c: Vec<u32>,
}

/// Computes [`BlockChecksums`] over bytes as they are written.
#[derive(Debug)]
pub struct Checksummer {
    block_size: u64,
    crcs: Vec<u32>,
    current: u32,
    filled: u64,
    total: u64,
}

impl Checksummer {
    /// A checksummer of `block_size`-byte blocks.
    pub fn new(block_size: u64) -> Self {
        assert!(block_size > 0, "block size must be positive");
        Self {
            block_size,
            crcs: Vec::new(),
            current: 0,
            filled: 0,
            total: 0,
        }
    }

    /// Adds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        while !data.is_empty() {
            let room = (self.block_size - self.filled) as usize;
            let (head, rest) = data.split_at(room.min(data.len()));
            self.current = crc32c::crc32c_append(self.current, head);
            self.filled += head.len() as u64;
            if self.filled == self.block_size {
                self.crcs.push(self.current);
                self.current = 0;
                self.filled = 0;
            }
            data = rest;
        }
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether no byte was seen yet.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The checksums of every block, the last partial one included.
    pub fn finish(mut self) -> BlockChecksums {
        if self.filled > 0 {
            self.crcs.push(self.current);
        }
        BlockChecksums {
            block_size: self.block_size,
            crc32c: self.crcs,
        }
    }
}

impl BlockChecksums {
    /// The checksums of `data` in `block_size`-byte blocks.
    pub fn of(data: &[u8], block_size: u64) -> Self {
        let mut c = Checksummer::new(block_size);
        c.update(data);
        c.finish()
    }

    /// The smallest block-aligned range of a file of `size` bytes that holds `range`.
    fn aligned(&self, range: &Range<u64>, size: u64) -> Range<u64> {
        let start = range.start / self.block_size * self.block_size;
        let end = range.end.div_ceil(self.block_size) * self.block_size;
        start..end.min(size)
    }

    /// Checks `data`, which starts at the block-aligned `offset` of the file.
    fn verify(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let first = (offset / self.block_size) as usize;
        for (i, block) in data.chunks(self.block_size as usize).enumerate() {
            let n = first + i;
            let Some(&expected) = self.crc32c.get(n) else {
                return Err(format!("block {n} is beyond the checksummed length"));
            };
            let actual = crc32c::crc32c(block);
            if actual != expected {
                let start = n as u64 * self.block_size;
                return Err(format!(
                    "checksum mismatch in bytes {start}..{} (CRC32C {actual:08x}, manifest says {expected:08x})",
                    start + block.len() as u64
                ));
            }
        }
        Ok(())
    }
}

/// What the reader must know of one committed file.
#[derive(Debug, Clone)]
pub struct VerifiedFile {
    /// The checkpoint it belongs to, for errors.
    pub checkpoint_id: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its block checksums.
    pub checksums: BlockChecksums,
}

/// An object store that serves only the listed files and verifies every
/// block it returns against the manifest's checksums.
#[derive(Debug)]
pub struct VerifyingStore {
    inner: Arc<dyn ObjectStore>,
    files: HashMap<Path, VerifiedFile>,
}

impl VerifyingStore {
    /// A store that serves `files` of `inner`, verified.
    pub fn new(inner: Arc<dyn ObjectStore>, files: HashMap<Path, VerifiedFile>) -> Self {
        Self { inner, files }
    }

    fn corrupt(location: &Path, file: &VerifiedFile, problem: String) -> object_store::Error {
        object_store::Error::Generic {
            store: "cairn checkpoint",
            source: Box::new(Error::Corrupt {
                id: file.checkpoint_id.clone(),
                file: location.to_string(),
                problem,
            }),
        }
    }

    async fn verified_get(
        &self,
        location: &Path,
        file: &VerifiedFile,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let size = file.size;
        let wanted = match &options.range {
            None => 0..size,
            Some(GetRange::Bounded(r)) => r.start..r.end.min(size),
            Some(GetRange::Offset(o)) => *o..size,
            Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
        };
        if wanted.start > wanted.end || (wanted.start >= size && size > 0) {
            return Err(object_store::Error::Generic {
                store: "cairn checkpoint",
                source: format!("range {wanted:?} is outside '{location}' of {size} bytes").into(),
            });
        }
        let aligned = file.checksums.aligned(&wanted, size);
        let inner_opts = GetOptions {
            range: Some(GetRange::Bounded(aligned.clone())),
            ..options
        };
        let result = if aligned.is_empty() {
            None
        } else {
            Some(self.inner.get_opts(location, inner_opts).await?)
        };
        let (meta, attributes, data) = match result {
            Some(r) => {
                let meta = r.meta.clone();
                let attributes = r.attributes.clone();
                (meta, attributes, r.bytes().await?)
            }
            None => (
                self.inner.head(location).await?,
                Default::default(),
                Bytes::new(),
            ),
        };
        if meta.size != size {
            return Err(Self::corrupt(
                location,
                file,
                format!("size is {} bytes, manifest says {size}", meta.size),
            ));
        }
        if data.len() as u64 != aligned.end - aligned.start {
            return Err(Self::corrupt(
                location,
                file,
                format!(
                    "read {} bytes at offset {}, expected {}",
                    data.len(),
                    aligned.start,
                    aligned.end - aligned.start
                ),
            ));
        }
        file.checksums
            .verify(aligned.start, &data)
            .map_err(|problem| Self::corrupt(location, file, problem))?;
        let from = (wanted.start - aligned.start) as usize;
        let to = (wanted.end - aligned.start) as usize;
        let slice = data.slice(from..to);
        Ok(GetResult {
            payload: GetResultPayload::Stream(Box::pin(stream::once(async move { Ok(slice) }))),
            meta,
            range: wanted,
            attributes,
        })
    }
}

impl fmt::Display for VerifyingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for VerifyingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        match self.files.get(location) {
            Some(file) if !options.head => self.verified_get(location, file, options).await,
            Some(_) => self.inner.get_opts(location, options).await,
            None => Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "not a file of a committed checkpoint".into(),
            }),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn checksummer_matches_one_shot_whatever_the_chunking() {
        let bytes = data(10_000);
        let whole = BlockChecksums::of(&bytes, 1024);
        let mut c = Checksummer::new(1024);
        for chunk in bytes.chunks(333) {
            c.update(chunk);
        }
        assert_eq!(c.len(), 10_000);
        assert_eq!(c.finish(), whole);
        assert_eq!(whole.crc32c.len(), 10);
    }

    async fn store_with(bytes: Vec<u8>, checksummed: &[u8]) -> VerifyingStore {
        let inner = Arc::new(InMemory::new());
        let path = Path::from("c/f.parquet");
        inner.put(&path, PutPayload::from(bytes)).await.unwrap();
        let files = HashMap::from([(
            path,
            VerifiedFile {
                checkpoint_id: "c".into(),
                size: checksummed.len() as u64,
                checksums: BlockChecksums::of(checksummed, 100),
            },
        )]);
        VerifyingStore::new(inner, files)
    }

    #[tokio::test]
    async fn partial_reads_return_exact_ranges() {
        let bytes = data(1050);
        let store = store_with(bytes.clone(), &bytes).await;
        let path = Path::from("c/f.parquet");
        for r in [0..1u64, 99..101, 150..1050, 1000..1050, 0..1050] {
            let got = store.get_range(&path, r.clone()).await.unwrap();
            assert_eq!(&got[..], &bytes[r.start as usize..r.end as usize]);
        }
        let suffix = store
            .get_opts(
                &path,
                GetOptions {
                    range: Some(GetRange::Suffix(8)),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&suffix[..], &bytes[1042..]);
    }

    #[tokio::test]
    async fn a_flipped_byte_is_caught_by_any_read_of_its_block() {
        let good = data(1050);
        let mut bad = good.clone();
        bad[555] ^= 0x10;
        let store = store_with(bad, &good).await;
        let path = Path::from("c/f.parquet");
        // A read of a neighbouring range in the same block still fails.
        let err = store.get_range(&path, 510..520).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("checkpoint c is corrupt"), "{msg}");
        assert!(msg.contains("bytes 500..600"), "{msg}");
        // Other blocks still read.
        assert_eq!(
            &store.get_range(&path, 0..100).await.unwrap()[..],
            &good[..100]
        );
    }

    #[tokio::test]
    async fn a_truncated_file_is_reported_with_its_size() {
        let good = data(1050);
        let store = store_with(good[..1000].to_vec(), &good).await;
        let err = store
            .get_range(&Path::from("c/f.parquet"), 0..10)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("size is 1000 bytes, manifest says 1050"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn files_outside_the_manifest_are_not_served() {
        let store = store_with(data(10), &data(10)).await;
        let err = store.get(&Path::from("c/other.parquet")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }));
    }
}
