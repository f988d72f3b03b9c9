//! The rule a zone follows after the last offset change its table lists: a POSIX TZ string
//! (the footer of a TZif file), either one fixed offset or standard and daylight time
//! alternating on two dates every year.
//!
//! Offsets are seconds east of UTC, instants seconds since the Unix epoch.

use chrono::{Datelike, Days, NaiveDate, NaiveTime, Weekday};

/// `Mm.w.d` weekdays are numbered from Sunday.
const WEEKDAYS_FROM_SUNDAY: [Weekday; 7] = [
    Weekday::Sun,
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
];

/// A zone's rule once its listed transitions are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// One offset for ever.
    Fixed(i32),
    /// Standard and daylight time alternating every year.
    Alternate(Alternate),
}

/// `std` from `end` to `start`, `dst` from `start` to `end`, each year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternate {
    pub std: i32,
    pub dst: i32,
    /// The day daylight time starts, at `start_time` seconds after that day's midnight in
    /// standard time (POSIX allows -167 h to 167 h).
    pub start: RuleDay,
    pub start_time: i32,
    /// The day daylight time ends, at `end_time` seconds after its midnight in daylight time.
    pub end: RuleDay,
    pub end_time: i32,
}

/// A day of the year in the three forms POSIX TZ strings use.
#[allow(
    dead_code,
    reason = "build.rs emits whichever forms the tz database release uses"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleDay {
    /// `Jn`: day 1..=365, February 29 never counted (day 60 is always March 1).
    JulianSkippingLeapDay(u16),
    /// `n`: day 0..=365 counting February 29 (365 in a common year is January 1 after it).
    DayOfYear(u16),
    /// `Mm.w.d`: weekday `weekday` (0 = Sunday) of week `week` of month `month`; week 5 is
    /// the last such weekday of the month.
    Weekday { month: u8, week: u8, weekday: u8 },
}

impl Rule {
    /// The offset in effect at instant `t`.
    pub fn offset_at(&self, t: i64) -> i32 {
        let alternate = match self {
            Rule::Fixed(offset) => return *offset,
            Rule::Alternate(alternate) => alternate,
        };
        let Some(year) = chrono::DateTime::from_timestamp(t, 0).map(|utc| utc.year()) else {
            return alternate.std;
        };
        // A year's changes can stray into the next (times up to 167 h), so the last change
        // at or before `t` is looked for over three years.
        let mut offset = None;
        self.for_each_change(year.saturating_sub(1), year.saturating_add(1), |at, to| {
            if at <= t {
                offset = Some(to);
            }
        });
        offset.unwrap_or(alternate.std)
    }

    /// Calls `change(at, offset)` for each change of years `first..=last`, in order of time.
    /// Where one year's end meets the next year's start at the same instant (daylight time
    /// all year), the later change comes last, so it is the one that holds.
    pub fn for_each_change(&self, first: i32, last: i32, mut change: impl FnMut(i64, i32)) {
        let Rule::Alternate(alternate) = self else {
            return;
        };
        for year in first..=last {
            let start = alternate.start_instant(year);
            let end = alternate.end_instant(year);
            match (start, end) {
                (Some(start), Some(end)) if end < start => {
                    change(end, alternate.std);
                    change(start, alternate.dst);
                }
                (Some(start), Some(end)) => {
                    change(start, alternate.dst);
                    change(end, alternate.std);
                }
                // Only beyond chrono's dates.
                _ => {}
            }
        }
    }
}

impl Alternate {
    fn start_instant(&self, year: i32) -> Option<i64> {
        self.start
            .midnight(year)?
            .checked_add(i64::from(self.start_time))?
            .checked_sub(i64::from(self.std))
    }

    fn end_instant(&self, year: i32) -> Option<i64> {
        self.end
            .midnight(year)?
            .checked_add(i64::from(self.end_time))?
            .checked_sub(i64::from(self.dst))
    }
}

