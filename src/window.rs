//! Limit windows: which half-open interval of time a counter's usage belongs to.
//!
//! A [`WindowRule`] (duration, alignment, zone) maps an instant to the [`Window`] containing
//! it. Instants are `i64` nanoseconds since the Unix epoch (UTC) and always come in as
//! arguments: nothing here reads a clock, so every answer is a pure function of its inputs
//! and every worker (and every replica) computes the same boundaries. Deterministic
//! boundaries are what lets a counter reset by CAS from "expected window start" to "new
//! window start" without losing spend to a racing resetter (Bifrost's `now`-stamped resets
//! could).
//!
//! Both kinds of window are a non-decreasing sequence of boundary instants `b(i)`; the window
//! containing `now` is `[b(j-1), b(j))` for the smallest `j` with `b(j) > now`. Equal
//! neighbouring boundaries (a daylight-saving gap swallowing a local boundary) therefore
//! produce no empty window, and each instant falls in exactly one window.
//!
//! Every function is total: instants near the ends of the `i64` range give windows whose
//! bounds saturate at `i64::MIN` / `i64::MAX`, or [`WindowError::OutOfRange`] when no
//! representable window contains the instant (only `now == i64::MAX` with a saturated end).

use crate::decimal::push_u64;
use crate::duration::{DurationKind, LimitDuration};
use crate::zone::Zone;
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use std::fmt;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
const SECS_PER_WEEK: i64 = 7 * SECS_PER_DAY;
/// Doublings allowed when widening the search around the first guess. The guess is off by at
/// most a few boundaries for real zones; 70 doublings exceed any `i64` index, so hitting the
/// cap only happens when no boundary lies beyond `now` (now = i64::MAX).
const MAX_GALLOP_STEPS: u32 = 70;

/// A half-open interval `[start_nanos, end_nanos)` of instants (nanoseconds since the epoch).
/// Windows returned by this module are never empty (`start_nanos < end_nanos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First instant of the window.
    pub start_nanos: i64,
    /// First instant after the window (exclusive); `i64::MAX` when saturated.
    pub end_nanos: i64,
}

impl Window {
    /// Whether `now` lies in the window, i.e. a counter stamped with this window is current.
    pub fn contains(&self, now_nanos: i64) -> bool {
        self.start_nanos <= now_nanos && now_nanos < self.end_nanos
    }

    /// Nanoseconds from `now` until the window ends; 0 once it has ended.
    pub fn remaining_nanos(&self, now_nanos: i64) -> i64 {
        self.end_nanos.saturating_sub(now_nanos).max(0)
    }

    /// Whole seconds until the window ends, rounded up (`retry-after`); 0 once it has ended.
    pub fn retry_after_secs(&self, now_nanos: i64) -> i64 {
        ceil_secs(self.remaining_nanos(now_nanos))
    }
}

/// Why a rule cannot be built or a window cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowError {
    /// A calendar-aligned `s`/`m`/`h` duration must divide 24 h exactly, so that every local
    /// day starts a window at midnight.
    AlignedDurationDoesNotDivideDay(LimitDuration),
    /// [`WindowRule::window_at`] was called on a rolling rule, which needs an anchor.
    NotCalendarAligned,
    /// [`WindowRule::rolling_window_at`] was called on a calendar-aligned rule.
    NotRolling,
    /// No representable window contains the instant (the edge of the `i64` range).
    OutOfRange,
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::AlignedDurationDoesNotDivideDay(d) => write!(
                f,
                "\"{d}\" cannot be calendar aligned: it must divide 24h exactly"
            ),
            WindowError::NotCalendarAligned => {
                f.write_str("rolling window needs the counter's anchor")
            }
            WindowError::NotRolling => f.write_str("calendar-aligned window has no anchor"),
            WindowError::OutOfRange => f.write_str("instant out of the representable range"),
        }
    }
}

impl std::error::Error for WindowError {}

/// How a limit's windows are laid out: its duration, whether windows are calendar aligned,
/// and the zone whose local calendar aligned windows (and rolling months/years) follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowRule {
    duration: LimitDuration,
    calendar_aligned: bool,
    zone: Zone,
}

impl WindowRule {
    /// Validates the combination: a calendar-aligned `s`/`m`/`h`/compound duration must divide
    /// 86 400 s exactly (`15m`, `1h30m`, `24h` do; `7m`, `25h` do not). `d`, `w`, `M`, `Y` and
    /// every rolling duration are always valid. `never` has no calendar: its one window
    /// starts at first use whatever `calendar_aligned` says, and the rule is rolling.
    pub fn new(
        duration: LimitDuration,
        calendar_aligned: bool,
        zone: Zone,
    ) -> Result<Self, WindowError> {
        let calendar_aligned = calendar_aligned && !duration.is_never();
        if calendar_aligned {
            if let DurationKind::Clock { seconds } = duration.kind() {
                let divides = seconds > 0
                    && seconds <= SECS_PER_DAY
                    && SECS_PER_DAY.checked_rem(seconds) == Some(0);
                if !divides {
                    return Err(WindowError::AlignedDurationDoesNotDivideDay(duration));
                }
            }
        }
        Ok(Self {
            duration,
            calendar_aligned,
            zone,
        })
    }

    /// The rule's duration.
    pub fn duration(&self) -> LimitDuration {
        self.duration
    }

    /// Whether windows are calendar aligned (else rolling from an anchor).
    pub fn calendar_aligned(&self) -> bool {
        self.calendar_aligned
    }

    /// The zone of the local calendar.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The window containing `now` under this rule: [`Self::window_at`] for calendar-aligned
    /// rules (the anchor is ignored), [`Self::rolling_window_at`] for rolling ones.
    pub fn window(&self, anchor_nanos: i64, now_nanos: i64) -> Result<Window, WindowError> {
        if self.calendar_aligned {
            self.window_at(now_nanos)
        } else {
            self.rolling_window_at(anchor_nanos, now_nanos)
        }
    }

