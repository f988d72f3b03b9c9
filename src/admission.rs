//! Admission against counters (docs/clients.md, order of checks): request slots, token
//! limits and budgets of every level, in that order.
//!
//! A request slot is taken atomically (check and increment in one CAS), so under any
//! concurrency exactly `request_max_limit` requests are admitted per window. Token limits and
//! budgets are checked against usage charged so far plus what requests in flight reserved:
//! admitted while used + reserved < max. With reservations (docs/reservations.md), [`reserve`] then
//! holds the request's estimate on each of them, checking `used + reserved + estimate <= max`
//! and adding the estimate in the same CAS. A request refused at any step gives back the
//! slots and reservations it took, and the window starts its writes opened, so it leaves
//! every counter as it was. Token limits and budgets that were never used are only read
//! here; [`start_unused`] opens their windows once the admission stands.

use chrono::{DateTime, Datelike, Timelike};

use crate::config::{Limit, LimitId, LimitKind, Policy};
use crate::counter::{Change, CounterError, Counters, FirstUse, Record, Updated};
use crate::estimate::Estimate;
use crate::money::Money;
use crate::rejection::{Rejection, RejectionKind};
use crate::response_headers::{limit_headers, Quota};

/// A request slot taken in a counter's window; released if the request is refused later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub limit: LimitId,
    /// When it was taken: it counts in the window that holds this instant.
    pub taken_at: i64,
    /// What taking it did to the counter's first use (undone with it).
    pub first_use: FirstUse,
}

/// An estimate held on a token limit or budget in a counter's window, until the request
/// settles or is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub limit: LimitId,
    /// When it was taken: it counts in the window that holds this instant.
    pub taken_at: i64,
    pub amount: u128,
    /// What holding it did to the counter's first use (undone with it).
    pub first_use: FirstUse,
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
    /// Reservations this request holds (docs/reservations.md).
    pub held: Vec<Held>,
    /// Token limits and budgets never used when they were checked (at `.1`): their windows
    /// open when the admission stands ([`start_unused`]).
    pub unused: Vec<(LimitId, i64)>,
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
                    if taken.written {
                        admission.slots.push(Slot {
                            limit: id,
                            taken_at: now,
                            first_use: taken.first_use,
                        });
                    }
                    (taken.record, !taken.written)
                }
                LimitKind::Tokens | LimitKind::Budget => {
                    admission.chargeable.push(id);
                    let (record, used_before) = counters.peek(limit, now)?;
                    if !used_before {
                        admission.unused.push((id, now));
                    }
                    (record, committed(&record) >= limit.max)
                }
            };
            admission.seen.push(Seen { limit: id, record });
            if refused {
                refusals.push(refusal(policy, limit, &record, now, None));
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

/// Holds `estimate` on every token limit and budget in `limits` (level order), token limits
/// first: each is admitted while `used + reserved + estimate <= max`, and the estimate is
/// added to `reserved` in the same CAS. Shadow ([`Evaluation::All`]) holds it everywhere and
/// reports the levels that would have refused. With [`Evaluation::StopAtFirst`] the first
/// refusal ends the call, after giving back what this call held.
pub fn reserve(
    policy: &Policy,
    counters: &mut Counters<'_>,
    now: i64,
    limits: &[LimitId],
    estimate: &Estimate,
    evaluation: Evaluation,
    admission: &mut Admission,
) -> Result<Vec<Rejection>, CounterError> {
    let first_new = admission.held.len();
    let mut refusals = Vec::new();
    for kind in [LimitKind::Tokens, LimitKind::Budget] {
        for &id in limits {
            let Some(limit) = policy.limits.get(id).filter(|l| l.kind == kind) else {
                continue;
            };
            let amount = estimate.amount(kind);
            let updated = counters.update(limit, now, |record| {
                let fits = committed(record).saturating_add(amount) <= limit.max;
                if amount == 0 || (!fits && evaluation == Evaluation::StopAtFirst) {
                    return Change::Keep(fits);
                }
                record.reserved = record.reserved.saturating_add(amount);
                Change::Write(fits)
            })?;
            if updated.written {
                admission.held.push(Held {
                    limit: id,
                    taken_at: now,
                    amount,
                    first_use: updated.first_use,
                });
            }
            match admission.seen.iter_mut().find(|s| s.limit == id) {
                Some(seen) => seen.record = updated.record,
                None => admission.seen.push(Seen {
                    limit: id,
                    record: updated.record,
                }),
            }
            if !updated.value {
                refusals.push(refusal(policy, limit, &updated.record, now, Some(amount)));
                if evaluation == Evaluation::StopAtFirst {
                    let taken = admission.held.split_off(first_new);
                    crate::accounting::give_back(policy, counters, now, &taken)?;
                    return Ok(refusals);
                }
            }
        }
    }
    Ok(refusals)
}

/// What a token limit or budget has committed: charged plus held by requests in flight.
pub fn committed(record: &Record) -> u128 {
    record.used.saturating_add(record.reserved)
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

/// Gives back request slots, each only in the window it was taken in (after a rollover the
/// new window never contained it), and takes back the start of a counter a slot started.
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
        take_back(
            counters,
            limit,
            now,
            slot.taken_at,
            slot.first_use,
            |record| {
                record.used = record.used.saturating_sub(1);
            },
        )?;
    }
    Ok(())
}

