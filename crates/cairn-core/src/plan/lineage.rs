//! The plan a checkpoint cut away, kept in its manifest as metadata: as
//! text always, and encoded with Cairn's codec where the plan's sources can
//! be encoded (files, listing tables, `range`/`generate_series`, views,
//! other checkpoints), which is what recomputing it needs. The checkpoints
//! the plan reads are listed too: the links of a chain below this one.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;

use super::codec::CairnLogicalCodec;
use crate::exec::CheckpointTable;
use crate::store::manifest::{Lineage, LineageInput};

/// The lineage of `plan`: its text, its encoding where every source can be
/// encoded, and the checkpoints it reads.
pub fn lineage_of(plan: &LogicalPlan) -> Lineage {
    let text = plan.display_indent().to_string();
    let inputs = inputs_of(plan);
    match CairnLogicalCodec::default().encode(plan) {
        Ok(bytes) => Lineage {
            text,
            proto: Some(BASE64.encode(&bytes)),
            proto_unavailable: None,
            inputs,
        },
        Err(e) => Lineage {
            text,
            proto: None,
            proto_unavailable: Some(format!(
                "its plan reads a source that cannot be encoded ({})",
                root_cause(&e)
            )),
            inputs,
        },
    }
}

/// The committed checkpoints `plan` reads.
fn inputs_of(plan: &LogicalPlan) -> Vec<LineageInput> {
    let mut inputs: Vec<LineageInput> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(t) = provider.downcast_ref::<CheckpointTable>()
        {
            let input = LineageInput {
                dir: t.store().url().to_string(),
                id: t.id().to_string(),
            };
            if !inputs.contains(&input) {
                inputs.push(input);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    inputs
}

/// The plan `lineage` keeps, ready to plan again, reading for each id in
/// `resolved` the table given for it; or why it cannot be rebuilt, for the
/// caller's message.
pub fn decode_lineage(
    lineage: &Lineage,
    ctx: &TaskContext,
    resolved: impl IntoIterator<Item = (String, Arc<CheckpointTable>)>,
) -> Result<LogicalPlan, String> {
    let Some(proto) = &lineage.proto else {
        return Err(lineage
            .proto_unavailable
            .clone()
            .unwrap_or_else(|| "it was not recorded".into()));
    };
    let bytes = BASE64
        .decode(proto)
        .map_err(|e| format!("it is damaged: {e}"))?;
    CairnLogicalCodec::default()
        .with_resolved(resolved)
        .decode(&bytes, ctx)
        .map_err(|e| format!("it cannot be decoded: {}", root_cause(&e)))
}

/// The innermost error: datafusion-proto wraps its errors in contexts that
/// name its own source files, which are no business of a user.
fn root_cause(e: &DataFusionError) -> String {
    e.find_root().to_string()
}