    /// The calendar-aligned window containing `now`.
    ///
    /// Windows start at local boundaries of the rule's zone: midnight for `Nd`, Monday 00:00
    /// for `Nw`, the 1st at 00:00 for `NM`, January 1 at 00:00 for `NY`. With N > 1 only the
    /// boundaries whose index since 1970 is a multiple of N start a window, counted in the
    /// local calendar: days since 1970-01-01, weeks since Monday 1969-12-29, months since
    /// January 1970, years since 1970 (so `3M` is calendar quarters and `2d` every other
    /// midnight, the same ones in every process). Sub-day durations (`15m`, `1h`, `1h30m`)
    /// start at local midnight + k·d.
    ///
    /// Daylight saving moves the UTC instant of a boundary, never the local boundary itself
    /// (so a `1d` window may last 23 or 25 hours):
    /// - a boundary inside a spring-forward gap starts at the first instant after the gap;
    ///   several boundaries in one gap collapse into one, so no empty window exists (hourly
    ///   windows in New York go 01:00 EST → 03:00 EDT on that day);
    /// - a boundary in a fall-back overlap starts at its earliest occurrence, so the repeated
    ///   hour belongs to the window that began at the first occurrence (an hourly window from
    ///   01:00 EDT lasts two hours, until 02:00 EST).
    ///
    /// Errors: [`WindowError::NotCalendarAligned`] on a rolling rule;
    /// [`WindowError::OutOfRange`] when `now == i64::MAX` and the window end saturates.
    pub fn window_at(&self, now_nanos: i64) -> Result<Window, WindowError> {
        if !self.calendar_aligned {
            return Err(WindowError::NotCalendarAligned);
        }
        let lattice = self.aligned_lattice()?;
        let zone = self.zone;
        let boundary = |i: i64| saturate(lattice.local(i).map(|l| zone.resolve_local(&l)), i);
        let guess = lattice.index_guess(&zone.local_datetime(now_nanos));
        locate(boundary, guess, now_nanos)
    }

    /// The rolling window containing `now`, for a counter first used at `anchor`.
    ///
    /// Windows follow each other without gaps from the anchor: `[anchor + k·d, anchor +
    /// (k+1)·d)`. `s`/`m`/`h`, `d` (24 h) and `w` (7×24 h) are fixed lengths, unaffected by
    /// daylight saving. `M` and `Y` use the local calendar of the rule's zone, always counted
    /// from the anchor (never chained from the previous window): boundary k is the anchor's
    /// local date + k·N months at the anchor's local time of day, the day clamped to the end
    /// of shorter months (Jan 31 + 1M = Feb 28/29, + 2M = Mar 31; Feb 29 + 1Y = Feb 28). A
    /// boundary whose local time falls in a daylight-saving gap or overlap is resolved as in
    /// [`Self::window_at`] (first instant after the gap, earliest occurrence).
    ///
    /// `now` before the anchor gives the first window, `[anchor, b(1))`.
    ///
    /// Errors: [`WindowError::NotRolling`] on a calendar-aligned rule;
    /// [`WindowError::OutOfRange`] when `now == i64::MAX` and the window end saturates.
    pub fn rolling_window_at(
        &self,
        anchor_nanos: i64,
        now_nanos: i64,
    ) -> Result<Window, WindowError> {
        if self.calendar_aligned {
            return Err(WindowError::NotRolling);
        }
        if self.duration.is_never() {
            return Ok(Window {
                start_nanos: anchor_nanos,
                end_nanos: i64::MAX,
            });
        }
        if let Some(step) = self.duration.fixed_nanos() {
            return rolling_fixed(anchor_nanos, step, now_nanos);
        }
        let months = self
            .duration
            .calendar_months()
            .ok_or(WindowError::OutOfRange)?;
        let zone = self.zone;
        let lattice = Lattice::Months {
            base: zone.local_datetime(anchor_nanos),
            step: months,
        };
        // Boundary 0 is the anchor itself, even when its local time is ambiguous (resolving
        // it again could land an hour earlier); later ones never precede it.
        let boundary = |i: i64| match i {
            i64::MIN..=-1 => i64::MIN,
            0 => anchor_nanos,
            _ => saturate(lattice.local(i).map(|l| zone.resolve_local(&l)), i).max(anchor_nanos),
        };
        if now_nanos < anchor_nanos {
            return first_window(anchor_nanos, boundary(1));
        }
        let guess = lattice.index_guess(&zone.local_datetime(now_nanos)).max(0);
        locate(boundary, guess, now_nanos)
    }

    fn aligned_lattice(&self) -> Result<Lattice, WindowError> {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or(WindowError::OutOfRange)?;
        // The Monday before the epoch (1970-01-01 was a Thursday).
        let monday = NaiveDate::from_ymd_opt(1969, 12, 29).ok_or(WindowError::OutOfRange)?;
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).ok_or(WindowError::OutOfRange);
        let seconds = |n: u32, unit: i64| {
            i64::from(n)
                .checked_mul(unit)
                .ok_or(WindowError::OutOfRange)
        };
        Ok(match self.duration.kind() {
            DurationKind::Clock { seconds } => Lattice::Seconds {
                base: midnight(epoch)?,
                step: seconds,
            },
            DurationKind::Days(n) => Lattice::Seconds {
                base: midnight(epoch)?,
                step: seconds(n, SECS_PER_DAY)?,
            },
            DurationKind::Weeks(n) => Lattice::Seconds {
                base: midnight(monday)?,
                step: seconds(n, SECS_PER_WEEK)?,
            },
            // `new` never makes a `never` rule calendar aligned.
            DurationKind::Never => return Err(WindowError::NotCalendarAligned),
            DurationKind::Months(_) | DurationKind::Years(_) => Lattice::Months {
                base: midnight(epoch)?,
                step: self
                    .duration
                    .calendar_months()
                    .ok_or(WindowError::OutOfRange)?,
            },
        })
    }
}

/// Local boundary times `b(i)` for integer `i`, before zone resolution.
enum Lattice {
    /// `base + i·step` seconds of naive local time. Naive time has no DST, so this is "local
    /// midnight + k·d" for sub-day steps dividing a day and "N local days" for day steps.
    Seconds { base: NaiveDateTime, step: i64 },
    /// `base + i·step` calendar months, day clamped to the month's end, time of day kept.
    Months { base: NaiveDateTime, step: u32 },
}

