//! What a replica remembers between requests, in shared data (one key per configured limit,
//! one for the namespace, so it cannot grow with traffic):
//! - a counter Limitador refused, until its window ends: nothing can un-spend it, so the
//!   owner's next requests are refused without a call;
//! - that Limitador could not be reached, for a second, so that an outage costs at most one
//!   timeout a second on this Envoy rather than one per request.

use crate::config::{Limit, Policy};
use crate::store::CasStore;

/// How long Limitador counts as down after a round that could not reach it.
pub const DOWN_NANOS: i64 = 1_000_000_000;

const EXHAUSTED_SUFFIX: &[u8] = b":fleet-exhausted";
const DOWN_SUFFIX: &str = ":fleet-down";

fn exhausted_key(limit: &Limit) -> Vec<u8> {
    [limit.storage_key.as_ref(), EXHAUSTED_SUFFIX].concat()
}

/// Remembers that `limit` (whose maximum in Limitador is `max_value`) has no room left
/// until `until`. A raised maximum makes the memory void.
pub fn remember_exhausted(store: &dyn CasStore, limit: &Limit, max_value: u64, until: i64) {
    let mut value = [0u8; 16];
    let (a, b) = value.split_at_mut(8);
    a.copy_from_slice(&until.to_le_bytes());
    b.copy_from_slice(&max_value.to_le_bytes());
    // Unconditional: every writer writes the same kind of fact; the last one is as good.
    if let Err(err) = store.set(&exhausted_key(limit), &value, 0) {
        log::warn!("fleet: could not remember an exhausted counter: {err:?}");
    }
}

/// When `limit` was remembered exhausted and that still holds at `now`: its window's end.
pub fn exhausted_until(
    store: &dyn CasStore,
    limit: &Limit,
    max_value: u64,
    now: i64,
) -> Option<i64> {
    let (value, _) = store.get(&exhausted_key(limit)).ok()??;
    let until = i64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let max = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    (max == max_value && now < until).then_some(until)
}

fn down_key(policy: &Policy) -> Vec<u8> {
    format!("{}{DOWN_SUFFIX}", policy.namespace).into_bytes()
}

/// Limitador could not be reached at `now`.
pub fn mark_down(store: &dyn CasStore, policy: &Policy, now: i64) {
    let until = now.saturating_add(DOWN_NANOS);
    if let Err(err) = store.set(&down_key(policy), &until.to_le_bytes(), 0) {
        log::warn!("fleet: could not remember that Limitador is down: {err:?}");
    }
}

/// Whether Limitador counts as down at `now`.
pub fn is_down(store: &dyn CasStore, policy: &Policy, now: i64) -> bool {
    let Ok(Some((value, _))) = store.get(&down_key(policy)) else {
        return false;
    };
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .is_some_and(|until| now < until)
}
