//! A committed checkpoint found damaged (a file changed, truncated or gone,
//! a manifest that does not parse) is an error by default. With
//! [`OnCorrupt::Recompute`] it is rebuilt from the lineage its manifest
//! keeps, and what read it runs again.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::dataframe::DataFrame;

use crate::catalog::LazyCheckpointTable;
use crate::context::CairnContext;
use crate::dataframe::{materialize_now, prepare};
use crate::error::{Error, Result};
use crate::node::CheckpointKind;

/// What to do with a damaged checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Fail, naming the checkpoint, the file and what is wrong.
    #[default]
    Error,
    /// Rebuild it from its lineage and go on.
    Recompute,
}

impl fmt::Display for OnCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnCorrupt::Error => "error",
            OnCorrupt::Recompute => "recompute",
        })
    }
}

impl FromStr for OnCorrupt {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(OnCorrupt::Error),
            "recompute" => Ok(OnCorrupt::Recompute),
            other => Err(format!(
                "'{other}' is not a policy; use 'error' or 'recompute'"
            )),
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
    None
}

impl CairnContext {
    /// Rebuilds the damaged checkpoint `id` from the lineage in its
    /// manifest and points every name bound to it at the rebuilt one.
    /// Returns the rebuilt checkpoint's id (the same id when its sources did
    /// not change), or `None` when an unnamed checkpoint without a usable
    /// lineage was removed, so that the query holding its plan writes it
    /// again. A named one without a usable lineage is an error.
    pub async fn recompute_damaged_checkpoint(&self, id: &str) -> Result<Option<String>> {
        let store = self.config().store();
        let names: Vec<String> = store
            .bindings()
            .await?
            .into_iter()
            .filter(|b| b.id == id)
            .map(|b| b.name)
            .collect();
        let lineage = match store.read_manifest_only(id).await {
            Ok(Some(m)) => match (m.lineage.proto, m.lineage.proto_unavailable) {
                (Some(proto), _) => Ok(proto),
                (None, why) => Err(why.unwrap_or_else(|| "it was not recorded".into())),
            },
            Ok(None) => Err("its manifest is gone".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let plan = match lineage {
            Ok(proto) => {
                let bytes = BASE64.decode(proto).map_err(|e| {
                    Error::Name(format!("the lineage of checkpoint {id} is damaged: {e}"))
                })?;
                Some(datafusion_proto::bytes::logical_plan_from_bytes(
                    &bytes,
                    &self.task_ctx(),
                )?)
            }
            Err(why) if !names.is_empty() => {
                return Err(Error::Name(format!(
                    "checkpoint '{0}' ({id}) is damaged and cannot be recomputed: its lineage \
                     is not usable ({why}); re-create it with CHECKPOINT OR REPLACE TABLE {0} \
                     AS ...",
                    names[0]
                )));
            }
            Err(_) => None,
        };

        tracing::warn!(id, dir = store.url(), "recomputing a damaged checkpoint");
        let schema = self.checkpoint_schema();
        schema.forget(store.url(), id);
        // Lazy named checkpoints of this session that wrote this id: their
        // names are bound in the dir, which serves the rebuilt one.
        for name in &names {
            let table = schema.session_tables().table(name).await?;
            if table.is_some_and(|t| t.downcast_ref::<LazyCheckpointTable>().is_some()) {
                schema.session_tables().deregister_table(name)?;
            }
        }
        store.delete_checkpoint(id).await?;
        let Some(plan) = plan else {
            return Ok(None);
        };
        let df = DataFrame::new(self.state(), plan);
        let (state, plan, spec) = prepare(df, CheckpointKind::Reliable, None)?;
        let rebuilt = materialize_now(&state, &plan, &spec).await?;
        for name in &names {
            store.bind_name(name, rebuilt.id()).await?;
        }
        Ok(Some(rebuilt.id().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;
    use std::sync::Arc;

    #[test]
    fn policies_parse_and_print() {
        assert_eq!("Recompute".parse(), Ok(OnCorrupt::Recompute));
        assert_eq!(" error ".parse(), Ok(OnCorrupt::Error));
        assert!(
            "retry"
                .parse::<OnCorrupt>()
                .unwrap_err()
                .contains("'retry'")
        );
        assert_eq!(OnCorrupt::Recompute.to_string(), "recompute");
    }

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
        let other = Error::Name("nope".into());
        assert_eq!(damaged_checkpoint(&other), None);
    }
}
