//! Caps on requests in flight at once (`rate_limit.max_in_flight`, docs/clients.md).
//!
//! Shared data holds one value per cap (keys stay bounded: never one per request), so the
//! cap cannot keep a lease per request. It counts slots by the time they were taken, in
//! buckets `timeout / 8` wide: a request adds one to the bucket of its admission and, when
//! its exchange ends, takes one from that same bucket (it remembers which). A VM that dies
//! never gives its slots back; a bucket more than eight widths old is dropped by the next
//! write that sees it, so such a slot is reclaimed between `in_flight_timeout` and
//! `in_flight_timeout` plus one width after it was taken, never before. In flight = the sum
//! of the live buckets; a slot is taken only while that sum is below the cap, in the same
//! CAS as the check, so the cap is exact under any concurrency.
//!
//! Value layout, little-endian, 152 bytes:
//! ```text
//!   0  u8      version (1)
//!   1  [7]     zero
//!   8  9 x 16  buckets: i64 bucket number (time / width), u32 slots, [4] zero
//! ```
//! A bucket's place is its number modulo 9, so at most nine live buckets never collide.

use crate::config::OwnerKind;
use crate::counter::{CounterError, Counters};
use crate::rejection::{Rejection, RejectionKind};
use crate::store::CasStore;

/// Widths in one timeout.
const WIDTHS_PER_TIMEOUT: i64 = 8;
/// Buckets kept: a timeout's worth plus the one being filled.
const BUCKETS: usize = 9;
const BUCKETS_I64: i64 = 9;
const VERSION: u8 = 1;
pub const VALUE_LEN: usize = 8 + BUCKETS * 16;

/// One configured cap: an owner's `rate_limit.max_in_flight`.
#[derive(Debug)]
pub struct InFlightCap {
    pub owner_kind: OwnerKind,
    pub owner_id: String,
    pub max: u64,
    /// How long a slot is kept when nobody gives it back, ns (> 0).
    pub timeout_nanos: i64,
    /// The configured `in_flight_timeout`, echoed by the usage endpoint.
    pub timeout_text: Box<str>,
    /// Derived from the owner and the timeout: a new `max_in_flight` keeps the slots
    /// counted, a new timeout starts a fresh count.
    pub storage_key: Box<[u8]>,
}

impl InFlightCap {
    fn width(&self) -> i64 {
        let rounded_up = self.timeout_nanos.saturating_add(WIDTHS_PER_TIMEOUT - 1);
        (rounded_up / WIDTHS_PER_TIMEOUT).max(1)
    }

    /// The bucket a slot taken at `now` counts in.
    fn bucket(&self, now: i64) -> i64 {
        now.div_euclid(self.width())
    }
}

/// A slot this request holds: the cap (index in `Policy::in_flight`) and its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub cap: usize,
    pub bucket: i64,
}

/// What [`acquire`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    Taken(Taken),
    /// The cap is reached: this many requests are in flight.
    Full(u64),
}

/// The slots of one cap, bucket by bucket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Buckets {
    numbers: [i64; BUCKETS],
    slots: [u32; BUCKETS],
}

impl Buckets {
    fn decode(bytes: Option<&[u8]>) -> Result<Buckets, CounterError> {
        let Some(bytes) = bytes else {
            return Ok(Buckets::default());
        };
        let bytes: &[u8; VALUE_LEN] = bytes.try_into().map_err(|_| CounterError::Corrupt)?;
        let (head, body) = bytes.split_at(8);
        if head.first() != Some(&VERSION) || head.iter().skip(1).any(|b| *b != 0) {
            return Err(CounterError::Corrupt);
        }
        let mut buckets = Buckets::default();
        for (i, entry) in body.chunks_exact(16).enumerate() {
            let (number, rest) = entry.split_at(8);
            let (slots, pad) = rest.split_at(4);
            let number: [u8; 8] = number.try_into().map_err(|_| CounterError::Corrupt)?;
            let slots: [u8; 4] = slots.try_into().map_err(|_| CounterError::Corrupt)?;
            if pad.iter().any(|b| *b != 0) {
                return Err(CounterError::Corrupt);
            }
            if let (Some(n), Some(s)) = (buckets.numbers.get_mut(i), buckets.slots.get_mut(i)) {
                *n = i64::from_le_bytes(number);
                *s = u32::from_le_bytes(slots);
            }
        }
        Ok(buckets)
    }

