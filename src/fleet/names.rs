//! How the filter's limits are named in Limitador, so that every replica (and the limits
//! file) names them alike.
//!
//! - One Limitador namespace per owner: `<prefix>:customer:<id>`, `<prefix>:team:<id>`,
//!   `<prefix>:vk:<id>`, `<prefix>:provider:<key id>:<provider>` (an id with characters
//!   other than letters, digits, `.`, `_`, `-` is written `~` and its bytes in hex). Limitador evaluates every
//!   limit of a namespace on each call, and Redis Cluster keeps a namespace in one slot, so a
//!   call costs the same with 10 keys or 100,000, and owners spread over the cluster.
//! - Within it, one Limitador limit per configured limit, told apart by the `limit` value of
//!   a call: `<kind>:<duration>:rolling` or `<kind>:<duration>:cal@<zone>`.
//! - The `window` value keys the counter: a calendar window is labelled by its local start
//!   (`2026-11-01T00:00`), computed in the limit's zone from the same tz data by every
//!   replica, so they all count in the same window and a new window is simply a new counter;
//!   a rolling window is Limitador's own fixed window from the fleet's first use, under the
//!   constant label `rolling`.

use chrono::{Datelike, Timelike};

use crate::config::{Limit, LimitKind, OwnerKind};
use crate::duration::DurationKind;
use crate::window::WindowError;

/// The `window` value of a rolling limit's calls.
pub const ROLLING: &str = "rolling";

const SECS_PER_HOUR: u64 = 3600;
const SECS_PER_DAY: u64 = 86_400;
/// Limitador's `seconds` for a `never` limit: its windows have a length, so a window of
/// 100 years (of 365 days) stands for one that never ends. Redis keeps the counter that long
/// in milliseconds, well within its range.
pub const NEVER_SECONDS: u64 = 100 * 365 * SECS_PER_DAY;

/// The Limitador namespace of an owner. A provider config's id `<key id>/<provider>` is
/// written `<key id>:<provider>`: namespaces travel in URL paths (`GET /limits/{namespace}`),
/// where a `/` would not survive.
pub fn namespace(prefix: &str, owner: OwnerKind, owner_id: &str) -> String {
    let kind = match owner {
        OwnerKind::Customer => "customer",
        OwnerKind::Team => "team",
        OwnerKind::VirtualKey => "vk",
        OwnerKind::ProviderConfig => "provider",
    };
    let id = match (owner, owner_id.rsplit_once('/')) {
        (OwnerKind::ProviderConfig, Some((key, provider))) => {
            format!("{}:{}", segment(key), segment(provider))
        }
        _ => segment(owner_id),
    };
    format!("{}:{kind}:{id}", segment(prefix))
}

/// An id as it goes into a namespace: as written when it holds only letters, digits, `.`,
/// `_` and `-`; otherwise `~` and the hex of its bytes (which no id written as is can be),
/// so every namespace is safe in a URL path and no two ids share one.
fn segment(id: &str) -> String {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return id.to_string();
    }
    let mut out = String::with_capacity(id.len().saturating_mul(2).saturating_add(1));
    out.push('~');
    for byte in id.bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The `limit` value that selects `limit` among its owner's limits; a model config's limit
/// starts with `model:<model>:` (the model written as namespaces write ids).
pub fn limit_id(limit: &Limit) -> String {
    let own = own_limit_id(limit);
    if limit.per_value.is_some() {
        // An owner has at most one `per_value` table.
        return format!("per_value:{own}");
    }
    match &limit.model {
        Some(model) => format!("model:{}:{own}", segment(model)),
        None => own,
    }
}

fn own_limit_id(limit: &Limit) -> String {
    let rule = &limit.rule;
    if rule.calendar_aligned() {
        format!(
            "{}:{}:cal@{}",
            limit.kind.as_str(),
            rule.duration(),
            rule.zone()
        )
    } else {
        format!("{}:{}:{ROLLING}", limit.kind.as_str(), rule.duration())
    }
}