impl Lattice {
    /// The local time of boundary `i`; `None` beyond chrono's date range.
    fn local(&self, i: i64) -> Option<NaiveDateTime> {
        match *self {
            Lattice::Seconds { base, step } => {
                let delta = TimeDelta::try_seconds(i.checked_mul(step)?)?;
                base.checked_add_signed(delta)
            }
            Lattice::Months { base, step } => {
                let months = i.checked_mul(i64::from(step))?;
                let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
                if months >= 0 {
                    base.checked_add_months(magnitude)
                } else {
                    base.checked_sub_months(magnitude)
                }
            }
        }
    }

    /// The index of the last boundary at or before local time `local`, or close to it (the
    /// search corrects small errors, e.g. day-of-month or time of day within the month).
    fn index_guess(&self, local: &NaiveDateTime) -> i64 {
        match *self {
            Lattice::Seconds { base, step } => {
                let elapsed = local
                    .and_utc()
                    .timestamp()
                    .saturating_sub(base.and_utc().timestamp());
                elapsed.checked_div_euclid(step).unwrap_or(0)
            }
            Lattice::Months { base, step } => {
                let month_number = |d: &NaiveDateTime| {
                    i64::from(d.year())
                        .saturating_mul(12)
                        .saturating_add(i64::from(d.month0()))
                };
                month_number(local)
                    .saturating_sub(month_number(&base))
                    .checked_div_euclid(i64::from(step))
                    .unwrap_or(0)
            }
        }
    }
}

/// An instant as `i64`, saturated: a resolved time beyond the range clamps to its end, and a
/// boundary beyond chrono's dates (`None`) to the end on the side of its index.
fn saturate(resolved: Option<i128>, index: i64) -> i64 {
    match resolved {
        Some(nanos) => i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX }),
        None if index < 0 => i64::MIN,
        None => i64::MAX,
    }
}

