//! `simulate`: a trace of requests (JSONL, one [`RequestSpec`] a line) replayed through the
//! filter's flow with a clock that moves to each request's time: what was admitted and
//! refused, what each owner spent, and when each limit ran out.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::describe::mode;
use super::replay::Replay;
use super::report::{decision, limit_entry};
use super::request::{format_time, RequestSpec};
use super::{policy_of, set, Answer, Failure};
use crate::admission::committed;
use crate::config::{LimitId, OwnerKind, Policy};
use crate::money::Money;

/// The trace's requests with their line numbers (from 1), in time order (lines with the
/// same time keep their order). Blank lines are skipped.
pub fn read_trace(trace: &str) -> Result<Vec<(usize, RequestSpec)>, Failure> {
    let mut requests = Vec::new();
    for (index, text) in trace.lines().enumerate() {
        let line = index.saturating_add(1);
        if text.trim().is_empty() {
            continue;
        }
        let spec = RequestSpec::parse(text)
            .map_err(|err| Failure::new(format!("trace line {line}: {err}")))?;
        let at = spec
            .at()
            .map_err(|err| Failure::new(format!("trace line {line}: {err}")))?;
        requests.push((at, line, spec));
    }
    requests.sort_by_key(|(at, line, _)| (*at, *line));
    Ok(requests
        .into_iter()
        .map(|(_, line, spec)| (line, spec))
        .collect())
}

/// What one owner was charged over the trace.
#[derive(Default)]
struct Spend {
    usd: Money,
    tokens: u64,
    requests: u64,
}

/// What the trace did to one limit.
struct Track {
    /// The window start of the last exhaustion recorded (one per window).
    exhausted_window: Option<i64>,
    ran_out: Vec<Value>,
    /// `[time, used]` after every request that changed the counter.
    points: Vec<Value>,
    last: Option<(i64, u128)>,
}

/// `{"requests", "admitted", "refused", "refusals": {type: n}, "spend": [...], "limits":
/// [...], "results": [...]}`: see docs/tools.md.
pub fn simulate(config_text: &str, trace: &str) -> Answer {
    let replay_policy = policy_of(config_text)?;
    let configured_mode = mode(&replay_policy);
    let requests = read_trace(trace)?;
    let mut replay = Replay::new(replay_policy);
    let policy = std::rc::Rc::clone(&replay.policy);
    let mut results = Vec::with_capacity(requests.len());
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    let mut spend: BTreeMap<(OwnerKind, String), Spend> = BTreeMap::new();
    let mut tracks: HashMap<LimitId, Track> = HashMap::new();
    let mut admitted = 0u64;
    let mut shadow_refused = 0u64;
    let mut end = 0i64;
    for (line, spec) in &requests {
        let now = spec
            .at()
            .map_err(|err| Failure::new(format!("trace line {line}: {err}")))?;
        end = end.max(now);
        let exchange = spec.exchange(&policy.provider_header, true);
        let outcome = replay.run(&exchange, now);
        let decided = decision(&outcome);
        let owners = owners_of(&policy, outcome.target.as_ref());
        if outcome.reply.is_none() {
            admitted = admitted.saturating_add(1);
            for owner in &owners {
                let entry = spend.entry(owner.clone()).or_default();
                entry.usd = entry.usd.saturating_add(outcome.spend);
                entry.tokens = entry.tokens.saturating_add(outcome.tokens);
                entry.requests = entry.requests.saturating_add(1);
            }
        }
        if outcome.shadow_refused {
            shadow_refused = shadow_refused.saturating_add(1);
        }
        // The key presented, refused or not.
        let key = crate::identity::identify(&policy, &exchange.headers).and_then(|found| found.key);
        let mut result = json!({
            "line": line,
            "time": format_time(now),
            "status": outcome.reply.as_ref().map_or(spec.status.into(), |r| r.status),
            "admitted": outcome.reply.is_none(),
            "virtual_key": key.and_then(|k| policy.keys.get(k)).map(|k| k.owner.id.as_str()),
            "cost_usd": outcome.spend.as_usd_f64(),
            "tokens": outcome.tokens,
        });
        if outcome.reply.is_some() {
            let kind = decided
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("refused");
            let count = refusals.entry(kind.to_string()).or_default();
            *count = count.saturating_add(1);
            for field in ["type", "message"] {
                let value = decided.get(field).cloned().unwrap_or(Value::Null);
                set(&mut result, field, value);
            }
        }
        results.push(result);
        // Every limit of the key presented, to see when each ran out.
        for id in key.map(|k| key_limits(&policy, k)).unwrap_or_default() {
            track(&replay, &mut tracks, id, now);
        }
    }
    let mut touched: Vec<LimitId> = tracks.keys().copied().collect();
    touched.sort_unstable();
    let limits: Vec<Value> = touched
        .iter()
        .filter_map(|id| {
            let limit = policy.limits.get(*id)?;
            let (record, in_use) = replay.counter(limit, end).ok()?;
            let mut entry = limit_entry(limit, &record, in_use);
            let track = tracks.remove(id)?;
            set(&mut entry, "ran_out", json!(track.ran_out));
            set(&mut entry, "points", json!(track.points));
            Some(entry)
        })
        .collect();
    let spend: Vec<Value> = spend
        .into_iter()
        .map(|((kind, id), spent)| {
            json!({ "owner": kind.as_str(), "id": id, "usd": spent.usd.as_usd_f64(),
                "tokens": spent.tokens, "requests": spent.requests })
        })
        .collect();
    let count = u64::try_from(requests.len()).unwrap_or(u64::MAX);
    let mut answer = json!({
        "mode": configured_mode,
        "requests": count,
        "admitted": admitted,
        "refused": count.saturating_sub(admitted),
        "refusals": refusals,
        "spend": spend,
        "limits": limits,
        "results": results,
    });
    if configured_mode == "shadow" {
        set(&mut answer, "shadow_refused", json!(shadow_refused));
    }
    Ok(answer)
}

