//! Compiles the filter (and the host's own probe guest) to wasm32-wasip1 before the tests
//! build, so `cargo test -p host-tests` always exercises the current code.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();

    let filter = guest_build::build_guest(&root, &root.join("Cargo.toml"), "governance");
    println!("cargo:rustc-env=GOVERNANCE_WASM={}", filter.display());
    guest_build::rerun_if_tree_changed(&root.join("src"));
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );

    let probe_dir = manifest_dir.join("probe-guest");
    let probe = guest_build::build_guest(&root, &probe_dir.join("Cargo.toml"), "probe_guest");
    println!("cargo:rustc-env=PROBE_GUEST_WASM={}", probe.display());
    guest_build::rerun_if_tree_changed(&probe_dir.join("src"));
    println!(
        "cargo:rerun-if-changed={}",
        probe_dir.join("Cargo.toml").display()
    );
}
