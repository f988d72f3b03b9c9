//! Admission against counters (SPEC.md §3 steps 4 to 6): request slots, token limits and
//! budgets of every level, in that order.
//!
//! A request slot is taken atomically (check and increment in one CAS), so under any
//! concurrency exactly `request_max_limit` requests are admitted per window. Token limits and
//! budgets are checked against usage charged so far: admitted while used < max. A request
//! refused at any step gives back the slots it took, so it leaves every counter as it was.

use chrono::{DateTime, SecondsFormat};

use crate::config::{Limit, LimitId, LimitKind, Policy};
use crate::counter::{Change, CounterError, Counters, Record, Updated};
use crate::money::Money;
use crate::rejection::{Rejection, RejectionKind};

/// A request slot taken in a counter's window; released if the request is refused later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub limit: LimitId,
    pub window_start: i64,
}

/// A counter as admission saw it (after this request's slot), for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub limit: LimitId,
    pub record: Record,
}

/// What admission has done for a request so far.
#[derive(Debug, Default, Clone)]
pub struct Admission {
    pub slots: Vec<Slot>,
    pub seen: Vec<Seen>,
    /// The token limits and budgets to charge when the response ends.
    pub chargeable: Vec<LimitId>,
}

/// Whether the first refusal ends the check (enforce) or all levels are evaluated (shadow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    StopAtFirst,
    All,
}

/// Checks `limits` (given in level order: provider config, key, team, customer) at `now`.
/// Returns the refusals (at most one with [`Evaluation::StopAtFirst`], in which case the
/// slots this call took are already given back).
pub fn check(
    policy: &Policy,
    counters: &mut Counters<'_>,
    now: i64,
    limits: &[LimitId],
    evaluation: Evaluation,
    admission: &mut Admission,
) -> Result<Vec<Rejection>, CounterError> {
    let first_new_slot = admission.slots.len();
    let mut refusals = Vec::new();
    for kind in [LimitKind::Requests, LimitKind::Tokens, LimitKind::Budget] {
        for &id in limits {
            let Some(limit) = policy.limits.get(id) else {
                continue;
            };
            if limit.kind != kind {
                continue;
            }
            let (record, refused) = match kind {
                LimitKind::Requests => {
                    let taken = take_slot(counters, limit, now)?;
                    (taken.record, !taken.written)
                }
                LimitKind::Tokens | LimitKind::Budget => {
                    admission.chargeable.push(id);
                    let record = counters.read_or_start(limit, now)?;
                    (record, record.used >= limit.max)
                }
            };
            if kind == LimitKind::Requests && !refused {
                admission.slots.push(Slot {
                    limit: id,
                    window_start: record.window_start,
                });
            }
            admission.seen.push(Seen { limit: id, record });
            if refused {
                refusals.push(refusal(limit, &record, now));
                if evaluation == Evaluation::StopAtFirst {
                    let taken = admission.slots.split_off(first_new_slot);
                    release(policy, counters, now, &taken)?;
                    return Ok(refusals);
                }
            }
        }
    }
    Ok(refusals)
}

/// Takes one request slot if the window has room; `written` says whether it was taken.
/// The record is the counter after the increment (or as found, when refused).
fn take_slot(
    counters: &mut Counters<'_>,
    limit: &Limit,
    now: i64,
) -> Result<Updated<()>, CounterError> {
    counters.update(limit, now, |record| {
        if record.used >= limit.max {
            Change::Keep(())
        } else {
            record.used = record.used.saturating_add(1);
            Change::Write(())
        }
    })
}

/// Gives back request slots, each only in the window it was taken in: after a rollover the
/// new window never contained it.
pub fn release(
    policy: &Policy,
    counters: &mut Counters<'_>,
    now: i64,
    slots: &[Slot],
) -> Result<(), CounterError> {
    for slot in slots {
        let Some(limit) = policy.limits.get(slot.limit) else {
            continue;
        };
        counters.update(limit, now, |record| {
            if record.window_start == slot.window_start && record.used > 0 {
                record.used = record.used.saturating_sub(1);
                Change::Write(())
            } else {
                Change::Keep(())
            }
        })?;
    }
    Ok(())
}

fn refusal(limit: &Limit, record: &Record, now: i64) -> Rejection {
    let (kind, what) = match limit.kind {
        LimitKind::Requests => (RejectionKind::RequestLimited, "request limit"),
        LimitKind::Tokens => (RejectionKind::TokenLimited, "token limit"),
        LimitKind::Budget => (RejectionKind::BudgetExceeded, "budget"),
    };
    let amounts = match limit.kind {
        LimitKind::Budget => format!(
            "{} of {} USD used",
            Money::from_femto(record.used).four_decimals(),
            limit.max_money().four_decimals()
        ),
        LimitKind::Requests => format!("{} of {} requests used", record.used, limit.max),
        LimitKind::Tokens => format!("{} of {} tokens used", record.used, limit.max),
    };
    let message = format!(
        "{} '{}' {what} exceeded: {amounts}, resets {}",
        limit.owner_kind.label(),
        limit.owner_id,
        rfc3339(record.window_end)
    );
    Rejection {
        kind,
        message,
        retry_after_secs: Some(seconds_until(now, record.window_end)),
    }
}

/// Whole seconds from `now` to `end`, rounded up; 0 if `end` has passed.
pub fn seconds_until(now: i64, end: i64) -> u64 {
    let nanos = i128::from(end).saturating_sub(i128::from(now)).max(0);
    let secs = nanos.saturating_add(999_999_999) / 1_000_000_000;
    u64::try_from(secs).unwrap_or(u64::MAX)
}

/// RFC 3339 in UTC with whole seconds, e.g. `2026-12-01T05:00:00Z`.
pub fn rfc3339(nanos: i64) -> String {
    DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Secs, true)
}