/// Finds `[b(j-1), b(j))` with `b(j-1) <= now < b(j)` for a non-decreasing `b`: widen from
/// `guess` by doubling steps until `now` is bracketed, then bisect. A handful of boundary
/// evaluations in practice.
fn locate(boundary: impl Fn(i64) -> i64, guess: i64, now: i64) -> Result<Window, WindowError> {
    let (mut lo, mut hi) = if boundary(guess) <= now {
        let mut lo = guess;
        let mut step: i64 = 1;
        let mut hi = None;
        for _ in 0..MAX_GALLOP_STEPS {
            let candidate = lo.checked_add(step).ok_or(WindowError::OutOfRange)?;
            if boundary(candidate) > now {
                hi = Some(candidate);
                break;
            }
            lo = candidate;
            step = step.saturating_mul(2);
        }
        (lo, hi.ok_or(WindowError::OutOfRange)?)
    } else {
        let mut hi = guess;
        let mut step: i64 = 1;
        let mut lo = None;
        for _ in 0..MAX_GALLOP_STEPS {
            let candidate = hi.checked_sub(step).ok_or(WindowError::OutOfRange)?;
            if boundary(candidate) <= now {
                lo = Some(candidate);
                break;
            }
            hi = candidate;
            step = step.saturating_mul(2);
        }
        (lo.ok_or(WindowError::OutOfRange)?, hi)
    };
    loop {
        let gap = hi.checked_sub(lo).ok_or(WindowError::OutOfRange)?;
        if gap <= 1 {
            break;
        }
        let mid = lo.checked_add(gap / 2).ok_or(WindowError::OutOfRange)?;
        if boundary(mid) <= now {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let window = Window {
        start_nanos: boundary(lo),
        end_nanos: boundary(hi),
    };
    if window.contains(now) {
        Ok(window)
    } else {
        Err(WindowError::OutOfRange)
    }
}

/// `[anchor + k·step, anchor + (k+1)·step)` in exact integer arithmetic (i128, so no
/// intermediate can overflow), the end saturated at `i64::MAX`.
fn rolling_fixed(anchor: i64, step: i64, now: i64) -> Result<Window, WindowError> {
    if step <= 0 {
        return Err(WindowError::OutOfRange);
    }
    let (anchor, step, now_wide) = (i128::from(anchor), i128::from(step), i128::from(now));
    let elapsed = now_wide.saturating_sub(anchor).max(0);
    let windows = elapsed.checked_div(step).ok_or(WindowError::OutOfRange)?;
    let start = windows
        .checked_mul(step)
        .and_then(|offset| anchor.checked_add(offset))
        .ok_or(WindowError::OutOfRange)?;
    let end = start.saturating_add(step);
    let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
    let window = Window {
        start_nanos: clamp(start),
        end_nanos: clamp(end),
    };
    if now_wide < anchor {
        first_window(window.start_nanos, window.end_nanos)
    } else if window.contains(now) {
        Ok(window)
    } else {
        Err(WindowError::OutOfRange)
    }
}

fn first_window(start: i64, end: i64) -> Result<Window, WindowError> {
    if start < end {
        Ok(Window {
            start_nanos: start,
            end_nanos: end,
        })
    } else {
        Err(WindowError::OutOfRange)
    }
}

/// Whole seconds in `nanos`, rounded up; 0 for 0 or negative.
fn ceil_secs(nanos: i64) -> i64 {
    if nanos <= 0 {
        return 0;
    }
    let whole = nanos / NANOS_PER_SEC;
    if nanos % NANOS_PER_SEC == 0 {
        whole
    } else {
        whole.saturating_add(1)
    }
}

/// A remaining time in OpenAI's `x-ratelimit-reset-*` form, Go `time.Duration` style for
/// whole seconds: `45s`, `6m0s`, `1h0m0s`, `26h3m4s`. Rounded up to whole seconds so a
/// client waiting that long finds the window reset; 0 or negative gives `0s`.
pub fn format_openai_reset(nanos_remaining: i64) -> String {
    let mut out = Vec::new();
    push_openai_reset(&mut out, nanos_remaining);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends [`format_openai_reset`]'s text to `out` as ASCII (no `core::fmt`: it runs per
/// response).
pub fn push_openai_reset(out: &mut Vec<u8>, nanos_remaining: i64) {
    let total = u64::try_from(ceil_secs(nanos_remaining)).unwrap_or(0);
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    if hours > 0 {
        push_u64(out, hours);
        out.push(b'h');
    }
    if hours > 0 || minutes > 0 {
        push_u64(out, minutes);
        out.push(b'm');
    }
    push_u64(out, seconds);
    out.push(b's');
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]
mod tests {
    use super::*;

    const NS: i64 = NANOS_PER_SEC;
    const H: i64 = 3600 * NS;
    const DAY: i64 = 24 * H;

    fn rule(duration: &str, aligned: bool, zone: &str) -> WindowRule {
        WindowRule::new(
            LimitDuration::parse(duration).unwrap(),
            aligned,
            Zone::parse(zone).unwrap(),
        )
        .unwrap()
    }

    /// A UTC instant.
    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
            .and_utc()
            .timestamp()
            * NS
    }

    fn w(start: i64, end: i64) -> Window {
        Window {
            start_nanos: start,
            end_nanos: end,
        }
    }

    fn aligned(duration: &str, zone: &str, now: i64) -> Window {
        rule(duration, true, zone).window_at(now).unwrap()
    }

    fn rolling(duration: &str, zone: &str, anchor: i64, now: i64) -> Window {
        rule(duration, false, zone)
            .rolling_window_at(anchor, now)
            .unwrap()
    }

    #[test]
    fn aligned_sub_day_durations_must_divide_a_day() {
        let new = |d: &str, aligned: bool| {
            WindowRule::new(LimitDuration::parse(d).unwrap(), aligned, Zone::Utc)
        };
        for ok in [
            "1s", "45s", "15m", "1h", "1h30m", "8h", "24h", "1d", "5d", "3w", "7M", "3Y",
        ] {
            assert!(new(ok, true).is_ok(), "{ok}");
        }
        for bad in ["7s", "7m", "1h7m", "5h", "25h", "48h", "9223372036s"] {
            let err = new(bad, true).unwrap_err();
            assert!(
                matches!(err, WindowError::AlignedDurationDoesNotDivideDay(_)),
                "{bad}"
            );
            assert!(err.to_string().contains("divide 24h"), "{err}");
            assert!(new(bad, false).is_ok(), "rolling {bad}");
        }
    }

    #[test]
    fn wrong_kind_of_call_is_an_error() {
        let a = rule("1d", true, "UTC");
        let r = rule("1d", false, "UTC");
        assert_eq!(r.window_at(0), Err(WindowError::NotCalendarAligned));
        assert_eq!(a.rolling_window_at(0, 0), Err(WindowError::NotRolling));
        let now = t(2026, 11, 28, 13, 0);
        assert_eq!(a.window(123, now), a.window_at(now));
        assert_eq!(r.window(123, now), r.rolling_window_at(123, now));
    }

    #[test]
    fn aligned_each_unit_in_utc() {
        let now = t(2026, 11, 28, 13, 47); // a Saturday
        let cases = [
            ("1s", now, now + NS),
            ("15m", t(2026, 11, 28, 13, 45), t(2026, 11, 28, 14, 0)),
            ("1h", t(2026, 11, 28, 13, 0), t(2026, 11, 28, 14, 0)),
            ("1h30m", t(2026, 11, 28, 13, 30), t(2026, 11, 28, 15, 0)),
            ("8h", t(2026, 11, 28, 8, 0), t(2026, 11, 28, 16, 0)),
            ("1d", t(2026, 11, 28, 0, 0), t(2026, 11, 29, 0, 0)),
            // Day 20785 since 1970 is odd: the pair started the day before.
            ("2d", t(2026, 11, 27, 0, 0), t(2026, 11, 29, 0, 0)),
            ("1w", t(2026, 11, 23, 0, 0), t(2026, 11, 30, 0, 0)),
            // Week 2969 since Monday 1969-12-29 is odd.
            ("2w", t(2026, 11, 16, 0, 0), t(2026, 11, 30, 0, 0)),
            ("1M", t(2026, 11, 1, 0, 0), t(2026, 12, 1, 0, 0)),
            ("3M", t(2026, 10, 1, 0, 0), t(2027, 1, 1, 0, 0)),
            ("1Y", t(2026, 1, 1, 0, 0), t(2027, 1, 1, 0, 0)),
            ("2Y", t(2026, 1, 1, 0, 0), t(2028, 1, 1, 0, 0)),
        ];
        for (d, start, end) in cases {
            assert_eq!(aligned(d, "UTC", now), w(start, end), "{d}");
        }
        // Boundaries belong to the window they start.
        let midnight = t(2026, 11, 29, 0, 0);
        assert_eq!(aligned("1d", "UTC", midnight).start_nanos, midnight);
        assert_eq!(aligned("1d", "UTC", midnight - 1).end_nanos, midnight);
    }

    #[test]
    fn never_is_one_window_from_first_use_without_an_end() {
        let anchor = t(2026, 11, 28, 13, 52);
        for now in [anchor, t(2126, 1, 1, 0, 0), i64::MAX - 1] {
            assert_eq!(rolling("never", "UTC", anchor, now), w(anchor, i64::MAX));
        }
        // Alignment means nothing without an end: the rule is rolling.
        let r = rule("never", true, "America/New_York");
        assert!(!r.calendar_aligned());
        assert_eq!(r.window(anchor, anchor + 1), Ok(w(anchor, i64::MAX)));
    }

    #[test]
    fn quarters_and_before_1970() {
        for (now, start, end) in [
            (
                t(2026, 2, 15, 0, 0),
                t(2026, 1, 1, 0, 0),
                t(2026, 4, 1, 0, 0),
            ),
            (
                t(2026, 4, 1, 0, 0),
                t(2026, 4, 1, 0, 0),
                t(2026, 7, 1, 0, 0),
            ),
            (
                t(2026, 9, 30, 23, 59),
                t(2026, 7, 1, 0, 0),
                t(2026, 10, 1, 0, 0),
            ),
            (
                t(1969, 12, 31, 0, 0),
                t(1969, 10, 1, 0, 0),
                t(1970, 1, 1, 0, 0),
            ),
            (
                t(1900, 3, 1, 0, 0),
                t(1900, 1, 1, 0, 0),
                t(1900, 4, 1, 0, 0),
            ),
        ] {
            assert_eq!(aligned("3M", "UTC", now), w(start, end));
        }
        // 1969-12-29 is week 0, so 2w windows before it pair up from there.
        assert_eq!(
            aligned("2w", "UTC", t(1969, 12, 28, 0, 0)),
            w(t(1969, 12, 15, 0, 0), t(1969, 12, 29, 0, 0))
        );
    }

    #[test]
    fn aligned_in_zones_without_dst() {
        // 00:00 +05:30 is 18:30 UTC the day before.
        assert_eq!(
            aligned("1d", "+05:30", t(2026, 11, 28, 20, 0)),
            w(t(2026, 11, 28, 18, 30), t(2026, 11, 29, 18, 30))
        );
        assert_eq!(
            aligned("1M", "-08:00", t(2026, 12, 1, 3, 0)),
            w(t(2026, 11, 1, 8, 0), t(2026, 12, 1, 8, 0))
        );
        assert_eq!(
            aligned("1h", "+05:30", t(2026, 11, 28, 20, 0)),
            w(t(2026, 11, 28, 19, 30), t(2026, 11, 28, 20, 30))
        );
    }

    #[test]
    fn new_york_days_across_dst() {
        let ny = "America/New_York";
        // Spring forward 2026-03-08: a 23-hour day.
        assert_eq!(
            aligned("1d", ny, t(2026, 3, 8, 12, 0)),
            w(t(2026, 3, 8, 5, 0), t(2026, 3, 9, 4, 0))
        );
        // Fall back 2026-11-01: a 25-hour day.
        assert_eq!(
            aligned("1d", ny, t(2026, 11, 1, 12, 0)),
            w(t(2026, 11, 1, 4, 0), t(2026, 11, 2, 5, 0))
        );
        // Month spanning both offsets: Nov 1 00:00 EDT .. Dec 1 00:00 EST.
        assert_eq!(
            aligned("1M", ny, t(2026, 11, 15, 0, 0)),
            w(t(2026, 11, 1, 4, 0), t(2026, 12, 1, 5, 0))
        );
    }

    #[test]
    fn new_york_hours_across_dst() {
        let ny = "America/New_York";
        // Spring: 01:00 EST (06:00Z), then 02:00 does not exist; 03:00 EDT is 07:00Z.
        assert_eq!(
            aligned("1h", ny, t(2026, 3, 8, 6, 30)),
            w(t(2026, 3, 8, 6, 0), t(2026, 3, 8, 7, 0))
        );
        assert_eq!(
            aligned("1h", ny, t(2026, 3, 8, 7, 0)),
            w(t(2026, 3, 8, 7, 0), t(2026, 3, 8, 8, 0))
        );
        // Fall: 01:00 EDT (05:00Z) is the earliest 01:00; the window runs to 02:00 EST (07:00Z),
        // through both passes of the repeated hour.
        for now in [t(2026, 11, 1, 5, 30), t(2026, 11, 1, 6, 30)] {
            assert_eq!(
                aligned("1h", ny, now),
                w(t(2026, 11, 1, 5, 0), t(2026, 11, 1, 7, 0))
            );
        }
        // Half hours in the repeated hour: 01:00 EDT, 01:30 EDT, then 02:00 EST.
        assert_eq!(
            aligned("30m", ny, t(2026, 11, 1, 6, 10)),
            w(t(2026, 11, 1, 5, 30), t(2026, 11, 1, 7, 0))
        );
        assert_eq!(
            aligned("30m", ny, t(2026, 11, 1, 5, 10)),
            w(t(2026, 11, 1, 5, 0), t(2026, 11, 1, 5, 30))
        );
        // Quarter hours in the spring gap collapse: 01:45 EST runs to 03:00 EDT.
        assert_eq!(
            aligned("15m", ny, t(2026, 3, 8, 6, 50)),
            w(t(2026, 3, 8, 6, 45), t(2026, 3, 8, 7, 0))
        );
    }

    #[test]
    fn berlin_across_dst() {
        let berlin = "Europe/Berlin";
        // Spring 2026-03-29 at 01:00Z: 02:00 CET becomes 03:00 CEST.
        assert_eq!(
            aligned("1d", berlin, t(2026, 3, 29, 12, 0)),
            w(t(2026, 3, 28, 23, 0), t(2026, 3, 29, 22, 0))
        );
        assert_eq!(
            aligned("1h", berlin, t(2026, 3, 29, 0, 30)),
            w(t(2026, 3, 29, 0, 0), t(2026, 3, 29, 1, 0))
        );
        assert_eq!(
            aligned("1h", berlin, t(2026, 3, 29, 1, 30)),
            w(t(2026, 3, 29, 1, 0), t(2026, 3, 29, 2, 0))
        );
        // Fall 2026-10-25 at 01:00Z: 03:00 CEST becomes 02:00 CET; 02:00 happens twice.
        assert_eq!(
            aligned("1d", berlin, t(2026, 10, 25, 12, 0)),
            w(t(2026, 10, 24, 22, 0), t(2026, 10, 25, 23, 0))
        );
        for now in [t(2026, 10, 25, 0, 30), t(2026, 10, 25, 1, 30)] {
            assert_eq!(
                aligned("1h", berlin, now),
                w(t(2026, 10, 25, 0, 0), t(2026, 10, 25, 2, 0))
            );
        }
    }

    #[test]
    fn weeks_and_day_pairs_follow_the_local_calendar() {
        // The Berlin week of Monday 2026-03-23 contains the spring change: 167 hours.
        assert_eq!(
            aligned("1w", "Europe/Berlin", t(2026, 3, 25, 12, 0)),
            w(t(2026, 3, 22, 23, 0), t(2026, 3, 29, 22, 0))
        );
        // 2026-11-01 is day 20758 since 1970 (even): New York's pair starts Nov 1 00:00 EDT and
        // ends Nov 3 00:00 EST, 49 hours later; Oct 31 belongs to the previous pair.
        assert_eq!(
            aligned("2d", "America/New_York", t(2026, 11, 2, 12, 0)),
            w(t(2026, 11, 1, 4, 0), t(2026, 11, 3, 5, 0))
        );
        assert_eq!(
            aligned("2d", "America/New_York", t(2026, 10, 31, 12, 0)).end_nanos,
            t(2026, 11, 1, 4, 0)
        );
        // Year boundaries are local too.
        assert_eq!(
            aligned("1Y", "America/New_York", t(2027, 1, 1, 2, 0)),
            w(t(2026, 1, 1, 5, 0), t(2027, 1, 1, 5, 0))
        );
    }

    #[test]
    fn rolling_each_unit() {
        let anchor = t(2026, 1, 31, 23, 30) + 7;
        for (d, now, start, end) in [
            (
                "45s",
                anchor + 100 * NS,
                anchor + 90 * NS,
                anchor + 135 * NS,
            ),
            (
                "5m",
                anchor + 11 * 60 * NS,
                anchor + 10 * 60 * NS,
                anchor + 15 * 60 * NS,
            ),
            ("2h", anchor + 5 * H, anchor + 4 * H, anchor + 6 * H),
            ("3d", anchor + 7 * DAY, anchor + 6 * DAY, anchor + 9 * DAY),
            ("1w", anchor + 8 * DAY, anchor + 7 * DAY, anchor + 14 * DAY),
            (
                "1M",
                t(2026, 3, 15, 0, 0),
                t(2026, 2, 28, 23, 30) + 7,
                t(2026, 3, 31, 23, 30) + 7,
            ),
            (
                "2Y",
                t(2029, 1, 1, 0, 0),
                t(2028, 1, 31, 23, 30) + 7,
                t(2030, 1, 31, 23, 30) + 7,
            ),
        ] {
            assert_eq!(rolling(d, "UTC", anchor, now), w(start, end), "{d}");
        }
    }

    #[test]
    fn midnight_inside_a_gap_starts_the_day_after_the_gap() {
        // Sao Paulo 2018-11-04: 00:00 -03 jumped to 01:00 -02 (03:00Z).
        let sp = "America/Sao_Paulo";
        assert_eq!(
            aligned("1d", sp, t(2018, 11, 4, 12, 0)),
            w(t(2018, 11, 4, 3, 0), t(2018, 11, 5, 2, 0))
        );
        assert_eq!(
            aligned("1d", sp, t(2018, 11, 4, 2, 59)),
            w(t(2018, 11, 3, 3, 0), t(2018, 11, 4, 3, 0))
        );
        // Samoa skipped 2011-12-30 entirely: the 29th's window runs into the 31st.
        let apia = "Pacific/Apia";
        let day29 = aligned("1d", apia, t(2011, 12, 30, 9, 0));
        assert_eq!(day29.end_nanos - day29.start_nanos, DAY);
        assert_eq!(
            aligned("1d", apia, day29.end_nanos).start_nanos,
            day29.end_nanos
        );
    }

    #[test]
    fn rolling_fixed_lengths() {
        let anchor = t(2026, 3, 7, 10, 17) + 123;
        assert_eq!(
            rolling("1h", "UTC", anchor, anchor + 2 * H + H / 2),
            w(anchor + 2 * H, anchor + 3 * H)
        );
        assert_eq!(rolling("1h", "UTC", anchor, anchor), w(anchor, anchor + H));
        assert_eq!(
            rolling("1h", "UTC", anchor, anchor + H),
            w(anchor + H, anchor + 2 * H)
        );
        // Before the anchor: the first window.
        assert_eq!(
            rolling("1h", "UTC", anchor, anchor - 5 * H),
            w(anchor, anchor + H)
        );
        assert_eq!(
            rolling("1h30m", "UTC", anchor, anchor + 4 * H),
            w(anchor + 3 * H, anchor + 4 * H + H / 2)
        );
        // Days and weeks are 24h and 7x24h even across New York's spring forward.
        assert_eq!(
            rolling("1d", "America/New_York", anchor, anchor + DAY + 1),
            w(anchor + DAY, anchor + 2 * DAY)
        );
        assert_eq!(
            rolling("2w", "America/New_York", anchor, anchor + 15 * DAY),
            w(anchor + 14 * DAY, anchor + 28 * DAY)
        );
        assert_eq!(
            rolling("7m", "UTC", 0, 7 * 60 * NS * 3 + 1).start_nanos,
            7 * 60 * NS * 3
        );
    }

    #[test]
    fn rolling_months_clamp_from_the_anchor() {
        // 2024 is a leap year.
        let anchor = t(2024, 1, 31, 10, 0);
        assert_eq!(
            rolling("1M", "UTC", anchor, t(2024, 2, 15, 0, 0)),
            w(anchor, t(2024, 2, 29, 10, 0))
        );
        // Not chained: the window after Feb 29 ends on Mar 31, not Mar 29.
        assert_eq!(
            rolling("1M", "UTC", anchor, t(2024, 3, 1, 0, 0)),
            w(t(2024, 2, 29, 10, 0), t(2024, 3, 31, 10, 0))
        );
        assert_eq!(
            rolling("1M", "UTC", anchor, t(2024, 4, 30, 10, 0)),
            w(t(2024, 4, 30, 10, 0), t(2024, 5, 31, 10, 0))
        );
        // Non-leap year.
        assert_eq!(
            rolling("1M", "UTC", t(2025, 1, 31, 0, 0), t(2025, 2, 1, 0, 0)),
            w(t(2025, 1, 31, 0, 0), t(2025, 2, 28, 0, 0))
        );
        assert_eq!(
            rolling("2M", "UTC", anchor, t(2024, 4, 1, 0, 0)),
            w(t(2024, 3, 31, 10, 0), t(2024, 5, 31, 10, 0))
        );
        assert_eq!(
            rolling("3M", "UTC", t(2025, 11, 30, 0, 0), t(2026, 2, 28, 12, 0)),
            w(t(2026, 2, 28, 0, 0), t(2026, 5, 30, 0, 0))
        );
        // Years from Feb 29: Feb 28 in common years, Feb 29 again in 2028.
        let leap = t(2024, 2, 29, 6, 0);
        assert_eq!(
            rolling("1Y", "UTC", leap, t(2025, 6, 1, 0, 0)),
            w(t(2025, 2, 28, 6, 0), t(2026, 2, 28, 6, 0))
        );
        assert_eq!(
            rolling("1Y", "UTC", leap, t(2028, 3, 1, 0, 0)),
            w(t(2028, 2, 29, 6, 0), t(2029, 2, 28, 6, 0))
        );
        // Before the anchor: the first window.
        assert_eq!(
            rolling("1M", "UTC", anchor, t(2020, 1, 1, 0, 0)),
            w(anchor, t(2024, 2, 29, 10, 0))
        );
    }

    #[test]
    fn rolling_months_keep_local_time_of_day() {
        let ny = "America/New_York";
        // Feb 15 12:00 EST (17:00Z) + 1M = Mar 15 12:00 EDT (16:00Z).
        let anchor = t(2026, 2, 15, 17, 0);
        assert_eq!(
            rolling("1M", ny, anchor, anchor + DAY),
            w(anchor, t(2026, 3, 15, 16, 0))
        );
        // Feb 8 02:30 EST + 1M = Mar 8 02:30, inside the gap: the first instant after it.
        let anchor = t(2026, 2, 8, 7, 30);
        assert_eq!(
            rolling("1M", ny, anchor, anchor + DAY),
            w(anchor, t(2026, 3, 8, 7, 0))
        );
        // Oct 1 01:30 EDT + 1M = Nov 1 01:30, which happens twice: the earliest (05:30Z).
        let anchor = t(2026, 10, 1, 5, 30);
        assert_eq!(
            rolling("1M", ny, anchor, anchor + DAY),
            w(anchor, t(2026, 11, 1, 5, 30))
        );
    }

    #[test]
    fn a_stored_window_is_current_until_its_end() {
        let r = rule("1d", true, "UTC");
        let stored = r.window_at(t(2026, 11, 28, 1, 0)).unwrap();
        assert!(stored.contains(t(2026, 11, 28, 23, 59)));
        assert!(!stored.contains(t(2026, 11, 29, 0, 0)));
        assert!(!stored.contains(t(2026, 11, 27, 23, 59)));
        assert_eq!(stored.remaining_nanos(t(2026, 11, 28, 23, 59)), 60 * NS);
        assert_eq!(stored.retry_after_secs(t(2026, 11, 28, 23, 59) + 1), 60);
        assert_eq!(stored.retry_after_secs(t(2026, 11, 30, 0, 0)), 0);
        assert_eq!(stored.remaining_nanos(i64::MIN), i64::MAX);
    }

    #[test]
    fn extreme_instants_never_panic() {
        let instants = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        let durations = [
            "1s",
            "1h30m",
            "1d",
            "2d",
            "1w",
            "2w",
            "1M",
            "3M",
            "1Y",
            "2Y",
            "9223372036s",
            "106751d",
            "15250w",
            "4294967295M",
            "357913941Y",
        ];
        for zone in [
            "UTC",
            "+14:00",
            "-12:00",
            "America/New_York",
            "Pacific/Apia",
        ] {
            for d in durations {
                let duration = LimitDuration::parse(d).unwrap();
                let zone = Zone::parse(zone).unwrap();
                let rules = [
                    WindowRule::new(duration, true, zone),
                    WindowRule::new(duration, false, zone),
                ];
                for r in rules.into_iter().flatten() {
                    for now in instants {
                        for anchor in instants {
                            if let Ok(win) = r.window(anchor, now) {
                                assert!(win.start_nanos < win.end_nanos, "{d} {now}");
                                if r.calendar_aligned() || now >= anchor {
                                    assert!(win.contains(now), "{d} {anchor} {now} {win:?}");
                                }
                            } else {
                                // Only the very last instant has no window after it.
                                let last = i64::MAX;
                                assert!(
                                    now == last || (!r.calendar_aligned() && anchor == last),
                                    "{d} {anchor} {now}"
                                );
                            }
                        }
                    }
                }
            }
        }
        // Saturation: a yearly window around the last representable instant.
        let near_end = rule("1Y", true, "UTC").window_at(i64::MAX - 1).unwrap();
        assert_eq!(near_end.end_nanos, i64::MAX);
        let near_start = rule("1Y", true, "UTC").window_at(i64::MIN).unwrap();
        assert_eq!(near_start.start_nanos, i64::MIN);
    }

    #[test]
    fn openai_reset_format() {
        for (nanos, text) in [
            (i64::MIN, "0s"),
            (-5, "0s"),
            (0, "0s"),
            (1, "1s"),
            (NS, "1s"),
            (NS + 1, "2s"),
            (45 * NS, "45s"),
            (59 * NS + 1, "1m0s"),
            (360 * NS, "6m0s"),
            (3600 * NS, "1h0m0s"),
            (3661 * NS, "1h1m1s"),
            ((26 * 3600 + 3 * 60 + 4) * NS, "26h3m4s"),
            (i64::MAX, "2562047h47m17s"),
        ] {
            assert_eq!(format_openai_reset(nanos), text, "{nanos}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]
mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    const NS: i64 = NANOS_PER_SEC;
    const H: i64 = 3600 * NS;
    const DAY: i64 = 24 * H;

    const ZONES: &[&str] = &[
        "UTC",
        "+05:30",
        "-08:00",
        "America/New_York",
        "Europe/Berlin",
        "America/Sao_Paulo",   // DST began at midnight
        "Australia/Lord_Howe", // 30-minute DST
        "Pacific/Apia",        // skipped a whole day
    ];
    const ALIGNED: &[&str] = &[
        "1s", "45s", "15m", "1h", "1h30m", "8h", "24h", "1d", "2d", "3d", "1w", "2w", "1M", "3M",
        "5M", "1Y", "2Y",
    ];
    const ROLLING: &[&str] = &[
        "1s", "7m", "1h", "1h30m", "25h", "1d", "2d", "1w", "2w", "1M", "2M", "3M", "1Y", "2Y",
    ];
    /// Instants (UTC) near daylight-saving transitions of the zones above.
    const TRANSITIONS: &[i64] = &[
        1_772_953_200 * NS, // 2026-03-08 07:00Z New York spring
        1_793_512_800 * NS, // 2026-11-01 06:00Z New York fall
        1_774_746_000 * NS, // 2026-03-29 01:00Z Berlin spring
        1_792_890_000 * NS, // 2026-10-25 01:00Z Berlin fall
        1_541_300_400 * NS, // 2018-11-04 03:00Z Sao Paulo spring
        1_325_239_200 * NS, // 2011-12-30 10:00Z Apia skipped day
        1_775_314_800 * NS, // 2026-04-04 15:00Z Lord Howe fall
        1_791_041_400 * NS, // 2026-10-03 15:30Z Lord Howe spring
    ];

    fn instant() -> impl Strategy<Value = i64> {
        let year_1900 = -2_208_988_800 * NS;
        let year_2200 = 7_258_118_400 * NS;
        prop_oneof![
            year_1900..year_2200,
            (select(TRANSITIONS), -3 * H..3 * H).prop_map(|(t, d)| t + d),
            (select(TRANSITIONS), -3 * DAY..3 * DAY).prop_map(|(t, d)| t + d),
            // Whole minutes near transitions: boundaries themselves.
            (select(TRANSITIONS), -180i64..180).prop_map(|(t, m)| t + m * 60 * NS),
        ]
    }

    fn rule(duration: &str, aligned: bool, zone: &str) -> WindowRule {
        WindowRule::new(
            LimitDuration::parse(duration).unwrap(),
            aligned,
            Zone::parse(zone).unwrap(),
        )
        .unwrap()
    }

    fn check_partition(
        window_of: impl Fn(i64) -> Window,
        first_start: i64,
        now: i64,
        later: i64,
    ) -> Result<(), TestCaseError> {
        let win = window_of(now);
        prop_assert!(win.start_nanos < win.end_nanos, "empty {win:?}");
        prop_assert!(win.contains(now), "{win:?} misses {now}");
        if win.end_nanos < i64::MAX {
            let next = window_of(win.end_nanos);
            prop_assert_eq!(next.start_nanos, win.end_nanos, "gap after {:?}", win);
        }
        if win.start_nanos > first_start {
            let prev = window_of(win.start_nanos - 1);
            prop_assert_eq!(prev.end_nanos, win.start_nanos, "gap before {:?}", win);
        }
        let then = window_of(later);
        prop_assert!(
            then.start_nanos >= win.start_nanos,
            "{then:?} before {win:?}"
        );
        prop_assert!(then.end_nanos >= win.end_nanos, "{then:?} before {win:?}");
        if later < win.end_nanos {
            prop_assert_eq!(then, win);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn aligned_windows_partition_time(
            duration in select(ALIGNED),
            zone in select(ZONES),
            now in instant(),
            step in prop_oneof![0..2 * H, 0..400 * DAY],
        ) {
            let r = rule(duration, true, zone);
            check_partition(|t| r.window_at(t).unwrap(), i64::MIN, now, now + step)?;
        }

        #[test]
        fn rolling_windows_partition_time_from_the_anchor(
            duration in select(ROLLING),
            zone in select(ZONES),
            anchor in instant(),
            offset in prop_oneof![0..3 * DAY, 0..3650 * DAY],
            step in prop_oneof![0..2 * H, 0..400 * DAY],
        ) {
            let r = rule(duration, false, zone);
            let now = anchor + offset;
            check_partition(|t| r.rolling_window_at(anchor, t).unwrap(), anchor, now, now + step)?;
            let first = r.rolling_window_at(anchor, anchor).unwrap();
            prop_assert_eq!(first.start_nanos, anchor);
            prop_assert_eq!(r.rolling_window_at(anchor, anchor - 1 - offset).unwrap(), first);
        }

        #[test]
        fn aligned_day_windows_start_at_local_midnight_or_a_gap_end(
            zone in select(ZONES),
            now in instant(),
        ) {
            let r = rule("1d", true, zone);
            let z = r.zone();
            let win = r.window_at(now).unwrap();
            let start = z.local_datetime(win.start_nanos);
            let before = z.local_datetime(win.start_nanos - 1);
            // Either the start is local midnight, or midnight fell in a gap just before it.
            let midnight = start.time() == chrono::NaiveTime::MIN;
            prop_assert!(midnight || before.date() < start.date(), "{start} {before}");
        }

        #[test]
        fn rolling_fixed_windows_have_the_exact_length(
            duration in select(&["1s", "7m", "1h30m", "25h", "1d", "2w"][..]),
            anchor in instant(),
            offset in 0..3650 * DAY,
        ) {
            let r = rule(duration, false, "America/New_York");
            let win = r.rolling_window_at(anchor, anchor + offset).unwrap();
            let d = r.duration().fixed_nanos().unwrap();
            prop_assert_eq!(win.end_nanos - win.start_nanos, d);
            prop_assert_eq!((win.start_nanos - anchor) % d, 0);
        }

        #[test]
        fn openai_reset_rounds_up_to_whole_seconds(nanos in any::<i64>()) {
            let text = format_openai_reset(nanos);
            let mut total = 0i64;
            let mut number = 0i64;
            for c in text.chars() {
                match c {
                    '0'..='9' => number = number * 10 + i64::from(c.to_digit(10).unwrap()),
                    'h' => { total += number * 3600; number = 0; }
                    'm' => { total += number * 60; number = 0; }
                    's' => { total += number; number = 0; }
                    _ => prop_assert!(false, "{text}"),
                }
            }
            let want = if nanos <= 0 { 0 } else { (nanos - 1) / NS + 1 };
            prop_assert_eq!(total, want, "{}", text);
        }
    }
}
