//! `GET <usage_endpoint.path>` (docs/clients.md, usage endpoint): the filter answers with
//! counters itself.

use crate::admission::{committed, rfc3339};
use crate::config::{Limit, LimitId, LimitKind, Policy};
use crate::counter::{CounterError, Counters, Record};
use crate::identity::{constant_time_eq, identify, RequestHeaders};
use crate::money::Money;
use crate::per_value::ValueSlots;
use crate::rejection::LocalReply;

/// Whether this request is for the usage endpoint.
pub fn is_usage_request(policy: &Policy, method: &str, path: &str) -> bool {
    let Some(endpoint) = &policy.usage_endpoint else {
        return false;
    };
    let path_only = path.split('?').next().unwrap_or(path);
    method.eq_ignore_ascii_case("GET") && path_only == endpoint.path
}

/// The reply: every counter for the admin key, a key's own counters (its provider configs,
/// team and customer included) for a virtual key, 401 otherwise.
pub fn reply(
    policy: &Policy,
    headers: &dyn RequestHeaders,
    counters: &Counters<'_>,
    slots: &ValueSlots,
    now: i64,
) -> Result<LocalReply, CounterError> {
    let Some(viewer) = viewer(policy, headers) else {
        return Ok(unauthorized());
    };
    let caps = visible_caps(policy, headers, &viewer);
    let limits = match viewer {
        Viewer::Admin => (0..policy.limits.len()).collect(),
        Viewer::Key(limits) => limits,
    };
    let mut entries = Vec::with_capacity(limits.len());
    for id in limits {
        let Some(limit) = policy.limits.get(id) else {
            continue;
        };
        let mut counter = entry(limit, &counters.read(limit, now)?);
        // A `per_value` template's counter is shown only in the slot of the asker's value.
        if let Some(table) = limit.per_value {
            if slots.slot(table).is_none() {
                continue;
            }
            let header = policy
                .per_values
                .get(table as usize)
                .map(|t| t.header.as_str());
            if let (Some(header), Some(fields)) = (header, counter.as_object_mut()) {
                fields.insert("per_value".to_string(), serde_json::json!(header));
            }
        }
        entries.push(counter);
    }
    let mut body = serde_json::json!({ "counters": entries });
    if !policy.in_flight.is_empty() {
        let mut in_flight = Vec::with_capacity(caps.len());
        for id in caps {
            if let Some(cap) = policy.in_flight.get(id) {
                in_flight.push(in_flight_entry(
                    cap,
                    crate::in_flight::read(counters.store(), cap, now)?,
                ));
            }
        }
        if let Some(object) = body.as_object_mut() {
            object.insert("in_flight".to_string(), serde_json::Value::Array(in_flight));
        }
    }
    Ok(json_reply(200, body))
}

/// The in-flight caps a viewer sees: every one for the admin; a key's own, its provider
/// configs', its team's and its customer's.
fn visible_caps(policy: &Policy, headers: &dyn RequestHeaders, viewer: &Viewer) -> Vec<usize> {
    if policy.in_flight.is_empty() {
        return Vec::new();
    }
    if let Viewer::Admin = viewer {
        return (0..policy.in_flight.len()).collect();
    }
    let Some(key) = identify(policy, headers)
        .and_then(|found| found.key)
        .and_then(|index| policy.keys.get(index))
    else {
        return Vec::new();
    };
    let team = key.team.and_then(|t| policy.teams.get(t));
    let customer = key.customer.and_then(|c| policy.customers.get(c));
    let configs = key.provider_configs.iter().flatten();
    [key.owner.in_flight]
        .into_iter()
        .chain(configs.map(|config| config.owner.in_flight))
        .chain([
            team.and_then(|t| t.owner.in_flight),
            customer.and_then(|c| c.in_flight),
        ])
        .flatten()
        .collect()
}

/// One in-flight cap as the endpoint reports it.
fn in_flight_entry(cap: &crate::in_flight::InFlightCap, in_flight: u64) -> serde_json::Value {
    serde_json::json!({
        "owner": cap.owner_kind.as_str(),
        "id": cap.owner_id,
        "kind": "in_flight",
        "in_flight_timeout": cap.timeout_text,
        "limit": cap.max,
        "used": in_flight,
        "remaining": cap.max.saturating_sub(in_flight),
    })
}

/// 401: neither a key nor the admin key.
pub fn unauthorized() -> LocalReply {
    json_reply(
        401,
        serde_json::json!({"error": {"message": "a virtual key or the admin key is required",
            "type": "virtual_key_required", "code": "virtual_key_required", "param": null}}),
    )
}

