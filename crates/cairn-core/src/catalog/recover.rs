//! A committed checkpoint found damaged (a file changed, truncated or gone,
//! a manifest that does not parse) is an error by default. With
//! [`OnCorrupt::Recompute`](crate::OnCorrupt) it is rebuilt from the
//! lineage it keeps (and the links of its chain below it, where they are
//! damaged or gone too), and what read it runs again.

use datafusion::execution::SessionState;

use super::chain::{LinkError, Rebuild};
use super::{CheckpointSchema, LazyCheckpointTable};
use crate::error::{Error, Result};

impl CheckpointSchema {
    /// See [`CairnContext::recompute_damaged_checkpoint`](crate::CairnContext::recompute_damaged_checkpoint).
    pub(crate) async fn recompute_damaged_checkpoint(
        &self,
        state: &SessionState,
        id: &str,
    ) -> Result<Option<String>> {
        let store = self.stores.current();
        let names: Vec<String> = store
            .bindings()
            .await?
            .into_iter()
            .filter(|b| b.id == id)
            .map(|b| b.name)
            .collect();
        self.forget(store.url(), id);
        // Lazy named checkpoints of this session that wrote this id: their
        // names are bound in the dir, which serves the rebuilt one.
        for name in &names {
            let table = self.session_tables().table(name).await?;
            if table.is_some_and(|t| t.downcast_ref::<LazyCheckpointTable>().is_some()) {
                self.session_tables().deregister_table(name)?;
            }
        }
        match self
            .link(state, store.url(), id, Rebuild::Repair, true)
            .await
        {
            Ok(rebuilt) => Ok(Some(rebuilt.id().to_string())),
            Err(LinkError::Unusable(why)) if names.is_empty() => {
                // The query that holds its plan writes it again.
                tracing::warn!(
                    id,
                    why,
                    "removing a damaged checkpoint without a usable lineage"
                );
                store.delete_checkpoint(id).await?;
                Ok(None)
            }
            Err(LinkError::Unusable(why)) => Err(Error::Lineage(format!(
                "checkpoint '{0}' ({id}) is damaged and cannot be recomputed: its lineage is not \
                 usable ({why}); re-create it with CHECKPOINT OR REPLACE TABLE {0} AS ...",
                names[0]
            ))),
            Err(LinkError::Failed(e)) => Err(e),
        }
    }
}
