//! Compiles the filter to wasm32-wasip1 so the real-Envoy tests always load current code.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let filter = guest_build::build_guest(&root, &root.join("Cargo.toml"), "governance");
    println!("cargo:rustc-env=GOVERNANCE_WASM={}", filter.display());
    guest_build::rerun_if_tree_changed(&root.join("src"));
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
}
