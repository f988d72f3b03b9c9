//! Counters in shared data: the stored record and the bounded CAS loop that updates it.
//!
//! One record per configured limit (never per window or request), so shared data, which has
//! no delete, cannot grow with traffic or time. Window rollover is applied inside the same
//! read-modify-write as the change that notices it: concurrent resetters compute the same
//! next window from the same stored one, the first write wins, the others see a CAS conflict,
//! re-read a current window and add their change on top, so a reset never loses spend.
//!
//! A rolling window starts at the counter's first use that stands. A request that is refused
//! after it wrote (a request slot taken at its headers, an estimate held) takes back what it
//! wrote; if its write was the one that started the counter, it also takes back the start:
//! the counter goes back to unused, or, when other requests have used it since, its windows
//! are anchored at the earliest of those (`second_use`, which a refused request that set it
//! restores too).
//!
//! Record layout, version 2, little-endian, 72 bytes (version 1 had a creator tag where
//! `second_use` is; it is still read, as a record with no second use):
//! ```text
//!  0  u8    version (2)
//!  1  u8    flags: bit 0 = started (a window is open)
//!  2  [6]   zero
//!  8  i64   anchor: first use, ns since the Unix epoch (rolling windows count from it)
//! 16  i64   window start, ns
//! 24  i64   window end (exclusive), ns
//! 32  u128  used: femto-USD for budgets, a count for requests and tokens
//! 48  u128  reserved: estimates held by requests in flight
//! 64  i64   second use: earliest use by another request than the anchor's, ns (0: none)
//! ```

use crate::config::Limit;
use crate::store::{Cas, CasStore, SetOutcome, StoreError};
use crate::window::{Window, WindowError};

pub const RECORD_VERSION: u8 = 2;
/// The previous layout: the same, with a creator tag (now ignored) at offset 64.
const RECORD_VERSION_1: u8 = 1;
pub const RECORD_LEN: usize = 72;
/// Attempts of one read-modify-write before it counts as a store failure.
pub const MAX_ATTEMPTS: u32 = 64;

/// A counter's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    pub started: bool,
    pub anchor: i64,
    pub window_start: i64,
    pub window_end: i64,
    pub used: u128,
    pub reserved: u128,
    /// The earliest use by a request other than the one that set `anchor` (0: none yet).
    pub second_use: i64,
}

/// Why a counter could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterError {
    Store(StoreError),
    /// The stored bytes are not a record this version understands.
    Corrupt,
    /// Every attempt lost its CAS race.
    Contended,
    Window(WindowError),
}

impl std::fmt::Display for CounterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CounterError::Store(err) => write!(f, "shared data failed: {err:?}"),
            CounterError::Corrupt => f.write_str("stored counter cannot be decoded"),
            CounterError::Contended => write!(f, "gave up after {MAX_ATTEMPTS} CAS conflicts"),
            CounterError::Window(err) => write!(f, "window: {err}"),
        }
    }
}

