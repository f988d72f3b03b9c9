//! The JSON the verbs share: a limit with its window, an owner with its limits, a decision.

use serde_json::{json, Map, Value};

use super::replay::{Outcome, Replay};
use super::request::{format_local, format_time};
use crate::admission::committed;
use crate::config::{Limit, LimitId, Policy};
use crate::counter::Record;
use crate::usage_endpoint;

/// A limit as the usage endpoint reports it (owner, id, kind, reset_duration,
/// calendar_aligned, limit, used, reserved, remaining, window_start, window_end), plus its
/// zone, the window's bounds in that zone's wall-clock time, whether the counter is in use
/// (a rolling window opens at first use: before that, the window shown is the one that
/// would open now) and whether it is exhausted.
pub fn limit_entry(limit: &Limit, record: &Record, in_use: bool) -> Value {
    let mut entry = usage_endpoint::entry(limit, record);
    let zone = limit.rule.zone();
    if let Value::Object(fields) = &mut entry {
        fields.insert("timezone".into(), json!(zone.to_string()));
        fields.insert(
            "window_start_local".into(),
            json!(format_local(&zone, record.window_start)),
        );
        let end_local =
            (!limit.rule.duration().is_never()).then(|| format_local(&zone, record.window_end));
        fields.insert("window_end_local".into(), json!(end_local));
        fields.insert("in_use".into(), json!(in_use));
        fields.insert("exhausted".into(), json!(committed(record) >= limit.max));
    }
    entry
}

/// The entries of `ids` as of `now` in `replay`'s counters.
pub fn limit_entries(replay: &Replay, ids: &[LimitId], now: i64) -> Vec<Value> {
    ids.iter()
        .filter_map(|id| replay.policy.limits.get(*id))
        .map(|limit| match replay.counter(limit, now) {
            Ok((record, in_use)) => limit_entry(limit, &record, in_use),
            Err(err) => json!({ "owner": limit.owner_kind.as_str(), "id": limit.owner_id,
                "kind": limit.kind.as_str(), "error": err.to_string() }),
        })
        .collect()
}

/// What the filter decided: admitted (with the quota headers it adds to the response) or
/// its refusal (status, type, message, headers), as the client would see it.
pub fn decision(outcome: &Outcome) -> Value {
    let Some(reply) = &outcome.reply else {
        let headers: Map<String, Value> = outcome
            .response_headers
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        return json!({
            "admitted": true,
            "removed_request_headers": outcome.removed,
            "response_headers": headers,
        });
    };
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let error = body.get("error").cloned().unwrap_or(Value::Null);
    let headers: Map<String, Value> = reply
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    json!({
        "admitted": false,
        "status": reply.status,
        "type": error.get("type").cloned().unwrap_or(Value::Null),
        "message": error.get("message").cloned().unwrap_or(Value::Null),
        "headers": headers,
    })
}

/// The owners of key `index`: its own id, its team's and its customer's.
pub fn key_owners(policy: &Policy, index: usize) -> (Option<&str>, Option<&str>, Option<&str>) {
    let Some(key) = policy.keys.get(index) else {
        return (None, None, None);
    };
    let team = key.team.and_then(|t| policy.teams.get(t));
    let customer = key.customer.and_then(|c| policy.customers.get(c));
    (
        Some(key.owner.id.as_str()),
        team.map(|t| t.owner.id.as_str()),
        customer.map(|c| c.id.as_str()),
    )
}

/// `nanos` as RFC 3339, or null.
pub fn time_or_null(nanos: Option<i64>) -> Value {
    nanos.map_or(Value::Null, |nanos| json!(format_time(nanos)))
}
