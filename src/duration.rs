//! Limit durations as written in the configuration (`reset_duration`, `*_reset_duration`).
//!
//! Grammar: a positive integer followed by one unit out of `s m h d w M Y` (`m` is minutes,
//! `M` months), or a compound of `h`, `m` and `s` parts in that order, each at most once
//! (`1h30m`, `2m15s`), or the word `never`: a window that never ends (a prepaid credit, a
//! trial's request count). Every number is a positive decimal integer; there are no fractions,
//! signs, spaces or `ns`/`ms` units, because a limit shorter than a second is never what an
//! operator means and Bifrost's permissive grammar (fractions, zero) caused real outages.

use std::fmt;
use std::str::FromStr;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
const SECS_PER_WEEK: i64 = 7 * SECS_PER_DAY;

/// Longest input echoed back in an error message, so a garbage value cannot flood a log line.
const MAX_ECHO_CHARS: usize = 40;

/// The duration of a window that never ends.
const NEVER: &str = "never";

/// A validated limit duration. Two durations are equal when they were written the same way
/// (modulo leading zeros): `60m` and `1h` have the same length but are different durations,
/// so changing one into the other starts a fresh counter, as any change of duration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitDuration {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `h`, `m`, `s` parts as written; 0 means the part is absent (written parts are > 0).
    Clock {
        hours: u64,
        minutes: u64,
        seconds: u64,
    },
    Days(u32),
    Weeks(u32),
    Months(u32),
    Years(u32),
    Never,
}

/// What a [`LimitDuration`] measures, for code that must treat units differently
/// (calendar alignment, month arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationKind {
    /// `s`, `m`, `h` or a compound of them: a fixed number of seconds (> 0).
    Clock { seconds: i64 },
    /// `Nd`: N days (N > 0).
    Days(u32),
    /// `Nw`: N weeks (N > 0).
    Weeks(u32),
    /// `NM`: N calendar months (N > 0).
    Months(u32),
    /// `NY`: N calendar years (N > 0).
    Years(u32),
    /// `never`: one window from first use on, never reset.
    Never,
}

/// Why a text is not a duration. `Display` gives a short message that starts with the quoted
/// input; the configuration layer prefixes it with the JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: DurationErrorReason,
}

/// The specific grammar rule a rejected duration broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationErrorReason {
    /// Empty text.
    Empty,
    /// Not digits followed by a known unit (unknown unit, spaces, missing number or unit).
    Malformed,
    /// A `-` or `+` sign.
    Signed,
    /// A decimal point.
    Fractional,
    /// A zero number.
    Zero,
    /// A compound using `d`, `w`, `M` or `Y`, or parts out of `h m s` order or repeated.
    BadCompound,
    /// Too long to represent (more than about 292 years, or a month count beyond u32).
    Overflow,
}

impl DurationError {
    /// The rule the input broke.
    pub fn reason(&self) -> DurationErrorReason {
        self.reason
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a duration", self.input)?;
        let detail = match self.reason {
            DurationErrorReason::Empty => ": it is empty",
            DurationErrorReason::Malformed => "",
            DurationErrorReason::Signed => ": it must be a positive integer and a unit",
            DurationErrorReason::Fractional => ": fractions are not allowed",
            DurationErrorReason::Zero => ": it must be positive",
            DurationErrorReason::BadCompound => {
                ": a compound uses only h, m and s, in that order, each at most once"
            }
            DurationErrorReason::Overflow => ": it is too long",
        };
        f.write_str(detail)
    }
}

impl std::error::Error for DurationError {}