/// One counter as the endpoint reports it.
pub fn entry(limit: &Limit, record: &Record) -> serde_json::Value {
    let remaining = limit.max.saturating_sub(committed(record));
    let amount = |value: u128| match limit.kind {
        LimitKind::Budget => serde_json::json!(Money::from_femto(value).as_usd_f64()),
        LimitKind::Requests | LimitKind::Tokens => {
            serde_json::json!(u64::try_from(value).unwrap_or(u64::MAX))
        }
    };
    let mut entry = serde_json::json!({
        "owner": limit.owner_kind.as_str(),
        "id": limit.owner_id,
        "kind": limit.kind.as_str(),
        "reset_duration": limit.duration_text,
        "calendar_aligned": limit.calendar_aligned,
        "limit": amount(limit.max),
        "used": amount(record.used),
        "reserved": amount(record.reserved),
        "remaining": amount(remaining),
        "window_start": rfc3339(record.window_start),
        "window_end": window_end(limit, record.window_end),
    });
    // A model config's counter says which model entry it belongs to.
    if let (Some(model), Some(fields)) = (&limit.model, entry.as_object_mut()) {
        fields.insert("model".to_string(), serde_json::json!(model));
    }
    entry
}

/// A window's end as the endpoint reports it: `null` for a window that never ends.
pub fn window_end(limit: &Limit, end: i64) -> serde_json::Value {
    if limit.rule.duration().is_never() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(rfc3339(end))
    }
}

/// Who asks: the admin (every counter), a virtual key (its own), or nobody known.
pub enum Viewer {
    Admin,
    Key(Vec<LimitId>),
}

/// Whether the request carries the admin key or a known virtual key.
pub fn viewer(policy: &Policy, headers: &dyn RequestHeaders) -> Option<Viewer> {
    if is_admin(policy, headers) {
        return Some(Viewer::Admin);
    }
    let key = policy.keys.get(identify(policy, headers)?.key?)?;
    Some(Viewer::Key(key_limits(policy, key)))
}

/// Whether the request carries the admin key (`authorization: Bearer`).
pub fn is_admin(policy: &Policy, headers: &dyn RequestHeaders) -> bool {
    let Some(admin) = policy
        .usage_endpoint
        .as_ref()
        .and_then(|e| e.admin_key_sha256)
    else {
        return false;
    };
    let value = headers.get("authorization");
    let bearer = value
        .as_deref()
        .and_then(|value| value.trim_ascii().strip_prefix(b"Bearer ".as_slice()))
        .map(|token| crate::config::sha256_of(token.trim_ascii()));
    bearer.is_some_and(|hash| constant_time_eq(&hash, &admin))
}

/// A key's own limits, its provider configs', its team's and its customer's, and those of
/// every level's model configs.
fn key_limits(policy: &Policy, key: &crate::config::VirtualKey) -> Vec<LimitId> {
    let mut limits: Vec<LimitId> = policy.hierarchy_limits(key).collect();
    for config in key.provider_configs.iter().flatten() {
        limits.extend(&config.owner.limits);
    }
    for owner in policy.hierarchy_owners(key).into_iter().flatten() {
        for config in &owner.model_configs {
            limits.extend(&config.limits);
        }
        let table = owner
            .per_value
            .and_then(|t| policy.per_values.get(t as usize));
        limits.extend(table.iter().flat_map(|t| t.limits.iter()));
    }
    limits
}

/// The slots of the asker's header values in the `per_value` tables of its key and team
/// (found, never claimed), `(table, slot)`: what [`reply`] shows of those tables.
pub fn value_slots(
    policy: &Policy,
    headers: &dyn RequestHeaders,
    counters: &Counters<'_>,
) -> Result<ValueSlots, CounterError> {
    let mut slots = ValueSlots::default();
    let Some(key) = identify(policy, headers)
        .and_then(|found| found.key)
        .and_then(|index| policy.keys.get(index))
    else {
        return Ok(slots);
    };
    for owner in policy.hierarchy_owners(key).into_iter().take(2).flatten() {
        let Some(table) = owner.per_value else {
            continue;
        };
        let Some(per_value) = policy.per_values.get(table as usize) else {
            continue;
        };
        let hash =
            crate::per_value::value_hash(&headers.get(&per_value.header).unwrap_or_default());
        if let Some(slot) = crate::per_value::find(per_value, counters, &hash)? {
            slots.push(table, slot);
        }
    }
    Ok(slots)
}

/// A JSON local reply of the endpoint.
pub fn json_reply(status: u32, body: serde_json::Value) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body.to_string().into_bytes(),
        details: "governance_usage".to_string(),
    }
}
