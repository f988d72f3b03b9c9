//! Per-model limits (`model_configs` on keys, teams and customers) through the real module:
//! matched like pricing (exact name, then the longest prefix), counted beside the owner's own
//! limits, with the refusals, quota headers, usage-endpoint entries and fleet calls every
//! other limit has.

use std::time::Duration;

use host_tests::{Request, Response};
use serde_json::Value;

use crate::support::*;

/// Key `vk` in team `ml` of customer `acme`:
/// - the key: gpt-4* at most 2 requests a minute, gpt-4o-mini (exact) $0.0003 a day;
/// - the team: claude-sonnet-4* at most 500 tokens an hour;
/// - the customer: every gemini* model $0.001, never reset.
fn per_model_config() -> String {
    config(
        r#""customers":[{"id":"acme","model_configs":[
            {"model":"gemini*","budgets":[{"max_limit":0.001,"reset_duration":"never"}]}]}],
        "teams":[{"id":"ml","customer_id":"acme",
            "budgets":[{"max_limit":100,"reset_duration":"1d"}],
            "model_configs":[{"model":"claude-sonnet-4*",
                "rate_limit":{"token_max_limit":500,"token_reset_duration":"1h"}}]}],
        "virtual_keys":[{"id":"vk","value":"sk","team_id":"ml",
            "rate_limit":{"request_max_limit":100,"request_reset_duration":"1m"},
            "model_configs":[
              {"model":"gpt-4*","rate_limit":{"request_max_limit":2,"request_reset_duration":"1m"}},
              {"model":"gpt-4o-mini","budgets":[{"max_limit":0.0003,"reset_duration":"1d"}]}]}]"#,
    )
}

