//! Timezones of limits (`timezone` fields): `UTC`, an IANA name, or a fixed offset.
//!
//! Instants are `i64` nanoseconds since the Unix epoch (UTC), as the host clock gives them.
//! Local wall-clock times are chrono `NaiveDateTime`s. Converting an instant to local time is
//! a function; converting local time back is not (daylight-saving gaps and overlaps), so
//! [`Zone::resolve_local`] fixes one rule for it, used by every window computation.
//!
//! IANA zones come from a table generated at build time from the tz database (see
//! `named.rs` and `build.rs`), reduced to the rules from 2011 on.

mod named;
#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod reference;
mod rule;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset};
use std::fmt;
use std::str::FromStr;

pub use named::NamedZone;
use named::Resolution;

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// Fixed offsets are accepted up to ±18:00, the widest range any library commonly allows;
/// real zones stay within −12:00..+14:00, so anything beyond is almost surely a typo.
const MAX_FIXED_OFFSET_SECS: i32 = 18 * 3600;
const MAX_ECHO_CHARS: usize = 40;

/// The timezone a calendar-aligned window (and month/year arithmetic) is computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// `UTC`.
    Utc,
    /// A fixed offset east of UTC, written `+05:30` / `-08:00`; never observes DST.
    Fixed(FixedOffset),
    /// An IANA zone from the generated table, e.g. `America/New_York`.
    Named(NamedZone),
    /// The same zone computed by chrono-tz, the reference the table is tested against.
    #[cfg(test)]
    Reference(chrono_tz::Tz),
}

/// Why a text is not a timezone; `Display` is a short message starting with the quoted input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    input: String,
    reason: ZoneErrorReason,
}

/// The rule a rejected timezone broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneErrorReason {
    /// Neither `UTC`, a known IANA name, nor a well-formed `±HH:MM` offset.
    Unknown,
    /// A well-formed `±HH:MM` offset out of range (minutes over 59, or beyond ±18:00).
    OffsetOutOfRange,
}

impl ZoneError {
    /// The rule the input broke.
    pub fn reason(&self) -> ZoneErrorReason {
        self.reason
    }
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a timezone", self.input)?;
        match self.reason {
            ZoneErrorReason::Unknown => {
                f.write_str(": expected UTC, an IANA name or an offset like +05:30")
            }
            ZoneErrorReason::OffsetOutOfRange => {
                f.write_str(": offsets range from -18:00 to +18:00 with minutes below 60")
            }
        }
    }
}

impl std::error::Error for ZoneError {}

impl Zone {
    /// Parses `UTC`, an IANA name (exact case, as in the tz database) or `±HH:MM`.
    pub fn parse(text: &str) -> Result<Self, ZoneError> {
        let err = |reason| ZoneError {
            input: text.chars().take(MAX_ECHO_CHARS).collect(),
            reason,
        };
        if text == "UTC" {
            return Ok(Zone::Utc);
        }
        if let Some(offset) = parse_offset(text) {
            return offset
                .map(Zone::Fixed)
                .ok_or_else(|| err(ZoneErrorReason::OffsetOutOfRange));
        }
        NamedZone::find(text)
            .map(Zone::Named)
            .ok_or_else(|| err(ZoneErrorReason::Unknown))
    }

    /// The UTC offset in effect at `utc` (a naive UTC date-time).
    fn offset_at_utc(&self, utc: &NaiveDateTime) -> FixedOffset {
        match self {
            Zone::Utc => chrono::Utc.fix(),
            Zone::Fixed(offset) => *offset,
            Zone::Named(zone) => {
                let secs = zone.offset_at(utc.and_utc().timestamp());
                FixedOffset::east_opt(secs).unwrap_or(chrono::Utc.fix())
            }
            #[cfg(test)]
            Zone::Reference(tz) => reference::offset_at_utc(tz, utc),
        }
    }

    /// The local wall-clock time at `nanos` (nanoseconds since the epoch, UTC). Total: every
    /// `i64` is a valid instant (years 1677..2262) and offsets are under a day.
    pub fn local_datetime(&self, nanos: i64) -> NaiveDateTime {
        let utc = DateTime::from_timestamp_nanos(nanos).naive_utc();
        let offset = self.offset_at_utc(&utc);
        utc.checked_add_offset(offset).unwrap_or(utc)
    }