impl LimitDuration {
    /// Parses the configuration grammar (see the module docs).
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: text.chars().take(MAX_ECHO_CHARS).collect(),
            reason,
        };
        if text.is_empty() {
            return Err(err(DurationErrorReason::Empty));
        }
        if text == NEVER {
            return Ok(Self { kind: Kind::Never });
        }
        if text.contains(['-', '+']) {
            return Err(err(DurationErrorReason::Signed));
        }
        if text.contains(['.', ',']) {
            return Err(err(DurationErrorReason::Fractional));
        }
        let parts = split_parts(text).ok_or_else(|| err(DurationErrorReason::Malformed))?;
        // Reject zero before looking at units so `0d` says "must be positive", not "unknown".
        if parts.iter().any(|&(n, _)| n == Some(0)) {
            return Err(err(DurationErrorReason::Zero));
        }
        let kind = match parts.as_slice() {
            [] => return Err(err(DurationErrorReason::Malformed)),
            [(number, unit)] => {
                let n = number.ok_or_else(|| err(DurationErrorReason::Overflow))?;
                single(n, *unit).ok_or_else(|| err(DurationErrorReason::Overflow))?
            }
            _ => {
                if parts.iter().any(|&(_, u)| !matches!(u, 'h' | 'm' | 's')) {
                    return Err(err(DurationErrorReason::BadCompound));
                }
                compound(&parts).ok_or_else(|| err(DurationErrorReason::BadCompound))?
            }
        };
        // Every fixed length (a compound's sum included) must fit in i64 nanoseconds, the
        // unit of instants, so window arithmetic never meets an unrepresentable length.
        let this = Self { kind };
        if this.calendar_months().is_none() && this.fixed_nanos().is_none() {
            return Err(err(DurationErrorReason::Overflow));
        }
        Ok(this)
    }

    /// What the duration measures; see [`DurationKind`].
    pub fn kind(&self) -> DurationKind {
        match self.kind {
            // Clock seconds were checked to fit (in nanoseconds) when parsing.
            Kind::Clock { .. } => DurationKind::Clock {
                seconds: self.clock_seconds().unwrap_or(i64::MAX),
            },
            Kind::Days(n) => DurationKind::Days(n),
            Kind::Weeks(n) => DurationKind::Weeks(n),
            Kind::Months(n) => DurationKind::Months(n),
            Kind::Years(n) => DurationKind::Years(n),
            Kind::Never => DurationKind::Never,
        }
    }

    /// True for `never`: the counter's one window has no end.
    pub fn is_never(&self) -> bool {
        self.kind == Kind::Never
    }

    /// True for `s`, `m`, `h` and their compounds: durations of a fixed length that calendar
    /// alignment places inside a local day.
    pub fn is_sub_day_fixed(&self) -> bool {
        matches!(self.kind, Kind::Clock { .. })
    }

    /// The fixed length in nanoseconds of an `s`/`m`/`h`/compound, `d` (24 h) or `w` (7×24 h)
    /// duration, as used by rolling windows; `None` for months and years, whose length
    /// depends on the calendar.
    pub fn fixed_nanos(&self) -> Option<i64> {
        let secs = match self.kind {
            Kind::Clock { .. } => self.clock_seconds()?,
            Kind::Days(n) => i64::from(n).checked_mul(SECS_PER_DAY)?,
            Kind::Weeks(n) => i64::from(n).checked_mul(SECS_PER_WEEK)?,
            Kind::Months(_) | Kind::Years(_) | Kind::Never => return None,
        };
        secs.checked_mul(NANOS_PER_SEC)
    }

    /// The number of calendar months of an `M` or `Y` duration (`1Y` = 12); `None` otherwise.
    pub fn calendar_months(&self) -> Option<u32> {
        match self.kind {
            Kind::Months(n) => Some(n),
            Kind::Years(n) => n.checked_mul(12),
            _ => None,
        }
    }

    fn clock_seconds(&self) -> Option<i64> {
        let Kind::Clock {
            hours,
            minutes,
            seconds,
        } = self.kind
        else {
            return None;
        };
        let total = hours
            .checked_mul(3600)?
            .checked_add(minutes.checked_mul(60)?)?
            .checked_add(seconds)?;
        i64::try_from(total).ok()
    }
}

/// Splits `12h30m` into `[(Some(12), 'h'), (Some(30), 'm')]`. A number too large for u64 is
/// `None` (reported as overflow); anything but digit runs each followed by one ASCII letter
/// among the units makes the whole text malformed.
fn split_parts(text: &str) -> Option<Vec<(Option<u64>, char)>> {
    let mut parts = Vec::new();
    let mut number: Option<Option<u64>> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let so_far = number.unwrap_or(Some(0));
            number = Some(
                so_far
                    .and_then(|n| n.checked_mul(10))
                    .and_then(|n| n.checked_add(u64::from(digit))),
            );
        } else if matches!(c, 's' | 'm' | 'h' | 'd' | 'w' | 'M' | 'Y') {
            parts.push((number.take()?, c));
        } else {
            return None;
        }
    }
    // Trailing digits without a unit.
    if number.is_some() {
        return None;
    }
    Some(parts)
}

