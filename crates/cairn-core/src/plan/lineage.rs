//! The plan a checkpoint cut away, kept in its manifest as metadata: as
//! text always, and as datafusion-proto bytes where the plan's sources can
//! be encoded, which is what recomputing it needs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;

use crate::store::manifest::Lineage;

/// The lineage of `plan`: always its text, and its datafusion-proto
/// encoding where every source can be encoded (files and listing tables;
/// not in-memory tables).
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
            proto_unavailable: Some(format!(
                "its plan reads a source that cannot be encoded ({})",
                root_cause(&e)
            )),
        },
    }
}

/// The plan `lineage` keeps, ready to plan again; or why it cannot be
/// rebuilt, for the caller's message.
pub fn decode_lineage(lineage: &Lineage, ctx: &TaskContext) -> Result<LogicalPlan, String> {
    let Some(proto) = &lineage.proto else {
        return Err(lineage
            .proto_unavailable
            .clone()
            .unwrap_or_else(|| "it was not recorded".into()));
    };
    let bytes = BASE64
        .decode(proto)
        .map_err(|e| format!("it is damaged: {e}"))?;
    datafusion_proto::bytes::logical_plan_from_bytes(&bytes, ctx)
        .map_err(|e| format!("it cannot be decoded: {}", root_cause(&e)))
}

/// The innermost error: datafusion-proto wraps its errors in contexts that
/// name its own source files, which are no business of a user.
fn root_cause(e: &DataFusionError) -> String {
    e.find_root().to_string()
}
