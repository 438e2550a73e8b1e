//! Turning a checkpoint dir URL into a store, and checking, before anything
//! is computed, that the store takes the writes a commit needs.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use super::{CheckpointStore, s3};
use crate::config::S3Options;
use crate::error::{Error, Result};

/// Process-wide in-memory stores, so that `memory://x` names one store for
/// as long as the process lives.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

impl CheckpointStore {
    /// Opens (creating it where needed) the checkpoint dir `dir`: a URL
    /// (`file:///abs/path`, `memory://`, `memory://name`, `s3://bucket/prefix`
    /// with S3 settings from the environment) or a plain path.
    pub fn open(dir: &str) -> Result<Arc<Self>> {
        Self::open_with(dir, &S3Options::default())
    }

    /// [`open`](Self::open), with S3 settings for `s3://` dirs. Remote dirs
    /// are checked before the first checkpoint is written, see
    /// [`check_writable`](Self::check_writable).
    pub fn open_with(dir: &str, s3: &S3Options) -> Result<Arc<Self>> {
        let invalid = |reason: String| Error::InvalidCheckpointDir {
            dir: dir.to_string(),
            reason,
        };
        let dir = dir.trim();
        if dir.is_empty() {
            return Err(invalid("it is empty; give a path or a URL".into()));
        }
        if let Some((scheme, _)) = dir.split_once("://") {
            let url = Url::parse(dir).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
            return match scheme {
                "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|()| invalid("not an absolute local path".into()))?;
                    Self::open_local(&path)
                }
                "memory" => Ok(Self::open_memory(&url)),
                "s3" => Self::open_s3(&url, s3),
                "gs" | "az" | "abfss" | "http" | "https" => Err(invalid(format!(
                    "{scheme}:// checkpoint dirs are not supported yet; use a local path, \
                     memory:// or s3://"
                ))),
                other => Err(invalid(format!(
                    "unknown scheme '{other}://'; use a local path, file://, memory:// or s3://"
                ))),
            };
        }
        let path = expand_home(dir);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(format!("cannot resolve a relative path: {e}")))?
                .join(path)
        };
        Self::open_local(&path)
    }

    fn open_local(path: &FsPath) -> Result<Arc<Self>> {
        let shown = path.display().to_string();
        let not_writable = |e: std::io::Error| Error::CheckpointDirNotWritable {
            dir: shown.clone(),
            source: Box::new(e),
        };
        std::fs::create_dir_all(path).map_err(not_writable)?;
        let root = path.canonicalize().map_err(not_writable)?;
        if !root.is_dir() {
            return Err(Error::InvalidCheckpointDir {
                dir: shown,
                reason: "it is not a directory".into(),
            });
        }
        // Fail now, not after a long computation, if nothing can be written here.
        let probe = root.join(format!(".cairn-probe-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&probe, b"").map_err(not_writable)?;
        let _ = std::fs::remove_file(&probe);
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| {
            Error::CheckpointDirNotWritable {
                dir: shown.clone(),
                source: Box::new(e),
            }
        })?;
        let url = Url::from_directory_path(&root)
            .map(String::from)
            .unwrap_or_else(|()| shown);
        let identity = url.clone();
        Ok(Self::new(url, Arc::new(store), Some(root), &identity))
    }

    fn open_memory(url: &Url) -> Arc<Self> {
        let name = url.host_str().unwrap_or_default().to_string();
        let store = MEMORY_STORES
            .lock()
            .expect("memory store registry poisoned")
            .entry(name.clone())
            .or_insert_with(|| Arc::new(InMemory::new()))
            .clone();
        let url = format!("memory://{name}");
        let identity = url.clone();
        Self::new(url, store, None, &identity)
    }

    fn open_s3(url: &Url, options: &S3Options) -> Result<Arc<Self>> {
        let (bucket, prefix) = s3::bucket_and_prefix(url)?;
        let bucket_store = s3::bucket_store(options, &bucket)?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            bucket_store
        } else {
            Arc::new(PrefixStore::new(bucket_store, prefix.as_str()))
        };
        let shown = format!("s3://{bucket}/{prefix}");
        let shown = shown.trim_end_matches('/').to_string() + "/";
        // Credentials are part of how the store reaches S3, never shown.
        let secrets = |s: &Option<crate::config::Secret>| {
            s.as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default()
        };
        let identity = format!(
            "{shown} {:?} {:?} {:?} {:?} {} {}",
            options.endpoint,
            options.region,
            options.access_key_id,
            options.allow_http,
            secrets(&options.secret_access_key),
            secrets(&options.session_token)
        );
        Ok(Self::new(shown, store, None, &identity))
    }

    /// Checks, once, that a remote dir takes writes and create-only puts,
    /// so that a missing bucket, refused credentials or an unreachable
    /// endpoint are found before anything is computed. Local dirs were
    /// checked when opened; memory needs no check.
    pub async fn check_writable(&self) -> Result<()> {
        if self.local_root.is_some() || self.url.starts_with("memory://") {
            return Ok(());
        }
        self.writable
            .get_or_try_init(|| self.probe())
            .await
            .map(|_| ())
    }

    async fn probe(&self) -> Result<()> {
        let path = Path::from(format!(".cairn-probe-{}", uuid::Uuid::new_v4().simple()));
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = || PutPayload::from_static(b"cairn probe");
        let outcome = match self.store.put_opts(&path, payload(), create()).await {
            Err(e) => Err(self.unusable(&e)),
            Ok(_) => match self.store.put_opts(&path, payload(), create()).await {
                Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
                    Err(Error::NoAtomicCommit {
                        dir: self.url.clone(),
                    })
                }
                Err(e) => Err(self.unusable(&e)),
            },
        };
        let _ = self.store.delete(&path).await;
        outcome
    }

    /// Says what a storage error means for using this dir, and what to do.
    fn unusable(&self, e: &object_store::Error) -> Error {
        let hint = match e {
            object_store::Error::NotFound { .. } => {
                "the bucket does not exist: create it or correct the URL"
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                "the credentials were refused: check cairn.s3.access_key_id and \
                 cairn.s3.secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            }
            _ => "check cairn.s3.endpoint (or AWS_ENDPOINT) and that the server is up",
        };
        Error::CheckpointDirUnusable {
            dir: self.url.clone(),
            problem: one_line(&e.to_string()),
            hint: hint.into(),
        }
    }
}