    /// The instant at which local wall-clock time `local` happens, in nanoseconds since the
    /// epoch (`i128`, so every chrono date fits; callers saturate to `i64`).
    ///
    /// Daylight-saving rules, chosen so that the map is non-decreasing in `local` (window
    /// boundaries never go back in time) and every local time has an answer:
    /// - a time that happens once maps to that instant;
    /// - a time that happens twice (fall back) maps to its **earliest** occurrence;
    /// - a time that never happens (spring-forward gap) maps to the **first instant after the
    ///   gap**, i.e. the transition itself. With hourly windows in New York on a spring-forward
    ///   day, the local boundaries 02:00 and 03:00 both map to 03:00 EDT, and the empty
    ///   window between them simply does not exist.
    pub fn resolve_local(&self, local: &NaiveDateTime) -> i128 {
        let as_utc = naive_nanos(local);
        let minus = |offset_secs: i32| {
            as_utc.saturating_sub(i128::from(offset_secs).saturating_mul(NANOS_PER_SEC))
        };
        match self {
            Zone::Utc | Zone::Fixed(_) => minus(self.offset_at_utc(local).local_minus_utc()),
            Zone::Named(zone) => match zone.resolve(local.and_utc().timestamp()) {
                Resolution::Offset(secs) => minus(secs),
                Resolution::GapEndsAt(secs) => i128::from(secs).saturating_mul(NANOS_PER_SEC),
            },
            #[cfg(test)]
            Zone::Reference(tz) => reference::resolve_local(tz, local),
        }
    }
}

/// Nanoseconds since the epoch of a naive date-time read as UTC.
fn naive_nanos(local: &NaiveDateTime) -> i128 {
    let utc = local.and_utc();
    i128::from(utc.timestamp())
        .saturating_mul(NANOS_PER_SEC)
        .saturating_add(i128::from(utc.timestamp_subsec_nanos()))
}

