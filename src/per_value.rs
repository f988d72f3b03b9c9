//! Sub-limits per value of a request header (`per_value` on a key or team,
//! docs/configuration.md): each value (an end user, an agent run) gets the template's limits
//! inside its owner's, in a table of `max_values` slots in shared data.
//!
//! A slot is a claim key holding the SHA-256 of the value that owns it (values are never
//! stored in the clear) and, beside it, one counter per template limit (the template's key
//! with the slot's number appended, see [`crate::counter::Counters::with_value_slots`]).
//! Shared data has no delete, so a slot is never freed: it is reused once every window of its
//! counters has ended (a value whose window never ends keeps its slot). A value looks for its
//! own slot, and else for a free one, among [`PROBES`] slots starting at the one its hash
//! picks; it claims a free one by compare-and-swap, so two values never share a slot.

use sha2::{Digest, Sha256};

use crate::config::{PerValue, Policy};
use crate::counter::{CounterError, Counters, Record};
use crate::store::Cas;

/// Slots a value looks at, from the one its hash picks (all of them when `max_values` is
/// smaller): a bounded cost per request whatever `max_values` is.
pub const PROBES: u32 = 32;

/// What a value found in its owner's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Its slot (found, or claimed now).
    Slot(u32),
    /// Every slot it may use belongs to another value whose windows have not ended.
    Full,
}

/// The SHA-256 of a header value, as slots store it.
pub fn value_hash(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// The slot the value whose hash is `hash` holds in `per_value`'s table, if any (reads only).
pub fn find(
    per_value: &PerValue,
    counters: &Counters<'_>,
    hash: &[u8; 32],
) -> Result<Option<u32>, CounterError> {
    for slot in probe_order(per_value, hash) {
        if let Some((owner, _)) = counters.get_raw(&per_value.claim_key(slot))? {
            if owner.as_slice() == hash.as_slice() {
                return Ok(Some(slot));
            }
        }
    }
    Ok(None)
}

/// The slots a value may use, in the order it looks at them.
fn probe_order(per_value: &PerValue, hash: &[u8; 32]) -> impl Iterator<Item = u32> {
    let size = per_value.max_values.max(1);
    let start = first_slot(hash, size);
    (0..PROBES.min(size)).map(move |p| {
        let i = u64::from(start).saturating_add(u64::from(p)) % u64::from(size);
        u32::try_from(i).unwrap_or(0)
    })
}

/// The slot of the value whose hash is `hash` in `per_value`'s table, claiming one if it
/// has none. `counters` reads the slots' counters (it must not carry a slot for this table).
pub fn claim(
    policy: &Policy,
    per_value: &PerValue,
    counters: &mut Counters<'_>,
    hash: &[u8; 32],
    now: i64,
) -> Result<Claim, CounterError> {
    // Its own slot first, anywhere in the range: a free slot before it must not give the
    // value a second, empty set of counters.
    let mut seen = Vec::with_capacity(PROBES as usize);
    for slot in probe_order(per_value, hash) {
        let claim = counters.get_raw(&per_value.claim_key(slot))?;
        if let Some((owner, _)) = &claim {
            if owner.as_slice() == hash.as_slice() {
                return Ok(Claim::Slot(slot));
            }
        }
        seen.push((slot, claim));
    }
    for (slot, claim) in seen {
        let key = per_value.claim_key(slot);
        let taken = match claim {
            None => counters.create_raw(&key, hash)?,
            Some((_, version)) => {
                if !idle(policy, per_value, counters, slot, now)? {
                    continue;
                }
                take_over(policy, per_value, counters, slot, &key, hash, version)?
            }
        };
        if taken {
            return Ok(Claim::Slot(slot));
        }
        // Another value claimed it meanwhile: it may be this same value on another worker.
        if let Some((owner, _)) = counters.get_raw(&key)? {
            if owner.as_slice() == hash.as_slice() {
                return Ok(Claim::Slot(slot));
            }
        }
    }
    Ok(Claim::Full)
}

/// Where a value's probing starts: its hash's first 8 bytes modulo the table's size.
fn first_slot(hash: &[u8; 32], max_values: u32) -> u32 {
    let mut head = [0u8; 8];
    head.copy_from_slice(hash.get(..8).unwrap_or(&[0; 8]));
    let index = u64::from_le_bytes(head) % u64::from(max_values.max(1));
    u32::try_from(index).unwrap_or(0)
}

/// Whether every counter of `slot` is unused or has a window that ended (nothing reserved).
fn idle(
    policy: &Policy,
    per_value: &PerValue,
    counters: &Counters<'_>,
    slot: u32,
    now: i64,
) -> Result<bool, CounterError> {
    for id in &per_value.limits {
        let Some(limit) = policy.limits.get(*id) else {
            continue;
        };
        let Some((bytes, _)) = counters.get_raw(&per_value.counter_key(limit, slot))? else {
            continue;
        };
        let record = Record::decode(&bytes)?;
        if record.started && now < record.window_end {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Claims an idle slot from the value that had it: the claim first (by CAS, so one claimer
/// wins), then its counters back to unused, so the new value's windows open at its own first
/// use instead of continuing the old value's.
fn take_over(
    policy: &Policy,
    per_value: &PerValue,
    counters: &mut Counters<'_>,
    slot: u32,
    claim_key: &[u8],
    hash: &[u8; 32],
    version: Cas,
) -> Result<bool, CounterError> {
    if !counters.set_raw(claim_key, hash, version)? {
        return Ok(false);
    }
    for id in &per_value.limits {
        if let Some(limit) = policy.limits.get(*id) {
            let key = per_value.counter_key(limit, slot);
            if counters.get_raw(&key)?.is_some() {
                counters.set_raw(&key, &Record::default().encode(), 0)?;
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
