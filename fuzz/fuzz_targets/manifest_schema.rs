//! The schema inside a manifest is Arrow IPC bytes; any bytes there decode
//! or are refused with an error, never a panic.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cairn_core::store::manifest::SchemaInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let info = SchemaInfo {
        arrow_ipc: BASE64.encode(bytes),
        fields: Vec::new(),
    };
    if let Ok(schema) = info.decode() {
        // What decodes must encode and decode to the same schema.
        assert_eq!(SchemaInfo::new(&schema).decode().as_ref(), Ok(&schema));
    }
});
