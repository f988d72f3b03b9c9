//! Remaining-quota headers on admitted responses (SPEC.md §5): the tightest limit of each
//! kind over the hierarchy, OpenAI style.
//!
//! They run on every admitted response, so the values are written with the small decimal
//! writers of [`crate::decimal`] into one reused buffer, and handed to the caller one by
//! one (the glue sets each straight away) rather than collected.

use crate::admission::Seen;
use crate::config::{LimitKind, Policy};
use crate::decimal::{push_money, push_u128};
use crate::money::Money;
use crate::window::push_openai_reset;

/// The headers to add, from the counters admission saw.
pub fn quota_headers(policy: &Policy, seen: &[Seen], now: i64) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    emit_quota_headers(policy, seen, now, &mut |name, value| {
        headers.push((name.to_string(), value.to_string()));
    });
    headers
}

/// The same headers as [`quota_headers`], in the same order, passed to `emit` as
/// `(name, value)` without collecting them.
pub fn emit_quota_headers(
    policy: &Policy,
    seen: &[Seen],
    now: i64,
    emit: &mut dyn FnMut(&'static str, &str),
) {
    let mut text = String::new();
    for kind in [LimitKind::Requests, LimitKind::Tokens, LimitKind::Budget] {
        let tightest = seen
            .iter()
            .filter_map(|s| policy.limits.get(s.limit).map(|limit| (limit, s.record)))
            .filter(|(limit, _)| limit.kind == kind)
            .min_by_key(|(limit, record)| {
                (limit.max.saturating_sub(record.used), record.window_end)
            });
        let Some((limit, record)) = tightest else {
            continue;
        };
        let remaining = limit.max.saturating_sub(record.used);
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
        let amount = |text: &mut String, value: u128| match kind {
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
    }
}
