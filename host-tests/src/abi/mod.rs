//! The hostcalls Envoy provides to a proxy-wasm module (`env.proxy_*` and WASI), one file per
//! area, plus the guest-memory helpers they share.

pub(crate) mod buffers;
pub(crate) mod callouts;
pub(crate) mod headers;
pub(crate) mod log;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod misc;
pub(crate) mod properties;
pub(crate) mod queues;
pub(crate) mod reply;
pub(crate) mod shared_data;
pub(crate) mod time;
pub(crate) mod wasi;

use crate::state::{Restriction, VmState};
use wasmtime::{Caller, Linker};

/// `proxy_status_t` as Envoy returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Missing key, property, buffer or id.
    NotFound = 1,
    /// Argument out of range, or a header map / buffer not available in this callback.
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// Parse failure (e.g. unknown gRPC cluster).
    ParseFailure = 4,
    /// Bad pointer or length, or the guest allocator returned 0.
    InvalidMemoryAccess = 6,
    /// Queue empty.
    Empty = 7,
    /// Shared data compare-and-swap lost.
    CasMismatch = 8,
    /// Host-side failure.
    InternalFailure = 10,
    /// A callout's connection broke (`proxy_get_status` after a reset).
    BrokenConnection = 11,
    /// Not implemented by Envoy.
    Unimplemented = 12,
}

impl Status {
    /// The raw `i32` the hostcall returns.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Result type of every hostcall: `Err` traps the guest.
pub(crate) type HostResult = wasmtime::Result<i32>;

/// Traps unless `name` may run in the current phase (`_initialize`, allocator, normal).
pub(crate) fn guard(caller: &Caller<'_, VmState>, name: &str) -> wasmtime::Result<()> {
    let allowed = match caller.data().restriction {
        Restriction::None => true,
        Restriction::Initialize => name == "proxy_log" || !name.starts_with("proxy_"),
        Restriction::Allocator => matches!(
            name,
            "proxy_log" | "fd_write" | "clock_time_get" | "poll_oneoff"
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(wasmtime::Error::msg(format!(
            "restricted_callback: {name} is not allowed in this phase"
        )))
    }
}

/// Registers every import Envoy provides, with Envoy's exact types.
pub(crate) fn link_all(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    log::link(linker)?;
    time::link(linker)?;
    buffers::link(linker)?;
    headers::link(linker)?;
    properties::link(linker)?;
    shared_data::link(linker)?;
    metrics::link(linker)?;
    reply::link(linker)?;
    callouts::link(linker)?;
    queues::link(linker)?;
    misc::link(linker)?;
    wasi::link(linker, "wasi_snapshot_preview1")?;
    wasi::link(linker, "wasi_unstable")?;
    Ok(())
}
