//! Remaining-quota headers on admitted responses (SPEC.md §5): the tightest limit of each
//! kind over the hierarchy, OpenAI style. Remaining is what neither usage nor requests in
//! flight hold; with reservations (SPEC.md §8) the held amount is reported beside it.
//!
//! They run on every admitted response, so the values are written with the small decimal
//! writers of [`crate::decimal`] into one reused buffer, and handed to the caller one by
//! one (the glue sets each straight away) rather than collected.

use crate::admission::{committed, Seen};
use crate::config::{Limit, LimitKind, Policy};
use crate::counter::Record;
use crate::decimal::{push_money, push_u128};
use crate::money::Money;
use crate::window::push_openai_reset;

/// The headers to add, from the counters admission saw.
pub fn quota_headers(policy: &Policy, seen: &[Seen], now: i64) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    emit_quota_headers(policy, seen, now, &mut |name, value| {
        headers.push((
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    });
    headers
}

/// The same headers as [`quota_headers`], in the same order, passed to `emit` as
/// `(name, value)` without collecting them (values are ASCII).
pub fn emit_quota_headers(
    policy: &Policy,
    seen: &[Seen],
    now: i64,
    emit: &mut dyn FnMut(&'static str, &[u8]),
) {
    // The tightest limit of each kind, in one pass: least remaining, then earliest end;
    // the first one seen wins a tie (as `min_by_key` would).
    let mut tightest: [Option<(&Limit, &Record)>; 3] = [None; 3];
    for s in seen {
        let Some(limit) = policy.limits.get(s.limit) else {
            continue;
        };
        let Some(slot) = tightest.get_mut(kind_index(limit.kind)) else {
            continue;
        };
        let rank = |(limit, record): (&Limit, &Record)| {
            (
                limit.max.saturating_sub(committed(record)),
                record.window_end,
            )
        };
        if slot.is_none_or(|best| rank((limit, &s.record)) < rank(best)) {
            *slot = Some((limit, &s.record));
        }
    }
    let mut text = Vec::with_capacity(32);
    for kind in [LimitKind::Requests, LimitKind::Tokens, LimitKind::Budget] {
        let Some((limit, record)) = tightest.get(kind_index(kind)).copied().flatten() else {
            continue;
        };
        let remaining = limit.max.saturating_sub(committed(record));
        let [limit_name, remaining_name, reset_name] = match kind {
            LimitKind::Requests => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            LimitKind::Tokens => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            LimitKind::Budget => [
                "x-budget-limit-usd",
                "x-budget-remaining-usd",
                "x-budget-reset",
            ],
        };
        let amount = |text: &mut Vec<u8>, value: u128| match kind {
            LimitKind::Budget => push_money(text, Money::from_femto(value)),
            LimitKind::Requests | LimitKind::Tokens => push_u128(text, value),
        };
        text.clear();
        amount(&mut text, limit.max);
        emit(limit_name, &text);
        text.clear();
        amount(&mut text, remaining);
        emit(remaining_name, &text);
        text.clear();
        push_openai_reset(&mut text, record.window_end.saturating_sub(now));
        emit(reset_name, &text);
        if policy.reservation.enabled {
            let reserved_name = match kind {
                LimitKind::Requests => continue,
                LimitKind::Tokens => "x-ratelimit-reserved-tokens",
                LimitKind::Budget => "x-budget-reserved-usd",
            };
            text.clear();
            amount(&mut text, record.reserved);
            emit(reserved_name, &text);
        }
    }
}

fn kind_index(kind: LimitKind) -> usize {
    match kind {
        LimitKind::Requests => 0,
        LimitKind::Tokens => 1,
        LimitKind::Budget => 2,
    }
}