fn single(n: u64, unit: char) -> Option<Kind> {
    let calendar = || u32::try_from(n).ok();
    Some(match unit {
        's' => Kind::Clock {
            hours: 0,
            minutes: 0,
            seconds: n,
        },
        'm' => Kind::Clock {
            hours: 0,
            minutes: n,
            seconds: 0,
        },
        'h' => Kind::Clock {
            hours: n,
            minutes: 0,
            seconds: 0,
        },
        'd' => Kind::Days(calendar()?),
        'w' => Kind::Weeks(calendar()?),
        'M' => Kind::Months(calendar()?),
        // Years are used as 12·N months, so that product must fit as well.
        'Y' => {
            let years = calendar()?;
            years.checked_mul(12)?;
            Kind::Years(years)
        }
        _ => return None,
    })
}

/// Builds a compound from parts already known to be positive and among `h m s`; `None` when
/// the parts are out of order or repeated. Numbers too large for u64 become u64::MAX so the
/// caller's length check reports them as overflow.
fn compound(parts: &[(Option<u64>, char)]) -> Option<Kind> {
    let (mut hours, mut minutes, mut seconds) = (0, 0, 0);
    let mut last_rank = 0u8;
    for &(number, unit) in parts {
        let n = number.unwrap_or(u64::MAX);
        let (rank, slot) = match unit {
            'h' => (1, &mut hours),
            'm' => (2, &mut minutes),
            's' => (3, &mut seconds),
            _ => return None,
        };
        if rank <= last_rank {
            return None;
        }
        last_rank = rank;
        *slot = n;
    }
    Some(Kind::Clock {
        hours,
        minutes,
        seconds,
    })
}