/// Takes back one use a refused request made of a counter at `taken_at`: `undo` removes it
/// from the record if the window still holds it, and what the use did to the counter's
/// first use is taken back too.
pub fn take_back(
    counters: &mut Counters<'_>,
    limit: &Limit,
    now: i64,
    taken_at: i64,
    first_use: FirstUse,
    mut undo: impl FnMut(&mut Record),
) -> Result<(), CounterError> {
    let updated = counters.update(limit, now, |record| {
        let before = *record;
        if record.window_holds(taken_at) {
            undo(record);
        }
        if let Err(err) = record.undo_first_use(limit, first_use, taken_at, now) {
            return Change::Keep(Err(err));
        }
        if *record == before {
            Change::Keep(Ok(()))
        } else {
            Change::Undo(Ok(()))
        }
    })?;
    updated.value
}

/// Opens the windows of the token limits and budgets that were unused when this admission
/// checked them, now that it stands (a rolling window begins at first use, and a refused
/// request is no use). A counter something else started meanwhile is left alone.
pub fn start_unused(
    policy: &Policy,
    counters: &mut Counters<'_>,
    unused: &[(LimitId, i64)],
) -> Result<(), CounterError> {
    for &(id, at) in unused {
        if let Some(limit) = policy.limits.get(id) {
            counters.start_if_unused(limit, at)?;
        }
    }
    Ok(())
}

fn refusal(
    policy: &Policy,
    limit: &Limit,
    record: &Record,
    now: i64,
    estimate: Option<u128>,
) -> Rejection {
    let (kind, what) = match limit.kind {
        LimitKind::Requests => (RejectionKind::RequestLimited, "request limit"),
        LimitKind::Tokens => (RejectionKind::TokenLimited, "token limit"),
        LimitKind::Budget => (RejectionKind::BudgetExceeded, "budget"),
    };
    let mut amounts = match limit.kind {
        LimitKind::Budget => format!(
            "{} of {} USD used",
            Money::from_femto(record.used).four_decimals(),
            limit.max_money().four_decimals()
        ),
        LimitKind::Requests => format!("{} of {} requests used", record.used, limit.max),
        LimitKind::Tokens => format!("{} of {} tokens used", record.used, limit.max),
    };
    let in_units = |amount: u128| match limit.kind {
        LimitKind::Budget => format!("{} USD", Money::from_femto(amount).four_decimals()),
        LimitKind::Requests | LimitKind::Tokens => format!("{amount} tokens"),
    };
    if record.reserved > 0 {
        amounts.push_str(&format!(
            ", {} reserved by requests in flight",
            in_units(record.reserved)
        ));
    }
    if let Some(estimate) = estimate {
        amounts.push_str(&format!(", this request's estimate {}", in_units(estimate)));
    }
    let message = format!(
        "{} {what} exceeded: {amounts}, {}",
        owner_label(limit),
        reset_text(limit, record.window_end)
    );
    let quota = Quota {
        remaining: limit.max.saturating_sub(committed(record)),
        reserved: policy.reservation.enabled.then_some(record.reserved),
        resets_in: record.window_end.saturating_sub(now),
    };
    Rejection {
        kind,
        message,
        retry_after_secs: retry_after(limit, now, record.window_end),
        quota_headers: if policy.response_headers {
            limit_headers(limit, &quota)
        } else {
            Vec::new()
        },
    }
}

/// Who a limit belongs to, as refusals name it: `team 'ml'`, for a model config's limit
/// `team 'ml' model 'gpt-4o*'`, for a `per_value` template's `team 'ml' per value` (the
/// value of its header that the request carried).
pub fn owner_label(limit: &Limit) -> String {
    if limit.per_value.is_some() {
        return format!(
            "{} '{}' per value",
            limit.owner_kind.label(),
            limit.owner_id
        );
    }
    match &limit.model {
        Some(model) => format!(
            "{} '{}' model '{model}'",
            limit.owner_kind.label(),
            limit.owner_id
        ),
        None => format!("{} '{}'", limit.owner_kind.label(), limit.owner_id),
    }
}

/// How a refusal tells when the refusing window ends: `resets <time>`, or `never resets`
/// for a limit whose window never ends (docs/windows.md).
pub fn reset_text(limit: &Limit, window_end: i64) -> String {
    if limit.rule.duration().is_never() {
        "never resets".to_string()
    } else {
        format!("resets {}", rfc3339(window_end))
    }
}

/// `retry-after` of a refusal by `limit`: none for a window that never ends (waiting does
/// not help).
pub fn retry_after(limit: &Limit, now: i64, window_end: i64) -> Option<u64> {
    (!limit.rule.duration().is_never()).then(|| seconds_until(now, window_end))
}

/// Whole seconds from `now` to `end`, rounded up; 0 if `end` has passed.
pub fn seconds_until(now: i64, end: i64) -> u64 {
    let nanos = i128::from(end).saturating_sub(i128::from(now)).max(0);
    let secs = nanos.saturating_add(999_999_999) / 1_000_000_000;
    u64::try_from(secs).unwrap_or(u64::MAX)
}

/// RFC 3339 in UTC with whole seconds, e.g. `2026-12-01T05:00:00Z`.
pub fn rfc3339(nanos: i64) -> String {
    // Field by field rather than chrono's RFC 3339 writer, whose offset formatting (never
    // needed in UTC) costs the module about 4 KiB. Timestamps in i64 nanoseconds lie in
    // the years 1677 to 2262, always four digits.
    let utc = DateTime::from_timestamp_nanos(nanos);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        utc.year(),
        utc.month(),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use chrono::{DateTime, SecondsFormat};

    #[test]
    fn rfc3339_writes_what_chrono_writes_in_utc_with_whole_seconds() {
        for nanos in [
            0,
            -1,
            1_764_547_200_000_000_000,
            1_764_547_200_999_999_999,
            i64::MIN,
            i64::MAX,
        ] {
            let chrono =
                DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Secs, true);
            assert_eq!(rfc3339(nanos), chrono, "{nanos}");
        }
        assert_eq!(rfc3339(1_764_547_200_000_000_000), "2025-12-01T00:00:00Z");
    }
}
