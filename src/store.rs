//! The two seams between the policy core and its host: a clock and a CAS key-value store.
//!
//! In Envoy both are backed by proxy-wasm hostcalls (`glue::host`); in native tests by
//! [`MemoryStore`] and [`FixedClock`]. The store's contract is that of Envoy's shared data
//! (proxy-wasm-cpp-host), not a friendlier one, so the core is written against the real rules:
//! - a stored value's version (`cas`) is never 0, and changes on every successful write;
//! - `set` with `cas == 0` is unconditional;
//! - `set` on a key that is absent always succeeds, whatever `cas` says: there is no
//!   create-if-absent, so two writers can both "create" a key and one write is lost;
//! - there is no delete.

use std::cell::RefCell;
use std::collections::HashMap;

/// A version token returned by [`CasStore::get`]; never 0 for a stored value.
pub type Cas = u32;

/// Why a store call failed for a reason other than a CAS conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The host answered with a status the ABI does not allow here.
    Host(u32),
}

/// Outcome of a successful `set` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Written,
    /// Someone else wrote the key since the caller read it.
    CasMismatch,
}

/// Envoy's shared data, as seen by the core.
pub trait CasStore {
    /// The value and its version, or `None` when the key was never written.
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cas)>, StoreError>;
    /// Writes `value` if `cas` is 0, matches the stored version, or the key is absent.
    fn set(&self, key: &[u8], value: &[u8], cas: Cas) -> Result<SetOutcome, StoreError>;
}

/// Wall-clock time from the host, in nanoseconds since the Unix epoch.
pub trait Clock {
    fn now_nanos(&self) -> i64;
}

/// A clock that says whatever the test sets.
#[derive(Debug, Default)]
pub struct FixedClock {
    nanos: std::cell::Cell<i64>,
}

impl FixedClock {
    pub fn at(nanos: i64) -> Self {
        Self {
            nanos: std::cell::Cell::new(nanos),
        }
    }

    pub fn set(&self, nanos: i64) {
        self.nanos.set(nanos);
    }
}

impl Clock for FixedClock {
    fn now_nanos(&self) -> i64 {
        self.nanos.get()
    }
}

/// An in-memory store with the exact rules of proxy-wasm-cpp-host's shared data: one version
/// counter for the whole store that starts at 1, moves only on successful writes and skips 0.
#[derive(Debug)]
pub struct MemoryStore {
    inner: RefCell<MemoryInner>,
}

#[derive(Debug)]
struct MemoryInner {
    entries: HashMap<Vec<u8>, (Vec<u8>, Cas)>,
    next_cas: Cas,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: RefCell::new(MemoryInner {
                entries: HashMap::new(),
                next_cas: 1,
            }),
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys ever written (shared data has no delete).
    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All keys, for tests that check the key space stays bounded.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.inner.borrow().entries.keys().cloned().collect()
    }
}

impl CasStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        Ok(self.inner.borrow().entries.get(key).cloned())
    }

    fn set(&self, key: &[u8], value: &[u8], cas: Cas) -> Result<SetOutcome, StoreError> {
        let mut inner = self.inner.borrow_mut();
        if let Some((_, stored)) = inner.entries.get(key) {
            if cas != 0 && cas != *stored {
                return Ok(SetOutcome::CasMismatch);
            }
        }
        let assigned = inner.next_cas;
        inner.next_cas = match assigned.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        inner
            .entries
            .insert(key.to_vec(), (value.to_vec(), assigned));
        Ok(SetOutcome::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference trace of proxy-wasm-cpp-host's shared-data unit test.
    #[test]
    fn memory_store_follows_cpp_host_trace() {
        let store = MemoryStore::new();
        assert_eq!(store.set(b"k", b"1", 0), Ok(SetOutcome::Written));
        assert_eq!(store.set(b"k", b"1", 0), Ok(SetOutcome::Written));
        assert_eq!(store.set(b"k", b"1", 100), Ok(SetOutcome::CasMismatch));
        assert_eq!(store.get(b"k"), Ok(Some((b"1".to_vec(), 2))));
        assert_eq!(store.set(b"k", b"2", 2), Ok(SetOutcome::Written));
        assert_eq!(store.get(b"k"), Ok(Some((b"2".to_vec(), 3))));
    }

    #[test]
    fn set_on_missing_key_succeeds_even_with_stale_cas() {
        let store = MemoryStore::new();
        assert_eq!(store.set(b"fresh", b"x", 77), Ok(SetOutcome::Written));
        assert_eq!(store.get(b"missing"), Ok(None));
    }
}