/// `Some(Some(offset))` for a valid `±HH:MM`, `Some(None)` for a well-formed one out of range,
/// `None` when the text does not have that shape at all.
fn parse_offset(text: &str) -> Option<Option<FixedOffset>> {
    let &[sign, h1, h2, b':', m1, m2] = text.as_bytes() else {
        return None;
    };
    let sign: i32 = match sign {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digit = |b: u8| {
        char::from(b)
            .to_digit(10)
            .and_then(|d| i32::try_from(d).ok())
    };
    let (h1, h2, m1, m2) = (digit(h1)?, digit(h2)?, digit(m1)?, digit(m2)?);
    // Each digit is 0..=9, so these cannot overflow; checked ops keep the lint honest.
    let hours = h1.checked_mul(10)?.checked_add(h2)?;
    let minutes = m1.checked_mul(10)?.checked_add(m2)?;
    let secs = hours
        .checked_mul(3600)?
        .checked_add(minutes.checked_mul(60)?)?;
    if minutes > 59 || secs > MAX_FIXED_OFFSET_SECS {
        return Some(None);
    }
    Some(FixedOffset::east_opt(sign.checked_mul(secs)?))
}

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Zone {
    /// The canonical text: `UTC`, the IANA name, or `±HH:MM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Named(zone) => f.write_str(zone.name()),
            #[cfg(test)]
            Zone::Reference(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => {
                let secs = offset.local_minus_utc();
                let sign = if secs < 0 { '-' } else { '+' };
                let abs = secs.unsigned_abs();
                let (hours, minutes) = (abs / 3600, (abs % 3600) / 60);
                write!(f, "{sign}{hours:02}:{minutes:02}")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    const NS: i64 = 1_000_000_000;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn utc_nanos(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        local(y, mo, d, h, mi).and_utc().timestamp() * NS
    }

    #[test]
    fn parses_and_displays() {
        for (text, shown) in [
            ("UTC", "UTC"),
            ("America/New_York", "America/New_York"),
            ("Europe/Berlin", "Europe/Berlin"),
            ("Etc/UTC", "Etc/UTC"),
            ("+05:30", "+05:30"),
            ("-08:00", "-08:00"),
            ("+00:00", "+00:00"),
            ("-00:00", "+00:00"),
            ("+18:00", "+18:00"),
            ("-18:00", "-18:00"),
            ("+14:45", "+14:45"),
        ] {
            let zone = Zone::parse(text).unwrap();
            assert_eq!(zone.to_string(), shown, "{text}");
            assert_eq!(text.parse::<Zone>().unwrap(), zone);
        }
        assert_eq!(
            Zone::parse("+05:30").unwrap(),
            Zone::Fixed(FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
        );
    }

    #[test]
    fn rejects_bad_zones() {
        use ZoneErrorReason::*;
        for (text, want) in [
            ("", Unknown),
            ("utc", Unknown),
            ("america/new_york", Unknown),
            ("Mars/Olympus_Mons", Unknown),
            ("+5:30", Unknown),
            ("+0530", Unknown),
            ("05:30", Unknown),
            ("+05:3a", Unknown),
            ("+05:30 ", Unknown),
            ("+１5:30", Unknown),
            ("+05:60", OffsetOutOfRange),
            ("+18:01", OffsetOutOfRange),
            ("-19:00", OffsetOutOfRange),
            ("+99:99", OffsetOutOfRange),
        ] {
            assert_eq!(Zone::parse(text).unwrap_err().reason(), want, "{text:?}");
        }
        assert_eq!(
            Zone::parse("Mars/X").unwrap_err().to_string(),
            r#""Mars/X" is not a timezone: expected UTC, an IANA name or an offset like +05:30"#
        );
    }

    #[test]
    fn local_and_back_in_fixed_zones() {
        let ist = Zone::parse("+05:30").unwrap();
        let t = utc_nanos(2026, 1, 1, 0, 0);
        assert_eq!(ist.local_datetime(t), local(2026, 1, 1, 5, 30));
        assert_eq!(ist.resolve_local(&local(2026, 1, 1, 5, 30)), i128::from(t));
        let pst = Zone::parse("-08:00").unwrap();
        assert_eq!(pst.local_datetime(t), local(2025, 12, 31, 16, 0));
        assert_eq!(Zone::Utc.local_datetime(t), local(2026, 1, 1, 0, 0));
        assert_eq!(
            Zone::Utc.resolve_local(&local(2026, 1, 1, 0, 0)),
            i128::from(t)
        );
    }

    #[test]
    fn new_york_gap_and_overlap() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT, at 07:00 UTC.
        let transition = i128::from(utc_nanos(2026, 3, 8, 7, 0));
        assert_eq!(ny.resolve_local(&local(2026, 3, 8, 2, 0)), transition);
        assert_eq!(ny.resolve_local(&local(2026, 3, 8, 2, 30)), transition);
        assert_eq!(ny.resolve_local(&local(2026, 3, 8, 3, 0)), transition);
        assert_eq!(
            ny.resolve_local(&local(2026, 3, 8, 1, 59)),
            i128::from(utc_nanos(2026, 3, 8, 6, 59))
        );
        // 2026-11-01: 01:00-02:00 happens twice (EDT then EST); earliest is 05:00 UTC.
        assert_eq!(
            ny.resolve_local(&local(2026, 11, 1, 1, 0)),
            i128::from(utc_nanos(2026, 11, 1, 5, 0))
        );
        assert_eq!(
            ny.resolve_local(&local(2026, 11, 1, 2, 0)),
            i128::from(utc_nanos(2026, 11, 1, 7, 0))
        );
        assert_eq!(
            ny.local_datetime(utc_nanos(2026, 11, 1, 6, 30)),
            local(2026, 11, 1, 1, 30)
        );
        assert_eq!(
            ny.local_datetime(utc_nanos(2026, 11, 1, 5, 30)),
            local(2026, 11, 1, 1, 30)
        );
    }

    #[test]
    fn berlin_gap_and_overlap() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
        assert_eq!(
            berlin.resolve_local(&local(2026, 3, 29, 2, 15)),
            i128::from(utc_nanos(2026, 3, 29, 1, 0))
        );
        // 2026-10-25: 02:00-03:00 happens twice; earliest 02:00 is 00:00 UTC.
        assert_eq!(
            berlin.resolve_local(&local(2026, 10, 25, 2, 0)),
            i128::from(utc_nanos(2026, 10, 25, 0, 0))
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for zone in [
            "UTC",
            "+18:00",
            "-18:00",
            "America/New_York",
            "Pacific/Apia",
        ] {
            let zone = Zone::parse(zone).unwrap();
            for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
                let l = zone.local_datetime(t);
                let back = zone.resolve_local(&l);
                assert!((back - i128::from(t)).abs() < 86_400 * i128::from(NS));
            }
            let _ = zone.resolve_local(&NaiveDateTime::MIN);
            let _ = zone.resolve_local(&NaiveDateTime::MAX);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_and_round_trips(text in "[+-]?[0-9]{0,3}:?[0-9]{0,3}|[A-Za-z_/]{0,20}") {
            if let Ok(zone) = Zone::parse(&text) {
                proptest::prop_assert_eq!(Zone::parse(&zone.to_string()).unwrap(), zone);
            }
        }

        #[test]
        fn local_then_resolve_is_the_instant_or_its_earlier_twin(
            zone in proptest::sample::select(&["UTC", "+05:30", "America/New_York", "Europe/Berlin"][..]),
            nanos in -2_208_988_800_000_000_000i64..7_258_118_400_000_000_000,
        ) {
            let zone = Zone::parse(zone).unwrap();
            let back = zone.resolve_local(&zone.local_datetime(nanos));
            let diff = i128::from(nanos) - back;
            // Equal, or the second pass of a repeated hour resolving to the first.
            proptest::prop_assert!(diff == 0 || diff == 3600 * i128::from(NS), "{}", diff);
        }
    }
}
