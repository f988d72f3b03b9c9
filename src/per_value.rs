//! Sub-limits per value of a request header (`per_value` on a key or team,
//! docs/configuration.md): each value (an end user, an agent run) gets the template's limits
//! inside its owner's, in a table of `max_values` slots in shared data.
//!
//! A slot is a claim key holding the SHA-256 of the value that owns it (values are never
//! stored in the clear) and when it was claimed, and, beside it, one counter per template
//! limit (the template's key with the slot's number appended): a request with slots reads
//! and writes its counters through a [`SlotStore`], which sends a template's key to its
//! slot's, so the counters' code is the same for every limit and costs nothing more when
//! no `per_value` applies. Shared data has no delete, so a slot is
//! never freed: it is reused once every window of its value has ended, the claim counting as
//! a first use of every counter (so a slot claimed a moment ago is not taken before its value
//! used it); a value whose window never ends keeps its slot. A value looks for its
//! own slot, and else for a free one, among [`PROBES`] slots starting at the one its hash
//! picks; it claims a free one by compare-and-swap, so two values never share a slot.

use sha2::{Digest, Sha256};

use crate::config::{slot_key, PerValue, Policy};
use crate::counter::{CounterError, Counters, Record};
use crate::store::{Cas, CasStore, SetOutcome, StoreError};

/// Slots a value looks at, from the one its hash picks (all of them when `max_values` is
/// smaller): a bounded cost per request whatever `max_values` is.
pub const PROBES: u32 = 32;

/// A request's `per_value` slots, `(table, slot)`: at most two tables apply to a request
/// (its key's and its team's), so they are kept inline.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ValueSlots([Option<(u32, u32)>; 2]);

impl ValueSlots {
    /// Notes `slot` of `table` (a third table is ignored: none exists).
    pub fn push(&mut self, table: u32, slot: u32) {
        if let Some(free) = self.0.iter_mut().find(|s| s.is_none()) {
            *free = Some((table, slot));
        }
    }

    /// The slot noted for `table`.
    pub fn slot(&self, table: u32) -> Option<u32> {
        self.iter().find(|(t, _)| *t == table).map(|(_, slot)| slot)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0.iter().flatten().copied()
    }
}

/// Shared data as a request with `per_value` slots sees it: each template limit's key is
/// its counter's key in the request's slot.
pub struct SlotStore<'a> {
    inner: &'a dyn CasStore,
    /// (template key, slot key)
    redirects: Vec<(&'a [u8], Vec<u8>)>,
}

impl<'a> SlotStore<'a> {
    pub fn new(inner: &'a dyn CasStore, policy: &'a Policy, slots: &ValueSlots) -> Self {
        let mut redirects = Vec::new();
        for (table, slot) in slots.iter() {
            let Some(per_value) = policy.per_values.get(table as usize) else {
                continue;
            };
            for limit in per_value
                .limits
                .iter()
                .filter_map(|id| policy.limits.get(*id))
            {
                redirects.push((&*limit.storage_key, slot_key(limit, slot)));
            }
        }
        Self { inner, redirects }
    }

    fn key<'k>(&'k self, key: &'k [u8]) -> &'k [u8] {
        self.redirects
            .iter()
            .find(|(template, _)| *template == key)
            .map_or(key, |(_, slot)| slot.as_slice())
    }
}

impl CasStore for SlotStore<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        self.inner.get(self.key(key))
    }

    fn set(&self, key: &[u8], value: &[u8], cas: Cas) -> Result<SetOutcome, StoreError> {
        self.inner.set(self.key(key), value, cas)
    }
}

/// A claim's bytes: the value's SHA-256, then when it was claimed (nanoseconds, LE).
const CLAIM_LEN: usize = 40;

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

fn claim_bytes(hash: &[u8; 32], now: i64) -> [u8; CLAIM_LEN] {
    let mut bytes = [0u8; CLAIM_LEN];
    let (head, tail) = bytes.split_at_mut(32);
    head.copy_from_slice(hash);
    tail.copy_from_slice(&now.to_le_bytes());
    bytes
}

/// Whether a claim's bytes name the value whose hash is `hash`.
fn held_by(claim: &[u8], hash: &[u8; 32]) -> bool {
    claim.get(..32) == Some(hash.as_slice())
}

/// When a claim was made (`None`: unreadable, taken as long ago).
fn claimed_at(claim: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(
        claim.get(32..CLAIM_LEN)?.try_into().ok()?,
    ))
}

/// The slot the value whose hash is `hash` holds in `per_value`'s table, if any (reads only).
pub fn find(
    per_value: &PerValue,
    counters: &Counters<'_>,
    hash: &[u8; 32],
) -> Result<Option<u32>, CounterError> {
    for slot in probe_order(per_value, hash) {
        if let Some((owner, _)) = counters.get_raw(&per_value.claim_key(slot))? {
            if held_by(&owner, hash) {
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
        let i = u64::from(start)
            .saturating_add(u64::from(p))
            .checked_rem(u64::from(size))
            .unwrap_or(0);
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
            if held_by(owner, hash) {
                return Ok(Claim::Slot(slot));
            }
        }
        seen.push((slot, claim));
    }
    for (slot, claim) in seen {
        let key = per_value.claim_key(slot);
        let bytes = claim_bytes(hash, now);
        let taken = match claim {
            None => counters.create_raw(&key, &bytes)?,
            Some((owner, version)) => {
                if !idle(policy, per_value, counters, slot, claimed_at(&owner), now)? {
                    continue;
                }
                take_over(policy, per_value, counters, slot, &key, &bytes, version)?
            }
        };
        if taken {
            return Ok(Claim::Slot(slot));
        }
        // Another value claimed it meanwhile: it may be this same value on another worker.
        if let Some((owner, _)) = counters.get_raw(&key)? {
            if held_by(&owner, hash) {
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
    let index = u64::from_le_bytes(head)
        .checked_rem(u64::from(max_values))
        .unwrap_or(0);
    u32::try_from(index).unwrap_or(0)
}

/// Whether every window of the value in `slot` has ended: those of its counters, and the
/// first window each would have had from the claim.
fn idle(
    policy: &Policy,
    per_value: &PerValue,
    counters: &Counters<'_>,
    slot: u32,
    claimed_at: Option<i64>,
    now: i64,
) -> Result<bool, CounterError> {
    for id in &per_value.limits {
        let Some(limit) = policy.limits.get(*id) else {
            continue;
        };
        if let Some(at) = claimed_at {
            let first = limit.rule.window(at, at).map_err(CounterError::Window)?;
            if now < first.end_nanos {
                return Ok(false);
            }
        }
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
    claim: &[u8],
    version: Cas,
) -> Result<bool, CounterError> {
    if !counters.set_raw(claim_key, claim, version)? {
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