impl FromStr for LimitDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for LimitDuration {
    /// The canonical text: as written, without leading zeros (`1h30m`, `3M`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Clock {
                hours,
                minutes,
                seconds,
            } => {
                for (n, unit) in [(hours, 'h'), (minutes, 'm'), (seconds, 's')] {
                    if n != 0 {
                        write!(f, "{n}{unit}")?;
                    }
                }
                Ok(())
            }
            Kind::Days(n) => write!(f, "{n}d"),
            Kind::Weeks(n) => write!(f, "{n}w"),
            Kind::Months(n) => write!(f, "{n}M"),
            Kind::Years(n) => write!(f, "{n}Y"),
            Kind::Never => f.write_str(NEVER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> DurationErrorReason {
        LimitDuration::parse(text).unwrap_err().reason()
    }

    #[test]
    fn never_is_a_duration_without_a_length() {
        let never = LimitDuration::parse("never").unwrap();
        assert!(never.is_never());
        assert_eq!(never.kind(), DurationKind::Never);
        assert_eq!(never.to_string(), "never");
        assert_eq!(never.fixed_nanos(), None);
        assert_eq!(never.calendar_months(), None);
        assert!(!LimitDuration::parse("1d").unwrap().is_never());
        for text in ["Never", "never ", "1never", "nev"] {
            assert!(LimitDuration::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("45s", "45s", Some(45 * NANOS_PER_SEC), None),
            ("1m", "1m", Some(60 * NANOS_PER_SEC), None),
            ("2h", "2h", Some(7200 * NANOS_PER_SEC), None),
            ("1d", "1d", Some(86_400 * NANOS_PER_SEC), None),
            ("2w", "2w", Some(2 * 604_800 * NANOS_PER_SEC), None),
            ("3M", "3M", None, Some(3)),
            ("1Y", "1Y", None, Some(12)),
            ("1h30m", "1h30m", Some(5400 * NANOS_PER_SEC), None),
            ("1h30m15s", "1h30m15s", Some(5415 * NANOS_PER_SEC), None),
            ("2m15s", "2m15s", Some(135 * NANOS_PER_SEC), None),
            ("1h5s", "1h5s", Some(3605 * NANOS_PER_SEC), None),
            ("007d", "7d", Some(7 * 86_400 * NANOS_PER_SEC), None),
        ];
        for (text, canonical, nanos, months) in cases {
            let d = LimitDuration::parse(text).unwrap();
            assert_eq!(d.to_string(), canonical, "{text}");
            assert_eq!(d.fixed_nanos(), nanos, "{text}");
            assert_eq!(d.calendar_months(), months, "{text}");
            assert_eq!(text.parse::<LimitDuration>().unwrap(), d);
        }
    }

    #[test]
    fn kinds_and_sub_day() {
        let k = |t: &str| LimitDuration::parse(t).unwrap().kind();
        assert_eq!(k("90m"), DurationKind::Clock { seconds: 5400 });
        assert_eq!(k("25h"), DurationKind::Clock { seconds: 90_000 });
        assert_eq!(k("2d"), DurationKind::Days(2));
        assert_eq!(k("2w"), DurationKind::Weeks(2));
        assert_eq!(k("3M"), DurationKind::Months(3));
        assert_eq!(k("2Y"), DurationKind::Years(2));
        for t in ["1s", "1m", "1h", "1h30m", "48h"] {
            assert!(LimitDuration::parse(t).unwrap().is_sub_day_fixed(), "{t}");
        }
        for t in ["1d", "1w", "1M", "1Y"] {
            assert!(!LimitDuration::parse(t).unwrap().is_sub_day_fixed(), "{t}");
        }
    }

    #[test]
    fn same_length_different_text_is_a_different_duration() {
        assert_ne!(
            LimitDuration::parse("60m").unwrap(),
            LimitDuration::parse("1h").unwrap()
        );
        assert_eq!(
            LimitDuration::parse("01h").unwrap(),
            LimitDuration::parse("1h").unwrap()
        );
    }

    #[test]
    fn rejects_every_bad_form() {
        use DurationErrorReason::*;
        let cases = [
            ("", Empty),
            ("5x", Malformed),
            ("5", Malformed),
            ("d", Malformed),
            ("h30m", Malformed),
            ("1h30", Malformed),
            (" 1h", Malformed),
            ("1h ", Malformed),
            ("1 h", Malformed),
            ("1ms", Malformed), // `m` then `s` without a number
            ("1ns", Malformed),
            ("1D", Malformed),
            ("1y", Malformed),
            ("1W", Malformed),
            ("１h", Malformed), // full-width digit
            ("0s", Zero),
            ("0d", Zero),
            ("0M", Zero),
            ("00h", Zero),
            ("1h0m", Zero),
            ("-1d", Signed),
            ("+1d", Signed),
            ("1.5d", Fractional),
            ("1,5d", Fractional),
            ("1d12h", BadCompound),
            ("1h1d", BadCompound),
            ("1M1d", BadCompound),
            ("1w2d", BadCompound),
            ("30m1h", BadCompound),
            ("1s1m", BadCompound),
            ("1h1h", BadCompound),
            ("1m1m", BadCompound),
            ("99999999999999999999s", Overflow),
            ("9223372037s", Overflow), // just above i64::MAX nanoseconds
            ("2562048h", Overflow),
            ("106752d", Overflow),
            ("15251w", Overflow),
            ("4294967296M", Overflow),
            ("357913942Y", Overflow), // 12·N does not fit u32
            ("2562047h59m99999999999999999999s", Overflow),
            ("2562047h47m17s", Overflow),
        ];
        for (text, want) in cases {
            assert_eq!(reason(text), want, "{text:?}");
        }
        // The largest accepted values.
        assert!(LimitDuration::parse("9223372036s").is_ok());
        assert!(LimitDuration::parse("106751d").is_ok());
        assert!(LimitDuration::parse("4294967295M").is_ok());
        assert!(LimitDuration::parse("357913941Y").is_ok());
    }

    #[test]
    fn error_messages_are_short_and_quoted() {
        let msg = |t: &str| LimitDuration::parse(t).unwrap_err().to_string();
        assert_eq!(msg("5x"), r#""5x" is not a duration"#);
        assert_eq!(msg("0d"), r#""0d" is not a duration: it must be positive"#);
        assert_eq!(msg(""), r#""" is not a duration: it is empty"#);
        assert!(msg("1.5d").contains("fractions"));
        assert!(msg("-1d").contains("positive integer"));
        assert!(msg("1d2h").contains("compound"));
        assert!(msg("99999999999999999999d").contains("too long"));
        // Control characters are escaped and long input is cut.
        assert_eq!(msg("\n"), r#""\n" is not a duration"#);
        let long = "x".repeat(1000);
        assert!(msg(&long).len() < 80);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_and_accepted_text_round_trips(
            text in "[0-9smhdwMY.+ x-]{0,14}"
        ) {
            if let Ok(d) = LimitDuration::parse(&text) {
                let shown = d.to_string();
                proptest::prop_assert_eq!(LimitDuration::parse(&shown).unwrap(), d);
                proptest::prop_assert!(d.fixed_nanos().is_some() != d.calendar_months().is_some());
                proptest::prop_assert_eq!(
                    shown.trim_start_matches('0').len() <= text.len(), true
                );
            }
        }

        #[test]
        fn canonical_numbers_round_trip(n in 1u64..=15_250, unit in "[smhdwMY]") {
            let text = format!("{n}{unit}");
            let d = LimitDuration::parse(&text).unwrap();
            proptest::prop_assert_eq!(d.to_string(), text);
        }
    }
}
