//! Errors a test can get from building or reconfiguring a host.

use std::fmt;

/// Why the host refused a module or a configuration, as Envoy would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The module could not be read, compiled, linked or initialised (missing import, import
    /// type mismatch, no ABI version marker, no allocator, trap in `_initialize`, ...).
    Load(String),
    /// `proxy_on_vm_start` returned false (or trapped) in the canary VM.
    VmStartFailed(String),
    /// `proxy_on_configure` returned false (or trapped): Envoy refuses (NACKs) the config.
    ConfigRejected(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Load(m) => write!(f, "module failed to load: {m}"),
            HostError::VmStartFailed(m) => write!(f, "on_vm_start failed: {m}"),
            HostError::ConfigRejected(m) => write!(f, "Envoy refuses the config: {m}"),
        }
    }
}

impl std::error::Error for HostError {}
