//! `explain`: what the filter would do with one request at a given time, and why: the key
//! it finds, the team and customer above it, the provider config, every limit that applies
//! with its window in its zone, and the decision, from the filter's own flow.

use serde_json::{json, Value};

use super::describe::mode;
use super::replay::Replay;
use super::report::{decision, key_owners, limit_entries};
use super::request::{format_time, RequestSpec};
use super::{policy_of, simulate, Answer, Failure};
use crate::config::{LimitId, Mode};
use crate::flow::{provider_and_model, RequestHead};
use crate::identity::identify;

/// Explains `request_text` (a [`RequestSpec`] as JSON) against `config_text`, after
/// replaying `trace` (JSONL, as for `simulate`) when given, so that counters hold that
/// usage. In shadow mode the decision is the one the filter would log (it admits).
pub fn explain(config_text: &str, request_text: &str, trace: Option<&str>) -> Answer {
    let mut policy = policy_of(config_text)?;
    let configured_mode = mode(&policy);
    // Shadow mode only logs its refusals: decide as enforce does to say what they are.
    policy.mode = Mode::Enforce;
    let request = RequestSpec::parse(request_text)
        .map_err(|err| Failure::new(format!("invalid request: {err}")))?;
    let now = request
        .at()
        .map_err(|err| Failure::new(format!("invalid request: {err}")))?;
    let mut replay = Replay::new(policy);
    if let Some(trace) = trace {
        for (line, spec) in simulate::read_trace(trace)? {
            let at = spec
                .at()
                .map_err(|err| Failure::new(format!("trace line {line}: {err}")))?;
            if at > now {
                continue;
            }
            let exchange = spec.exchange(&replay.policy.provider_header, true);
            replay.run(&exchange, at);
        }
    }
    let policy = std::rc::Rc::clone(&replay.policy);
    let exchange = request.exchange(&policy.provider_header, false);
    let head = RequestHead {
        method: &exchange.method,
        path: &exchange.path,
        headers: &exchange.headers,
        end_of_stream: exchange.body.is_empty(),
    };
    let identified = identify(&policy, &exchange.headers);
    let key_index = identified.as_ref().and_then(|found| found.key);
    let (provider, model) = provider_and_model(&policy, &head, &exchange.body);
    let key = key_index.and_then(|index| policy.keys.get(index));
    let config = key
        .zip(provider.as_deref())
        .and_then(|(key, p)| key.provider_config(p));
    // Provider config first, then key, team, customer: the order the filter checks them.
    let mut applicable: Vec<LimitId> = config.map(|c| c.owner.limits.clone()).unwrap_or_default();
    if let Some(key) = key {
        applicable.extend(policy.hierarchy_limits(key));
        if let Some(model) = model.as_deref() {
            applicable.extend(policy.model_limits(key, model));
        }
    }
    // The counters as the request finds them, before it takes anything.
    let limits = limit_entries(&replay, &applicable, now);
    let outcome = replay.run(&exchange, now);
    let (key_id, team, customer) = key_index.map_or((None, None, None), |i| key_owners(&policy, i));
    let key_json = key.map(|key| {
        json!({
            "id": key_id,
            "header": identified.as_ref().map(|found| found.header),
            "active": key.active,
            "expires_at": super::report::time_or_null(key.expires_at),
        })
    });
    let presented = identified.as_ref().map(|found| found.header);
    Ok(json!({
        "time": format_time(now),
        "mode": configured_mode,
        "request": {
            "method": exchange.method,
            "path": exchange.path,
            "key_header": presented,
            "provider": provider,
            "model": model,
        },
        "virtual_key": key_json.unwrap_or(Value::Null),
        "team": team,
        "customer": customer,
        "provider_config": config.map(|c| c.owner.id.clone()),
        "limits": limits,
        "decision": decision(&outcome),
    }))
}