/// An object store error on one line: S3's XML error body becomes its code
/// and message.
fn one_line(error: &str) -> String {
    let tag = |name: &str| {
        let (_, rest) = error.split_once(&format!("<{name}>"))?;
        Some(rest.split_once(&format!("</{name}>"))?.0)
    };
    let text = match (error.split_once("<?xml"), tag("Code"), tag("Message")) {
        (Some((before, _)), Some(code), Some(message)) => format!("{before}{code}: {message}"),
        _ => error.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn expand_home(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_fit_on_one_line() {
        let error = "Error performing PUT http://h/b/k in 5ms - Server returned non-2xx status \
                     code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code>\
                     <Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            one_line(error),
            "Error performing PUT http://h/b/k in 5ms - Server returned non-2xx status code: \
             404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
    }

    #[test]
    fn plain_paths_urls_and_memory_open() {
        let dir = tempfile::tempdir().unwrap();
        let plain = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        assert!(plain.url().starts_with("file:///"));
        let url = Url::from_directory_path(dir.path()).unwrap();
        let by_url = CheckpointStore::open(url.as_str()).unwrap();
        assert_eq!(plain.url(), by_url.url());
        assert_eq!(plain.object_store_url(), by_url.object_store_url());
        let mem = CheckpointStore::open("memory://unit").unwrap();
        assert_eq!(mem.url(), "memory://unit");
        assert!(mem.local_root().is_none());
        let scan_url = Url::parse(mem.object_store_url().as_str()).unwrap();
        let found = CheckpointStore::find(&scan_url).unwrap();
        assert_eq!(found.url(), "memory://unit");
    }

    #[test]
    fn bad_dirs_are_named_in_the_error() {
        let e = CheckpointStore::open("ftp://host/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'ftp://host/x'") && e.contains("unknown scheme"),
            "{e}"
        );
        let e = CheckpointStore::open("   ").unwrap_err().to_string();
        assert!(e.contains("it is empty"), "{e}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = CheckpointStore::open(file.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&file.path().display().to_string()), "{e}");
    }
}
