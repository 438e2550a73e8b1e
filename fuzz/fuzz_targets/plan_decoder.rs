//! Any bytes given to Cairn's codecs as a plan, a plan node or a table
//! decode or are refused with an error, never a panic.
#![no_main]

use std::sync::Arc;

use cairn_core::datafusion::arrow::datatypes::Schema;
use cairn_core::datafusion::common::TableReference;
use cairn_core::datafusion::execution::TaskContext;
use cairn_core::datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec;
use cairn_core::datafusion_proto::logical_plan::LogicalExtensionCodec;
use cairn_core::datafusion_proto::physical_plan::{
    DefaultPhysicalProtoConverter, PhysicalExtensionCodec,
};
use cairn_core::{CairnLogicalCodec, CairnPhysicalCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let ctx = TaskContext::default();
    let logical = CairnLogicalCodec::default();
    let physical = CairnPhysicalCodec::default();
    // Whole plans, as another process sends them.
    let _ = logical.decode(bytes, &ctx);
    let _ = physical_plan_from_bytes_with_extension_codec(bytes, &ctx, &physical);
    // Cairn's own payloads, reached without the protobuf around them.
    let table = TableReference::bare("t");
    let _ = logical.try_decode_table_provider(bytes, &table, Arc::new(Schema::empty()), &ctx);
    let _ = logical.try_decode(bytes, &[], &ctx);
    let _ = physical.try_decode(bytes, &[], &ctx, &DefaultPhysicalProtoConverter {});
});