/// The owners an admitted request is charged to: its provider config, key, team, customer.
fn owners_of(
    policy: &Policy,
    target: Option<&(usize, Option<String>)>,
) -> Vec<(OwnerKind, String)> {
    let Some((index, provider)) = target else {
        return Vec::new();
    };
    let Some(key) = policy.keys.get(*index) else {
        return Vec::new();
    };
    let mut owners = Vec::with_capacity(4);
    if let Some(config) = provider.as_deref().and_then(|p| key.provider_config(p)) {
        owners.push((OwnerKind::ProviderConfig, config.owner.id.clone()));
    }
    owners.push((OwnerKind::VirtualKey, key.owner.id.clone()));
    let team = key.team.and_then(|t| policy.teams.get(t));
    owners.extend(team.map(|t| (OwnerKind::Team, t.owner.id.clone())));
    let customer = key.customer.and_then(|c| policy.customers.get(c));
    owners.extend(customer.map(|c| (OwnerKind::Customer, c.id.clone())));
    owners
}

/// Every limit of a key's hierarchy, of its provider configs and of every level's model
/// configs.
fn key_limits(policy: &Policy, index: usize) -> Vec<LimitId> {
    let Some(key) = policy.keys.get(index) else {
        return Vec::new();
    };
    let configs = key.provider_configs.iter().flatten();
    let mut ids: Vec<LimitId> = configs
        .flat_map(|c| c.owner.limits.iter().copied())
        .collect();
    ids.extend(policy.hierarchy_limits(key));
    for owner in policy.hierarchy_owners(key).into_iter().flatten() {
        for config in &owner.model_configs {
            ids.extend(&config.limits);
        }
    }
    ids
}

/// Records a point when the counter changed, and its running out once per window.
fn track(replay: &Replay, tracks: &mut HashMap<LimitId, Track>, id: LimitId, now: i64) {
    let Some(limit) = replay.policy.limits.get(id) else {
        return;
    };
    let Ok((record, in_use)) = replay.counter(limit, now) else {
        return;
    };
    let track = tracks.entry(id).or_insert_with(|| Track {
        exhausted_window: None,
        ran_out: Vec::new(),
        points: Vec::new(),
        last: None,
    });
    if !in_use {
        return;
    }
    let used = committed(&record);
    if track.last != Some((record.window_start, used)) {
        track.last = Some((record.window_start, used));
        let amount = match limit.kind {
            crate::config::LimitKind::Budget => json!(Money::from_femto(used).as_usd_f64()),
            _ => json!(u64::try_from(used).unwrap_or(u64::MAX)),
        };
        track.points.push(json!([format_time(now), amount]));
    }
    if used >= limit.max && track.exhausted_window != Some(record.window_start) {
        track.exhausted_window = Some(record.window_start);
        track.ran_out.push(json!({
            "at": format_time(now),
            "window_start": format_time(record.window_start),
            "window_end": format_time(record.window_end),
        }));
    }
}
