//! Bounds-checked access to guest linear memory, and handing bytes to the guest through its
//! allocator (`malloc`, else `proxy_on_memory_allocate`) the way cpp-host does.

use super::Status;
use crate::state::{Restriction, VmState};
use wasmtime::{Caller, Memory};

/// A memory error that becomes `InvalidMemoryAccess` for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMemory;

fn memory(caller: &Caller<'_, VmState>) -> Result<Memory, BadMemory> {
    caller.data().memory.ok_or(BadMemory)
}

fn range(ptr: i32, len: i32, size: usize) -> Result<std::ops::Range<usize>, BadMemory> {
    // Envoy widens every i32 to a 64-bit word (zero-extended), so the sum cannot overflow.
    let start = u64::from(ptr as u32);
    let end = start + u64::from(len as u32);
    if end > size as u64 {
        return Err(BadMemory);
    }
    Ok(usize::try_from(start).map_err(|_| BadMemory)?
        ..usize::try_from(end).map_err(|_| BadMemory)?)
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub fn read(caller: &Caller<'_, VmState>, ptr: i32, len: i32) -> Result<Vec<u8>, BadMemory> {
    let mem = memory(caller)?;
    let data = mem.data(caller);
    let r = range(ptr, len, data.len())?;
    data.get(r).map(<[u8]>::to_vec).ok_or(BadMemory)
}

/// Writes `bytes` at `ptr` in guest memory.
pub fn write(caller: &mut Caller<'_, VmState>, ptr: i32, bytes: &[u8]) -> Result<(), BadMemory> {
    let mem = memory(caller)?;
    let len = i32::try_from(bytes.len()).map_err(|_| BadMemory)?;
    let data = mem.data_mut(&mut *caller);
    let r = range(ptr, len, data.len())?;
    data.get_mut(r).ok_or(BadMemory)?.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 word at `ptr`.
pub fn write_u32(caller: &mut Caller<'_, VmState>, ptr: i32, v: u32) -> Result<(), BadMemory> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Writes a little-endian u64 at `ptr`.
pub fn write_u64(caller: &mut Caller<'_, VmState>, ptr: i32, v: u64) -> Result<(), BadMemory> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Reads a little-endian u32 word at `ptr`.
pub fn read_u32(caller: &Caller<'_, VmState>, ptr: i32) -> Result<u32, BadMemory> {
    let b = read(caller, ptr, 4)?;
    let arr: [u8; 4] = b.as_slice().try_into().map_err(|_| BadMemory)?;
    Ok(u32::from_le_bytes(arr))
}

/// Calls the guest allocator with only the allocator-safe hostcalls allowed; `Ok(0)` if the
/// allocator returned null. A trap in the allocator is returned as `Err` (it traps the caller).
pub fn allocate(caller: &mut Caller<'_, VmState>, size: u32) -> wasmtime::Result<u32> {
    let Some(alloc) = caller.data().allocator.clone() else {
        return Err(wasmtime::Error::msg("missing malloc"));
    };
    let saved = caller.data().restriction;
    caller.data_mut().restriction = Restriction::Allocator;
    let res = alloc.call(&mut *caller, size as i32);
    caller.data_mut().restriction = saved;
    Ok(res? as u32)
}

/// cpp-host's "copy to guest": empty ⇒ writes (0, 0) without allocating; otherwise allocates,
/// copies, and writes (ptr, len). Returns the status for the hostcall.
pub fn copy_out(
    caller: &mut Caller<'_, VmState>,
    bytes: &[u8],
    ptr_ptr: i32,
    len_ptr: i32,
) -> wasmtime::Result<Status> {
    if bytes.is_empty() {
        if write_u32(caller, ptr_ptr, 0).is_err() || write_u32(caller, len_ptr, 0).is_err() {
            return Ok(Status::InvalidMemoryAccess);
        }
        return Ok(Status::Ok);
    }
    let Ok(len) = u32::try_from(bytes.len()) else {
        return Ok(Status::InvalidMemoryAccess);
    };
    let ptr = allocate(caller, len)?;
    if ptr == 0 || write(caller, ptr as i32, bytes).is_err() {
        return Ok(Status::InvalidMemoryAccess);
    }
    if write_u32(caller, ptr_ptr, ptr).is_err() || write_u32(caller, len_ptr, len).is_err() {
        return Ok(Status::InvalidMemoryAccess);
    }
    Ok(Status::Ok)
}