    fn encode(&self) -> [u8; VALUE_LEN] {
        let mut out = [0u8; VALUE_LEN];
        let (head, body) = out.split_at_mut(8);
        if let Some(version) = head.first_mut() {
            *version = VERSION;
        }
        let entries = body
            .chunks_exact_mut(16)
            .zip(self.numbers.iter().zip(&self.slots));
        for (entry, (number, slots)) in entries {
            let (number_bytes, rest) = entry.split_at_mut(8);
            number_bytes.copy_from_slice(&number.to_le_bytes());
            if let Some(slot_bytes) = rest.get_mut(..4) {
                slot_bytes.copy_from_slice(&slots.to_le_bytes());
            }
        }
        out
    }

    /// Whether a bucket still counts at `now_bucket`: fewer than nine widths old (a bucket
    /// numbered ahead of now, from a clock that went back, counts too).
    fn live(number: i64, now_bucket: i64) -> bool {
        number.saturating_add(BUCKETS_I64) > now_bucket
    }

    /// Drops the slots of buckets that no longer count (reclaimed); whether any was.
    fn sweep(&mut self, now_bucket: i64) -> bool {
        let mut dropped = false;
        for (number, slots) in self.numbers.iter().zip(self.slots.iter_mut()) {
            if *slots > 0 && !Self::live(*number, now_bucket) {
                *slots = 0;
                dropped = true;
            }
        }
        dropped
    }

    /// Slots in live buckets.
    fn in_flight(&self, now_bucket: i64) -> u64 {
        self.numbers
            .iter()
            .zip(self.slots.iter())
            .filter(|(number, _)| Self::live(**number, now_bucket))
            .map(|(_, slots)| u64::from(*slots))
            .fold(0u64, u64::saturating_add)
    }

    /// Adds a slot to the bucket of `now_bucket`; returns the bucket it counts in (the
    /// place's live bucket when one is there: a clock that went back).
    fn add(&mut self, now_bucket: i64) -> i64 {
        let place = usize::try_from(now_bucket.rem_euclid(BUCKETS_I64)).unwrap_or(0);
        let (Some(number), Some(slots)) = (self.numbers.get_mut(place), self.slots.get_mut(place))
        else {
            return now_bucket;
        };
        if *slots == 0 {
            *number = now_bucket;
        }
        *slots = slots.saturating_add(1);
        *number
    }

    /// Takes one slot from `bucket`, if it still holds one; whether it did.
    fn remove(&mut self, bucket: i64) -> bool {
        for (number, slots) in self.numbers.iter().zip(self.slots.iter_mut()) {
            if *number == bucket && *slots > 0 {
                *slots = slots.saturating_sub(1);
                return true;
            }
        }
        false
    }
}

/// Takes a slot of `cap` (index `id`) at `now` if fewer than its max are in flight, in one
/// CAS with the check; buckets past the timeout are dropped in the same write.
pub fn acquire(
    counters: &mut Counters<'_>,
    cap: &InFlightCap,
    id: usize,
    now: i64,
) -> Result<Acquired, CounterError> {
    let now_bucket = cap.bucket(now);
    counters.update_raw(&cap.storage_key, |stored| {
        let mut buckets = Buckets::decode(stored)?;
        let swept = buckets.sweep(now_bucket);
        let in_flight = buckets.in_flight(now_bucket);
        if in_flight >= cap.max {
            let write = swept.then(|| buckets.encode());
            return Ok((Acquired::Full(in_flight), write));
        }
        let bucket = buckets.add(now_bucket);
        Ok((
            Acquired::Taken(Taken { cap: id, bucket }),
            Some(buckets.encode()),
        ))
    })
}

/// Gives back a slot taken in `taken.bucket`, unless it was reclaimed meanwhile (then there
/// is nothing of this request's left to give back). Whether it gave one back.
pub fn release(
    counters: &mut Counters<'_>,
    cap: &InFlightCap,
    taken: Taken,
    now: i64,
) -> Result<bool, CounterError> {
    let now_bucket = cap.bucket(now);
    counters.update_raw(&cap.storage_key, |stored| {
        let mut buckets = Buckets::decode(stored)?;
        let swept = buckets.sweep(now_bucket);
        let removed = buckets.remove(taken.bucket);
        let write = (swept || removed).then(|| buckets.encode());
        Ok((removed, write))
    })
}

/// Requests of `cap` in flight at `now`, without writing.
pub fn read(store: &dyn CasStore, cap: &InFlightCap, now: i64) -> Result<u64, CounterError> {
    let stored = store.get(&cap.storage_key)?;
    let buckets = Buckets::decode(stored.as_ref().map(|(bytes, _)| bytes.as_slice()))?;
    Ok(buckets.in_flight(cap.bucket(now)))
}

