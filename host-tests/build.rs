//! Compiles the filter, the host's own probe guests (SDK and raw ABI) and the benchmark's
//! floor guest to wasm32-wasip1 before the tests build, so `cargo test -p host-tests` always
//! exercises the current code.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    guest_build::build_and_export(&root, &root, "governance", "GOVERNANCE_WASM");
    // The filter's own build script generates its time-zone table and sets its stack size.
    println!("cargo:rerun-if-changed={}", root.join("build.rs").display());
    let probe = manifest_dir.join("probe-guest");
    guest_build::build_and_export(&root, &probe, "probe_guest", "PROBE_GUEST_WASM");
    let abi_probe = manifest_dir.join("abi-probe-guest");
    guest_build::build_and_export(&root, &abi_probe, "abi_probe_guest", "ABI_PROBE_GUEST_WASM");
    let floor = manifest_dir.join("floor-guest");
    guest_build::build_and_export(&root, &floor, "floor_guest", "FLOOR_GUEST_WASM");
}
