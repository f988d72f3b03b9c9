//! An Envoy-faithful proxy-wasm host on wasmtime (see ARCHITECTURE.md).

/// Path of the filter module built by this crate's build script from the current sources.
pub const GOVERNANCE_WASM: &str = env!("GOVERNANCE_WASM");
/// Path of the host's own probe guest, for host paths the filter does not exercise.
pub const PROBE_GUEST_WASM: &str = env!("PROBE_GUEST_WASM");