fn message(ex: &host_tests::Exchange) -> String {
    body_json(ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The counter of the model config `model` of owner `id`.
fn model_counter(host: &mut host_tests::Host, id: &str, model: &str, kind: &str) -> Value {
    counters(host)
        .into_iter()
        .find(|c| c["id"] == id && c["model"] == model && c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} counter of {id}'s model config {model}"))
}

#[test]
fn a_prefix_entry_limits_its_models_requests_beside_the_keys_own_limit() {
    let mut host = host(&per_model_config());
    let vm = host.vm(0);
    for _ in 0..2 {
        let ex = vm.exchange(&chat("sk", "gpt-4.1-mini"), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200);
    }
    let ex = vm.exchange(&chat("sk", "gpt-4.1-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(error_type(&ex), "request_limited");
    assert!(
        message(&ex).starts_with(
            "virtual key 'vk' model 'gpt-4*' request limit exceeded: 2 of 2 requests used"
        ),
        "{}",
        message(&ex)
    );
    assert_eq!(header(&ex, "retry-after"), Some("60"));
    assert_eq!(header(&ex, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), Some("0"));
    assert!(
        ex.upstream.headers.is_some() && ex.upstream.body.len() < chat_body("gpt-4.1-mini").len(),
        "refused at the body's end: upstream never gets the request whole"
    );
    // Another model is not held back by gpt-4*'s limit; the key's own limit counted all.
    let ex = vm.exchange(&chat("sk", "claude-sonnet-4-5"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
    assert_eq!(
        used(&mut host, "vk", "requests"),
        3.0,
        "the key's own limit"
    );
    let model = model_counter(&mut host, "vk", "gpt-4*", "requests");
    assert_eq!(model["used"], 2);
    assert_eq!(model["owner"], "virtual_key");
    assert_eq!(model["limit"], 2);
}

#[test]
fn the_exact_name_wins_over_a_prefix_and_its_budget_is_charged_and_refuses() {
    let mut host = host(&per_model_config());
    // gpt-4o-mini: 1,000 + 100 tokens = $0.00021 each. Its exact entry applies, not gpt-4*.
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1000, 100));
    assert_eq!(ex.client.status, 200);
    // The tightest budget is the model's: its remaining amount in the headers.
    assert_eq!(header(&ex, "x-budget-limit-usd"), Some("0.0003"));
    assert_eq!(header(&ex, "x-budget-remaining-usd"), Some("0.0003"));
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1000, 100));
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-budget-remaining-usd"), Some("0.00009"));
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 402);
    assert_eq!(error_type(&ex), "budget_exceeded");
    assert!(
        message(&ex).starts_with(
            "virtual key 'vk' model 'gpt-4o-mini' budget exceeded: 0.0004 of 0.0003 USD used"
        ),
        "{}",
        message(&ex)
    );
    assert_eq!(header(&ex, "retry-after"), Some("86400"));
    let budget = model_counter(&mut host, "vk", "gpt-4o-mini", "budget");
    assert_eq!(budget["used"], 0.00042);
    let prefix = model_counter(&mut host, "vk", "gpt-4*", "requests");
    assert_eq!(
        prefix["used"], 0,
        "gpt-4o-mini matched its exact entry, not gpt-4*"
    );
    // The team's own budget was charged beside it.
    assert_eq!(used(&mut host, "ml", "budget"), 0.00042);
    // A day later the model's budget has a new window.
    host.advance(Duration::from_secs(86_400));
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
}

#[test]
fn a_teams_token_limit_and_a_customers_credit_apply_to_their_keys_models() {
    let mut host = host(&per_model_config());
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "claude-sonnet-4-5"), &openai_json(400, 200));
    assert_eq!(ex.client.status, 200);
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "claude-sonnet-4-5"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(error_type(&ex), "token_limited");
    assert!(
        message(&ex).starts_with(
            "team 'ml' model 'claude-sonnet-4*' token limit exceeded: 600 of 500 tokens used"
        ),
        "{}",
        message(&ex)
    );
    // Gemini names its model in the path: the customer's gemini* credit applies at headers.
    let gemini = Request::post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
    )
    .header("x-goog-api-key", "sk");
    let usage = Response::ok(
        r#"{"candidates":[],"usageMetadata":{"promptTokenCount":2000,"candidatesTokenCount":400,"totalTokenCount":2400}}"#,
    );
    // 2,000 × $3e-7 + 400 × $2.5e-6 = $0.0016: over the $0.001 credit after one.
    let ex = host.vm(0).exchange(&gemini, &usage);
    assert_eq!(ex.client.status, 200);
    let ex = host.vm(0).exchange(&gemini, &usage);
    assert_eq!(ex.client.status, 402);
    assert!(ex.upstream.headers.is_none(), "refused at its headers");
    assert_eq!(header(&ex, "retry-after"), None, "a credit never resets");
    let credit = model_counter(&mut host, "acme", "gemini*", "budget");
    assert_eq!(credit["used"], 0.0016);
    assert!(credit["window_end"].is_null());
}

#[test]
fn a_key_sees_every_levels_model_counters_and_nothing_else_of_other_owners() {
    let mut host = host(&per_model_config());
    let ex = host.vm(0).exchange(
        &Request::get("/governance/usage").header("x-bf-vk", "sk"),
        &Response::status(500),
    );
    assert_eq!(ex.client.status, 200);
    let counters = body_json(&ex)["counters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut models: Vec<String> = counters
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{}:{}:{}",
                c["owner"].as_str()?,
                c["model"].as_str()?,
                c["kind"].as_str()?
            ))
        })
        .collect();
    models.sort();
    assert_eq!(
        models,
        [
            "customer:gemini*:budget",
            "team:claude-sonnet-4*:tokens",
            "virtual_key:gpt-4*:requests",
            "virtual_key:gpt-4o-mini:budget",
        ]
    );
    let own = counters.iter().filter(|c| c.get("model").is_none()).count();
    assert_eq!(own, 2, "the key's request limit and the team's budget");
}

#[test]
fn a_model_that_cannot_be_read_is_refused_where_model_configs_apply() {
    let mut host = host(&config(
        r#""virtual_keys":[{"id":"vk","value":"sk",
            "model_configs":[{"model":"gpt-4o*","rate_limit":{"request_max_limit":1,"request_reset_duration":"1m"}}]}]"#,
    ));
    let request = Request::post("/v1/chat/completions", r#"{"model":42,"messages":[]}"#)
        .header("authorization", "Bearer sk");
    let ex = host.vm(0).exchange(&request, &openai_json(1, 1));
    assert_eq!(ex.client.status, 403);
    assert_eq!(error_type(&ex), "model_blocked");
}

