//! `describe`: the hierarchy a configuration defines, customers over teams over keys over
//! provider configs, each owner with its limits and the window each is in at a given time.

use serde_json::{json, Value};

use super::replay::Replay;
use super::report::{limit_entries, time_or_null};
use super::request::format_time;
use super::{policy_of, Answer};
use crate::config::{LimitId, ModelSet, Owner, Policy, VirtualKey};

/// `{"at", "hierarchy": [node...]}`, a node being `{"owner", "id", "limits", "children"}`
/// (keys add `active`, `expires_at`, `allowed_models`; provider configs `provider` and
/// `allowed_models`). Teams and keys without a parent are roots. Counters are fresh: a
/// rolling window is shown as the one that would open at `at`.
pub fn describe(config_text: &str, at: i64) -> Answer {
    let replay = Replay::new(policy_of(config_text)?);
    let policy = &replay.policy;
    let key_node = |key: &VirtualKey| {
        let configs = key.provider_configs.iter().flatten().map(|config| {
            json!({
                "owner": "provider_config",
                "id": config.owner.id,
                "provider": config.provider,
                "allowed_models": models(config.allowed_models.as_ref()),
                "limits": limit_entries(&replay, &config.owner.limits, at),
                "children": [],
            })
        });
        json!({
            "owner": "virtual_key",
            "id": key.owner.id,
            "active": key.active,
            "expires_at": time_or_null(key.expires_at),
            "allowed_models": models(key.allowed_models.as_ref()),
            "providers": key.provider_configs.as_ref().map(|c| c.iter().map(|c| c.provider.clone()).collect::<Vec<_>>()),
            "limits": limit_entries(&replay, &owned_limits(&key.owner), at),
            "children": configs.collect::<Vec<_>>(),
        })
    };
    let keys_where = |belongs: &dyn Fn(&VirtualKey) -> bool| -> Vec<Value> {
        policy
            .keys
            .iter()
            .filter(|key| belongs(key))
            .map(key_node)
            .collect()
    };
    let team_node = |index: usize| -> Option<Value> {
        let team = policy.teams.get(index)?;
        Some(json!({
            "owner": "team",
            "id": team.owner.id,
            "limits": limit_entries(&replay, &owned_limits(&team.owner), at),
            "children": keys_where(&|key| key.team == Some(index)),
        }))
    };
    let mut roots = Vec::new();
    for (index, customer) in policy.customers.iter().enumerate() {
        let teams = (0..policy.teams.len())
            .filter(|t| policy.teams.get(*t).and_then(|t| t.customer) == Some(index))
            .filter_map(team_node);
        // Keys that name the customer themselves (a key under a team sits with its team).
        let keys = keys_where(&|key| key.team.is_none() && key.customer == Some(index));
        roots.push(json!({
            "owner": "customer",
            "id": customer.id,
            "limits": limit_entries(&replay, &owned_limits(customer), at),
            "children": teams.chain(keys).collect::<Vec<_>>(),
        }));
    }
    let lone_teams = (0..policy.teams.len())
        .filter(|t| policy.teams.get(*t).is_some_and(|t| t.customer.is_none()))
        .filter_map(team_node);
    roots.extend(lone_teams);
    roots.extend(keys_where(&|key| {
        key.team.is_none() && key.customer.is_none()
    }));
    Ok(json!({
        "at": format_time(at),
        "mode": mode(policy),
        "hierarchy": roots,
    }))
}

fn models(set: Option<&ModelSet>) -> Value {
    set.map_or(Value::Null, |set| json!(set.entries()))
}

pub(super) fn mode(policy: &Policy) -> &'static str {
    match policy.mode {
        crate::config::Mode::Enforce => "enforce",
        crate::config::Mode::Shadow => "shadow",
    }
}

/// An owner's own limits, then those of its model configs (each entry names its `model`).
fn owned_limits(owner: &Owner) -> Vec<LimitId> {
    let mut ids = owner.limits.clone();
    for config in &owner.model_configs {
        ids.extend(&config.limits);
    }
    ids
}
