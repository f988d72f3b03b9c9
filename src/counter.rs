//! Counters in shared data: the stored record and the bounded CAS loop that updates it.
//!
//! One record per configured limit (never per window or request), so shared data, which has
//! no delete, cannot grow with traffic or time. Window rollover is applied inside the same
//! read-modify-write as the change that notices it: concurrent resetters compute the same
//! next window from the same stored one, the first write wins, the others see a CAS conflict,
//! re-read a current window and add their change on top, so a reset never loses spend.
//!
//! Record layout, version 1, little-endian, 72 bytes:
//! ```text
//!  0  u8    version (1)
//!  1  u8    flags: bit 0 = started (a window is open)
//!  2  [6]   zero
//!  8  i64   anchor: first use, ns since the Unix epoch (rolling windows count from it)
//! 16  i64   window start, ns
//! 24  i64   window end (exclusive), ns
//! 32  u128  used: femto-USD for budgets, a count for requests and tokens
//! 48  u128  reserved (SPEC.md §8; 0 until reservations exist)
//! 64  u64   creator tag: who created the key, to detect a lost first write
//! ```

use crate::config::Limit;
use crate::store::{Cas, CasStore, SetOutcome, StoreError};
use crate::window::{Window, WindowError};

pub const RECORD_VERSION: u8 = 1;
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
    pub creator: u64,
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
        w.put(&self.creator.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, CounterError> {
        let bytes: &[u8; RECORD_LEN] = bytes.try_into().map_err(|_| CounterError::Corrupt)?;
        let mut r = Reader { bytes, at: 0 };
        let [version, flags] = r.take::<2>();
        if version != RECORD_VERSION || flags > 1 || r.take::<6>() != [0u8; 6] {
            return Err(CounterError::Corrupt);
        }
        let record = Record {
            started: flags == 1,
            anchor: i64::from_le_bytes(r.take()),
            window_start: i64::from_le_bytes(r.take()),
            window_end: i64::from_le_bytes(r.take()),
            used: u128::from_le_bytes(r.take()),
            reserved: u128::from_le_bytes(r.take()),
            creator: u64::from_le_bytes(r.take()),
        };
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
    /// Write the (modified) record.
    Write(T),
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
    creator_tag: u64,
    guard_key: &'a [u8],
    conflicts: u64,
}

impl<'a> Counters<'a> {
    /// `creator_tag` is stored in records this VM creates (for whoever inspects them);
    /// `guard_key` is the namespace's guard key (see the type's documentation).
    pub fn new(store: &'a dyn CasStore, creator_tag: u64, guard_key: &'a [u8]) -> Self {
        Self {
            store,
            creator_tag,
            guard_key,
            conflicts: 0,
        }
    }

    /// CAS conflicts seen so far (for the `cas_conflicts` Envoy counter).
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// The counter as of `now`, without writing (an ended window reads as empty).
    pub fn read(&self, limit: &Limit, now: i64) -> Result<Record, CounterError> {
        let stored = match self.store.get(&limit.storage_key)? {
            Some((bytes, _)) => Record::decode(&bytes)?,
            None => Record::default(),
        };
        stored.rolled(limit, now)
    }

    /// Creates the key if it is absent, without disturbing a record someone else wrote.
    /// Used when a configuration is applied (Envoy runs that on the main thread before the
    /// workers serve traffic with it, so the check-then-set cannot race with requests).
    pub fn ensure_exists(&mut self, limit: &Limit) -> Result<(), CounterError> {
        if let Some((bytes, _)) = self.store.get(&limit.storage_key)? {
            Record::decode(&bytes)?;
            return Ok(());
        }
        let record = Record {
            creator: self.creator_tag,
            ..Record::default()
        };
        // A mismatch means another VM created it first, which is just as good.
        self.create(&limit.storage_key, &record)?;
        Ok(())
    }

    /// The counter as of `now`; a counter never used is started (written) here, because a
    /// rolling window begins at first use, admission included, not at the first charge.
    pub fn read_or_start(&mut self, limit: &Limit, now: i64) -> Result<Record, CounterError> {
        let stored = match self.store.get(&limit.storage_key)? {
            Some((bytes, _)) => Some(Record::decode(&bytes)?),
            None => None,
        };
        match stored {
            Some(record) if record.covers(now) => Ok(record),
            Some(record) if record.started => record.rolled(limit, now),
            _ => Ok(self.update(limit, now, |_| Change::Write(()))?.record),
        }
    }

    /// Writes `record` only if `key` is absent; `false` if it exists.
    fn create(&mut self, key: &[u8], record: &Record) -> Result<bool, CounterError> {
        let guard = self.guard_version()?;
        match self.store.set(key, &record.encode(), guard)? {
            SetOutcome::Written => Ok(true),
            SetOutcome::CasMismatch => Ok(false),
        }
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
        for _ in 0..MAX_ATTEMPTS {
            let (stored, cas) = match self.store.get(&limit.storage_key)? {
                Some((bytes, cas)) => (Some(Record::decode(&bytes)?), cas),
                None => (None, 0),
            };
            let mut record = match stored {
                Some(record) => record,
                None => Record {
                    creator: self.creator_tag,
                    ..Record::default()
                },
            };
            if !record.covers(now) {
                record = record.rolled(limit, now)?;
            }
            let value = match change(&mut record) {
                Change::Keep(value) => {
                    return Ok(Updated {
                        value,
                        record,
                        written: false,
                    })
                }
                Change::Write(value) => value,
            };
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
                });
            }
            self.conflicts = self.conflicts.saturating_add(1);
        }
        Err(CounterError::Contended)
    }
}
