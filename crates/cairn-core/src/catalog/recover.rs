//! A committed checkpoint found damaged (a file changed, truncated or gone,
//! a manifest that does not parse) is an error by default. With
//! [`OnCorrupt::Recompute`](crate::OnCorrupt) it is rebuilt from the
//! lineage its manifest keeps, and what read it runs again.

use datafusion::execution::SessionState;

use super::{CheckpointSchema, LazyCheckpointTable};
use crate::error::{Error, Result};
use crate::exec::CheckpointKind;
use crate::plan::{CheckpointNode, checkpoint_now, decode_lineage};

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
        let plan = match store.read_manifest_only(id).await {
            Ok(Some(m)) => decode_lineage(&m.lineage, &state.task_ctx()),
            Ok(None) => Err("its manifest is gone".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let plan = match plan {
            Ok(plan) => Some(plan),
            Err(why) if !names.is_empty() => {
                return Err(Error::Lineage(format!(
                    "checkpoint '{0}' ({id}) is damaged and cannot be recomputed: its lineage \
                     is not usable ({why}); re-create it with CHECKPOINT OR REPLACE TABLE {0} \
                     AS ...",
                    names[0]
                )));
            }
            Err(_) => None,
        };

        tracing::warn!(id, dir = store.url(), "recomputing a damaged checkpoint");
        self.forget(store.url(), id);
        // Lazy named checkpoints of this session that wrote this id: their
        // names are bound in the dir, which serves the rebuilt one.
        for name in &names {
            let table = self.session_tables().table(name).await?;
            if table.is_some_and(|t| t.downcast_ref::<LazyCheckpointTable>().is_some()) {
                self.session_tables().deregister_table(name)?;
            }
        }
        store.delete_checkpoint(id).await?;
        let Some(plan) = plan else {
            return Ok(None);
        };
        let node = CheckpointNode::try_new(
            plan,
            CheckpointKind::Reliable,
            None,
            Some(store.url().to_string()),
        )?;
        let rebuilt = checkpoint_now(state, &node).await?;
        for name in &names {
            store.bind_name(name, rebuilt.id()).await?;
        }
        Ok(Some(rebuilt.id().to_string()))
    }
}
