//! Body and configuration buffers (`proxy_get_buffer_bytes`, `_status`, `proxy_set_buffer_bytes`)
//! with Envoy's clamping and its restricted set semantics.

use super::{guard, memory, HostResult, Status};
use crate::state::VmState;
use wasmtime::{Caller, Linker};

const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const CALLOUT_BODY: i32 = 4;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

/// `f` of the current bytes of buffer `kind` (borrowed: the filter reads a configuration of
/// megabytes back in thousands of pieces), or the status Envoy returns when it is
/// unavailable.
fn with_current<R>(
    state: &mut VmState,
    kind: i32,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, Status> {
    match kind {
        // Envoy always has a body buffer object: outside a body callback, and while a body is
        // not held, it reads as empty (Ok), from stream and root contexts alike.
        REQUEST_BODY | RESPONSE_BODY => {
            let idx = usize::from(kind == RESPONSE_BODY);
            let body = state
                .http_mut()
                .and_then(|h| h.body.get(idx))
                .and_then(|body| body.as_deref());
            Ok(f(body.unwrap_or_default()))
        }
        CALLOUT_BODY => state
            .answer_in_view()
            .and_then(|a| a.response.as_ref())
            .map(|r| f(&r.body))
            .ok_or(Status::NotFound),
        VM_CONFIGURATION => Ok(f(&state.shared.settings.vm_config)),
        PLUGIN_CONFIGURATION => state
            .plugin_config
            .as_deref()
            .map(f)
            .ok_or(Status::NotFound),
        2 | 3 | 5 | 8 => Err(Status::NotFound),
        _ => Err(Status::BadArgument),
    }
}

/// Envoy's set on an HTTP body: start 0 drains `size` bytes then prepends; start at or past
/// the end appends; anything in between is BadArgument.
pub(crate) fn apply_set(buf: &mut Vec<u8>, start: u32, size: u32, data: &[u8]) -> Status {
    let start = start as usize;
    if start == 0 {
        let drain = (size as usize).min(buf.len());
        buf.drain(..drain);
        let mut out = data.to_vec();
        out.append(buf);
        *buf = out;
        Status::Ok
    } else if start >= buf.len() {
        buf.extend_from_slice(data);
        Status::Ok
    } else {
        Status::BadArgument
    }
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, VmState>,
         kind: i32,
         start: i32,
         max: i32,
         rp: i32,
         rl: i32|
         -> HostResult {
            guard(&c, "proxy_get_buffer_bytes")?;
            let start = start as u32 as usize;
            let slice = with_current(c.data_mut(), kind, |buf| {
                if start > buf.len() {
                    Vec::new()
                } else {
                    let len = (max as u32 as usize).min(buf.len() - start);
                    buf.get(start..start + len).unwrap_or(&[]).to_vec()
                }
            });
            let slice = match slice {
                Ok(slice) => slice,
                Err(s) => return Ok(s.code()),
            };
            Ok(memory::copy_out(&mut c, &slice, rp, rl)?.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Caller<'_, VmState>, kind: i32, rl: i32, rf: i32| -> HostResult {
            guard(&c, "proxy_get_buffer_status")?;
            let len = match with_current(c.data_mut(), kind, |b| b.len() as u32) {
                Ok(len) => len,
                Err(s) => return Ok(s.code()),
            };
            if memory::write_u32(&mut c, rl, len).is_err()
                || memory::write_u32(&mut c, rf, 0).is_err()
            {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, VmState>,
         kind: i32,
         start: i32,
         size: i32,
         p: i32,
         l: i32|
         -> HostResult {
            guard(&c, "proxy_set_buffer_bytes")?;
            let Ok(data) = memory::read(&c, p, l) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            match kind {
                REQUEST_BODY | RESPONSE_BODY => {
                    let idx = usize::from(kind == RESPONSE_BODY);
                    let slot = c
                        .data_mut()
                        .http_mut()
                        .and_then(|h| h.body.get_mut(idx))
                        .and_then(Option::as_mut);
                    match slot {
                        Some(buf) => Ok(apply_set(buf, start as u32, size as u32, &data).code()),
                        // No body in reach: Envoy's empty buffer object refuses writes.
                        None => Ok(Status::BadArgument.code()),
                    }
                }
                CALLOUT_BODY | VM_CONFIGURATION | PLUGIN_CONFIGURATION => {
                    Ok(Status::BadArgument.code())
                }
                2 | 3 | 5 | 8 => Ok(Status::NotFound.code()),
                _ => Ok(Status::BadArgument.code()),
            }
        },
    )?;
    Ok(())
}
