//! `POST <usage path>/reset` and `POST <usage path>/credit` (docs/operating.md, runtime
//! adjustments): with the admin key, one counter's current window back to zero, or some
//! USD or tokens given back to it. They act on the counter in shared data, so a
//! configuration push keeps them (a counter's identity is its owner, kind and window, not
//! its `max_limit`).

use serde::Deserialize;

use crate::admission::rfc3339;
use crate::config::{Limit, LimitKind, OwnerKind, Policy};
use crate::counter::{Change, CounterError, Counters, Record};
use crate::money::Money;
use crate::rejection::LocalReply;
use crate::usage_endpoint::{entry, json_reply};

/// Largest body an admin request may have: a counter's name and an amount fit in far less.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What an admin request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The counter's current window back to nothing used.
    Reset,
    /// Some of what the counter's current window used given back.
    Credit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reset => "reset",
            Action::Credit => "credit",
        }
    }
}

/// The admin action a request names: `POST <usage path>/reset` or `/credit`.
pub fn action(policy: &Policy, method: &str, path: &str) -> Option<Action> {
    let endpoint = policy.usage_endpoint.as_ref()?;
    let path_only = path.split('?').next().unwrap_or(path);
    let verb = path_only.strip_prefix(endpoint.path.as_str())?;
    if !method.eq_ignore_ascii_case("POST") {
        return None;
    }
    match verb {
        "/reset" => Some(Action::Reset),
        "/credit" => Some(Action::Credit),
        _ => None,
    }
}

/// The body of an admin request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    owner: WireOwner,
    id: String,
    kind: WireKind,
    reset_duration: String,
    #[serde(default)]
    calendar_aligned: Option<bool>,
    /// Credit only: USD for a budget, tokens or requests for a rate limit.
    #[serde(default)]
    amount: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireOwner {
    Customer,
    Team,
    VirtualKey,
    ProviderConfig,
}

