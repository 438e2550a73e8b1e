//! The plan a checkpoint cut away, kept in its manifest as metadata.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::logical_expr::LogicalPlan;

use crate::store::manifest::Lineage;

/// The lineage of `plan`: always its text, and its datafusion-proto
/// encoding where every source can be encoded (files and listing tables;
/// not in-memory tables), which is what a recompute needs.
pub fn lineage_of(plan: &LogicalPlan) -> Lineage {
    let text = plan.display_indent().to_string();
    match datafusion_proto::bytes::logical_plan_to_bytes(plan) {
        Ok(bytes) => Lineage {
            text,
            proto: Some(BASE64.encode(&bytes)),
            proto_unavailable: None,
        },
        Err(e) => Lineage {
            text,
            proto: None,
            proto_unavailable: Some(e.to_string()),
        },
    }
}
