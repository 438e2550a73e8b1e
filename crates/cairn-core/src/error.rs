//! Errors of the engine. Every message says what failed, on which object, and
//! what to do about it.

use std::sync::Arc;

use datafusion::error::DataFusionError;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in Cairn's engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The checkpoint dir URL cannot be used.
    #[error("invalid checkpoint dir '{dir}': {reason}")]
    InvalidCheckpointDir {
        /// The dir as given.
        dir: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The checkpoint dir cannot be written (permissions, missing mount, ...).
    #[error(
        "checkpoint dir '{dir}' is not writable: {source}; \
         choose a dir you can write to (checkpoint_dir / --checkpoint-dir)"
    )]
    CheckpointDirNotWritable {
        /// The dir as given.
        dir: String,
        /// Why it cannot be written.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A remote checkpoint dir cannot be used: no such bucket, refused
    /// credentials, an unreachable endpoint.
    #[error("checkpoint dir '{dir}' cannot be used: {problem}; {hint}")]
    CheckpointDirUnusable {
        /// The dir, as a URL.
        dir: String,
        /// What the store answered.
        problem: String,
        /// What to do about it.
        hint: String,
    },

    /// The store cannot create an object only if it is absent, so two
    /// writers could both believe they committed.
    #[error(
        "checkpoint dir '{dir}' does not support create-only writes, which reliable \
         checkpoints need for an atomic commit; use a local path, memory:// or an S3 \
         store with conditional puts, or use a local checkpoint"
    )]
    NoAtomicCommit {
        /// The dir, as a URL.
        dir: String,
    },

    /// Writing a checkpoint's files failed (a full disk, a lost connection):
    /// nothing was committed.
    #[error(
        "could not write checkpoint {id} to '{dir}': {source}; nothing was committed and \
         its partial files were removed; free space or choose another dir \
         (SET cairn.checkpoint_dir / --checkpoint-dir) and run it again"
    )]
    WriteFailed {
        /// The checkpoint's id.
        id: String,
        /// The dir, as a URL.
        dir: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },

    /// A checkpoint whose commit ran in the background
    /// (`cairn.checkpoint_commit = 'async'`) was not committed.
    #[error(
        "checkpoint {id} was not committed to '{dir}' (cairn.checkpoint_commit = 'async' \
         commits after the statement returns): {source}; nothing of it was kept, other \
         checkpoints are as they were; free space or choose another dir and run the \
         statement that made it again"
    )]
    CommitFailed {
        /// The checkpoint's id.
        id: String,
        /// The dir, as a URL.
        dir: String,
        /// What failed.
        #[source]
        source: Arc<Error>,
    },

    /// A checkpoint nothing needs any more (superseded by a newer version)
    /// could not be removed in the background.
    #[error(
        "could not remove superseded checkpoint {id} from '{dir}': {source}; nothing that \
         reads it was touched; VACUUM CHECKPOINTS removes it later"
    )]
    RemoveFailed {
        /// The checkpoint's id.
        id: String,
        /// The dir, as a URL.
        dir: String,
        /// What failed.
        #[source]
        source: Arc<Error>,
    },

    /// A committed checkpoint does not match what its manifest promises.
    #[error("checkpoint {id} is corrupt: file '{file}': {problem}")]
    Corrupt {
        /// The checkpoint's id.
        id: String,
        /// The damaged file.
        file: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The manifest of a checkpoint cannot be read.
    #[error("checkpoint {id} has an unreadable manifest '{file}': {problem}")]
    BadManifest {
        /// The checkpoint's id.
        id: String,
        /// The manifest file.
        file: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A checkpoint name cannot be used.
    #[error("invalid checkpoint name '{name}': {reason}")]
    InvalidName {
        /// The name as given (shortened, control characters escaped).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A named checkpoint, or a table of that name, is missing or in the way.
    #[error("{0}")]
    Name(String),

    /// The lineage a checkpoint keeps cannot rebuild it.
    #[error("{0}")]
    Lineage(String),

    /// A setting or an argument has a value that cannot be used.
    #[error("{0}")]
    Config(String),

    /// The input of a checkpoint cannot be written as Parquet.
    #[error("cannot checkpoint this plan: {0}")]
    Unsupported(String),

    /// Something that should not happen did: a bug in Cairn.
    #[error("internal error: {0}; this is a bug in Cairn, please report it")]
    Internal(String),

    /// The object store failed.
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),

    /// DataFusion failed: planning or running a query.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    /// Arrow failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    /// Parquet failed.
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),

    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on which file.
        context: String,
        /// The operating system's error.
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

/// The id of the damaged checkpoint an error is about, wherever in the
/// error's chain of causes the damage was found.
pub fn damaged_checkpoint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(Error::Corrupt { id, .. } | Error::BadManifest { id, .. }) =
            e.downcast_ref::<Error>()
        {
            return Some(id.clone());
        }
        next = e.source();
    }
    // Only text is left of an error the Parquet reader met while it fetched a
    // footer (what `Corrupt` displays), or of a task that failed on a Ballista
    // executor (the error's `Debug` form): the id is read from the text.
    let text = error.to_string();
    let id_between = |before: &str, after: &str| {
        text.match_indices(before).find_map(|(at, word)| {
            let rest = &text[at + word.len()..];
            let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            (id.len() == 32 && rest[id.len()..].starts_with(after)).then_some(id)
        })
    };
    id_between("checkpoint ", " is corrupt")
        .or_else(|| id_between("Corrupt { id: \"", "\""))
        .or_else(|| id_between("BadManifest { id: \"", "\""))
}

