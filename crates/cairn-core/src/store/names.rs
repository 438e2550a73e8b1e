//! Named checkpoints: `name → id` bindings kept in the checkpoint dir, so a
//! later process finds a checkpoint by its name.
//!
//! ```text
//! <checkpoint dir>/_names/<encoded name>.json   {"name": ..., "id": ..., "bound_at": ...}
//! ```
//!
//! A binding is one small object, replaced whole (rename on local disks, a
//! single put elsewhere), so a reader sees the old id or the new one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::CheckpointStore;
use crate::error::{Error, Result};

/// The folder of bindings inside the checkpoint dir.
pub const NAMES_DIR: &str = "_names";

/// A name bound to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The name.
    pub name: String,
    /// The checkpoint's id.
    pub id: String,
    /// When the name was bound.
    pub bound_at: DateTime<Utc>,
}

/// Checks that `name` can name a checkpoint; names are stored encoded, so
/// only what cannot be shown or typed back is refused.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName {
            name: name.to_string(),
            reason: "it is empty".into(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidName {
            name: name.escape_default().to_string(),
            reason: "it contains control characters".into(),
        });
    }
    if name.len() > 200 {
        return Err(Error::InvalidName {
            name: format!("{}...", name.chars().take(20).collect::<String>()),
            reason: "it is longer than 200 bytes".into(),
        });
    }
    Ok(())
}

/// A file name for `name` that cannot leave the names folder and that every
/// object store keeps as is: plain names (`[a-z0-9_-]`) stay readable, any
/// other is `=` and the hex of its UTF-8 bytes.
fn file_name(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if plain {
        format!("{name}.json")
    } else {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("={hex}.json")
    }
}

/// The name a binding file was made for.
fn name_of_file(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".json")?;
    let Some(hex) = stem.strip_prefix('=') else {
        return Some(stem.to_string());
    };
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

impl CheckpointStore {
    /// The bound names, read without waiting on the network: from the file
    /// system for local dirs, from memory for memory dirs. Remote dirs
    /// answer with no names here; their bindings are found by lookup.
    pub fn bound_names_now(&self) -> Vec<String> {
        if let Some(root) = self.local_root() {
            let Ok(entries) = std::fs::read_dir(root.join(NAMES_DIR)) else {
                return Vec::new();
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| name_of_file(&e.ok()?.file_name().to_string_lossy()))
                .collect();
            names.sort();
            return names;
        }
        if self.url().starts_with("memory://") {
            // The in-memory store completes at once: nothing to wait for.
            return futures::executor::block_on(self.bindings())
                .map(|b| b.into_iter().map(|b| b.name).collect())
                .unwrap_or_default();
        }
        Vec::new()
    }

    fn binding_path(name: &str) -> Path {
        Path::from(format!("{NAMES_DIR}/{}", file_name(name)))
    }

    /// Binds `name` to checkpoint `id`, replacing any earlier binding.
    pub async fn bind_name(&self, name: &str, id: &str) -> Result<Binding> {
        validate_name(name)?;
        let binding = Binding {
            name: name.to_string(),
            id: id.to_string(),
            bound_at: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&binding).expect("a binding always serializes");
        match self.local_root() {
            Some(root) => {
                let dir = root.join(NAMES_DIR);
                let target = dir.join(file_name(name));
                let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
                tokio::task::spawn_blocking(move || {
                    super::commit::replace_local(&dir, &tmp, &target, &json)
                })
                .await
                .map_err(|e| Error::io("binding task failed", std::io::Error::other(e)))??;
            }
            None => {
                self.object_store()
                    .put(&Self::binding_path(name), PutPayload::from(json))
                    .await?;
            }
        }
        Ok(binding)
    }

    /// Binds `name` to `id` once `id`'s background commit ends (at once if
    /// none runs); a failed commit binds nothing.
    pub async fn bind_when_committed(self: &Arc<Self>, name: &str, id: &str) -> Result<()> {
        if !self.committing(id) {
            self.bind_name(name, id).await?;
            return Ok(());
        }
        // Refused now, not after the statement returned.
        validate_name(name)?;
        let (store, name, owned) = (Arc::clone(self), name.to_string(), id.to_string());
        self.commit_later(
            id,
            async move { store.bind_name(&name, &owned).await.map(|_| ()) }.boxed(),
        );
        Ok(())
    }

    /// Removes the binding of `name`; false if there was none.
    pub async fn unbind_name(&self, name: &str) -> Result<bool> {
        let path = Self::binding_path(name);
        match self.object_store().head(&path).await {
            Ok(_) => {
                self.object_store().delete(&path).await?;
                Ok(true)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The binding of `name`, if any.
    pub async fn lookup_name(&self, name: &str) -> Result<Option<Binding>> {
        // A background commit may bind it.
        self.commits_done().await;
        let path = Self::binding_path(name);
        let bytes = match self.object_store().get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let binding: Binding = serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
            id: name.to_string(),
            file: self.location(NAMES_DIR, &file_name(name)),
            problem: format!("not a valid name binding: {e}"),
        })?;
        Ok(Some(binding))
    }

    /// Every binding in the dir, by name.
    pub async fn bindings(&self) -> Result<Vec<Binding>> {
        self.commits_done().await;
        let listed: Vec<_> = self
            .object_store()
            .list(Some(&Path::from(NAMES_DIR)))
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(listed.len());
        for meta in listed {
            if !meta.location.as_ref().ends_with(".json") {
                continue;
            }
            let bytes = self
                .object_store()
                .get(&meta.location)
                .await?
                .bytes()
                .await?;
            // A binding being replaced by another process may be unreadable
            // for a moment on some stores; skip it rather than fail a listing.
            if let Ok(b) = serde_json::from_slice::<Binding>(&bytes) {
                out.push(b);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_never_escape_the_names_folder() {
        for name in ["..", "../x", "a/b", "/", ".hidden", "Ranks", "r ä"] {
            let f = file_name(name);
            assert!(!f.contains('/') && !f.starts_with('.'), "{name} -> {f}");
        }
        assert_eq!(file_name("ranks_2"), "ranks_2.json");
        for name in ["..", "../x", "Ranks", "r ä", "ranks_2"] {
            assert_eq!(name_of_file(&file_name(name)).as_deref(), Some(name));
        }
        assert_ne!(file_name("Ranks"), file_name("ranks"));
    }

    #[test]
    fn unusable_names_are_refused_with_the_reason() {
        assert!(
            validate_name("")
                .unwrap_err()
                .to_string()
                .contains("it is empty")
        );
        let e = validate_name("a\nb").unwrap_err().to_string();
        assert!(
            e.contains("control characters") && e.contains("a\\nb"),
            "{e}"
        );
        assert!(validate_name("../ok as a quoted name").is_ok());
    }

    #[tokio::test]
    async fn bindings_round_trip_and_rebind_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(store.lookup_name("r").await.unwrap(), None);
        store.bind_name("r", "id1").await.unwrap();
        store.bind_name("../x", "id2").await.unwrap();
        store.bind_name("r", "id3").await.unwrap();
        assert_eq!(store.lookup_name("r").await.unwrap().unwrap().id, "id3");
        let names: Vec<_> = store
            .bindings()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, vec!["../x", "r"]);
        assert_eq!(store.bound_names_now(), vec!["../x", "r"]);
        assert!(store.unbind_name("r").await.unwrap());
        assert!(!store.unbind_name("r").await.unwrap());
        // Nothing was written outside the names folder.
        let top: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, vec![std::ffi::OsString::from(NAMES_DIR)]);
    }
}