impl From<StoreError> for CounterError {
    fn from(err: StoreError) -> Self {
        CounterError::Store(err)
    }
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let mut w = Writer {
            out: &mut out,
            at: 0,
        };
        w.put(&[RECORD_VERSION, u8::from(self.started)]);
        w.put(&[0u8; 6]);
        w.put(&self.anchor.to_le_bytes());
        w.put(&self.window_start.to_le_bytes());
        w.put(&self.window_end.to_le_bytes());
        w.put(&self.used.to_le_bytes());
        w.put(&self.reserved.to_le_bytes());
        w.put(&self.second_use.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, CounterError> {
        let bytes: &[u8; RECORD_LEN] = bytes.try_into().map_err(|_| CounterError::Corrupt)?;
        let mut r = Reader { bytes, at: 0 };
        let [version, flags] = r.take::<2>();
        let known = version == RECORD_VERSION || version == RECORD_VERSION_1;
        if !known || flags > 1 || r.take::<6>() != [0u8; 6] {
            return Err(CounterError::Corrupt);
        }
        let mut record = Record {
            started: flags == 1,
            anchor: i64::from_le_bytes(r.take()),
            window_start: i64::from_le_bytes(r.take()),
            window_end: i64::from_le_bytes(r.take()),
            used: u128::from_le_bytes(r.take()),
            reserved: u128::from_le_bytes(r.take()),
            second_use: i64::from_le_bytes(r.take()),
        };
        if version == RECORD_VERSION_1 {
            record.second_use = 0;
        }
        if record.started && record.window_end <= record.window_start {
            return Err(CounterError::Corrupt);
        }
        Ok(record)
    }

    pub fn window(&self) -> Window {
        Window {
            start_nanos: self.window_start,
            end_nanos: self.window_end,
        }
    }

    /// Whether the record's open window contains `now` (then [`Record::rolled`] would
    /// return it unchanged; checking first spares the copies of the call on every update).
    pub fn covers(&self, now: i64) -> bool {
        self.started && now < self.window_end
    }

    /// The record as of `now`: a counter never used opens its first window (rolling windows
    /// are anchored here, at first use); an ended window is replaced by the one containing
    /// `now`, with nothing used or reserved.
    pub fn rolled(mut self, limit: &Limit, now: i64) -> Result<Record, CounterError> {
        if !self.started {
            let window = window_for(limit, now, now)?;
            self.started = true;
            self.anchor = now;
            self.set_window(window);
            self.used = 0;
            self.reserved = 0;
        } else if now >= self.window_end {
            let window = window_for(limit, self.anchor, now)?;
            self.set_window(window);
            self.used = 0;
            self.reserved = 0;
        }
        Ok(self)
    }

    fn set_window(&mut self, window: Window) {
        self.window_start = window.start_nanos;
        self.window_end = window.end_nanos;
    }

    /// A use by a request other than the one that started the counter: the earliest such
    /// use is where the windows are anchored if the starter is refused. (Clocks of
    /// different workers may disagree by a little, hence the minimum, not the first.)
    /// Returns what it replaced, if it changed it.
    fn note_second_use(&mut self, now: i64) -> Option<i64> {
        let before = self.second_use;
        if before == 0 || now < before {
            self.second_use = now;
            return Some(before);
        }
        None
    }

    /// Whether an instant falls in the record's open window: a slot or a hold taken then is
    /// still counted here (a rollover since has already dropped it).
    pub fn window_holds(&self, at: i64) -> bool {
        self.started && self.window_start <= at && at < self.window_end
    }

    /// Takes back what a refused request's use at `taken_at` did to the record's first-use
    /// bookkeeping ([`FirstUse`]). A start whose anchor still stands is taken back: the
    /// counter goes back to unused when nothing else is in it, or its windows are anchored at
    /// the earliest other use. Call after taking back the request's own slot or hold.
    pub fn undo_first_use(
        &mut self,
        limit: &Limit,
        first_use: FirstUse,
        taken_at: i64,
        now: i64,
    ) -> Result<(), CounterError> {
        match first_use {
            FirstUse::Other => Ok(()),
            FirstUse::Second { before } => {
                if self.second_use == taken_at {
                    self.second_use = before;
                }
                Ok(())
            }
            FirstUse::Started if !self.started || self.anchor != taken_at => Ok(()),
            FirstUse::Started if self.second_use != 0 => {
                let anchor = self.second_use;
                let window = window_for(limit, anchor, now.max(anchor))?;
                self.anchor = anchor;
                self.second_use = 0;
                self.set_window(window);
                Ok(())
            }
            FirstUse::Started => {
                // Another use whose mark was taken back with it may still hold a slot: then
                // the anchor stays rather than lose it.
                if self.used == 0 && self.reserved == 0 {
                    *self = Record::default();
                }
                Ok(())
            }
        }
    }
}

fn window_for(limit: &Limit, anchor: i64, now: i64) -> Result<Window, CounterError> {
    limit.rule.window(anchor, now).map_err(CounterError::Window)
}

struct Writer<'a> {
    out: &'a mut [u8; RECORD_LEN],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at.saturating_add(bytes.len());
        if let Some(slot) = self.out.get_mut(self.at..end) {
            slot.copy_from_slice(bytes);
        }
        self.at = end;
    }
}

struct Reader<'a> {
    bytes: &'a [u8; RECORD_LEN],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let end = self.at.saturating_add(N);
        let mut out = [0u8; N];
        if let Some(slice) = self.bytes.get(self.at..end) {
            out.copy_from_slice(slice);
        }
        self.at = end;
        out
    }
}

/// The result of an update closure: change the record, or leave it as it is.
pub enum Change<T> {
    /// Write the (modified) record: a use of the counter (a slot, a hold, a charge).
    Write(T),
    /// Write the (modified) record as a take-back of a refused request's use, which is no
    /// use of its own.
    Undo(T),
    /// Write nothing (a refused admission, a no-op rollback).
    Keep(T),
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Updated<T> {
    pub value: T,
    /// The record after the update (or as read, when nothing was written).
    pub record: Record,
    pub written: bool,
    /// What the write did to the counter's first-use bookkeeping (what a take-back must
    /// undo, [`Record::undo_first_use`]); [`FirstUse::Started`] without a write means the
    /// counter was found unused.
    pub first_use: FirstUse,
}

/// How a use changed a counter's record of who used it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// It started the counter: its time is the anchor.
    Started,
    /// It became the earliest use after the anchor's, replacing `before`.
    Second { before: i64 },
    /// Neither.
    Other,
}

