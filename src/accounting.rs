//! Charging a response's usage to the limits that admitted its request (SPEC.md §4).

use crate::config::{LimitId, LimitKind, Policy};
use crate::counter::{Change, CounterError, Counters};
use crate::money::Money;
use crate::usage::Usage;

/// Adds `usage`'s tokens to every token limit and `cost` to every budget in `limits`, each
/// in the window that contains `now` (the window in which the response ended).
pub fn charge(
    policy: &Policy,
    counters: &mut Counters<'_>,
    now: i64,
    limits: &[LimitId],
    usage: &Usage,
    cost: Money,
) -> Result<(), CounterError> {
    let tokens = u128::from(usage.prompt_tokens().saturating_add(usage.output));
    for &id in limits {
        let Some(limit) = policy.limits.get(id) else {
            continue;
        };
        let amount = match limit.kind {
            LimitKind::Tokens => tokens,
            LimitKind::Budget => cost.femto(),
            LimitKind::Requests => continue,
        };
        if amount == 0 {
            continue;
        }
        counters.update(limit, now, |record| {
            record.used = record.used.saturating_add(amount);
            Change::Write(())
        })?;
    }
    Ok(())
}