impl RuleDay {
    /// Local midnight starting this day in `year`, as seconds of naive local time.
    fn midnight(&self, year: i32) -> Option<i64> {
        let january_1 = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let date = match *self {
            RuleDay::JulianSkippingLeapDay(day) => {
                let mut days = u64::from(day).checked_sub(1)?;
                if day >= 60 && january_1.leap_year() {
                    days = days.checked_add(1)?;
                }
                january_1.checked_add_days(Days::new(days))?
            }
            RuleDay::DayOfYear(day) => january_1.checked_add_days(Days::new(u64::from(day)))?,
            RuleDay::Weekday {
                month,
                week,
                weekday,
            } => {
                let weekday = *WEEKDAYS_FROM_SUNDAY.get(usize::from(weekday))?;
                let month = u32::from(month);
                NaiveDate::from_weekday_of_month_opt(year, month, weekday, week).or_else(|| {
                    // Week 5 means the last: the fourth when the month has no fifth.
                    NaiveDate::from_weekday_of_month_opt(year, month, weekday, week.checked_sub(1)?)
                })?
            }
        };
        Some(date.and_time(NaiveTime::MIN).and_utc().timestamp())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn changes(rule: &Rule, year: i32) -> Vec<(i64, i32)> {
        let mut out = Vec::new();
        rule.for_each_change(year, year, |at, offset| out.push((at, offset)));
        out
    }

    /// `EST5EDT,M3.2.0,M11.1.0`
    const NEW_YORK: Rule = Rule::Alternate(Alternate {
        std: -5 * 3600,
        dst: -4 * 3600,
        start: RuleDay::Weekday {
            month: 3,
            week: 2,
            weekday: 0,
        },
        start_time: 7200,
        end: RuleDay::Weekday {
            month: 11,
            week: 1,
            weekday: 0,
        },
        end_time: 7200,
    });

    #[test]
    fn month_week_day_rules() {
        // Second Sunday of March 02:00 EST, first Sunday of November 02:00 EDT.
        assert_eq!(
            changes(&NEW_YORK, 2026),
            vec![
                (at(2026, 3, 8, 7, 0), -4 * 3600),
                (at(2026, 11, 1, 6, 0), -5 * 3600)
            ]
        );
        assert_eq!(NEW_YORK.offset_at(at(2026, 3, 8, 6, 59)), -5 * 3600);
        assert_eq!(NEW_YORK.offset_at(at(2026, 3, 8, 7, 0)), -4 * 3600);
        assert_eq!(NEW_YORK.offset_at(at(2026, 11, 1, 6, 0)), -5 * 3600);
        // Week 5 is the last: Europe's last Sunday of March 2026 is the 29th, of 2027 the 28th.
        let europe = Rule::Alternate(Alternate {
            std: 3600,
            dst: 7200,
            start: RuleDay::Weekday {
                month: 3,
                week: 5,
                weekday: 0,
            },
            start_time: 7200,
            end: RuleDay::Weekday {
                month: 10,
                week: 5,
                weekday: 0,
            },
            end_time: 3 * 3600,
        });
        assert_eq!(changes(&europe, 2026)[0].0, at(2026, 3, 29, 1, 0));
        assert_eq!(changes(&europe, 2027)[0].0, at(2027, 3, 28, 1, 0));
        assert_eq!(changes(&europe, 2026)[1].0, at(2026, 10, 25, 1, 0));
    }

    #[test]
    fn southern_rules_change_in_order_of_time() {
        // `AEST-10AEDT,M10.1.0,M4.1.0/3`: daylight time ends in April, starts in October.
        let sydney = Rule::Alternate(Alternate {
            std: 10 * 3600,
            dst: 11 * 3600,
            start: RuleDay::Weekday {
                month: 10,
                week: 1,
                weekday: 0,
            },
            start_time: 7200,
            end: RuleDay::Weekday {
                month: 4,
                week: 1,
                weekday: 0,
            },
            end_time: 3 * 3600,
        });
        assert_eq!(
            changes(&sydney, 2026),
            vec![
                (at(2026, 4, 4, 16, 0), 10 * 3600),
                (at(2026, 10, 3, 16, 0), 11 * 3600)
            ]
        );
        assert_eq!(sydney.offset_at(at(2026, 1, 1, 0, 0)), 11 * 3600);
        assert_eq!(sydney.offset_at(at(2026, 6, 1, 0, 0)), 10 * 3600);
        assert_eq!(sydney.offset_at(at(2026, 12, 31, 23, 0)), 11 * 3600);
    }

    #[test]
    fn julian_days_and_hours_beyond_a_day() {
        // J60 is March 1 in every year; day 59 counting from 0 is February 29 in leap years.
        let j60 = RuleDay::JulianSkippingLeapDay(60);
        assert_eq!(j60.midnight(2024), Some(at(2024, 3, 1, 0, 0)));
        assert_eq!(j60.midnight(2025), Some(at(2025, 3, 1, 0, 0)));
        assert_eq!(
            RuleDay::DayOfYear(59).midnight(2024),
            Some(at(2024, 2, 29, 0, 0))
        );
        assert_eq!(
            RuleDay::DayOfYear(365).midnight(2025),
            Some(at(2026, 1, 1, 0, 0))
        );
        // `IST-2IDT,M3.4.4/26,M10.5.0`: Thursday of the fourth week at 26:00, i.e. Friday 02:00.
        let jerusalem = Rule::Alternate(Alternate {
            std: 2 * 3600,
            dst: 3 * 3600,
            start: RuleDay::Weekday {
                month: 3,
                week: 4,
                weekday: 4,
            },
            start_time: 26 * 3600,
            end: RuleDay::Weekday {
                month: 10,
                week: 5,
                weekday: 0,
            },
            end_time: 7200,
        });
        assert_eq!(
            changes(&jerusalem, 2026)[0],
            (at(2026, 3, 27, 0, 0), 3 * 3600)
        );
    }

    #[test]
    fn daylight_time_all_year() {
        // `EST5EDT,0/0,J365/25`: daylight time from January 1 00:00 EST to December 31
        // 25:00 EDT, which is the next year's start: EDT at every instant.
        let always = Rule::Alternate(Alternate {
            std: -5 * 3600,
            dst: -4 * 3600,
            start: RuleDay::DayOfYear(0),
            start_time: 0,
            end: RuleDay::JulianSkippingLeapDay(365),
            end_time: 25 * 3600,
        });
        for t in [
            at(2026, 1, 1, 5, 0),
            at(2026, 1, 1, 4, 59),
            at(2026, 7, 1, 0, 0),
            at(2026, 12, 31, 23, 59),
            at(2027, 1, 1, 5, 0),
        ] {
            assert_eq!(always.offset_at(t), -4 * 3600, "{t}");
        }
    }

    #[test]
    fn out_of_range_instants_fall_back_to_standard_time() {
        assert_eq!(NEW_YORK.offset_at(i64::MAX), -5 * 3600);
        assert_eq!(NEW_YORK.offset_at(i64::MIN), -5 * 3600);
        assert_eq!(Rule::Fixed(3600).offset_at(i64::MIN), 3600);
        let mut none = true;
        Rule::Fixed(0).for_each_change(2000, 2100, |_, _| none = false);
        assert!(none);
    }
}