/// `error` as Cairn's own error when it is one that failed a task on a
/// Ballista executor: Ballista hands the client only the text of the task
/// error's `Debug` form (`Job .. failed: .. Corrupt { id: "..", file: "..",
/// problem: ".." } ..`), which is read back here so that the message reads
/// as it does in one process. Any other error is returned as it is.
pub fn from_cluster_task(error: Error) -> Error {
    let text = error.to_string();
    if !text.contains("Task failed") {
        return error;
    }
    let fields = |kind: &str| -> Option<[String; 3]> {
        let at = text.find(&format!("{kind} {{ id: "))? + kind.len() + " { id: ".len();
        let (id, rest) = debug_string(&text[at..])?;
        let (file, rest) = debug_string(rest.strip_prefix(", file: ")?)?;
        let (problem, _) = debug_string(rest.strip_prefix(", problem: ")?)?;
        Some([id, file, problem])
    };
    if let Some([id, file, problem]) = fields("Corrupt") {
        return Error::Corrupt { id, file, problem };
    }
    if let Some([id, file, problem]) = fields("BadManifest") {
        return Error::BadManifest { id, file, problem };
    }
    error
}

/// The string a Rust `Debug`-formatted string literal at the start of
/// `text` holds, and the text after it.
fn debug_string(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[at + 2..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let mut hex = String::new();
                    for (_, h) in chars.by_ref() {
                        match h {
                            '{' => {}
                            '}' => break,
                            h => hex.push(h),
                        }
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_found_deep_in_an_error_chain() {
        let corrupt = Error::Corrupt {
            id: "abc".into(),
            file: "f".into(),
            problem: "checksum mismatch".into(),
        };
        let store = object_store::Error::Generic {
            store: "verify",
            source: Box::new(corrupt),
        };
        let df = DataFusionError::Shared(Arc::new(DataFusionError::Context(
            "reading".into(),
            Box::new(DataFusionError::ObjectStore(Box::new(store))),
        )));
        let top = Error::DataFusion(df);
        assert_eq!(damaged_checkpoint(&top).as_deref(), Some("abc"));
        // Kept as text only, as the Parquet reader keeps it.
        let id = "9e6b59f0733d7ab14a73bbc94faa88d8";
        let text = DataFusionError::ParquetError(Box::new(
            datafusion::parquet::errors::ParquetError::General(format!(
                "Failed to fetch metadata for file x: Object Store error: Generic cairn \
                 checkpoint error: checkpoint {id} is corrupt: file 'x': checksum mismatch"
            )),
        ));
        assert_eq!(damaged_checkpoint(&text).as_deref(), Some(id));
        // A task that failed on a cluster: Ballista reports the Debug form.
        let remote = Error::Corrupt {
            id: id.into(),
            file: "f".into(),
            problem: "checksum mismatch".into(),
        };
        let job = DataFusionError::Execution(format!(
            "Job 1 failed: Task failed due to runtime execution error: {:?}",
            DataFusionError::External(Box::new(remote))
        ));
        assert_eq!(damaged_checkpoint(&job).as_deref(), Some(id));
        // And its message reads as in one process.
        let read = from_cluster_task(Error::DataFusion(job));
        assert_eq!(
            read.to_string(),
            format!("checkpoint {id} is corrupt: file 'f': checksum mismatch")
        );
        let other = Error::Name("nope".into());
        assert_eq!(damaged_checkpoint(&other), None);
    }

    #[test]
    fn debug_strings_are_read_back_with_their_escapes() {
        let original = "a \"quoted\" path\\x\n\u{7f} é";
        let text = format!("{original:?}, rest");
        assert_eq!(debug_string(&text), Some((original.to_string(), ", rest")));
        assert_eq!(debug_string("no quote"), None);
        assert_eq!(debug_string("\"unterminated"), None);
    }
}