/// Reads and updates counters with bounded CAS retries, counting conflicts.
///
/// Shared data has no create-if-absent: a set on a missing key always succeeds, and with
/// version 0 a set is unconditional, so two creators could each overwrite the other. Counters
/// are therefore created with the version of a *different* key, the namespace's guard key:
/// version numbers come from one process-wide sequence and each is given to one write only,
/// so that version never matches an existing counter (the set fails with a CAS mismatch and
/// the caller retries as an update) while a missing counter is created. The one way this
/// can be fooled is the sequence wrapping around 2^32 writes and landing on the guard's
/// number again.
pub struct Counters<'a> {
    store: &'a dyn CasStore,
    guard_key: &'a [u8],
    conflicts: u64,
}

impl<'a> Counters<'a> {
    /// `guard_key` is the namespace's guard key (see the type's documentation).
    pub fn new(store: &'a dyn CasStore, guard_key: &'a [u8]) -> Self {
        Self {
            store,
            guard_key,
            conflicts: 0,
        }
    }

    /// The store the counters live in.
    pub fn store(&self) -> &'a dyn CasStore {
        self.store
    }

    /// A raw value and its version (the `per_value` claims).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cas)>, CounterError> {
        Ok(self.store.get(key)?)
    }

    /// Writes `value` if the key is absent (`false` if it exists).
    pub fn create_raw(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CounterError> {
        let guard = self.guard_version()?;
        Ok(self.store.set(key, value, guard)? == SetOutcome::Written)
    }

    /// Writes `value` if the key still has version `cas` (0: unconditionally).
    pub fn set_raw(&mut self, key: &[u8], value: &[u8], cas: Cas) -> Result<bool, CounterError> {
        let written = self.store.set(key, value, cas)? == SetOutcome::Written;
        if !written {
            self.conflicts = self.conflicts.saturating_add(1);
        }
        Ok(written)
    }

    /// CAS conflicts seen so far (for the `cas_conflicts` Envoy counter).
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// The counter as of `now`, without writing (an ended window reads as empty).
    pub fn read(&self, limit: &Limit, now: i64) -> Result<Record, CounterError> {
        Ok(self.peek(limit, now)?.0)
    }

    /// Creates the key if it is absent, without disturbing a record someone else wrote.
    /// Used when a configuration is applied (Envoy runs that on the main thread before the
    /// workers serve traffic with it, so the check-then-set cannot race with requests).
    pub fn ensure_exists(&mut self, limit: &Limit) -> Result<(), CounterError> {
        if let Some((bytes, _)) = self.store.get(&limit.storage_key)? {
            Record::decode(&bytes)?;
            return Ok(());
        }
        // A mismatch means another VM created it first, which is just as good.
        self.create(&limit.storage_key, &Record::default())?;
        Ok(())
    }

    /// The counter as of `now`, and whether it has ever been used (a counter never used
    /// reads as a window starting at `now`, without writing).
    pub fn peek(&self, limit: &Limit, now: i64) -> Result<(Record, bool), CounterError> {
        let stored = match self.store.get(&limit.storage_key)? {
            Some((bytes, _)) => Record::decode(&bytes)?,
            None => Record::default(),
        };
        // Nearly always: a window in use that covers now (spares the copies of rolling).
        if stored.covers(now) {
            return Ok((stored, true));
        }
        Ok((stored.rolled(limit, now)?, stored.started))
    }

    /// Starts a counter never used, anchored at `at` (the admission that now stands), and
    /// leaves a used one alone: a rolling window begins at first use, admission included.
    pub fn start_if_unused(&mut self, limit: &Limit, at: i64) -> Result<(), CounterError> {
        self.update_fresh(limit, at, |_, unused| match unused {
            true => Change::Write(()),
            false => Change::Keep(()),
        })?;
        Ok(())
    }

    /// Writes `value` under `key` only if the key is absent (`false`: it exists), made
    /// safe as counters are (see the type's documentation). For records kept beside the
    /// counters.
    pub fn create_key(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CounterError> {
        let guard = self.guard_version()?;
        Ok(self.store.set(key, value, guard)? == SetOutcome::Written)
    }

    /// A CAS write lost to another writer, outside [`Counters::update`].
    pub fn note_conflict(&mut self) {
        self.conflicts = self.conflicts.saturating_add(1);
    }

    /// Writes `record` only if `key` is absent; `false` if it exists.
    fn create(&mut self, key: &[u8], record: &Record) -> Result<bool, CounterError> {
        self.create_bytes(key, &record.encode())
    }

    /// Writes `bytes` only if `key` is absent; `false` if it exists.
    fn create_bytes(&mut self, key: &[u8], bytes: &[u8]) -> Result<bool, CounterError> {
        let guard = self.guard_version()?;
        match self.store.set(key, bytes, guard)? {
            SetOutcome::Written => Ok(true),
            SetOutcome::CasMismatch => Ok(false),
        }
    }

    /// Read-modify-write of a value that is not a [`Record`] (the in-flight buckets of
    /// `in_flight.rs`), with the same creation rule and bounded retries. `change` sees the
    /// stored bytes (`None`: absent) and returns its value and what to write (`None`:
    /// nothing); it may be called once per attempt.
    pub fn update_raw<T, B: AsRef<[u8]>>(
        &mut self,
        key: &[u8],
        mut change: impl FnMut(Option<&[u8]>) -> Result<(T, Option<B>), CounterError>,
    ) -> Result<T, CounterError> {
        for _ in 0..MAX_ATTEMPTS {
            let stored = self.store.get(key)?;
            let (value, write) = change(stored.as_ref().map(|(bytes, _)| bytes.as_slice()))?;
            let Some(bytes) = write else {
                return Ok(value);
            };
            let written = match stored {
                Some((_, cas)) => self.store.set(key, bytes.as_ref(), cas)? == SetOutcome::Written,
                None => self.create_bytes(key, bytes.as_ref())?,
            };
            if written {
                return Ok(value);
            }
            self.conflicts = self.conflicts.saturating_add(1);
        }
        Err(CounterError::Contended)
    }

    /// The guard key's version, writing the guard first if it is missing (any writer may
    /// write it: its content does not matter, only that it exists).
    fn guard_version(&mut self) -> Result<Cas, CounterError> {
        for _ in 0..2 {
            if let Some((_, version)) = self.store.get(self.guard_key)? {
                return Ok(version);
            }
            self.store.set(self.guard_key, b"governance cas guard", 0)?;
        }
        Err(CounterError::Contended)
    }

    /// Read-modify-write of one counter at `now`, retried on CAS conflicts. `change` sees the
    /// rolled-over record and may be called several times (once per attempt).
    pub fn update<T>(
        &mut self,
        limit: &Limit,
        now: i64,
        mut change: impl FnMut(&mut Record) -> Change<T>,
    ) -> Result<Updated<T>, CounterError> {
        self.update_fresh(limit, now, |record, _| change(record))
    }

    /// [`Counters::update`], telling `change` whether the counter was unused before (then
    /// the record it sees is the first window, opened at `now`).
    fn update_fresh<T>(
        &mut self,
        limit: &Limit,
        now: i64,
        mut change: impl FnMut(&mut Record, bool) -> Change<T>,
    ) -> Result<Updated<T>, CounterError> {
        for _ in 0..MAX_ATTEMPTS {
            let (stored, cas) = match self.store.get(&limit.storage_key)? {
                Some((bytes, cas)) => (Some(Record::decode(&bytes)?), cas),
                None => (None, 0),
            };
            let mut record = stored.unwrap_or_default();
            let unused = !record.started;
            if !record.covers(now) {
                record = record.rolled(limit, now)?;
            }
            let mut first_use = if unused {
                FirstUse::Started
            } else {
                FirstUse::Other
            };
            let (value, write) = match change(&mut record, unused) {
                Change::Keep(value) => (value, false),
                // Nothing of anyone's to take back in a counter never used.
                Change::Undo(value) => (value, !unused),
                Change::Write(value) => {
                    if !unused {
                        if let Some(before) = record.note_second_use(now) {
                            first_use = FirstUse::Second { before };
                        }
                    }
                    (value, true)
                }
            };
            if !write {
                return Ok(Updated {
                    value,
                    record,
                    written: false,
                    first_use,
                });
            }
            let written = if stored.is_some() {
                self.store.set(&limit.storage_key, &record.encode(), cas)? == SetOutcome::Written
            } else {
                self.create(&limit.storage_key, &record)?
            };
            if written {
                return Ok(Updated {
                    value,
                    record,
                    written: true,
                    first_use,
                });
            }
            self.conflicts = self.conflicts.saturating_add(1);
        }
        Err(CounterError::Contended)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]

    use super::*;
    use crate::config::parse;
    use crate::store::MemoryStore;

    const T0: i64 = 1_764_547_200_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn limit() -> Limit {
        let policy = parse(
            r#"{"virtual_keys":[{"id":"k","value":"sk",
                "rate_limit":{"request_max_limit":5,"request_reset_duration":"1h"}}]}"#,
        )
        .unwrap();
        policy.limits.into_iter().next().unwrap()
    }

    #[test]
    fn a_version_1_record_is_still_read_with_no_second_use() {
        let record = Record {
            started: true,
            anchor: T0,
            window_start: T0,
            window_end: T0 + 3600 * SEC,
            used: 3,
            reserved: 1,
            second_use: 0,
        };
        let mut v1 = record.encode();
        v1[0] = 1;
        v1[64..72].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
        assert_eq!(Record::decode(&v1), Ok(record));
        let mut v3 = record.encode();
        v3[0] = 3;
        assert_eq!(Record::decode(&v3), Err(CounterError::Corrupt));
    }

    /// Takes one slot at `now`, as admission does.
    fn take(counters: &mut Counters<'_>, limit: &Limit, now: i64) -> FirstUse {
        let updated = counters
            .update(limit, now, |r| {
                r.used += 1;
                Change::Write(())
            })
            .unwrap();
        updated.first_use
    }

    /// Gives the slot taken at `at` back at `now`, as a refusal does.
    fn give_back(counters: &mut Counters<'_>, limit: &Limit, at: i64, first: FirstUse, now: i64) {
        counters
            .update(limit, now, |r| {
                if r.window_holds(at) {
                    r.used -= 1;
                }
                r.undo_first_use(limit, first, at, now).unwrap();
                Change::Undo(())
            })
            .unwrap();
    }

    fn stored(store: &MemoryStore, limit: &Limit) -> Record {
        Record::decode(&store.get(&limit.storage_key).unwrap().unwrap().0).unwrap()
    }

    #[test]
    fn the_starter_refused_alone_leaves_the_counter_unused() {
        let (store, limit) = (MemoryStore::new(), limit());
        let mut counters = Counters::new(&store, b"guard");
        let first = take(&mut counters, &limit, T0);
        assert_eq!(first, FirstUse::Started);
        give_back(&mut counters, &limit, T0, first, T0 + 5 * SEC);
        assert_eq!(stored(&store, &limit), Record::default());
    }

    #[test]
    fn the_starter_refused_after_others_used_it_moves_the_anchor_to_the_earliest() {
        let (store, limit) = (MemoryStore::new(), limit());
        let mut counters = Counters::new(&store, b"guard");
        let first = take(&mut counters, &limit, T0);
        assert_eq!(
            take(&mut counters, &limit, T0 + 20 * SEC),
            FirstUse::Second { before: 0 }
        );
        assert_eq!(
            take(&mut counters, &limit, T0 + 10 * SEC),
            FirstUse::Second {
                before: T0 + 20 * SEC
            }
        );
        assert_eq!(take(&mut counters, &limit, T0 + 30 * SEC), FirstUse::Other);
        give_back(&mut counters, &limit, T0, first, T0 + 40 * SEC);
        let record = stored(&store, &limit);
        assert_eq!(
            (
                record.anchor,
                record.window_start,
                record.window_end,
                record.used
            ),
            (T0 + 10 * SEC, T0 + 10 * SEC, T0 + 3610 * SEC, 3)
        );
        assert_eq!(record.second_use, 0);
    }

    #[test]
    fn a_refused_second_user_restores_the_mark_it_set() {
        let (store, limit) = (MemoryStore::new(), limit());
        let mut counters = Counters::new(&store, b"guard");
        take(&mut counters, &limit, T0);
        let before = stored(&store, &limit);
        let second = take(&mut counters, &limit, T0 + 7 * SEC);
        give_back(&mut counters, &limit, T0 + 7 * SEC, second, T0 + 9 * SEC);
        assert_eq!(stored(&store, &limit), before);
    }

    #[test]
    fn a_start_whose_window_has_ended_is_still_taken_back_when_nobody_else_came() {
        let (store, limit) = (MemoryStore::new(), limit());
        let mut counters = Counters::new(&store, b"guard");
        let first = take(&mut counters, &limit, T0);
        give_back(&mut counters, &limit, T0, first, T0 + 2 * 3600 * SEC);
        assert_eq!(stored(&store, &limit), Record::default());
    }
}
