//! Envoy's process-wide shared data with proxy-wasm-cpp-host's exact semantics, and its two
//! hostcalls. One [`SharedData`] is shared (via `Arc`) by every VM of one host.
//!
//! Rules: keyed by `vm_id`; one lock; one CAS counter for all keys and vm_ids that starts at 1,
//! moves only on successful sets and skips 0 on wrap; `cas == 0` is unconditional; a set on a
//! missing key always succeeds whatever `cas` says; an empty value is stored (no delete).

use super::{guard, memory, HostResult, Status};
use crate::state::VmState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::{Caller, Linker};

/// One vm_id namespace: key -> (value, cas).
type Space = HashMap<Vec<u8>, (Vec<u8>, u32)>;

#[derive(Debug)]
struct Inner {
    next_cas: u32,
    spaces: HashMap<String, Space>,
}

/// Handle on one host's shared-data store. Cloning shares the same store.
#[derive(Debug, Clone)]
pub struct SharedData(Arc<Mutex<Inner>>);

/// Why a set was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The key exists and `cas` is neither 0 nor its current cas.
    CasMismatch,
}

/// Which shared-data hostcall an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataOp {
    /// `proxy_get_shared_data`
    Get,
    /// `proxy_set_shared_data`
    Set,
}

/// A completed shared-data hostcall of one VM, given to the VM's hook (lock released).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDataEvent {
    /// Get or set.
    pub op: SharedDataOp,
    /// The key.
    pub key: Vec<u8>,
    /// 1-based count of calls of this op in this VM, this one included.
    pub nth: usize,
    /// Status returned to the guest.
    pub status: Status,
}

impl Default for SharedData {
    fn default() -> Self {
        SharedData(Arc::new(Mutex::new(Inner {
            next_cas: 1,
            spaces: HashMap::new(),
        })))
    }
}

impl SharedData {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `(value, cas)` of `key` in namespace `vm_id`, `None` when absent.
    pub fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock()
            .spaces
            .get(vm_id)
            .and_then(|s| s.get(key))
            .cloned()
    }

    /// cpp-host's set; returns the new cas on success.
    pub fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<u32, SetError> {
        let mut inner = self.lock();
        let new_cas = inner.next_cas;
        let space = inner.spaces.entry(vm_id.to_string()).or_default();
        if let Some((_, stored)) = space.get(key) {
            if cas != 0 && cas != *stored {
                return Err(SetError::CasMismatch);
            }
        }
        space.insert(key.to_vec(), (value.to_vec(), new_cas));
        inner.next_cas = match new_cas.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        Ok(new_cas)
    }

    /// Overwrites a stored value without touching its cas or the counter (to corrupt data).
    pub fn overwrite_raw(&self, vm_id: &str, key: &[u8], value: &[u8]) {
        let mut inner = self.lock();
        let space = inner.spaces.entry(vm_id.to_string()).or_default();
        match space.get_mut(key) {
            Some(entry) => entry.0 = value.to_vec(),
            None => {
                space.insert(key.to_vec(), (value.to_vec(), 0));
            }
        }
    }

    /// Removes `key` from namespace `vm_id` (true if it was there). No hostcall can do this
    /// (Envoy's ABI has no delete): tests use it to recreate a key that was never written,
    /// e.g. a counter whose creation at configure time did not happen.
    pub fn remove_raw(&self, vm_id: &str, key: &[u8]) -> bool {
        self.lock()
            .spaces
            .get_mut(vm_id)
            .is_some_and(|space| space.remove(key).is_some())
    }

    /// The cas the next successful set will store.
    pub fn next_cas(&self) -> u32 {
        self.lock().next_cas
    }

    /// Moves the global counter (e.g. near `u32::MAX` to test the wrap that skips 0).
    pub fn set_next_cas(&self, cas: u32) {
        self.lock().next_cas = cas;
    }

    /// Keys of namespace `vm_id`, sorted.
    pub fn keys(&self, vm_id: &str) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .lock()
            .spaces
            .get(vm_id)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }
}

fn fire(c: &mut Caller<'_, VmState>, op: SharedDataOp, key: Vec<u8>, status: Status) {
    let st = c.data_mut();
    let nth = match op {
        SharedDataOp::Get => {
            st.shared_get_count += 1;
            st.shared_get_count
        }
        SharedDataOp::Set => {
            st.shared_set_count += 1;
            st.shared_set_count
        }
    };
    if let Some(mut hook) = st.shared_hook.take() {
        hook(&SharedDataEvent {
            op,
            key,
            nth,
            status,
        });
        let st = c.data_mut();
        if st.shared_hook.is_none() {
            st.shared_hook = Some(hook);
        }
    }
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, VmState>, kp: i32, kl: i32, rp: i32, rl: i32, rc: i32| -> HostResult {
            guard(&c, "proxy_get_shared_data")?;
            let Ok(key) = memory::read(&c, kp, kl) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let shared = c.data().shared.clone();
            let status = match shared.shared_data.get(&shared.settings.vm_id, &key) {
                None => Status::NotFound,
                Some((value, cas)) => {
                    let s = memory::copy_out(&mut c, &value, rp, rl)?;
                    if s == Status::Ok && memory::write_u32(&mut c, rc, cas).is_err() {
                        Status::InvalidMemoryAccess
                    } else {
                        s
                    }
                }
            };
            fire(&mut c, SharedDataOp::Get, key, status);
            Ok(status.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, VmState>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> HostResult {
            guard(&c, "proxy_set_shared_data")?;
            let (Ok(key), Ok(value)) = (memory::read(&c, kp, kl), memory::read(&c, vp, vl)) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let shared = c.data().shared.clone();
            let status =
                match shared
                    .shared_data
                    .set(&shared.settings.vm_id, &key, &value, cas as u32)
                {
                    Ok(_) => Status::Ok,
                    Err(SetError::CasMismatch) => Status::CasMismatch,
                };
            fire(&mut c, SharedDataOp::Set, key, status);
            Ok(status.code())
        },
    )?;
    Ok(())
}
