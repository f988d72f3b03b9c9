//! Compiles the filter to wasm32-wasip1 so the real-Envoy tests always load current code.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    guest_build::build_and_export(&root, &root, "governance", "GOVERNANCE_WASM");
}