/// The `window` value of a call made at `now`, and the end of that window when the filter
/// knows it (calendar windows; a rolling window's end is Limitador's).
pub fn window_label(limit: &Limit, now: i64) -> Result<(String, Option<i64>), WindowError> {
    if !limit.rule.calendar_aligned() {
        return Ok((ROLLING.to_string(), None));
    }
    let window = limit.rule.window_at(now)?;
    let local = limit.rule.zone().local_datetime(window.start_nanos);
    // Written field by field: chrono's `format` parses a pattern at run time and brings
    // its whole formatter into the module (about 13 KiB) for this one label.
    let label = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    );
    Ok((label, Some(window.end_nanos)))
}

/// Limitador's `seconds` for the limit: for a rolling limit its length (months as 30 days
/// and years as 365, since Limitador's windows have a fixed length); for a calendar limit a
/// counter lifetime at least as long as its longest window (daylight-saving days, 31-day
/// months, leap years), after which the label has moved on anyway.
pub fn seconds(limit: &Limit) -> u64 {
    let aligned = limit.rule.calendar_aligned();
    match limit.rule.duration().kind() {
        DurationKind::Clock { seconds } => {
            let secs = u64::try_from(seconds).unwrap_or(u64::MAX);
            if aligned {
                secs.saturating_add(SECS_PER_HOUR)
            } else {
                secs
            }
        }
        DurationKind::Days(n) => days(
            n,
            if aligned {
                25 * SECS_PER_HOUR
            } else {
                SECS_PER_DAY
            },
        ),
        DurationKind::Weeks(n) => {
            let week = 7 * SECS_PER_DAY;
            days(n, week).saturating_add(if aligned { SECS_PER_DAY } else { 0 })
        }
        DurationKind::Months(n) => {
            if aligned {
                days(n, 31 * SECS_PER_DAY).saturating_add(SECS_PER_DAY)
            } else {
                days(n, 30 * SECS_PER_DAY)
            }
        }
        DurationKind::Years(n) => {
            if aligned {
                days(n, 366 * SECS_PER_DAY).saturating_add(SECS_PER_DAY)
            } else {
                days(n, 365 * SECS_PER_DAY)
            }
        }
        DurationKind::Never => NEVER_SECONDS,
    }
}

fn days(n: u32, unit: u64) -> u64 {
    u64::from(n).saturating_mul(unit)
}

/// Nano-USD per femto-USD unit divisor: money goes to Limitador in whole nano-USD (a u64
/// holds $18 billion, and the cheapest token prices are hundreds of nano-USD).
const FEMTO_PER_NANO: u128 = 1_000_000;

/// A limit's maximum in Limitador's units: a count for requests and tokens, nano-USD for
/// budgets (rounded down: the fleet never allows more than the configuration).
pub fn max_value(limit: &Limit) -> u64 {
    let units = match limit.kind {
        LimitKind::Budget => limit.max / FEMTO_PER_NANO,
        LimitKind::Requests | LimitKind::Tokens => limit.max,
    };
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// An amount in Limitador's units: femto-USD rounded up to whole nano-USD for budgets (a
/// charge is never rounded away), a count otherwise.
pub fn units(kind: LimitKind, amount: u128) -> u64 {
    let units = match kind {
        LimitKind::Budget => amount.div_ceil(FEMTO_PER_NANO),
        LimitKind::Requests | LimitKind::Tokens => amount,
    };
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// The amount back in the filter's units (femto-USD for budgets).
pub fn from_units(kind: LimitKind, units: u64) -> u128 {
    match kind {
        LimitKind::Budget => u128::from(units).saturating_mul(FEMTO_PER_NANO),
        LimitKind::Requests | LimitKind::Tokens => u128::from(units),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_safe_in_a_url_path_and_never_shared() {
        assert_eq!(
            namespace("gov", OwnerKind::VirtualKey, "vk-ml.1_a"),
            "gov:vk:vk-ml.1_a"
        );
        assert_eq!(
            namespace("gov", OwnerKind::ProviderConfig, "k1/openai"),
            "gov:provider:k1:openai"
        );
        assert_eq!(
            namespace("gov", OwnerKind::Team, "a/b c"),
            "gov:team:~612f622063"
        );
        assert_ne!(
            namespace("gov", OwnerKind::Team, "~61"),
            namespace("gov", OwnerKind::Team, "a")
        );
        assert_eq!(
            namespace("my gw", OwnerKind::Customer, "x"),
            "~6d79206777:customer:x"
        );
    }
}
