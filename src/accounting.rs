//! Settling a request (docs/accounting.md and docs/reservations.md): its response's usage
//! charged to the limits that admitted it, and the estimates it held given back, one CAS per
//! counter.

use crate::admission::{take_back, Held};
use crate::config::{LimitId, LimitKind, Policy};
use crate::counter::{Change, CounterError, Counters, Record};
use crate::money::Money;

/// Adds `tokens` to every token limit and `cost` to every budget in `limits`, each in the
/// window that contains `now` (the window in which the response ended), and in the same
/// write removes what the request held there. A hold is removed only from the window it
/// was made in: a rollover since then already cleared it. `charged` sees each limit
/// charged something: its id, what it had used before, and its record as written (what
/// threshold alerts compare).
#[allow(clippy::too_many_arguments, reason = "the settlement and its observer")]
pub fn settle(
    policy: &Policy,
    counters: &mut Counters<'_>,
    now: i64,
    limits: &[LimitId],
    held: &[Held],
    tokens: u128,
    cost: Money,
    mut charged: impl FnMut(&mut Counters<'_>, LimitId, u128, &Record),
) -> Result<(), CounterError> {
    for &id in limits {
        let Some(limit) = policy.limits.get(id) else {
            continue;
        };
        let amount = match limit.kind {
            LimitKind::Tokens => tokens,
            LimitKind::Budget => cost.femto(),
            LimitKind::Requests => continue,
        };
        let hold = held.iter().find(|h| h.limit == id);
        if amount == 0 && hold.is_none() {
            continue;
        }
        let updated = counters.update(limit, now, |record| {
            let before = record.used;
            let mut changed = false;
            if let Some(hold) = hold.filter(|h| record.window_holds(h.taken_at)) {
                record.reserved = record.reserved.saturating_sub(hold.amount);
                changed = hold.amount > 0;
            }
            if amount > 0 {
                record.used = record.used.saturating_add(amount);
                changed = true;
            }
            if changed {
                Change::Write(before)
            } else {
                Change::Keep(before)
            }
        })?;
        if amount > 0 {
            charged(counters, id, updated.value, &updated.record);
        }
    }
    Ok(())
}

/// Gives back holds without charging anything (a refused request), with the starts they
/// made.
pub fn give_back(
    policy: &Policy,
    counters: &mut Counters<'_>,
    now: i64,
    held: &[Held],
) -> Result<(), CounterError> {
    for hold in held {
        let Some(limit) = policy.limits.get(hold.limit) else {
            continue;
        };
        take_back(
            counters,
            limit,
            now,
            hold.taken_at,
            hold.first_use,
            |record| {
                record.reserved = record.reserved.saturating_sub(hold.amount);
            },
        )?;
    }
    Ok(())
}
