//! The zone computations as chrono-tz does them (its own copy of the tz database), for
//! [`super::Zone::Reference`]: the reference the generated table is tested against.

#![allow(clippy::arithmetic_side_effects, reason = "test code")]

use chrono::offset::LocalResult;
use chrono::{FixedOffset, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{GapInfo, Tz};

const NANOS_PER_SEC: i128 = 1_000_000_000;

pub fn offset_at_utc(tz: &Tz, utc: &NaiveDateTime) -> FixedOffset {
    tz.offset_from_utc_datetime(utc).fix()
}

/// [`super::Zone::resolve_local`]'s rule: the earliest of two occurrences, the end of a gap.
pub fn resolve_local(tz: &Tz, local: &NaiveDateTime) -> i128 {
    let as_utc = super::naive_nanos(local);
    let minus = |offset: FixedOffset| {
        as_utc.saturating_sub(i128::from(offset.local_minus_utc()) * NANOS_PER_SEC)
    };
    match tz.offset_from_local_datetime(local) {
        LocalResult::Single(offset) => minus(offset.fix()),
        LocalResult::Ambiguous(a, b) => minus(a.fix()).min(minus(b.fix())),
        LocalResult::None => match GapInfo::new(local, tz).and_then(|gap| gap.end) {
            Some(end) => {
                i128::from(end.timestamp()) * NANOS_PER_SEC
                    + i128::from(end.timestamp_subsec_nanos())
            }
            None => minus(offset_at_utc(tz, local)),
        },
    }
}
