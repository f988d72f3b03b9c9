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
    /// every rolling duration are always valid.
    pub fn new(
        duration: LimitDuration,
        calendar_aligned: bool,
        zone: Zone,
    ) -> Result<Self, WindowError> {
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
    let total = ceil_secs(nanos_remaining);
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}