/// 429 `concurrency_limited`. No `retry-after`: a slot frees when some request in flight
/// ends, which nobody can tell in advance.
pub fn refusal(cap: &InFlightCap, in_flight: u64) -> Rejection {
    Rejection::new(
        RejectionKind::ConcurrencyLimited,
        format!(
            "{} '{}' in-flight limit reached: {in_flight} of {} requests in flight; \
             retry when one of them has ended",
            cap.owner_kind.label(),
            cap.owner_id,
            cap.max
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]

    use super::*;
    use crate::store::MemoryStore;

    const SEC: i64 = 1_000_000_000;
    const T0: i64 = 1_764_547_200 * SEC;

    fn cap(max: u64, timeout_secs: i64) -> InFlightCap {
        InFlightCap {
            owner_kind: OwnerKind::VirtualKey,
            owner_id: "k".to_string(),
            max,
            timeout_nanos: timeout_secs * SEC,
            timeout_text: "80s".into(),
            storage_key: b"ns:virtual_key:k:in_flight".to_vec().into_boxed_slice(),
        }
    }

    fn take(counters: &mut Counters<'_>, cap: &InFlightCap, now: i64) -> Option<Taken> {
        match acquire(counters, cap, 0, now).unwrap() {
            Acquired::Taken(taken) => Some(taken),
            Acquired::Full(_) => None,
        }
    }

    #[test]
    fn admits_up_to_max_and_a_release_frees_one_slot_once() {
        let (store, cap) = (MemoryStore::new(), cap(2, 80));
        let mut counters = Counters::new(&store, b"guard");
        let a = take(&mut counters, &cap, T0).unwrap();
        take(&mut counters, &cap, T0 + SEC).unwrap();
        assert_eq!(take(&mut counters, &cap, T0 + 2 * SEC), None);
        assert!(release(&mut counters, &cap, a, T0 + 3 * SEC).unwrap());
        assert_eq!(read(&store, &cap, T0 + 3 * SEC).unwrap(), 1);
        take(&mut counters, &cap, T0 + 4 * SEC).unwrap();
        assert_eq!(take(&mut counters, &cap, T0 + 5 * SEC), None);
    }

    #[test]
    fn a_slot_nobody_gives_back_is_reclaimed_after_the_timeout_never_before() {
        // Width 10 s; a slot taken in bucket b is reclaimed from bucket b + 9 on.
        let (store, cap) = (MemoryStore::new(), cap(1, 80));
        let mut counters = Counters::new(&store, b"guard");
        let taken_at = T0 + 3 * SEC;
        let lost = take(&mut counters, &cap, taken_at).unwrap();
        let bucket_start = lost.bucket * 10 * SEC;
        for now in [taken_at + 80 * SEC - 1, bucket_start + 90 * SEC - 1] {
            assert_eq!(take(&mut counters, &cap, now), None, "held at {now}");
        }
        let after = bucket_start + 90 * SEC;
        assert!(after - taken_at <= 90 * SEC, "within timeout + width");
        let next = take(&mut counters, &cap, after).unwrap();
        // The late release of the reclaimed slot takes nothing from the new one.
        assert!(!release(&mut counters, &cap, lost, after + SEC).unwrap());
        assert_eq!(read(&store, &cap, after + SEC).unwrap(), 1);
        assert!(release(&mut counters, &cap, next, after + 2 * SEC).unwrap());
        assert_eq!(read(&store, &cap, after + 2 * SEC).unwrap(), 0);
    }

    #[test]
    fn slots_spread_over_every_bucket_all_count() {
        let (store, cap) = (MemoryStore::new(), cap(20, 80));
        let mut counters = Counters::new(&store, b"guard");
        let taken: Vec<_> = (0..9)
            .map(|i| take(&mut counters, &cap, T0 + i * 10 * SEC).unwrap())
            .collect();
        assert_eq!(read(&store, &cap, T0 + 85 * SEC).unwrap(), 9);
        for t in &taken {
            assert!(release(&mut counters, &cap, *t, T0 + 86 * SEC).unwrap());
        }
        assert_eq!(read(&store, &cap, T0 + 86 * SEC).unwrap(), 0);
    }

    #[test]
    fn a_value_that_is_not_buckets_is_a_store_failure() {
        let (store, cap) = (MemoryStore::new(), cap(1, 80));
        store.set(&cap.storage_key, b"garbage", 0).unwrap();
        let mut counters = Counters::new(&store, b"guard");
        assert_eq!(
            acquire(&mut counters, &cap, 0, T0),
            Err(CounterError::Corrupt)
        );
    }

    #[test]
    fn encoding_round_trips() {
        let mut buckets = Buckets::default();
        buckets.add(12345);
        buckets.add(-3);
        let bytes = buckets.encode();
        assert_eq!(Buckets::decode(Some(&bytes)), Ok(buckets));
    }
}