#[test]
fn reservations_hold_the_estimate_on_a_models_budget_too() {
    let mut host = host(&config(
        r#""reservation":{"enabled":true},
        "virtual_keys":[{"id":"vk","value":"sk",
            "model_configs":[{"model":"gpt-4o-mini","budgets":[{"max_limit":0.001,"reset_duration":"1d"}]}]}]"#,
    ));
    // The estimate of 4,096 output tokens at $6e-7 is $0.0025: more than the model's budget.
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 402);
    assert!(
        message(&ex).contains("model 'gpt-4o-mini' budget exceeded"),
        "{}",
        message(&ex)
    );
    let body = r#"{"model":"gpt-4o-mini","max_tokens":100,"messages":[]}"#;
    let request = Request::post("/v1/chat/completions", body).header("authorization", "Bearer sk");
    let ex = host.vm(0).exchange(&request, &openai_json(10, 50));
    assert_eq!(ex.client.status, 200);
    let budget = model_counter(&mut host, "vk", "gpt-4o-mini", "budget");
    assert_eq!(budget["reserved"], 0.0, "settled");
    // 10 × $1.5e-7 + 50 × $6e-7.
    assert_eq!(budget["used"], 0.0000315);
}

/// Fleet mode: a model config's limits are Limitador limits in their owner's namespace,
/// named `model:<model>:…` (the model written as namespaces write ids: `gpt-4*` has a `*`,
/// so `~` and hex), in the limits file and in the calls; refusals and usage as for any limit.
#[test]
fn in_fleet_mode_a_models_limits_are_limitador_limits_of_their_owner() {
    use crate::fleet::{fleet_config, fleet_host};
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "model_configs":[{"model":"gpt-4*","rate_limit":{"request_max_limit":2,"request_reset_duration":"1m"}},
                             {"model":"claude*","budgets":[{"max_limit":5,"reset_duration":"never"}]}]}]"#,
    );
    let policy = governance::config::parse(&config).expect("valid");
    let expected = governance::fleet::expected_limits(&policy, "gov");
    let ids: Vec<(String, String, u64)> = expected
        .iter()
        .map(|l| (l.namespace.clone(), l.conditions.join(","), l.seconds))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "gov:vk:k".to_string(),
                "descriptors[0].limit == 'model:~6770742d342a:requests:1m:rolling'".to_string(),
                60
            ),
            (
                "gov:vk:k".to_string(),
                "descriptors[0].limit == 'model:~636c617564652a:budget:never:rolling'".to_string(),
                3_153_600_000
            ),
        ]
    );
    let (mut host, limitador) = fleet_host(&config, 2);
    let statuses: Vec<u32> = (0..3)
        .map(|i| {
            host.vm(i % 2)
                .exchange(&chat("sk", "gpt-4.1-mini"), &openai_json(1, 1))
                .client
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4.1-mini"), &openai_json(1, 1));
    assert!(
        message(&ex)
            .starts_with("virtual key 'k' model 'gpt-4*' request limit exceeded across the fleet"),
        "{}",
        message(&ex)
    );
    // Another model goes on; its credit is charged in Limitador.
    let ex = host
        .vm(1)
        .exchange(&chat("sk", "claude-sonnet-4-5"), &openai_json(1000, 100));
    assert_eq!(ex.client.status, 200);
    host.run_due();
    let fake = limitador.lock().expect("fake");
    let now = T0;
    assert_eq!(
        fake.used(
            "gov:vk:k",
            "model:~6770742d342a:requests:1m:rolling",
            "rolling",
            now
        ),
        2
    );
    // 1,000 × $3e-6 + 100 × $1.5e-5 = $0.0045, in nano-USD.
    assert_eq!(
        fake.used(
            "gov:vk:k",
            "model:~636c617564652a:budget:never:rolling",
            "rolling",
            now
        ),
        4_500_000
    );
}
