//! Any bytes found where a manifest should be are read or refused with an
//! error, never a panic; a manifest that is accepted writes back to one that
//! reads the same.
#![no_main]

use cairn_core::store::manifest::{MANIFEST_FILE, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The reader is given the id of the directory it reads; take the one the
    // input names, so that inputs are not all refused for a wrong id.
    let id = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let Ok(manifest) = Manifest::parse(&id, MANIFEST_FILE, bytes) else {
        return;
    };
    let schema = manifest.schema();
    let again = Manifest::parse(&id, MANIFEST_FILE, &manifest.to_json())
        .expect("an accepted manifest, written back, is accepted");
    assert_eq!(again.schema(), schema);
    assert_eq!(again.files, manifest.files);
});
