//! Errors of the engine. Every message says what failed, on which object, and
//! what to do about it.

use datafusion::error::DataFusionError;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in Cairn's engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The checkpoint dir URL cannot be used.
    #[error("invalid checkpoint dir '{dir}': {reason}")]
    InvalidCheckpointDir { dir: String, reason: String },

    /// The checkpoint dir cannot be written (permissions, missing mount, ...).
    #[error(
        "checkpoint dir '{dir}' is not writable: {source}; \
         choose a dir you can write to (checkpoint_dir / --checkpoint-dir)"
    )]
    CheckpointDirNotWritable {
        dir: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A remote checkpoint dir cannot be used: no such bucket, refused
    /// credentials, an unreachable endpoint.
    #[error("checkpoint dir '{dir}' cannot be used: {problem}; {hint}")]
    CheckpointDirUnusable {
        dir: String,
        problem: String,
        hint: String,
    },

    /// The store cannot create an object only if it is absent, so two
    /// writers could both believe they committed.
    #[error(
        "checkpoint dir '{dir}' does not support create-only writes, which reliable \
         checkpoints need for an atomic commit; use a local path, memory:// or an S3 \
         store with conditional puts, or use a local checkpoint"
    )]
    NoAtomicCommit { dir: String },

    /// Writing a checkpoint's files failed (a full disk, a lost connection):
    /// nothing was committed.
    #[error(
        "could not write checkpoint {id} to '{dir}': {source}; nothing was committed and \
         its partial files were removed; free space or choose another dir \
         (SET cairn.checkpoint_dir / --checkpoint-dir) and run it again"
    )]
    WriteFailed {
        id: String,
        dir: String,
        #[source]
        source: Box<Error>,
    },

    /// A committed checkpoint does not match what its manifest promises.
    #[error("checkpoint {id} is corrupt: file '{file}': {problem}")]
    Corrupt {
        id: String,
        file: String,
        problem: String,
    },

    /// The manifest of a checkpoint cannot be read.
    #[error("checkpoint {id} has an unreadable manifest '{file}': {problem}")]
    BadManifest {
        id: String,
        file: String,
        problem: String,
    },

    /// A checkpoint name cannot be used.
    #[error("invalid checkpoint name '{name}': {reason}")]
    InvalidName { name: String, reason: String },

    /// A named checkpoint, or a table of that name, is missing or in the way.
    #[error("{0}")]
    Name(String),

    /// The input of a checkpoint cannot be written as Parquet.
    #[error("cannot checkpoint this plan: {0}")]
    Unsupported(String),

    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),

    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