impl From<WireOwner> for OwnerKind {
    fn from(owner: WireOwner) -> OwnerKind {
        match owner {
            WireOwner::Customer => OwnerKind::Customer,
            WireOwner::Team => OwnerKind::Team,
            WireOwner::VirtualKey => OwnerKind::VirtualKey,
            WireOwner::ProviderConfig => OwnerKind::ProviderConfig,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Budget,
    Requests,
    Tokens,
}

impl From<WireKind> for LimitKind {
    fn from(kind: WireKind) -> LimitKind {
        match kind {
            WireKind::Budget => LimitKind::Budget,
            WireKind::Requests => LimitKind::Requests,
            WireKind::Tokens => LimitKind::Tokens,
        }
    }
}

/// Who asked, for the log line: the admin key, and what the request says of its sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub request_id: Option<String>,
    pub forwarded_for: Option<String>,
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the admin key")?;
        if let Some(from) = &self.forwarded_for {
            write!(f, " from {from}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// A request that cannot be carried out: its status, error type and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u32,
    pub kind: &'static str,
    pub message: String,
}

impl Refused {
    fn bad(message: impl Into<String>) -> Refused {
        Refused {
            status: 400,
            kind: "invalid_request",
            message: message.into(),
        }
    }

    pub fn reply(&self) -> LocalReply {
        error_reply(self.status, self.kind, &self.message)
    }
}

/// An OpenAI-shaped error reply of the admin endpoints.
pub fn error_reply(status: u32, kind: &str, message: &str) -> LocalReply {
    json_reply(
        status,
        serde_json::json!({"error": {"message": message, "type": kind, "code": kind,
            "param": null}}),
    )
}

/// 401: only the admin key may adjust counters.
pub fn unauthorized() -> LocalReply {
    error_reply(
        401,
        "admin_key_required",
        "resetting or crediting a counter needs the admin key (authorization: Bearer)",
    )
}

/// 501 in fleet mode: Limitador's counters only count up.
pub fn not_in_fleet_mode(action: Action) -> LocalReply {
    error_reply(
        501,
        "not_supported_in_fleet_mode",
        &format!(
            "{} is not available in fleet mode: Limitador cannot lower a counter \
             (docs/fleet.md)",
            action.as_str()
        ),
    )
}

/// What a carried-out request changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjusted {
    pub before: Record,
    pub after: Record,
}

/// Carries out `action` with the request's `body` at `now`: the reply, and what to log.
pub fn apply(
    policy: &Policy,
    counters: &mut Counters<'_>,
    action: Action,
    body: &[u8],
    now: i64,
    requester: &Requester,
) -> Result<LocalReply, CounterError> {
    let (limit, amount) = match parse(policy, action, body) {
        Ok(found) => found,
        Err(refused) => {
            log::info!("admin {} refused: {}", action.as_str(), refused.message);
            return Ok(refused.reply());
        }
    };
    let adjusted = adjust(counters, limit, action, amount, now)?;
    let (before, after) = (adjusted.before.used, adjusted.after.used);
    log::warn!(
        "admin {} by {requester}: {} '{}' {} {}: used {} -> {} in the window {} to {}",
        action.as_str(),
        limit.owner_kind.label(),
        limit.owner_id,
        limit.kind.as_str(),
        limit.duration_text,
        amount_text(limit, before),
        amount_text(limit, after),
        rfc3339(adjusted.after.window_start),
        rfc3339(adjusted.after.window_end),
    );
    let mut counter = entry(limit, &adjusted.after);
    if let Some(object) = counter.as_object_mut() {
        object.insert("used_before".to_string(), amount_json(limit, before));
    }
    Ok(json_reply(
        200,
        serde_json::json!({ "action": action.as_str(), "counter": counter }),
    ))
}

/// The counter the body names and, for a credit, the amount in the counter's unit.
fn parse<'a>(
    policy: &'a Policy,
    action: Action,
    body: &[u8],
) -> Result<(&'a Limit, u128), Refused> {
    let body: Body = serde_json::from_slice(body).map_err(|err| {
        Refused::bad(format!(
            "the body is not a valid {} request: {err}",
            action.as_str()
        ))
    })?;
    let owner = OwnerKind::from(body.owner);
    let kind = LimitKind::from(body.kind);
    let mut named = policy.limits.iter().filter(|limit| {
        limit.owner_kind == owner
            && limit.kind == kind
            && limit.owner_id == body.id
            && *limit.duration_text == *body.reset_duration
            && body
                .calendar_aligned
                .is_none_or(|aligned| limit.calendar_aligned == aligned)
    });
    let Some(limit) = named.next() else {
        return Err(Refused {
            status: 404,
            kind: "counter_not_found",
            message: format!(
                "no {} counter with reset_duration {:?} is configured for {} '{}'",
                kind.as_str(),
                body.reset_duration,
                owner.label(),
                body.id
            ),
        });
    };
    if named.next().is_some() {
        return Err(Refused::bad(
            "two counters match (one calendar-aligned, one not): add \"calendar_aligned\"",
        ));
    }
    let amount = match (action, body.amount) {
        (Action::Reset, None) => 0,
        (Action::Reset, Some(_)) => {
            return Err(Refused::bad(
                "\"amount\" is for credit; a reset sets the window's use to zero",
            ))
        }
        (Action::Credit, None) => return Err(Refused::bad("\"amount\" is required")),
        (Action::Credit, Some(amount)) => credit_amount(limit.kind, amount)?,
    };
    Ok((limit, amount))
}

/// A credit's amount in the counter's unit: femto-USD for a budget, a whole count else.
fn credit_amount(kind: LimitKind, amount: f64) -> Result<u128, Refused> {
    let positive = amount.is_finite() && amount > 0.0;
    match kind {
        LimitKind::Budget => Money::from_usd(amount)
            .filter(|money| positive && *money > Money::ZERO)
            .map(Money::femto)
            .ok_or_else(|| {
                Refused::bad(format!(
                    "\"amount\" {amount} is not a USD amount > 0 and <= 1e12"
                ))
            }),
        LimitKind::Requests | LimitKind::Tokens => {
            let whole = positive && amount.fract() == 0.0 && amount <= 1e18;
            if !whole {
                return Err(Refused::bad(format!(
                    "\"amount\" {amount} is not a whole number of {} > 0",
                    kind.as_str()
                )));
            }
            // Whole, positive and at most 1e18: exact in u64.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked above: a whole number in 1..=1e18"
            )]
            Ok(u128::from(amount as u64))
        }
    }
}

/// Applies the action to the counter's current window (an ended window rolls over first,
/// in the same write). Not a use: a counter never used stays unused, and nothing is written
/// when nothing changes.
fn adjust(
    counters: &mut Counters<'_>,
    limit: &Limit,
    action: Action,
    amount: u128,
    now: i64,
) -> Result<Adjusted, CounterError> {
    let updated = counters.update(limit, now, |record| {
        let before = *record;
        record.used = match action {
            Action::Reset => 0,
            Action::Credit => record.used.saturating_sub(amount),
        };
        if record.used == before.used {
            Change::Keep(before)
        } else {
            Change::Undo(before)
        }
    })?;
    Ok(Adjusted {
        before: updated.value,
        after: updated.record,
    })
}

fn amount_json(limit: &Limit, value: u128) -> serde_json::Value {
    match limit.kind {
        LimitKind::Budget => serde_json::json!(Money::from_femto(value).as_usd_f64()),
        LimitKind::Requests | LimitKind::Tokens => {
            serde_json::json!(u64::try_from(value).unwrap_or(u64::MAX))
        }
    }
}

fn amount_text(limit: &Limit, value: u128) -> String {
    match limit.kind {
        LimitKind::Budget => format!("{} USD", Money::from_femto(value).four_decimals()),
        LimitKind::Requests => format!("{value} requests"),
        LimitKind::Tokens => format!("{value} tokens"),
    }
}
