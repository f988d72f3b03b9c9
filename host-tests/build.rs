//! Compiles the filter (and the host's own probe and benchmark-floor guests) to wasm32-wasip1 before the tests
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

    let floor_dir = manifest_dir.join("floor-guest");
    let floor = guest_build::build_guest(&root, &floor_dir.join("Cargo.toml"), "floor_guest");
    println!("cargo:rustc-env=FLOOR_GUEST_WASM={}", floor.display());
    guest_build::rerun_if_tree_changed(&floor_dir.join("src"));
    println!(
        "cargo:rerun-if-changed={}",
        floor_dir.join("Cargo.toml").display()
    );
}
