//! Remaining-quota headers on admitted responses (SPEC.md §5): the tightest limit of each
//! kind over the hierarchy, OpenAI style. Remaining is what neither usage nor requests in
//! flight hold; with reservations (SPEC.md §8) the held amount is reported beside it.

use crate::admission::{committed, Seen};
use crate::config::{LimitKind, Policy};
use crate::money::Money;
use crate::window::format_openai_reset;

/// The headers to add, from the counters admission saw.
pub fn quota_headers(policy: &Policy, seen: &[Seen], now: i64) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for kind in [LimitKind::Requests, LimitKind::Tokens, LimitKind::Budget] {
        let tightest = seen
            .iter()
            .filter_map(|s| policy.limits.get(s.limit).map(|limit| (limit, s.record)))
            .filter(|(limit, _)| limit.kind == kind)
            .min_by_key(|(limit, record)| {
                (
                    limit.max.saturating_sub(committed(record)),
                    record.window_end,
                )
            });
        let Some((limit, record)) = tightest else {
            continue;
        };
        let remaining = limit.max.saturating_sub(committed(&record));
        let reset = format_openai_reset(record.window_end.saturating_sub(now));
        let (limit_text, remaining_text, names) = match kind {
            LimitKind::Requests => (
                limit.max.to_string(),
                remaining.to_string(),
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            LimitKind::Tokens => (
                limit.max.to_string(),
                remaining.to_string(),
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
            LimitKind::Budget => (
                limit.max_money().to_string(),
                Money::from_femto(remaining).to_string(),
                [
                    "x-budget-limit-usd",
                    "x-budget-remaining-usd",
                    "x-budget-reset",
                ],
            ),
        };
        let [limit_name, remaining_name, reset_name] = names;
        headers.push((limit_name.to_string(), limit_text));
        headers.push((remaining_name.to_string(), remaining_text));
        headers.push((reset_name.to_string(), reset));
        if policy.reservation.enabled {
            let reserved = match kind {
                LimitKind::Requests => continue,
                LimitKind::Tokens => ("x-ratelimit-reserved-tokens", record.reserved.to_string()),
                LimitKind::Budget => (
                    "x-budget-reserved-usd",
                    Money::from_femto(record.reserved).to_string(),
                ),
            };
            headers.push((reserved.0.to_string(), reserved.1));
        }
    }
    headers
}
