//! Remaining-quota headers (docs/clients.md): on admitted responses the tightest limit of
//! each kind over the hierarchy, OpenAI style; on 429 and 402 refusals those of the limit
//! that refused. Remaining is what neither usage nor requests in flight hold; with
//! reservations (docs/reservations.md) the held amount is reported beside it.
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
        let quota = Quota {
            remaining: limit.max.saturating_sub(committed(record)),
            reserved: policy.reservation.enabled.then_some(record.reserved),
            resets_in: record.window_end.saturating_sub(now),
        };
        emit_limit(limit, &quota, &mut text, emit);
    }
}

/// What one limit's headers say, besides its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// In the limit's units (requests, tokens, femto-USD).
    pub remaining: u128,
    /// Held by requests in flight; `None` when reservations are off (no header).
    pub reserved: Option<u128>,
    /// Nanoseconds until the window ends.
    pub resets_in: i64,
}

/// The headers of one limit alone: a refusal carries those of the level that refused.
pub fn limit_headers(limit: &Limit, quota: &Quota) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    emit_limit(
        limit,
        quota,
        &mut Vec::with_capacity(32),
        &mut |name, value| {
            headers.push((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        },
    );
    headers
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` or `x-budget-{limit-usd,
/// remaining-usd,reset}` of `limit`, and the reserved amount when reservations are on.
fn emit_limit(
    limit: &Limit,
    quota: &Quota,
    text: &mut Vec<u8>,
    emit: &mut dyn FnMut(&'static str, &[u8]),
) {
    let [limit_name, remaining_name, reset_name] = match limit.kind {
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
    let amount = |text: &mut Vec<u8>, value: u128| match limit.kind {
        LimitKind::Budget => push_money(text, Money::from_femto(value)),
        LimitKind::Requests | LimitKind::Tokens => push_u128(text, value),
    };
    text.clear();
    amount(text, limit.max);
    emit(limit_name, text);
    text.clear();
    amount(text, quota.remaining);
    emit(remaining_name, text);
    // A window that never ends has no reset to announce.
    if !limit.rule.duration().is_never() {
        text.clear();
        push_openai_reset(text, quota.resets_in);
        emit(reset_name, text);
    }
    let reserved_name = match limit.kind {
        LimitKind::Requests => return,
        LimitKind::Tokens => "x-ratelimit-reserved-tokens",
        LimitKind::Budget => "x-budget-reserved-usd",
    };
    if let Some(reserved) = quota.reserved {
        text.clear();
        amount(text, reserved);
        emit(reserved_name, text);
    }
}

fn kind_index(kind: LimitKind) -> usize {
    match kind {
        LimitKind::Requests => 0,
        LimitKind::Tokens => 1,
        LimitKind::Budget => 2,
    }
}
