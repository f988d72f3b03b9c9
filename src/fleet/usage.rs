//! The usage endpoint in fleet mode: fleet-wide counters, read from Limitador's
//! `GET /counters/{namespace}` of each owner the caller may see. A key sees its own owners
//! (provider configs, key, team, customer); the admin names the owners it wants
//! (`?owner=team:ml&owner=virtual_key:k1`), since reading every namespace at once would be
//! one call per owner of the configuration.

use super::names;
use super::protocol::{self, Answer, Call};
use super::FleetPolicy;
use crate::config::{LimitId, OwnerKind, Policy};
use crate::counter::Record;
use crate::usage_endpoint;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The limits of the owners an admin query names, or what is wrong with it.
pub fn admin_limits(policy: &Policy, path: &str) -> Result<Vec<LimitId>, String> {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let owners: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("owner="))
        .flat_map(|value| value.split(','))
        .filter(|o| !o.is_empty())
        .collect();
    if owners.is_empty() {
        return Err(
            "in fleet mode the admin view reads Limitador owner by owner: name them, \
                    e.g. ?owner=team:ml&owner=virtual_key:vk-1 (owners: customer, team, \
                    virtual_key, provider_config as <key id>/<provider>)"
                .to_string(),
        );
    }
    let mut limits = Vec::new();
    for owner in owners {
        let (kind, id) = owner
            .split_once(':')
            .ok_or_else(|| format!("{owner:?} is not <kind>:<id>"))?;
        let kind = match kind {
            "customer" => OwnerKind::Customer,
            "team" => OwnerKind::Team,
            "virtual_key" => OwnerKind::VirtualKey,
            "provider_config" => OwnerKind::ProviderConfig,
            other => return Err(format!("{other:?} is not an owner kind")),
        };
        let id = decode(id);
        let found: Vec<LimitId> = policy
            .limits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.owner_kind == kind && l.owner_id == id)
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            return Err(format!("no limits of {} {id:?}", kind.as_str()));
        }
        limits.extend(found);
    }
    Ok(limits)
}

/// `%XX` escapes of a query value (ids may hold anything).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i.saturating_add(1)..i.saturating_add(3))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(value)) => {
                out.push(value);
                i = i.saturating_add(3);
            }
            (b'+', _) => {
                out.push(b' ');
                i = i.saturating_add(1);
            }
            _ => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The namespaces to read for `limits`, each once.
pub fn calls(fleet: &FleetPolicy, limits: &[LimitId]) -> (Vec<String>, Vec<Call>) {
    let mut namespaces: Vec<String> = Vec::new();
    for id in limits {
        if let Some(named) = fleet.limits.get(*id) {
            if !namespaces.contains(&named.namespace) {
                namespaces.push(named.namespace.clone());
            }
        }
    }
    let calls = namespaces
        .iter()
        .map(|ns| protocol::counters_call(ns))
        .collect();
    (namespaces, calls)
}

/// The endpoint's body from the answers (one per namespace, in order); `None` if one of
/// them is not a counters list (Limitador unavailable).
pub fn reply_body(
    policy: &Policy,
    fleet: &FleetPolicy,
    limits: &[LimitId],
    namespaces: &[String],
    answers: &[Answer],
    now: i64,
) -> Option<serde_json::Value> {
    let mut lists = Vec::with_capacity(answers.len());
    for answer in answers {
        lists.push(protocol::parse_counters(answer)?);
    }
    let mut entries = Vec::with_capacity(limits.len());
    for &id in limits {
        let (Some(limit), Some(named)) = (policy.limits.get(id), fleet.limits.get(id)) else {
            continue;
        };
        let (label, calendar_end) = names::window_label(limit, now).ok()?;
        let counter = namespaces
            .iter()
            .position(|ns| *ns == named.namespace)
            .and_then(|i| lists.get(i))
            .and_then(|list| list.iter().find(|c| c.is(&named.limit_id, &label, None)));
        let used = counter.map_or(0, |c| names::from_units(limit.kind, c.used()));
        let (start, end) = match calendar_end {
            Some(end) => {
                let window = limit.rule.window_at(now).ok()?;
                (window.start_nanos, end)
            }
            None => {
                let length = i64::try_from(names::seconds(limit)).unwrap_or(i64::MAX);
                let left = counter
                    .and_then(|c| c.expires_in_seconds)
                    .and_then(|s| i64::try_from(s).ok())
                    .unwrap_or(length);
                let end = now.saturating_add(left.saturating_mul(NANOS_PER_SEC));
                (
                    end.saturating_sub(length.saturating_mul(NANOS_PER_SEC)),
                    end,
                )
            }
        };
        let record = Record {
            started: true,
            anchor: start,
            window_start: start,
            window_end: end,
            used,
            reserved: 0,
            second_use: 0,
        };
        entries.push(usage_endpoint::entry(limit, &record));
    }
    Some(serde_json::json!({ "source": "fleet", "counters": entries }))
}
