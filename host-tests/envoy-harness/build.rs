//! Compiles the filter, and the raw-ABI probe guest used to observe Envoy's callouts and
//! queues, to wasm32-wasip1 so the real-Envoy tests always load current code.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let host_tests = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    let root = host_tests.parent().map(PathBuf::from).unwrap_or_default();
    guest_build::build_and_export(&root, &root, "governance", "GOVERNANCE_WASM");
    let abi_probe = host_tests.join("abi-probe-guest");
    guest_build::build_and_export(&root, &abi_probe, "abi_probe_guest", "ABI_PROBE_GUEST_WASM");
}
